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
    /// Assembling traces and sessions as they arrive, and diagnosing them.
    pub pipeline: PipelineConfig,
    /// What is removed before anything reaches the store or a backend.
    pub redaction: RedactionConfig,
    /// Backends that receive the spans over OTLP.
    pub exporters: Vec<ExporterConfig>,
    /// The collector's own telemetry (its spans), off by default.
    pub telemetry: TelemetryConfig,
}

/// The collector's own telemetry.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TelemetryConfig {
    /// The collector's own spans: a request received (`receive`), a store
    /// commit (`store.commit`), a pipeline close (`pipeline.close`), an
    /// export attempt (`export`), sent over OTLP/HTTP protobuf.
    pub traces: SelfTracesConfig,
    /// The collector's own metrics (what `/metrics` shows, counters and
    /// gauges), sent over OTLP/HTTP protobuf every `interval`.
    pub metrics: SelfMetricsConfig,
}

/// Where the collector's own metrics go.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SelfMetricsConfig {
    /// OTLP/HTTP endpoint (`http://host:4318`, `/v1/metrics` added, or a
    /// URL with its path); `null`, the default, leaves them off.
    pub endpoint: Option<String>,
    /// Headers sent with every export.
    pub headers: std::collections::BTreeMap<String, String>,
    /// How often they are sent.
    #[serde(deserialize_with = "de_duration")]
    pub interval: Duration,
}

impl Default for SelfMetricsConfig {
    fn default() -> Self {
        SelfMetricsConfig { endpoint: None, headers: Default::default(), interval: Duration::from_secs(60) }
    }
}

/// Where the collector's own spans go.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SelfTracesConfig {
    /// OTLP/HTTP endpoint (`http://host:4318`, `/v1/traces` added, or a
    /// URL with its path); `null`, the default, leaves them off.
    pub endpoint: Option<String>,
    /// Headers sent with every export, e.g. an API key.
    pub headers: std::collections::BTreeMap<String, String>,
    /// Whether `endpoint` may be this collector's own receiver. Off by
    /// default: its spans would be received, stored and diagnosed like an
    /// application's, and receiving them makes more of them.
    pub into_own_pipeline: bool,
}

/// Receivers.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReceiversConfig {
    /// The OTLP receiver (gRPC and HTTP).
    pub otlp: OtlpReceiverConfig,
    /// The Zipkin v2 receiver (`POST /api/v2/spans`, JSON or protobuf),
    /// off by default. Its bodies are bounded and validated by the OTLP
    /// receiver's limits.
    pub zipkin: ZipkinReceiverConfig,
}

/// The Zipkin receiver.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ZipkinReceiverConfig {
    /// Listen address, e.g. `127.0.0.1:9411` (Zipkin's port); `null` (the
    /// default) leaves the receiver off.
    pub endpoint: Option<SocketAddr>,
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
    /// Most memory one request may take once decoded, e.g. `256MiB`,
    /// estimated from its bytes before decoding (an empty span is 2 bytes on
    /// the wire and hundreds in memory). Larger requests get 413 /
    /// `INVALID_ARGUMENT` (never retried: they can never fit). Requests being
    /// decoded at once may take four times this, or half of `memory_limit`
    /// when that is smaller; past it they get 429 / `RESOURCE_EXHAUSTED`.
    #[serde(deserialize_with = "de_bytes")]
    pub max_decoded_bytes: u64,
    /// Most attributes kept per span, event, link, resource or scope; the
    /// rest are dropped and counted in `dropped_attributes_count`.
    pub max_attributes: usize,
    /// Deepest nesting of array/map attribute values; a deeper span is rejected.
    pub max_value_depth: usize,
    /// Most spans waiting to be written at once. Past it the receivers
    /// answer 429 / `RESOURCE_EXHAUSTED` with a retry delay, so memory stays bounded.
    pub max_pending_spans: usize,
    /// Most export requests handled at once, over both receivers. A request
    /// past it is refused with 429 / `RESOURCE_EXHAUSTED` and a retry delay
    /// as soon as its body has arrived, before it is decoded: under overload
    /// the collector answers fast and its memory stays bounded instead of
    /// queueing without end. A body still arriving holds no place, so slow
    /// senders cannot lock the others out.
    pub max_concurrent_requests: usize,
    /// How long a request's body may take to arrive, e.g. `30s`. A body
    /// trickled in slower is cut off: 408 (OTLP/HTTP) or `DEADLINE_EXCEEDED`.
    #[serde(deserialize_with = "de_duration")]
    pub read_timeout: Duration,
    /// How long a connection may take to send a request's headers, e.g.
    /// `10s`; an HTTP/1 connection idle for as long is closed.
    #[serde(deserialize_with = "de_duration")]
    pub read_header_timeout: Duration,
    /// Resident memory above which the receivers refuse new requests
    /// (429 / RESOURCE_EXHAUSTED, retryable) until it falls again, as the
    /// OpenTelemetry Collector's memory limiter does. Null turns it off.
    #[serde(deserialize_with = "de_opt_bytes")]
    pub memory_limit: Option<u64>,
}

