//! The node's configuration: a TOML file in the data dir, overridable by flags and
//! `ALLMENDE_*` environment variables (flag > environment > file > default).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

mod overrides;
mod sections;

pub use overrides::Overrides;
pub use sections::{
    AuthConfig, HttpConfig, Limits, LogConfig, LogFormat, P2pConfig, PublisherConfig,
    TelemetryConfig,
};

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
        assert_eq!(t.filter, "warn,allmende=info,allmende_node::api=debug");

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
