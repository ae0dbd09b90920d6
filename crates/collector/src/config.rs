//! The collector's configuration: one YAML file in the OpenTelemetry
//! Collector's spirit, every key documented here, unknown keys refused.
//!
//! The pipeline lives in the file; runtime knobs (addresses, data dir) are
//! also CLI flags, and a flag overrides the file. The documented example at
//! `config/agentrace.example.yaml` is loaded by a test, so it cannot rot.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Deserializer};

/// Why a configuration could not be loaded. The message names the file and
/// the offending key or value; the operator should fix the file.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The YAML was malformed, had an unknown key, or a value of the wrong shape.
    #[error("invalid config file {path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What serde said, including the key and line.
        message: String,
    },
    /// The values parse but do not make sense together.
    #[error("invalid config: {0}")]
    Invalid(String),
}

/// The whole configuration.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Where spans come in.
    pub receivers: ReceiversConfig,
    /// The web UI and JSON API (Jaeger api_v3 routes, `/metrics`, `/health`).
    pub api: ApiConfig,
    /// The embedded store.
    pub storage: StorageConfig,
    /// Optional bearer-token authentication, for receivers and API alike.
    pub auth: AuthConfig,
    /// Optional TLS for every listener.
    pub tls: Option<TlsConfig>,
}

/// Receivers.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReceiversConfig {
    /// The OTLP receiver (gRPC and HTTP).
    pub otlp: OtlpReceiverConfig,
}

/// The OTLP receiver.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OtlpReceiverConfig {
    /// OTLP/gRPC listen address; `null` turns the gRPC receiver off.
    /// Default `127.0.0.1:4317`.
    pub grpc_endpoint: Option<SocketAddr>,
    /// OTLP/HTTP listen address (path `/v1/traces`); `null` turns it off.
    /// Default `127.0.0.1:4318`.
    pub http_endpoint: Option<SocketAddr>,
    /// Largest request body accepted, as sent (compressed or not), e.g.
    /// `16MiB`. Larger requests get 413 / `RESOURCE_EXHAUSTED`.
    #[serde(deserialize_with = "de_bytes")]
    pub max_request_bytes: u64,
    /// Largest size a gzip body may inflate to, e.g. `64MiB`.
    #[serde(deserialize_with = "de_bytes")]
    pub max_decompressed_bytes: u64,
    /// Most attributes kept per span, event, link, resource or scope; the
    /// rest are dropped and counted in `dropped_attributes_count`.
    pub max_attributes: usize,
    /// Deepest nesting of array/map attribute values; a deeper span is rejected.
    pub max_value_depth: usize,
    /// Most spans waiting to be written at once. Past it the receivers
    /// answer 429 / `RESOURCE_EXHAUSTED` with a retry delay, so memory stays bounded.
    pub max_pending_spans: usize,
    /// Most export requests handled at once, over both receivers. A request
    /// past it is refused at once with 429 / `RESOURCE_EXHAUSTED` and a retry
    /// delay, before its body is read: under overload the collector answers
    /// fast and its memory stays bounded instead of queueing without end.
    pub max_concurrent_requests: usize,
}

impl Default for OtlpReceiverConfig {
    fn default() -> Self {
        OtlpReceiverConfig {
            grpc_endpoint: Some(SocketAddr::from(([127, 0, 0, 1], 4317))),
            http_endpoint: Some(SocketAddr::from(([127, 0, 0, 1], 4318))),
            max_request_bytes: 16 * MIB,
            max_decompressed_bytes: 64 * MIB,
            max_attributes: 1024,
            max_value_depth: 16,
            max_pending_spans: 100_000,
            max_concurrent_requests: 32,
        }
    }
}

/// The web UI and JSON API.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiConfig {
    /// Listen address; `null` turns the API off. Default `127.0.0.1:4380`.
    pub endpoint: Option<SocketAddr>,
    /// Most traces a search returns when the query does not say
    /// (`query.search_depth`).
    pub default_search_depth: usize,
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig { endpoint: Some(SocketAddr::from(([127, 0, 0, 1], 4380))), default_search_depth: 20 }
    }
}