impl Default for OtlpReceiverConfig {
    fn default() -> Self {
        OtlpReceiverConfig {
            grpc_endpoint: Some(SocketAddr::from(([127, 0, 0, 1], 4317))),
            http_endpoint: Some(SocketAddr::from(([127, 0, 0, 1], 4318))),
            max_request_bytes: 16 * MIB,
            max_decompressed_bytes: 64 * MIB,
            max_decoded_bytes: 256 * MIB,
            max_attributes: 1024,
            max_value_depth: 16,
            max_pending_spans: 100_000,
            max_concurrent_requests: 32,
            read_timeout: Duration::from_secs(30),
            read_header_timeout: Duration::from_secs(10),
            memory_limit: Some(2 * 1024 * MIB),
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
    /// Whether Jaeger's query API (`/api/traces`) answers a trace with the
    /// connected view of its request (lost hops repaired) rather than as
    /// it arrived; a query's `connected=` overrides it. Default false.
    pub jaeger_connected: bool,
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            endpoint: Some(SocketAddr::from(([127, 0, 0, 1], 4380))),
            default_search_depth: 20,
            jaeger_connected: false,
        }
    }
}

/// The embedded store (SQLite in WAL mode).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    /// Which engine holds the store: `sqlite` (default), the embedded file
    /// under `data_dir`, or `postgres`, one database that several
    /// collectors share (`storage.postgres`).
    pub backend: StorageBackend,
    /// The PostgreSQL database, when `backend` is `postgres`.
    pub postgres: PostgresConfig,
    /// Directory holding `agentrace.db`; created if missing.
    pub data_dir: PathBuf,
    /// How hard a commit waits for the disk. `normal` (default): an
    /// acknowledged span survives a crash or `kill -9` of agentrace;
    /// `full`: it also survives a power cut, at a cost in throughput.
    pub synchronous: Synchronous,
    /// What to delete, and when.
    pub retention: RetentionConfig,
    /// Keep spans here for the API and UI (default). Off, agentrace is a
    /// pass-through: spans only wait in the exporters' disk queues, and
    /// the API has nothing to show.
    pub keep_spans: bool,
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            backend: StorageBackend::Sqlite,
            postgres: PostgresConfig::default(),
            data_dir: PathBuf::from("agentrace-data"),
            synchronous: Synchronous::Normal,
            retention: RetentionConfig::default(),
            keep_spans: true,
        }
    }
}

impl StorageConfig {
    /// Where the store is, for a person: the SQLite file's directory, or
    /// the PostgreSQL server and database (never the password).
    pub fn describe(&self) -> String {
        match self.backend {
            StorageBackend::Sqlite => self.data_dir.display().to_string(),
            StorageBackend::Postgres => {
                let Some(target) =
                    self.postgres.url.as_deref().and_then(|u| crate::store::PostgresTarget::parse(u).ok())
                else {
                    return "PostgreSQL (no valid storage.postgres.url)".into();
                };
                let parsed = &target.config;
                let hosts: Vec<String> = parsed
                    .get_hosts()
                    .iter()
                    .zip(parsed.get_ports().iter().chain(std::iter::repeat(&5432)))
                    .map(|(h, p)| match h {
                        postgres::config::Host::Tcp(h) => format!("{h}:{p}"),
                        postgres::config::Host::Unix(path) => format!("{}:{p}", path.display()),
                    })
                    .collect();
                let tls = if target.tls.is_some() { ", TLS" } else { "" };
                format!("PostgreSQL {}/{}{tls}", hosts.join(","), parsed.get_dbname().unwrap_or("(user's database)"))
            }
        }
    }
}

/// The engine that holds the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StorageBackend {
    /// The embedded SQLite file under `storage.data_dir`.
    #[default]
    Sqlite,
    /// A PostgreSQL database, shared by every collector pointed at it.
    Postgres,
}

/// The PostgreSQL database of `storage.backend: postgres`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PostgresConfig {
    /// A `postgres://user:password@host:port/database?options` URL (or a
    /// `host=… user=…` string), as libpq takes it. `sslmode=require` (or
    /// `verify-ca`, `verify-full`) connects over TLS and verifies the
    /// server's certificate against `sslrootcert=/path/ca.pem`, or the
    /// system's CA certificates; `prefer`, libpq's default, and `disable`
    /// connect without TLS.
    pub url: Option<String>,
    /// Reader connections kept open for the API (each API request that
    /// reads holds one while it reads).
    pub pool_size: usize,
    /// How long a collector that stopped renewing its heartbeat (renewed
    /// every second) keeps the export queue rows it leases; then the
    /// others send them.
    #[serde(deserialize_with = "de_duration")]
    pub lease: Duration,
}

