//! The agentrace collector: OTLP in, durable store, Jaeger-shaped API out.
//!
//! The modules follow the data's road:
//!
//! 1. [`receive`]: OTLP/gRPC and OTLP/HTTP receivers decode and validate
//!    with the bounded decoders of `agentrace_model::otlp`;
//! 2. [`redact`]: sensitive events, content attributes and secrets are
//!    removed; only a [`redact::Redacted`] request goes further, encoded
//!    once ([`wire`]) for the store, the pipeline and the exporters;
//! 3. [`assemble`]: the live pipeline closes traces after their timeout and
//!    diagnoses each with its session (repairs, findings, `app.agent.*`
//!    rollups), keeping the results in the store;
//! 4. [`store`]: SQLite in WAL mode, group-committed by one writer thread;
//!    a request is acknowledged only once its spans are durable, and queued
//!    for every exporter in the same transaction;
//! 5. [`export`]: OTLP to other backends from the disk queues, with retries
//!    and repairs applied as each backend's mode says;
//! 6. [`api`]: Jaeger api_v3 retrieval, sessions, `/metrics`, `/health`,
//!    and the connected view with the doctor's diagnosis for the UI;
//! 7. [`ui`]: the web UI, static files embedded in the binary.
//!
//! Beside the road: [`config`] (the YAML file), [`metrics`] (the
//! collector's own health) and [`server`] (listeners, TLS, auth).
//!
//! # Getting started
//!
//! ```no_run
//! use agentrace_collector::{config::Config, server::Collector};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let mut config = Config::default();
//! config.storage.data_dir = "/tmp/agentrace-data".into();
//! let collector = Collector::start(config).await?;
//! println!("OTLP/gRPC on {:?}", collector.grpc_addr);
//! collector.shutdown().await;
//! # Ok(()) }
//! ```

pub mod api;
pub mod assemble;
pub mod config;
pub mod export;
pub mod metrics;
pub mod receive;
pub mod redact;
pub mod server;
pub mod store;
pub mod ui;
pub mod wire;
