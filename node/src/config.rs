//! The node's configuration: a TOML file in the data dir, overridable by flags and
//! `ALLMENDE_*` environment variables (flag > environment > file > default).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// File name of the configuration inside the data dir.
pub const CONFIG_FILE: &str = "allmende.toml";

/// Errors reading or writing the configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read or written.
    #[error("cannot access `{path}`: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The file is not valid TOML for this configuration.
    #[error("invalid configuration in `{path}`: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What the parser said.
        message: String,
    },
    /// A value is out of range or malformed.
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

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

/// The whole node configuration.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The organisation running the node, e.g. `Stadt Münster`; the datasets' publisher.
    pub name: String,
    /// The German district key (AGS, 5 digits) of the node's municipality.
    pub district_key: String,
    /// HTTP API settings.
    #[serde(default)]
    pub http: HttpConfig,
    /// Logging settings.
    #[serde(default)]
    pub log: LogConfig,
    /// Size and time limits.
    #[serde(default)]
    pub limits: Limits,
    /// Publisher details used in DCAT-AP.de metadata.
    #[serde(default)]
    pub publisher: PublisherConfig,
    /// Peer-to-peer federation settings.
    #[serde(default)]
    pub p2p: P2pConfig,
    /// Sign-in and access control.
    #[serde(default)]
    pub auth: AuthConfig,
    /// OpenTelemetry export of the node's tracing spans.
    #[serde(default)]
    pub telemetry: TelemetryConfig,
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
    /// default takes the node's info spans and every request's span (`allmende::api`, debug).
    pub filter: String,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        Self {
            otlp_endpoint: None,
            service_name: "allmende".into(),
            sample_ratio: 1.0,
            filter: "warn,allmende=info,allmende::api=debug".into(),
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

/// Settings that may be given as flags or `ALLMENDE_*` environment variables; each one that is
/// set replaces the value from the file.
#[derive(Clone, Debug, Default, clap::Args)]
pub struct Overrides {
    /// Organisation running the node.
    #[arg(long, env = "ALLMENDE_NAME")]
    pub name: Option<String>,
    /// District key (AGS, 5 digits).
    #[arg(long, env = "ALLMENDE_DISTRICT_KEY")]
    pub district_key: Option<String>,
    /// Address of the HTTP API.
    #[arg(long, env = "ALLMENDE_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// Public base URL of the HTTP API.
    #[arg(long, env = "ALLMENDE_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// Log format.
    #[arg(long, env = "ALLMENDE_LOG_FORMAT", value_enum)]
    pub log_format: Option<LogFormat>,
    /// Log filter, e.g. `info` or `allmende=debug`.
    #[arg(long, env = "ALLMENDE_LOG_LEVEL")]
    pub log_level: Option<String>,
    /// Largest accepted upload in bytes.
    #[arg(long, env = "ALLMENDE_MAX_UPLOAD_BYTES")]
    pub max_upload_bytes: Option<u64>,
    /// Memory limit of one SQL query in bytes.
    #[arg(long, env = "ALLMENDE_SQL_MEMORY_BYTES")]
    pub sql_memory_bytes: Option<u64>,
    /// Time limit of one SQL query in seconds.
    #[arg(long, env = "ALLMENDE_SQL_TIMEOUT_SECS")]
    pub sql_timeout_secs: Option<u64>,
    /// Largest file received in a transfer, in bytes.
    #[arg(long, env = "ALLMENDE_MAX_TRANSFER_BYTES")]
    pub max_transfer_bytes: Option<u64>,
    /// Bandwidth of each transfer served, in bytes a second (0: no limit).
    #[arg(long, env = "ALLMENDE_TRANSFER_RATE_BYTES")]
    pub transfer_rate_bytes: Option<u64>,
    /// Largest request body other than an upload, in bytes.
    #[arg(long, env = "ALLMENDE_MAX_BODY_BYTES")]
    pub max_body_bytes: Option<u64>,
    /// Most columns of an imported file.
    #[arg(long, env = "ALLMENDE_MAX_COLUMNS")]
    pub max_columns: Option<usize>,
    /// Threads that run queries (0: one per core).
    #[arg(long, env = "ALLMENDE_QUERY_THREADS")]
    pub query_threads: Option<usize>,
    /// Publisher URI.
    #[arg(long, env = "ALLMENDE_PUBLISHER_URI")]
    pub publisher_uri: Option<String>,
    /// Contact e-mail for the datasets.
    #[arg(long, env = "ALLMENDE_CONTACT_EMAIL")]
    pub contact_email: Option<String>,
    /// Contact name for the datasets.
    #[arg(long, env = "ALLMENDE_CONTACT_NAME")]
    pub contact_name: Option<String>,
    /// libp2p listen addresses, comma-separated.
    #[arg(long, env = "ALLMENDE_P2P_LISTEN", value_delimiter = ',')]
    pub p2p_listen: Option<Vec<String>>,
    /// libp2p addresses announced to other members, comma-separated.
    #[arg(long, env = "ALLMENDE_P2P_EXTERNAL", value_delimiter = ',')]
    pub p2p_external: Option<Vec<String>>,
    /// Discover peers with mDNS (development only).
    #[arg(long, env = "ALLMENDE_MDNS")]
    pub mdns: Option<bool>,
    /// Anti-entropy interval in milliseconds.
    #[arg(long, env = "ALLMENDE_SYNC_INTERVAL_MS")]
    pub sync_interval_ms: Option<u64>,
    /// OpenID provider issuer URL.
    #[arg(long, env = "ALLMENDE_OIDC_ISSUER")]
    pub oidc_issuer: Option<String>,
    /// Audience (`aud`) the node's access tokens carry.
    #[arg(long, env = "ALLMENDE_OIDC_AUDIENCE")]
    pub oidc_audience: Option<String>,
    /// OAuth client id for browser sign-in.
    #[arg(long, env = "ALLMENDE_OIDC_CLIENT_ID")]
    pub oidc_client_id: Option<String>,
    /// File holding the OAuth client secret (the secret itself only via the environment).
    #[arg(long, env = "ALLMENDE_OIDC_CLIENT_SECRET_FILE")]
    pub oidc_client_secret_file: Option<PathBuf>,
    /// Claim path of the roles, e.g. `realm_access.roles`.
    #[arg(long, env = "ALLMENDE_ROLES_CLAIM")]
    pub roles_claim: Option<String>,
    /// Production profile: refuse to start without an OpenID provider.
    #[arg(long, env = "ALLMENDE_PRODUCTION")]
    pub production: Option<bool>,
    /// Allow the local admin token in production.
    #[arg(long, env = "ALLMENDE_ALLOW_LOCAL_TOKEN_IN_PRODUCTION")]
    pub allow_local_token_in_production: Option<bool>,
    /// Origins allowed by CORS, comma-separated (`*` for any).
    #[arg(long, env = "ALLMENDE_CORS_ORIGINS", value_delimiter = ',')]
    pub cors_origins: Option<Vec<String>>,
    /// Base URL of an OTLP/HTTP collector for the node's spans, e.g. `http://127.0.0.1:4318`.
    #[arg(long, env = "ALLMENDE_OTLP_ENDPOINT")]
    pub otlp_endpoint: Option<String>,
    /// `service.name` of the exported spans.
    #[arg(long, env = "ALLMENDE_OTEL_SERVICE_NAME")]
    pub otel_service_name: Option<String>,
    /// Share of traces exported (0.0 to 1.0).
    #[arg(long, env = "ALLMENDE_TRACE_SAMPLE_RATIO")]
    pub trace_sample_ratio: Option<f64>,
    /// Filter choosing the exported spans, e.g. `warn,allmende=debug`.
    #[arg(long, env = "ALLMENDE_TRACE_FILTER")]
    pub trace_filter: Option<String>,
}

impl Config {
    /// A configuration with defaults for everything but the name and district key.
    pub fn new(name: String, district_key: String) -> Self {
        Self {
            name,
            district_key,
            http: HttpConfig::default(),
            log: LogConfig::default(),
            limits: Limits::default(),
            publisher: PublisherConfig::default(),
            p2p: P2pConfig::default(),
            auth: AuthConfig::default(),
            telemetry: TelemetryConfig::default(),
        }
    }

    /// The path of the configuration file in `data_dir`.
    pub fn path(data_dir: &Path) -> PathBuf {
        data_dir.join(CONFIG_FILE)
    }

    /// Reads the configuration file from `data_dir`.
    pub fn load(data_dir: &Path) -> Result<Self, ConfigError> {
        let path = Self::path(data_dir);
        let text = std::fs::read_to_string(&path).map_err(|source| ConfigError::Io {
            path: path.clone(),
            source,
        })?;
        let config: Self = toml::from_str(&text).map_err(|e| ConfigError::Parse {
            path,
            message: e.message().to_owned(),
        })?;
        config.validate()?;
        Ok(config)
    }

    /// Writes the configuration file into `data_dir`, replacing it atomically.
    pub fn save(&self, data_dir: &Path) -> Result<(), ConfigError> {
        let path = Self::path(data_dir);
        let text = toml::to_string_pretty(self).map_err(|e| ConfigError::Invalid(e.to_string()))?;
        let tmp = path.with_extension("toml.tmp");
        std::fs::write(&tmp, text)
            .and_then(|()| std::fs::rename(&tmp, &path))
            .map_err(|source| ConfigError::Io { path, source })
    }

    /// Applies the overrides that are set.
    pub fn apply(&mut self, o: &Overrides) -> Result<(), ConfigError> {
        fn set<T: Clone>(target: &mut T, value: &Option<T>) {
            if let Some(v) = value {
                *target = v.clone();
            }
        }
        fn set_opt<T: Clone>(target: &mut Option<T>, value: &Option<T>) {
            if value.is_some() {
                target.clone_from(value);
            }
        }
        set(&mut self.name, &o.name);
        set(&mut self.district_key, &o.district_key);
        set(&mut self.http.listen, &o.listen);
        set_opt(&mut self.http.public_url, &o.public_url);
        set(&mut self.log.format, &o.log_format);
        set(&mut self.log.level, &o.log_level);
        set(&mut self.limits.max_upload_bytes, &o.max_upload_bytes);
        set(&mut self.limits.sql_memory_bytes, &o.sql_memory_bytes);
        set(&mut self.limits.sql_timeout_secs, &o.sql_timeout_secs);
        set(&mut self.limits.max_transfer_bytes, &o.max_transfer_bytes);
        set(&mut self.limits.transfer_rate_bytes, &o.transfer_rate_bytes);
        set(&mut self.limits.max_body_bytes, &o.max_body_bytes);
        set(&mut self.limits.max_columns, &o.max_columns);
        set(&mut self.limits.query_threads, &o.query_threads);
        set_opt(&mut self.publisher.uri, &o.publisher_uri);
        set_opt(&mut self.publisher.contact_email, &o.contact_email);
        set_opt(&mut self.publisher.contact_name, &o.contact_name);
        set(&mut self.p2p.listen, &o.p2p_listen);
        set(&mut self.p2p.external, &o.p2p_external);
        set(&mut self.p2p.mdns, &o.mdns);
        set(&mut self.p2p.sync_interval_ms, &o.sync_interval_ms);
        set_opt(&mut self.auth.issuer, &o.oidc_issuer);
        set_opt(&mut self.auth.audience, &o.oidc_audience);
        set_opt(&mut self.auth.client_id, &o.oidc_client_id);
        set_opt(
            &mut self.auth.client_secret_file,
            &o.oidc_client_secret_file,
        );
        set(&mut self.auth.roles_claim, &o.roles_claim);
        set(&mut self.auth.production, &o.production);
        set(
            &mut self.auth.allow_local_token_in_production,
            &o.allow_local_token_in_production,
        );
        set(&mut self.auth.cors_allowed_origins, &o.cors_origins);
        set_opt(&mut self.telemetry.otlp_endpoint, &o.otlp_endpoint);
        set(&mut self.telemetry.service_name, &o.otel_service_name);
        set(&mut self.telemetry.sample_ratio, &o.trace_sample_ratio);
        set(&mut self.telemetry.filter, &o.trace_filter);
        self.validate()
    }

    /// Checks values that TOML's types cannot express.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.name.trim().is_empty() {
            return Err(ConfigError::Invalid("`name` must not be empty".into()));
        }
        if self.district_key.len() != 5 || !self.district_key.bytes().all(|b| b.is_ascii_digit()) {
            return Err(ConfigError::Invalid(format!(
                "`district_key` must be a 5-digit German district key (AGS), got `{}`",
                self.district_key
            )));
        }
        for addr in self.p2p.listen.iter().chain(&self.p2p.external) {
            if addr.parse::<libp2p::Multiaddr>().is_err() {
                return Err(ConfigError::Invalid(format!(
                    "`{addr}` is not a libp2p multiaddress (e.g. /ip4/0.0.0.0/udp/7071/quic-v1)"
                )));
            }
        }
        if self.p2p.sync_interval_ms < 100 || self.p2p.gossip_rate == 0 {
            return Err(ConfigError::Invalid(
                "p2p.sync_interval_ms must be at least 100 and p2p.gossip_rate at least 1".into(),
            ));
        }
        if self.auth.issuer.is_some() && self.auth.audience.is_none() {
            return Err(ConfigError::Invalid(
                "auth.audience is required with auth.issuer".into(),
            ));
        }
        if self.limits.sql_timeout_secs == 0
            || self.limits.max_upload_bytes == 0
            || self.limits.max_body_bytes == 0
            || self.limits.max_columns == 0
            || self.limits.max_local_queries == 0
        {
            return Err(ConfigError::Invalid(
                "limits must be greater than zero".into(),
            ));
        }
        self.telemetry.validate()
    }

    /// How the node's datasets are described and imported.
    pub fn dataset_settings(&self) -> allmende_data::datasets::DatasetSettings {
        allmende_data::datasets::DatasetSettings {
            publisher: allmende_data::datasets::Publisher {
                name: self.name.clone(),
                district_key: self.district_key.clone(),
                uri: self.publisher.uri.clone(),
                contact_email: self.publisher.contact_email.clone(),
                contact_name: self.publisher.contact_name.clone(),
            },
            public_url: self.public_url(),
            import: allmende_data::import::ImportLimits {
                max_columns: self.limits.max_columns,
            },
        }
    }

    /// The base URL under which the API is reached, without a trailing slash.
    pub fn public_url(&self) -> String {
        match &self.http.public_url {
            Some(url) => url.trim_end_matches('/').to_owned(),
            None => format!("http://{}", self.http.listen),
        }
    }
}