impl Default for PostgresConfig {
    fn default() -> Self {
        PostgresConfig { url: None, pool_size: 8, lease: Duration::from_secs(30) }
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

/// The live pipeline: spans are assembled into traces, a trace is closed
/// once no span has arrived for `trace_timeout`, and each closed trace is
/// diagnosed with the spans of its session around it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PipelineConfig {
    /// Off: spans are stored and forwarded raw, nothing is diagnosed live.
    pub enabled: bool,
    /// How long a trace stays open after its last span (`--trace-timeout`).
    #[serde(deserialize_with = "de_duration")]
    pub trace_timeout: Duration,
    /// A trace still receiving spans is closed anyway after this long, so a
    /// chatty trace cannot hold repairs and exports back for ever.
    #[serde(deserialize_with = "de_duration")]
    pub max_trace_age: Duration,
    /// How long a closed trace's spans stay in memory, so that an orphan of
    /// its session or one sharing a join key that arrives later is still joined.
    #[serde(deserialize_with = "de_duration")]
    pub session_window: Duration,
    /// Spans held in memory (open traces and the session window), at most.
    /// Past it the oldest window traces are evicted, then the oldest open
    /// traces are closed early; both are counted in `/metrics`.
    pub max_buffered_spans: usize,
    /// Spans accepted while the pipeline is behind, kept in the store's
    /// backlog until it takes them back, at most; past it senders are told
    /// to retry. `0` refuses as soon as the pipeline is behind. No backlog
    /// on a store shared by several collectors.
    pub max_backlog_spans: u64,
    /// Spans given to one diagnosis, at most: the closing traces' own (in
    /// batches of a quarter of it), then what ran beside them (traces that
    /// share a join key or session, then neighbours in time and service).
    /// A diagnosis that reaches it leaves traces out and is counted
    /// (`agentrace_pipeline_contexts_cut_total`). The doctor is told which
    /// (when and in which services they ran: `agentrace_doctor::LeftOut`),
    /// so its answer may be less sure than the file doctor's, which reads
    /// every span, but never surer: a join by time alone that a left-out
    /// trace could contest is only suggested, and a break that rests on an
    /// absence (no entry point of the service, no consumer of a message)
    /// that a left-out trace could fill is not claimed. Joins by a key both
    /// sides carry stand. Measured with the whole committed corpus under
    /// load, before the doctor was told and after: at 400 spans (118
    /// cases, 24,226 requests, about 1,650 diagnoses cut), 10 answers were
    /// surer than the file doctor's (four joins it did not apply, one of
    /// them a healthy background request joined to a case's producer, and
    /// six findings), and now none, for about 170 answers less sure; at 120
    /// spans with a quarter of the background (126 cases, the setup of
    /// `a_live_context_cut_short_is_never_surer_than_the_file_doctor_under_load`,
    /// which tries every other case), 6 before (four joins, two findings on
    /// healthy background requests) and none now. At this default those
    /// tests cut no context.
    /// The load generator's agent traffic at 40k spans a second on one core
    /// cuts contexts at this default: 54 to 69 in a 6 s run that closed 2,500
    /// to 3,300 traces of 100 spans, in batches of about 50 (so about one cut
    /// per batch), with no finding on that healthy traffic.
    /// Raise it (memory and CPU per diagnosis grow with it) while that
    /// counter climbs and the live answers hold joins that
    /// `agentrace doctor` over the stored spans applies.
    pub max_context_spans: usize,
    /// Decoded spans kept between diagnoses, e.g. `256MiB` (an estimate
    /// from their encoded size); `0` decodes a held trace for every
    /// diagnosis that reads it. Held traces stay packed whatever this says;
    /// under load each is read by several diagnoses in a row, and decoding
    /// it each time is most of the pipeline's work. At most an eighth of
    /// `receivers.otlp.memory_limit` is used, whatever this says.
    #[serde(deserialize_with = "de_bytes")]
    pub keep_decoded: u64,
    /// A repair is applied at or above this confidence (0 to 1).
    pub apply_threshold: f64,
}

impl PipelineConfig {
    /// The decoded spans kept under `memory_limit`: at most an eighth of it,
    /// so that a cache that never shrinks cannot hold the collector over the
    /// resident memory at which it refuses senders (the default 256 MiB is
    /// an eighth of the default 2 GiB limit).
    pub fn keep_decoded_within(&self, memory_limit: Option<u64>) -> u64 {
        self.keep_decoded.min(memory_limit.map_or(u64::MAX, |m| m / 8))
    }
}

impl Default for PipelineConfig {
    fn default() -> Self {
        PipelineConfig {
            enabled: true,
            trace_timeout: Duration::from_secs(2),
            max_trace_age: Duration::from_secs(60),
            session_window: Duration::from_secs(300),
            max_buffered_spans: 200_000,
            max_backlog_spans: 2_000_000,
            max_context_spans: 20_000,
            keep_decoded: 256 * MIB,
            apply_threshold: 0.8,
        }
    }
}

/// What happens to a content attribute (prompts, completions, tool
/// arguments and results) on its way to one sink.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ContentAction {
    /// Removed (the default).
    #[default]
    Drop,
    /// Replaced by `sha256:<hex>` of the (salted) value: equal contents stay
    /// comparable, the text is gone.
    Hash,
    /// Kept as sent (secret patterns are still masked).
    Keep,
}

