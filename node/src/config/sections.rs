//! The sections of the configuration file, each with its defaults.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::ConfigError;

/// Log output format.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Pretty,
    /// One JSON object per line.
    Json,
}

/// OpenTelemetry export of the node's tracing spans (`[telemetry]`; see `crate::telemetry`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TelemetryConfig {
    /// Base URL of an OTLP/HTTP collector, e.g. `http://127.0.0.1:4318`; spans go to
    /// `<url>/v1/traces`. None: the standard `OTEL_EXPORTER_OTLP_ENDPOINT` if set, else no
    /// export at all.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub otlp_endpoint: Option<String>,
    /// The `service.name` the spans are exported under.
    pub service_name: String,
    /// Share of traces exported, from 0.0 to 1.0; a trace is kept or dropped whole.
    pub sample_ratio: f64,
    /// A `tracing` filter choosing the exported spans, independent of `log.level`; the
    /// default takes the node's info spans and every request's span (`allmende_node::api`, debug).
    pub filter: String,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        Self {
            otlp_endpoint: None,
            service_name: "allmende".into(),
            sample_ratio: 1.0,
            filter: "warn,allmende=info,allmende_node::api=debug".into(),
        }
    }
}

/// Sign-in and access control (`[auth]`; see `crate::auth`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// The OpenID provider's issuer URL (discovery at `<issuer>/.well-known/openid-configuration`);
    /// none: only the local admin token.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
    /// The `aud` value the node's access tokens must carry (required with `issuer`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub audience: Option<String>,
    /// The node's OAuth client id, for browser sign-in.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// A file holding the client secret (else `ALLMENDE_OIDC_CLIENT_SECRET`); never the secret
    /// itself.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_secret_file: Option<PathBuf>,
    /// Where the provider sends browsers back; default `<public_url>/auth/callback`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redirect_url: Option<String>,
    /// Scopes asked for at browser sign-in.
    pub scopes: Vec<String>,
    /// Dot-separated path of the claim holding the roles, e.g. `realm_access.roles`.
    pub roles_claim: String,
    /// Claim values mapped to roles (`"city-admins" = "admin"`); empty: the role names
    /// themselves.
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub role_mapping: std::collections::BTreeMap<String, String>,
    /// Dot-separated path of the claim naming the user's organisation; default: the node's name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub organisation_claim: Option<String>,
    /// Allowed clock skew for `exp` and `nbf`, in seconds.
    pub leeway_secs: u64,
    /// Production profile: refuse to start without an OpenID provider, and ignore the local
    /// admin token, unless `allow_local_token_in_production` is set.
    pub production: bool,
    /// Explicitly allow the local admin token in production.
    pub allow_local_token_in_production: bool,
    /// Origins allowed by CORS (`*` for any); empty: no cross-origin access.
    pub cors_allowed_origins: Vec<String>,
    /// Failed authentications per client address and minute before it gets 429.
    pub max_failures_per_minute: u32,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            issuer: None,
            audience: None,
            client_id: None,
            client_secret_file: None,
            redirect_url: None,
            scopes: vec!["openid".into(), "profile".into()],
            roles_claim: "realm_access.roles".into(),
            role_mapping: std::collections::BTreeMap::new(),
            organisation_claim: None,
            leeway_secs: 60,
            production: false,
            allow_local_token_in_production: false,
            cors_allowed_origins: Vec::new(),
            max_failures_per_minute: 10,
        }
    }
}

/// Peer-to-peer federation settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct P2pConfig {
    /// libp2p multiaddresses to listen on (QUIC first, TCP as fallback).
    pub listen: Vec<String>,
    /// Addresses other members should dial, when they differ from the listen addresses.
    #[serde(default)]
    pub external: Vec<String>,
    /// Discover peers on the local network with mDNS (development only).
    #[serde(default)]
    pub mdns: bool,
    /// Interval of anti-entropy rounds, in milliseconds.
    pub sync_interval_ms: u64,
    /// Gossip messages accepted per second from one peer (burst: ten times as many).
    pub gossip_rate: u32,
}

impl Default for P2pConfig {
    fn default() -> Self {
        Self {
            listen: vec![
                "/ip4/0.0.0.0/udp/7071/quic-v1".into(),
                "/ip4/0.0.0.0/tcp/7071".into(),
            ],
            external: Vec::new(),
            mdns: false,
            sync_interval_ms: 5000,
            gossip_rate: 200,
        }
    }
}