/// The embedded store (SQLite in WAL mode).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    /// Directory holding `agentrace.db`; created if missing.
    pub data_dir: PathBuf,
    /// How hard a commit waits for the disk. `normal` (default): an
    /// acknowledged span survives a crash or `kill -9` of agentrace;
    /// `full`: it also survives a power cut, at a cost in throughput.
    pub synchronous: Synchronous,
    /// What to delete, and when.
    pub retention: RetentionConfig,
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            data_dir: PathBuf::from("agentrace-data"),
            synchronous: Synchronous::Normal,
            retention: RetentionConfig::default(),
        }
    }
}

/// SQLite's `synchronous` setting, as the store uses it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Synchronous {
    /// Durable against process crashes.
    Normal,
    /// Durable against power loss too.
    Full,
}

/// Retention: spans older than `max_age`, or the oldest spans once the
/// store holds more than `max_bytes`, are deleted.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetentionConfig {
    /// Oldest span start kept, e.g. `72h`; `null` keeps spans forever.
    #[serde(deserialize_with = "de_opt_duration")]
    pub max_age: Option<Duration>,
    /// Most bytes the store may hold, e.g. `10GiB`; `null` means no limit.
    #[serde(deserialize_with = "de_opt_bytes")]
    pub max_bytes: Option<u64>,
    /// How often retention runs, e.g. `30s`.
    #[serde(deserialize_with = "de_duration")]
    pub interval: Duration,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        RetentionConfig {
            max_age: Some(Duration::from_secs(7 * 24 * 3600)),
            max_bytes: Some(10 * 1024 * MIB),
            interval: Duration::from_secs(30),
        }
    }
}

/// Bearer-token authentication. Off when no token is set.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// The token clients must send as `Authorization: Bearer <token>`.
    /// Prefer `bearer_token_file` or the `AGENTRACE_BEARER_TOKEN`
    /// environment variable, which keep the secret out of the file.
    pub bearer_token: Option<String>,
    /// A file holding the token (surrounding whitespace is ignored).
    pub bearer_token_file: Option<PathBuf>,
}

/// TLS for every listener (rustls). Both files are PEM.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// Certificate chain, leaf first.
    pub cert_file: PathBuf,
    /// Private key (PKCS#8, PKCS#1 or SEC1).
    pub key_file: PathBuf,
}

const MIB: u64 = 1024 * 1024;

impl Config {
    /// Reads and parses a YAML file.
    pub fn from_file(path: &Path) -> Result<Config, ConfigError> {
        let text =
            std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_owned(), source })?;
        Config::from_yaml(&text).map_err(|e| match e {
            ConfigError::Parse { message, .. } => ConfigError::Parse { path: path.to_owned(), message },
            other => other,
        })
    }

    /// Parses YAML text. An empty document is the default configuration.
    pub fn from_yaml(text: &str) -> Result<Config, ConfigError> {
        if text.trim().is_empty() {
            return Ok(Config::default());
        }
        let config: Config = serde_yaml_ng::from_str(text)
            .map_err(|e| ConfigError::Parse { path: PathBuf::from("<text>"), message: e.to_string() })?;
        config.check()?;
        Ok(config)
    }

    /// Checks values that parse but cannot work.
    pub fn check(&self) -> Result<(), ConfigError> {
        let r = &self.receivers.otlp;
        if r.max_request_bytes == 0 || r.max_decompressed_bytes == 0 {
            return Err(ConfigError::Invalid("receivers.otlp size limits must be above zero".into()));
        }
        if r.max_concurrent_requests == 0 {
            return Err(ConfigError::Invalid("receivers.otlp.max_concurrent_requests must be above zero".into()));
        }
        if r.max_pending_spans == 0 {
            return Err(ConfigError::Invalid("receivers.otlp.max_pending_spans must be above zero".into()));
        }
        if self.storage.retention.interval.is_zero() {
            return Err(ConfigError::Invalid("storage.retention.interval must be above zero".into()));
        }
        Ok(())
    }

    /// The bearer token in force: the environment variable
    /// `AGENTRACE_BEARER_TOKEN`, else the file, else the inline value.
    pub fn bearer_token(&self) -> Result<Option<String>, ConfigError> {
        if let Ok(token) = std::env::var("AGENTRACE_BEARER_TOKEN")
            && !token.trim().is_empty()
        {
            return Ok(Some(token.trim().to_owned()));
        }
        if let Some(path) = &self.auth.bearer_token_file {
            let token =
                std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.clone(), source })?;
            let token = token.trim();
            if token.is_empty() {
                return Err(ConfigError::Invalid(format!("auth.bearer_token_file {} is empty", path.display())));
            }
            return Ok(Some(token.to_owned()));
        }
        Ok(self.auth.bearer_token.clone().filter(|t| !t.is_empty()))
    }
}