/// A named secret pattern (a regular expression, Rust `regex` syntax).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretPattern {
    /// Shown in the mask: `<redacted:NAME>`.
    pub name: String,
    /// The expression.
    pub pattern: String,
}

/// The redaction policy: one place for every agent in every language.
/// Span events whose attribute `sensitive` is true are always dropped.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RedactionConfig {
    /// Attribute keys holding content (spans, events, links).
    pub content_attributes: Vec<String>,
    /// Regular expressions; an attribute key matching one holds content too.
    pub content_attribute_patterns: Vec<String>,
    /// What the store gets of content attributes.
    pub store_content: ContentAction,
    /// Salt for `hash`, so short contents cannot be looked up in a table.
    pub hash_salt: Option<String>,
    /// Secrets masked in every string value, whatever the sink.
    pub secret_patterns: Vec<SecretPattern>,
}

impl Default for RedactionConfig {
    fn default() -> Self {
        let secret = |name: &str, pattern: &str| SecretPattern { name: name.into(), pattern: pattern.into() };
        RedactionConfig {
            content_attributes: [
                "gen_ai.input.messages",
                "gen_ai.output.messages",
                "gen_ai.system_instructions",
                "gen_ai.tool.call.arguments",
                "gen_ai.tool.call.result",
            ]
            .map(String::from)
            .to_vec(),
            content_attribute_patterns: Vec::new(),
            store_content: ContentAction::Drop,
            hash_salt: None,
            // Broadest first: a bearer token may itself look like an API key.
            // The kinds gitleaks and the Collector's redaction processor
            // look for, written for the text agents put in spans.
            secret_patterns: vec![
                secret(
                    "private_key",
                    r"-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?(?:-----END [A-Z ]*PRIVATE KEY-----|$)",
                ),
                // In a header any token counts, however short; in prose
                // "bearer" needs a token-like word after it.
                secret("bearer_token", r"(?i)\bauthorization\s*[:=]\s*bearer\s+[^\s,;\x22']+"),
                secret("bearer_token", r"(?i)\bbearer\s+[A-Za-z0-9._~+/-]{8,}=*"),
                secret("basic_auth", r"(?i)\bauthorization\s*[:=]\s*basic\s+[^\s,;\x22']+"),
                secret("basic_auth", r"(?i)\bbasic\s+[A-Za-z0-9+/]{12,}={0,2}"),
                secret("jwt", r"\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}"),
                // user:password@ in any URL (the user name goes too).
                secret("url_credentials", r"\b[A-Za-z][A-Za-z0-9+.-]*://[^/\s:@]+:[^/\s@]+@"),
                secret(
                    "aws_secret_key",
                    r"(?i)\baws_?secret_?(?:access_?)?key\s*[\x22']?\s*[:=]\s*[\x22']?[A-Za-z0-9/+=]{40}",
                ),
                secret(
                    "password",
                    r"(?i)\b(?:password|passwd|pwd|client_secret|api_?key|access_?token|secret)\s*[\x22']?\s*[:=]\s*[\x22']?[^\s&\x22',;}]{4,}",
                ),
                secret("api_key", r"\b(?:sk|pk|rk)-[A-Za-z0-9_-]{16,}"),
                secret("api_key", r"\bAKIA[0-9A-Z]{16}\b"),
                secret("api_key", r"\bgh[pousr]_[A-Za-z0-9]{30,}"),
                secret("api_key", r"\bxox[abposr]-[A-Za-z0-9-]{10,}"),
                secret("api_key", r"\bAIza[0-9A-Za-z_-]{35}"),
                secret("email", r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b"),
            ],
        }
    }
}

/// An OTLP backend that receives what agentrace received, redacted, and
/// repaired as `repair` says.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExporterConfig {
    /// `http://host:4317` for gRPC; `http://host:4318` (or a URL ending in
    /// `/v1/traces`) for HTTP.
    pub endpoint: String,
    /// `grpc`, `http/protobuf` or `http/json`.
    #[serde(default)]
    pub protocol: ExportProtocol,
    /// Headers (gRPC metadata) sent with every request, e.g. an API key.
    #[serde(default)]
    pub headers: std::collections::BTreeMap<String, String>,
    /// What this backend gets of content attributes.
    #[serde(default)]
    pub content: ContentAction,
    /// How repairs reach this backend.
    #[serde(default)]
    pub repair: ExportRepair,
    /// Repairs below this confidence are not applied for this backend.
    #[serde(default = "default_min_confidence")]
    pub min_confidence: f64,
    /// Spans per export request, at most.
    #[serde(default = "default_batch_spans")]
    pub max_batch_spans: usize,
    /// Bytes per export request, at most (as queued, before the protocol's
    /// framing), so a batch stays under the backend's message limit (4 MiB
    /// by default in gRPC servers). A single larger request goes alone.
    #[serde(default = "default_batch_bytes", deserialize_with = "de_bytes")]
    pub max_batch_bytes: u64,
    /// How long one export request may take.
    #[serde(default = "default_export_timeout", deserialize_with = "de_duration")]
    pub timeout: Duration,
    /// Longest wait between retries (waits start at 250ms and double).
    #[serde(default = "default_max_backoff", deserialize_with = "de_duration")]
    pub max_backoff: Duration,
    /// Size of this backend's disk queue, at most. When full, the receivers
    /// refuse new spans with a retryable answer rather than drop any.
    #[serde(default = "default_queue_bytes", deserialize_with = "de_bytes")]
    pub max_queue_bytes: u64,
    /// How request bodies are compressed on the wire: `none` (the
    /// OpenTelemetry default) or `gzip`.
    #[serde(default)]
    pub compression: ExportCompression,
}