/// HTTP API settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    /// Address the API listens on.
    pub listen: SocketAddr,
    /// Base URL under which others reach the API (used for `dcat:accessURL`);
    /// `None` means `http://<listen>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_url: Option<String>,
    /// Longest the node waits after SIGTERM for requests in flight (queries are cancelled at
    /// once), in seconds.
    #[serde(default = "default_shutdown_grace_secs")]
    pub shutdown_grace_secs: u64,
}

fn default_shutdown_grace_secs() -> u64 {
    10
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 7070)),
            public_url: None,
            shutdown_grace_secs: default_shutdown_grace_secs(),
        }
    }
}

/// Logging settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    /// `pretty` or `json`.
    #[serde(default)]
    pub format: LogFormat,
    /// A `tracing` filter such as `info` or `allmende=debug,info`.
    #[serde(default = "default_log_level")]
    pub level: String,
}

fn default_log_level() -> String {
    "info".to_owned()
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            format: LogFormat::Pretty,
            level: default_log_level(),
        }
    }
}

/// Size and time limits.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Largest accepted upload, in bytes.
    pub max_upload_bytes: u64,
    /// Memory a single SQL query may use, in bytes.
    pub sql_memory_bytes: u64,
    /// Longest a single SQL query may run, in seconds.
    pub sql_timeout_secs: u64,
    /// Largest file this node receives in a transfer, in bytes.
    #[serde(default = "default_max_transfer_bytes")]
    pub max_transfer_bytes: u64,
    /// Bandwidth of each transfer this node serves, in bytes a second; 0 for no limit.
    #[serde(default)]
    pub transfer_rate_bytes: u64,
    /// Largest request body other than an upload (JSON, policies), in bytes.
    #[serde(default = "default_max_body_bytes")]
    pub max_body_bytes: u64,
    /// Most columns an imported file may have.
    #[serde(default = "default_max_columns")]
    pub max_columns: usize,
    /// Threads that run queries (0: one per core).
    #[serde(default)]
    pub query_threads: usize,
    /// Local queries (`/api/v1/sql`, data exports) running at once; more wait until their
    /// deadline.
    #[serde(default = "default_max_local_queries")]
    pub max_local_queries: usize,
    /// Most bytes of spill files (under `DATA_DIR/tmp/spill`) of all queries together.
    #[serde(default = "default_spill_bytes")]
    pub spill_bytes: u64,
}

fn default_max_transfer_bytes() -> u64 {
    64 << 30
}

fn default_max_body_bytes() -> u64 {
    1 << 20
}

fn default_max_columns() -> usize {
    4096
}

fn default_max_local_queries() -> usize {
    8
}

fn default_spill_bytes() -> u64 {
    8 << 30
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_upload_bytes: 8 << 30,
            sql_memory_bytes: 1 << 30,
            sql_timeout_secs: 60,
            max_transfer_bytes: default_max_transfer_bytes(),
            transfer_rate_bytes: 0,
            max_body_bytes: default_max_body_bytes(),
            max_columns: default_max_columns(),
            query_threads: 0,
            max_local_queries: default_max_local_queries(),
            spill_bytes: default_spill_bytes(),
        }
    }
}

/// Publisher details used in DCAT-AP.de metadata.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PublisherConfig {
    /// The publisher's URI (`dct:publisher`), if it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uri: Option<String>,
    /// Contact e-mail (`dcat:contactPoint`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contact_email: Option<String>,
    /// Contact name (`vcard:fn`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contact_name: Option<String>,
}

impl TelemetryConfig {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if let Some(url) = &self.otlp_endpoint {
            let uri = url.parse::<axum::http::Uri>().ok();
            let scheme = uri.as_ref().and_then(|u| u.scheme_str());
            if !matches!(scheme, Some("http" | "https"))
                || uri.as_ref().and_then(|u| u.host()).is_none()
            {
                return Err(ConfigError::Invalid(format!(
                    "telemetry.otlp_endpoint must be an http(s) URL such as \
                     http://127.0.0.1:4318, got `{url}`"
                )));
            }
        }
        if !(0.0..=1.0).contains(&self.sample_ratio) {
            return Err(ConfigError::Invalid(format!(
                "telemetry.sample_ratio must be between 0.0 and 1.0, got {}",
                self.sample_ratio
            )));
        }
        if self.service_name.trim().is_empty() {
            return Err(ConfigError::Invalid(
                "telemetry.service_name must not be empty".into(),
            ));
        }
        Ok(())
    }
}