impl TelemetryConfig {
    fn validate(&self) -> Result<(), ConfigError> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_toml() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config::new("Stadt Münster".into(), "05515".into());
        config.publisher.contact_email = Some("open-data@stadt-muenster.de".into());
        config.save(dir.path()).unwrap();
        assert_eq!(Config::load(dir.path()).unwrap(), config);
    }

    #[test]
    fn overrides_replace_file_values() {
        let mut config = Config::new("A".into(), "05515".into());
        let o = Overrides {
            listen: Some("127.0.0.1:9999".parse().unwrap()),
            log_format: Some(LogFormat::Json),
            ..Overrides::default()
        };
        config.apply(&o).unwrap();
        assert_eq!(config.http.listen.port(), 9999);
        assert_eq!(config.log.format, LogFormat::Json);
        assert_eq!(config.name, "A");
    }

    #[test]
    fn rejects_bad_district_key_and_unknown_keys() {
        assert!(Config::new("A".into(), "5515".into()).validate().is_err());
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            Config::path(dir.path()),
            "name = \"A\"\ndistrict_key = \"05515\"\nbogus = 1\n",
        )
        .unwrap();
        let err = Config::load(dir.path()).unwrap_err().to_string();
        assert!(err.contains("bogus"), "{err}");
    }

    #[test]
    fn telemetry_section_parses_overrides_and_is_checked() {
        let dir = tempfile::tempdir().unwrap();
        let base = "name = \"A\"\ndistrict_key = \"05515\"\n";
        std::fs::write(Config::path(dir.path()), base).unwrap();
        let config = Config::load(dir.path()).unwrap();
        assert_eq!(config.telemetry, TelemetryConfig::default());
        assert_eq!(config.telemetry.otlp_endpoint, None);

        std::fs::write(
            Config::path(dir.path()),
            format!(
                "{base}[telemetry]\notlp_endpoint = \"http://127.0.0.1:4318\"\nsample_ratio = 0.25\n"
            ),
        )
        .unwrap();
        let mut config = Config::load(dir.path()).unwrap();
        let t = &config.telemetry;
        assert_eq!(t.otlp_endpoint.as_deref(), Some("http://127.0.0.1:4318"));
        assert_eq!(t.sample_ratio, 0.25);
        assert_eq!(t.service_name, "allmende");
        assert_eq!(t.filter, "warn,allmende=info,allmende::api=debug");

        let o = Overrides {
            otlp_endpoint: Some("https://otel.example.org:4318".into()),
            otel_service_name: Some("allmende-muenster".into()),
            ..Overrides::default()
        };
        config.apply(&o).unwrap();
        let t = &config.telemetry;
        assert_eq!(
            t.otlp_endpoint.as_deref(),
            Some("https://otel.example.org:4318")
        );
        assert_eq!(t.service_name, "allmende-muenster");
        config.save(dir.path()).unwrap();
        assert_eq!(Config::load(dir.path()).unwrap(), config);

        for (bad, named) in [
            ("otlp_endpoint = \"localhost:4318\"", "otlp_endpoint"),
            ("otlp_endpoint = \"ftp://c:21\"", "otlp_endpoint"),
            ("sample_ratio = 1.5", "sample_ratio"),
            ("service_name = \" \"", "service_name"),
            ("exporter = \"jaeger\"", "exporter"),
        ] {
            std::fs::write(
                Config::path(dir.path()),
                format!("{base}[telemetry]\n{bad}\n"),
            )
            .unwrap();
            let err = Config::load(dir.path()).unwrap_err().to_string();
            assert!(err.contains(named), "{bad}: {err}");
        }
    }
}