/// The compression of an exporter's requests, named as
/// `OTEL_EXPORTER_OTLP_COMPRESSION` names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ExportCompression {
    /// Bodies as they are.
    #[default]
    None,
    /// gzip: `Content-Encoding: gzip` over HTTP, the `grpc-encoding: gzip`
    /// message compression over gRPC.
    Gzip,
}

impl std::str::FromStr for ExportCompression {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "none" => Ok(ExportCompression::None),
            "gzip" => Ok(ExportCompression::Gzip),
            other => Err(format!("unknown OTLP compression {other:?}; use gzip or none")),
        }
    }
}

impl ExporterConfig {
    /// An exporter to `endpoint` with every other setting at its default.
    pub fn new(endpoint: impl Into<String>, protocol: ExportProtocol) -> ExporterConfig {
        ExporterConfig {
            endpoint: endpoint.into(),
            protocol,
            headers: Default::default(),
            content: ContentAction::Drop,
            repair: ExportRepair::Reparent,
            min_confidence: default_min_confidence(),
            max_batch_spans: default_batch_spans(),
            max_batch_bytes: default_batch_bytes(),
            timeout: default_export_timeout(),
            max_backoff: default_max_backoff(),
            max_queue_bytes: default_queue_bytes(),
            compression: ExportCompression::None,
        }
    }
}

impl ExporterConfig {
    /// The exporter the OpenTelemetry SDKs' environment describes, read
    /// through `var` (the process environment in use): the endpoint from
    /// `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` (used as given) or
    /// `OTEL_EXPORTER_OTLP_ENDPOINT` (`/v1/traces` added for HTTP), the
    /// protocol from `…_TRACES_PROTOCOL` or `…_PROTOCOL` (default
    /// `http/protobuf`, as the SDKs), headers from `…_TRACES_HEADERS` or
    /// `…_HEADERS` (`k=v,k2=v2`, values percent-encoded), the timeout from
    /// `…_TRACES_TIMEOUT` or `…_TIMEOUT` (milliseconds), the compression from
    /// `…_TRACES_COMPRESSION` or `…_COMPRESSION` (`gzip` or `none`). `None` when no
    /// endpoint is set; an error says which variable is wrong.
    pub fn from_env(var: impl Fn(&str) -> Option<String>) -> Result<Option<ExporterConfig>, ConfigError> {
        let get = |name: &str| {
            var(&format!("OTEL_EXPORTER_OTLP_TRACES_{name}"))
                .filter(|v| !v.trim().is_empty())
                .map(|v| (format!("OTEL_EXPORTER_OTLP_TRACES_{name}"), v))
                .or_else(|| {
                    var(&format!("OTEL_EXPORTER_OTLP_{name}"))
                        .filter(|v| !v.trim().is_empty())
                        .map(|v| (format!("OTEL_EXPORTER_OTLP_{name}"), v))
                })
        };
        let Some((endpoint_var, endpoint)) = get("ENDPOINT") else { return Ok(None) };
        let protocol = match get("PROTOCOL") {
            Some((name, value)) => {
                value.trim().parse().map_err(|e: String| ConfigError::Invalid(format!("{name}: {e}")))?
            }
            None => ExportProtocol::default(),
        };
        let mut endpoint = endpoint.trim().to_owned();
        // `…_TRACES_ENDPOINT` is the whole URL; the generic one is a base.
        if endpoint_var == "OTEL_EXPORTER_OTLP_ENDPOINT" && protocol != ExportProtocol::Grpc {
            endpoint = format!("{}/v1/traces", endpoint.trim_end_matches('/'));
        }
        let mut exporter = ExporterConfig::new(endpoint, protocol);
        if let Some((name, raw)) = get("HEADERS") {
            for pair in raw.split(',').filter(|p| !p.trim().is_empty()) {
                let (k, v) = pair
                    .split_once('=')
                    .ok_or_else(|| ConfigError::Invalid(format!("{name}: {pair:?} is not key=value")))?;
                let value = percent_encoding::percent_decode_str(v.trim()).decode_utf8_lossy().into_owned();
                exporter.headers.insert(k.trim().to_ascii_lowercase(), value);
            }
        }
        if let Some((name, raw)) = get("TIMEOUT") {
            let ms: u64 = raw
                .trim()
                .parse()
                .map_err(|_| ConfigError::Invalid(format!("{name}: {raw:?} is not a number of milliseconds")))?;
            exporter.timeout = Duration::from_millis(ms.max(1));
        }
        if let Some((name, raw)) = get("COMPRESSION") {
            exporter.compression =
                raw.trim().parse().map_err(|e: String| ConfigError::Invalid(format!("{name}: {e}")))?;
        }
        Ok(Some(exporter))
    }
}