/// Parses a byte size: a plain integer, or a number with `B`, `KB`, `MB`,
/// `GB` (powers of 1000) or `KiB`, `MiB`, `GiB` (powers of 1024).
pub fn parse_bytes(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number.parse().map_err(|_| format!("{text:?} is not a size like 512MiB"))?;
    let factor: u64 = match unit.trim() {
        "" | "B" => 1,
        "KB" => 1000,
        "MB" => 1000 * 1000,
        "GB" => 1000 * 1000 * 1000,
        "KiB" => 1024,
        "MiB" => MIB,
        "GiB" => 1024 * MIB,
        other => return Err(format!("unknown size unit {other:?} in {text:?}; use B, KB, MB, GB, KiB, MiB or GiB")),
    };
    number.checked_mul(factor).ok_or_else(|| format!("{text:?} is too large"))
}

/// Parses a duration like `2s`, `500ms`, `72h`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text.trim()).map_err(|e| format!("{text:?} is not a duration like 30s or 72h: {e}"))
}

#[derive(Deserialize)]
#[serde(untagged)]
enum SizeOrNumber {
    Number(u64),
    Text(String),
}

fn de_bytes<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    match SizeOrNumber::deserialize(d)? {
        SizeOrNumber::Number(n) => Ok(n),
        SizeOrNumber::Text(t) => parse_bytes(&t).map_err(serde::de::Error::custom),
    }
}

fn de_opt_bytes<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    match Option::<SizeOrNumber>::deserialize(d)? {
        None => Ok(None),
        Some(SizeOrNumber::Number(n)) => Ok(Some(n)),
        Some(SizeOrNumber::Text(t)) => parse_bytes(&t).map(Some).map_err(serde::de::Error::custom),
    }
}

fn de_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    parse_duration(&String::deserialize(d)?).map_err(serde::de::Error::custom)
}

fn de_opt_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    match Option::<String>::deserialize(d)? {
        None => Ok(None),
        Some(t) => parse_duration(&t).map(Some).map_err(serde::de::Error::custom),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_example_loads_and_matches_the_defaults_it_claims() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/agentrace.example.yaml");
        let config = Config::from_file(&path).unwrap();
        // The example spells out every default, plus a retention it names.
        let mut expected = Config::default();
        expected.storage.data_dir = PathBuf::from("agentrace-data");
        assert_eq!(config.receivers, expected.receivers);
        assert_eq!(config.api, expected.api);
        assert_eq!(config.storage, expected.storage);
        assert_eq!(config.auth, AuthConfig::default());
        assert_eq!(config.tls, None);
    }

    #[test]
    fn empty_file_is_the_default() {
        assert_eq!(Config::from_yaml("").unwrap(), Config::default());
    }

    #[test]
    fn unknown_keys_are_refused_by_name() {
        let err = Config::from_yaml("storage:\n  data_dri: /tmp/x\n").unwrap_err().to_string();
        assert!(err.contains("unknown field `data_dri`"), "{err}");
        let err = Config::from_yaml("recievers: {}\n").unwrap_err().to_string();
        assert!(err.contains("unknown field `recievers`"), "{err}");
    }

    #[test]
    fn sizes_and_durations_read_as_people_write_them() {
        let c = Config::from_yaml(
            "receivers:\n  otlp:\n    max_request_bytes: 4MiB\nstorage:\n  retention:\n    max_age: 2h\n    max_bytes: 1GB\n",
        )
        .unwrap();
        assert_eq!(c.receivers.otlp.max_request_bytes, 4 * MIB);
        assert_eq!(c.storage.retention.max_age, Some(Duration::from_secs(7200)));
        assert_eq!(c.storage.retention.max_bytes, Some(1_000_000_000));
        let err = Config::from_yaml("receivers:\n  otlp:\n    max_request_bytes: 4 parsecs\n").unwrap_err();
        assert!(err.to_string().contains("unknown size unit"), "{err}");
    }

    #[test]
    fn retention_can_be_turned_off() {
        let c = Config::from_yaml("storage:\n  retention:\n    max_age: null\n    max_bytes: null\n").unwrap();
        assert_eq!(c.storage.retention.max_age, None);
        assert_eq!(c.storage.retention.max_bytes, None);
    }
}
