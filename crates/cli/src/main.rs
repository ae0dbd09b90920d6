//! `agentrace`: the one binary. It wires the collector (`serve`) and the
//! doctor (`doctor`) to the command line; all the work lives in the library
//! crates, so this file stays thin. `demo` is the exception: a multi-agent
//! workload written with the SDK, which lives here because it is a client of
//! the collector, not part of it.

#![allow(clippy::print_stdout, clippy::print_stderr)]

mod demo;
mod doctor;
mod logging;
mod self_metrics;
mod serve;

use clap::{Parser, Subcommand};

// The collector allocates and frees from several threads at once (receivers,
// store writer, pipeline); glibc's allocator spent a fifth of its CPU
// consolidating and unlinking chunks there. Measured side by side (see the
// loadgen's header): pass-through 4.9 vs 6.3-6.5 us of CPU per span, the
// full pipeline 38.7-39.3 vs 41.4-42.2 us.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Connected, trustworthy traces for multi-agent AI systems.
///
/// `agentrace serve` receives OTLP from any OpenTelemetry SDK and stores it;
/// `agentrace doctor` finds where trace context broke, repairs the trace from
/// the evidence in the spans, and says what failed and where the time went.
#[derive(Debug, Parser)]
#[command(name = "agentrace", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// How the logs on stderr are written: text (coloured only on a terminal) or json (one
    /// object per line). The filter comes from AGENTRACE_LOG, else RUST_LOG.
    #[arg(long, global = true, value_enum, default_value_t = logging::LogFormat::Text)]
    log_format: logging::LogFormat,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the collector: OTLP receivers, redaction, live repair, embedded store, web UI, JSON API, forwarding.
    ///
    /// Receives OTLP/gRPC and OTLP/HTTP on the standard ports; strips
    /// sensitive events, content attributes and secrets (the `redaction`
    /// policy of the config file); stores every span durably under the data
    /// directory (a request is acknowledged only once its spans are on disk);
    /// closes each trace --trace-timeout after its last span and diagnoses it
    /// with its session (repairs, findings, tokens and cost per agent); and
    /// forwards OTLP to each --export-otlp-endpoint from a disk queue, with
    /// repairs applied. Serves the web UI (open http://127.0.0.1:4380 in a
    /// browser), the Jaeger-compatible api_v3 routes, /metrics and /health
    /// on the UI address. Point any OpenTelemetry SDK at it with
    /// OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:4317 (gRPC) or
    /// http://127.0.0.1:4318 (HTTP). Flags override the config file.
    ///
    /// Stops cleanly on Ctrl-C or SIGTERM. Exit status: 0 after a clean stop,
    /// 1 when it cannot start (bad config, port in use, unusable data dir).
    Serve(Box<serve::ServeArgs>),
    /// Diagnose traces: what broke, the repaired trace, what failed, where the time went.
    Doctor(doctor::DoctorArgs),
    /// Run a multi-agent workload against a collector: the article's broken traces, or their cure.
    ///
    /// A planner hands tasks through a durable queue (an embedded SQLite job table by default) to
    /// two specialists, which retrieve from a small vector index on a thread pool, ask an LLM
    /// stand-in (deterministic, local, plainly named so) and call tools on an MCP server that
    /// runs as a stdio subprocess. All of it is instrumented with the agentrace SDK and exported
    /// over OTLP/HTTP, in a few seconds.
    ///
    /// With --propagation off (the default) context is dropped at the queue, the MCP call and the
    /// thread pool, as in most systems today; `agentrace doctor --server URL --session ID` then
    /// shows each orphan, the repairs made from the evidence the spans left, and what failed.
    /// With --propagation on every request is one connected trace. Start a collector first
    /// (`agentrace serve`), or use `agentrace serve --demo`, which runs this for you.
    ///
    /// Exit status: 0 when every request ran, 1 when the demo cannot run (no collector, broker
    /// unreachable, a request failed).
    Demo(demo::DemoArgs),
    /// The demo's MCP tool server on stdio (launched by `agentrace demo`).
    #[command(hide = true)]
    DemoMcpServer(demo::McpServerArgs),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    logging::set_format(cli.log_format);
    let result = match cli.command {
        Command::Serve(args) => serve::run(*args),
        Command::Doctor(args) => doctor::run(args),
        Command::Demo(args) => demo::run(args),
        Command::DemoMcpServer(args) => demo::run_mcp_server(args),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("agentrace: {err:#}");
            std::process::ExitCode::from(1)
        }
    }
}
