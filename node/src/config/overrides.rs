//! The settings that flags and `ALLMENDE_*` environment variables override.

use std::net::SocketAddr;
use std::path::PathBuf;

use super::LogFormat;

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