fn default_min_confidence() -> f64 {
    0.8
}
fn default_batch_spans() -> usize {
    8192
}
fn default_batch_bytes() -> u64 {
    3 * MIB
}
fn default_export_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_max_backoff() -> Duration {
    Duration::from_secs(30)
}
fn default_queue_bytes() -> u64 {
    1024 * MIB
}

/// The OTLP protocol of an exporter, named as `OTEL_EXPORTER_OTLP_PROTOCOL` names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
pub enum ExportProtocol {
    /// OTLP/gRPC.
    #[serde(rename = "grpc")]
    Grpc,
    /// OTLP/HTTP with protobuf bodies (the OpenTelemetry default).
    #[default]
    #[serde(rename = "http/protobuf")]
    HttpProtobuf,
    /// OTLP/HTTP with JSON bodies.
    #[serde(rename = "http/json")]
    HttpJson,
}

impl std::str::FromStr for ExportProtocol {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "grpc" => Ok(ExportProtocol::Grpc),
            "http/protobuf" => Ok(ExportProtocol::HttpProtobuf),
            "http/json" => Ok(ExportProtocol::HttpJson),
            other => Err(format!("unknown OTLP protocol {other:?}; use grpc, http/protobuf or http/json")),
        }
    }
}

/// How repairs reach a backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ExportRepair {
    /// A repaired orphan's subtree moves into its parent's trace; the old
    /// IDs are kept in `agentrace.repair.original_*` attributes.
    #[default]
    Reparent,
    /// IDs are kept; a repaired orphan gains an `inferred_parent` link.
    Link,
    /// Spans leave as they arrived (redacted).
    Off,
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
        if r.max_request_bytes == 0 || r.max_decompressed_bytes == 0 || r.max_decoded_bytes == 0 {
            return Err(ConfigError::Invalid("receivers.otlp size limits must be above zero".into()));
        }
        if r.read_timeout.is_zero() || r.read_header_timeout.is_zero() {
            return Err(ConfigError::Invalid(
                "receivers.otlp.read_timeout and read_header_timeout must be above zero".into(),
            ));
        }
        if r.max_concurrent_requests == 0 {
            return Err(ConfigError::Invalid("receivers.otlp.max_concurrent_requests must be above zero".into()));
        }
        if r.max_pending_spans == 0 {
            return Err(ConfigError::Invalid("receivers.otlp.max_pending_spans must be above zero".into()));
        }
        let p = &self.pipeline;
        if p.trace_timeout.is_zero() || p.max_trace_age < p.trace_timeout {
            return Err(ConfigError::Invalid(
                "pipeline.trace_timeout must be above zero and at most pipeline.max_trace_age".into(),
            ));
        }
        if !(0.0..=1.0).contains(&p.apply_threshold) {
            return Err(ConfigError::Invalid("pipeline.apply_threshold must be between 0 and 1".into()));
        }
        for (i, e) in self.exporters.iter().enumerate() {
            if !e.endpoint.starts_with("http://") {
                return Err(ConfigError::Invalid(format!(
                    "exporters[{i}].endpoint {:?} must be an http:// URL (TLS to backends is not supported yet)",
                    e.endpoint
                )));
            }
            if e.repair != ExportRepair::Off && !p.enabled {
                return Err(ConfigError::Invalid(format!(
                    "exporters[{i}].repair is {:?} but pipeline.enabled is false: repairs come from the live pipeline; use repair: off or enable it",
                    e.repair
                )));
            }
            if e.max_queue_bytes == 0 || e.timeout.is_zero() || e.max_backoff.is_zero() || e.max_batch_bytes == 0 {
                return Err(ConfigError::Invalid(format!(
                    "exporters[{i}]: max_queue_bytes, max_batch_bytes, timeout and max_backoff must be above zero"
                )));
            }
            if self.exporters[..i].iter().any(|o| o.endpoint == e.endpoint && o.protocol == e.protocol) {
                return Err(ConfigError::Invalid(format!(
                    "exporters[{i}]: another exporter sends to {} over the same protocol; each backend has one queue, so list it once",
                    e.endpoint
                )));
            }
            if !(0.0..=1.0).contains(&e.min_confidence) || e.max_batch_spans == 0 {
                return Err(ConfigError::Invalid(format!(
                    "exporters[{i}]: min_confidence must be between 0 and 1 and max_batch_spans above zero"
                )));
            }
        }
        crate::redact::Redactor::new(&self.redaction).map_err(|e| ConfigError::Invalid(e.to_string()))?;
        if !self.storage.keep_spans && self.exporters.is_empty() {
            return Err(ConfigError::Invalid(
                "storage.keep_spans is false and no exporter is configured: spans would go nowhere".into(),
            ));
        }
        if self.storage.backend == StorageBackend::Postgres {
            let Some(url) = self.storage.postgres.url.as_deref() else {
                return Err(ConfigError::Invalid(
                    "storage.backend is postgres but storage.postgres.url is not set (postgres://user@host:5432/db)"
                        .into(),
                ));
            };
            crate::store::PostgresTarget::parse(url)
                .map_err(|e| ConfigError::Invalid(format!("storage.postgres.url: {e}")))?;
            if self.storage.postgres.pool_size == 0 {
                return Err(ConfigError::Invalid("storage.postgres.pool_size must be above zero".into()));
            }
            if self.storage.postgres.lease < Duration::from_secs(2)
                || self.storage.postgres.lease > Duration::from_secs(24 * 3600)
            {
                return Err(ConfigError::Invalid(
                    "storage.postgres.lease must be between 2s (a heartbeat renews it every second) and 24h".into(),
                ));
            }
        }
        if self.storage.retention.interval.is_zero() {
            return Err(ConfigError::Invalid("storage.retention.interval must be above zero".into()));
        }
        // An empty token would turn authentication off without a word.
        if self.auth.bearer_token.as_deref().is_some_and(|t| t.trim().is_empty()) {
            return Err(ConfigError::Invalid(
                "auth.bearer_token is empty: set a token, or remove the key to run without authentication".into(),
            ));
        }
        Ok(())
    }

    /// The bearer token in force: the environment variable
    /// `AGENTRACE_BEARER_TOKEN`, else the file, else the inline value.
    pub fn bearer_token(&self) -> Result<Option<String>, ConfigError> {
        if let Ok(token) = std::env::var("AGENTRACE_BEARER_TOKEN") {
            if token.trim().is_empty() {
                return Err(ConfigError::Invalid(
                    "AGENTRACE_BEARER_TOKEN is set but empty: set a token, or unset it to run without authentication"
                        .into(),
                ));
            }
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
        Ok(self.auth.bearer_token.as_deref().map(|t| t.trim().to_owned()))
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
    fn decoded_spans_kept_take_at_most_an_eighth_of_the_memory_limit() {
        let kept = |yaml: &str| {
            let config = Config::from_yaml(yaml).unwrap();
            config.pipeline.keep_decoded_within(config.receivers.otlp.memory_limit)
        };
        // The defaults fit each other: 256 MiB is an eighth of 2 GiB.
        assert_eq!(kept("{}"), 256 * MIB);
        // A smaller limit shrinks the default and a larger setting alike.
        assert_eq!(kept("receivers: {otlp: {memory_limit: 512MiB}}"), 64 * MIB);
        assert_eq!(kept("receivers: {otlp: {memory_limit: 512MiB}}\npipeline: {keep_decoded: 1GiB}"), 64 * MIB);
        // A setting under the bound is kept as it is, and no limit bounds nothing.
        assert_eq!(kept("pipeline: {keep_decoded: 32MiB}"), 32 * MIB);
        assert_eq!(kept("receivers: {otlp: {memory_limit: null}}\npipeline: {keep_decoded: 1GiB}"), 1024 * MIB);
    }

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
        assert_eq!(config.pipeline, expected.pipeline);
        assert_eq!(config.redaction, expected.redaction);
        assert_eq!(config.exporters, expected.exporters);
    }

    #[test]
    fn exporters_read_as_the_example_shows_them() {
        let c = Config::from_yaml(
            "exporters:\n  - endpoint: http://tempo:4317\n    protocol: grpc\n    repair: link\n    content: hash\n    max_backoff: 5s\n    compression: gzip\n  - endpoint: http://jaeger:4318\n    protocol: http/json\n",
        )
        .unwrap();
        assert_eq!(c.exporters[0].protocol, ExportProtocol::Grpc);
        assert_eq!(c.exporters[0].repair, ExportRepair::Link);
        assert_eq!(c.exporters[0].content, ContentAction::Hash);
        assert_eq!(c.exporters[0].max_backoff, Duration::from_secs(5));
        assert_eq!(c.exporters[1].protocol, ExportProtocol::HttpJson);
        assert_eq!(c.exporters[1].repair, ExportRepair::Reparent);
        assert_eq!(
            (c.exporters[0].compression, c.exporters[1].compression),
            (ExportCompression::Gzip, ExportCompression::None)
        );
        let err = Config::from_yaml("exporters:\n  - endpoint: tempo:4317\n").unwrap_err().to_string();
        assert!(err.contains("must be an http:// URL"), "{err}");
        let err = Config::from_yaml("pipeline:\n  enabled: false\nexporters:\n  - endpoint: http://t:4317\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("repairs come from the live pipeline"), "{err}");
        let err = Config::from_yaml("redaction:\n  secret_patterns:\n    - {name: x, pattern: '('}\n").unwrap_err();
        assert!(err.to_string().contains("\"x\""), "{err}");
    }

    #[test]
    fn an_empty_bearer_token_is_refused_not_taken_as_no_auth() {
        for yaml in ["auth:\n  bearer_token: ''\n", "auth:\n  bearer_token: '  '\n"] {
            let err = Config::from_yaml(yaml).unwrap_err().to_string();
            assert!(err.contains("auth.bearer_token is empty"), "{err}");
        }
        assert!(Config::from_yaml("auth:\n  bearer_token: s3cret\n").is_ok());
    }

    #[test]
    fn a_postgres_store_says_what_it_lacks() {
        let ok = Config::from_yaml(
            "storage:\n  backend: postgres\n  postgres:\n    url: postgres://agentrace:pw@db.internal:6432/traces\n",
        )
        .unwrap();
        assert_eq!(ok.storage.backend, StorageBackend::Postgres);
        assert_eq!(ok.storage.postgres.pool_size, 8);
        // Where the store is, without the password.
        assert_eq!(ok.storage.describe(), "PostgreSQL db.internal:6432/traces");
        for (yaml, says) in [
            ("storage:\n  backend: postgres\n", "storage.postgres.url is not set"),
            (
                "storage:\n  backend: postgres\n  postgres:\n    url: 'postgres://h/d?sslmode=require&sslrootcert=/nonexistent.pem'\n",
                "sslrootcert /nonexistent.pem",
            ),
            (
                "storage:\n  backend: postgres\n  postgres:\n    url: 'postgres://h/d?sslmode=verify-some'\n",
                "sslmode=verify-some is not one of",
            ),
            ("storage:\n  backend: postgres\n  postgres:\n    url: 'postgres://h/d?bogus=1'\n", "not a PostgreSQL"),
            (
                "storage:\n  backend: postgres\n  postgres:\n    url: postgres://h/d\n    lease: 1s\n",
                "lease must be between 2s",
            ),
        ] {
            let err = Config::from_yaml(yaml).unwrap_err().to_string();
            assert!(err.contains(says), "{yaml}: {err}");
        }
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

    #[test]
    fn the_otel_environment_describes_an_exporter_as_the_sdks_read_it() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| pairs.iter().find(|(k, _)| *k == name).map(|(_, v)| (*v).to_owned())
        };
        assert_eq!(ExporterConfig::from_env(env(&[])).unwrap(), None);
        let e = ExporterConfig::from_env(env(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://backend:4318/"),
            ("OTEL_EXPORTER_OTLP_HEADERS", "api-key=a%20b, X-Team=ml"),
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "2500"),
        ]))
        .unwrap()
        .unwrap();
        assert_eq!(e.endpoint, "http://backend:4318/v1/traces");
        assert_eq!(e.protocol, ExportProtocol::HttpProtobuf);
        assert_eq!(e.headers.get("api-key").map(String::as_str), Some("a b"));
        assert_eq!(e.headers.get("x-team").map(String::as_str), Some("ml"));
        assert_eq!(e.timeout, Duration::from_millis(2500));
        // The signal's own variables win, and its endpoint is used as given.
        let e = ExporterConfig::from_env(env(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://ignored:4318"),
            ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://backend:4317"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json"),
            ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "grpc"),
        ]))
        .unwrap()
        .unwrap();
        assert_eq!((e.endpoint.as_str(), e.protocol), ("http://backend:4317", ExportProtocol::Grpc));
        let err = ExporterConfig::from_env(env(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://b:4318"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "thrift"),
        ]))
        .unwrap_err();
        assert!(err.to_string().contains("OTEL_EXPORTER_OTLP_PROTOCOL"), "{err}");
        let err = ExporterConfig::from_env(env(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://b:4318"),
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "10s"),
        ]))
        .unwrap_err();
        assert!(err.to_string().contains("milliseconds"), "{err}");
        assert_eq!(e.compression, ExportCompression::None, "none unless asked, as the SDKs");
        let e = ExporterConfig::from_env(env(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://b:4318"),
            ("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip"),
        ]))
        .unwrap()
        .unwrap();
        assert_eq!(e.compression, ExportCompression::Gzip);
        let err = ExporterConfig::from_env(env(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://b:4318"),
            ("OTEL_EXPORTER_OTLP_TRACES_COMPRESSION", "zstd"),
        ]))
        .unwrap_err();
        assert!(err.to_string().contains("OTEL_EXPORTER_OTLP_TRACES_COMPRESSION"), "{err}");
    }
}
