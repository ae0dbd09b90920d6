//! The binary's own logs, on stderr: the filter from `AGENTRACE_LOG`, else
//! `RUST_LOG`, else the command's default; colour only when stderr is a
//! terminal (and `NO_COLOR` is unset), so files and log shippers get plain
//! text; `--log-format json` for one JSON object per line.

use std::io::IsTerminal;
use std::sync::OnceLock;

use tracing_subscriber::EnvFilter;

/// How log lines are written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line (`timestamp`, `level`, `target`, `fields`).
    Json,
}

static FORMAT: OnceLock<LogFormat> = OnceLock::new();

/// The format every command's logs use (the global `--log-format`).
pub(crate) fn set_format(format: LogFormat) {
    let _ = FORMAT.set(format);
}

/// The filter the environment asks for, or `default`.
fn filter(default: &str) -> EnvFilter {
    EnvFilter::try_from_env("AGENTRACE_LOG")
        .or_else(|_| EnvFilter::try_from_default_env())
        .unwrap_or_else(|_| EnvFilter::new(default))
}

/// Installs the subscriber (once; a second call does nothing).
pub(crate) fn init(default: &str) {
    let format = FORMAT.get().copied().unwrap_or_default();
    let builder = tracing_subscriber::fmt().with_env_filter(filter(default)).with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => {
            let ansi = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
            builder.with_ansi(ansi).try_init()
        }
    };
}
