//! `agentrace serve`: the collector, with its embedded store and API.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use std::time::Duration;

use agentrace_collector::config::{Config, ExportProtocol, ExporterConfig};
use agentrace_collector::server::Collector;
use anyhow::Context;

/// The flags of `agentrace serve` (its help text is on the subcommand).
#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// YAML config file (see config/agentrace.example.yaml).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Directory for the embedded store [default: ./agentrace-data].
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Keep the store in this PostgreSQL database instead of the SQLite file, shared with every
    /// collector given the same URL (storage.backend: postgres), e.g.
    /// postgres://agentrace@db.internal:5432/agentrace.
    #[arg(long, value_name = "URL")]
    postgres_url: Option<String>,
    /// OTLP/gRPC listen address [default: 127.0.0.1:4317].
    #[arg(long, value_name = "ADDR")]
    otlp_grpc_addr: Option<SocketAddr>,
    /// OTLP/HTTP listen address [default: 127.0.0.1:4318].
    #[arg(long, value_name = "ADDR")]
    otlp_http_addr: Option<SocketAddr>,
    /// Zipkin v2 receiver listen address (POST /api/v2/spans, JSON or protobuf), e.g.
    /// 127.0.0.1:9411 [default: off].
    #[arg(long, value_name = "ADDR")]
    zipkin_addr: Option<SocketAddr>,
    /// Web UI and JSON API listen address [default: 127.0.0.1:4380].
    #[arg(long, value_name = "ADDR")]
    ui_addr: Option<SocketAddr>,
    /// How long a trace stays open for late spans after its last one, before
    /// it is diagnosed, repaired and forwarded [default: 2s].
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    trace_timeout: Option<Duration>,
    /// Forward OTLP to this backend, redacted and repaired; repeat for several.
    /// Replaces the config file's exporters. E.g. http://127.0.0.1:4317 (grpc)
    /// or http://127.0.0.1:4318 (http/protobuf, /v1/traces is added).
    #[arg(long = "export-otlp-endpoint", value_name = "URL")]
    export_otlp_endpoint: Vec<String>,
    /// Protocol for --export-otlp-endpoint: grpc, http/protobuf or http/json
    /// (the values of OTEL_EXPORTER_OTLP_PROTOCOL) [default: http/protobuf].
    #[arg(long, value_name = "PROTOCOL", requires = "export_otlp_endpoint")]
    export_otlp_protocol: Option<ExportProtocol>,
    /// Once started, run `agentrace demo` against this collector (propagation off, then on), so
    /// a first run has broken and connected multi-agent traces to look at.
    #[arg(long)]
    demo: bool,
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    agentrace_collector::config::parse_duration(text)
}

impl ServeArgs {
    /// The config the flags and the file describe, and what is worth
    /// saying about it once logging is set up (warnings first).
    fn into_config(self) -> anyhow::Result<(Config, Vec<Note>)> {
        let mut notes = Vec::new();
        let mut config = match &self.config {
            Some(path) => Config::from_file(path)?,
            None => Config::default(),
        };
        if let Some(dir) = self.data_dir {
            config.storage.data_dir = dir;
        }
        if let Some(url) = self.postgres_url {
            config.storage.backend = agentrace_collector::config::StorageBackend::Postgres;
            config.storage.postgres.url = Some(url);
        }
        if let Some(addr) = self.otlp_grpc_addr {
            config.receivers.otlp.grpc_endpoint = Some(addr);
        }
        if let Some(addr) = self.otlp_http_addr {
            config.receivers.otlp.http_endpoint = Some(addr);
        }
        if let Some(addr) = self.zipkin_addr {
            config.receivers.zipkin.endpoint = Some(addr);
        }
        if let Some(addr) = self.ui_addr {
            config.api.endpoint = Some(addr);
        }
        if let Some(t) = self.trace_timeout {
            config.pipeline.trace_timeout = t;
            config.pipeline.max_trace_age = config.pipeline.max_trace_age.max(t);
        }
        if !self.export_otlp_endpoint.is_empty() {
            let protocol = self.export_otlp_protocol.unwrap_or_default();
            config.exporters =
                self.export_otlp_endpoint.into_iter().map(|url| ExporterConfig::new(url, protocol)).collect();
        }
        // With no exporter in the flags or the config, the OpenTelemetry
        // SDKs' environment names one, as it would for any OTLP client, but
        // never this collector's own receiver (the shell that points agents
        // at agentrace often runs agentrace too).
        if config.exporters.is_empty()
            && let Some(exporter) = ExporterConfig::from_env(|name| std::env::var(name).ok())?
        {
            match own_receiver(&exporter.endpoint, &config) {
                Some(which) => notes.push(Note::Warn(format!(
                    "OTEL_EXPORTER_OTLP_* ({}) names this collector's own {which} receiver: not used as an \
                     exporter (every span would come back); give --export-otlp-endpoint for a backend",
                    exporter.endpoint
                ))),
                None => {
                    notes.push(Note::Info(format!(
                        "exporting to {}, the backend OTEL_EXPORTER_OTLP_* names",
                        exporter.endpoint
                    )));
                    config.exporters.push(exporter);
                }
            }
        }
        let own = &config.telemetry.traces;
        if let Some(endpoint) = &own.endpoint
            && !own.into_own_pipeline
            && let Some(which) = own_receiver(endpoint, &config)
        {
            anyhow::bail!(
                "telemetry.traces.endpoint {endpoint} is this collector's own {which} receiver: its own spans would \
                 be diagnosed like an application's, and receiving them makes more; send them to another backend, \
                 or set telemetry.traces.into_own_pipeline: true"
            );
        }
        config.check()?;
        Ok((config, notes))
    }
}

/// Something `into_config` has to say once logging is set up.
enum Note {
    Warn(String),
    Info(String),
}

/// Which of the collector's own receivers `endpoint` reaches, if any: the
/// same port on a loopback, wildcard or the listener's own address.
fn own_receiver(endpoint: &str, config: &Config) -> Option<&'static str> {
    let url = reqwest::Url::parse(endpoint).ok()?;
    let port = url.port_or_known_default()?;
    let host = url.host_str()?.trim_start_matches('[').trim_end_matches(']').to_owned();
    let local = host == "localhost" || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback());
    [
        ("OTLP/gRPC", config.receivers.otlp.grpc_endpoint),
        ("OTLP/HTTP", config.receivers.otlp.http_endpoint),
        ("Zipkin", config.receivers.zipkin.endpoint),
    ]
    .into_iter()
    .find(|(_, addr)| {
        addr.is_some_and(|a| a.port() == port && (local || a.ip().is_unspecified() || a.ip().to_string() == host))
    })
    .map(|(which, _)| which)
}

/// Runs the collector until Ctrl-C or SIGTERM.
pub fn run(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let demo = args.demo;
    let (config, notes) = match args.into_config() {
        Ok(c) => c,
        Err(e) => {
            init_logging(None);
            return Err(e);
        }
    };
    init_logging(config.telemetry.traces.endpoint.is_some().then_some(&config.telemetry.traces));
    for note in notes {
        match note {
            Note::Warn(message) => tracing::warn!("{message}"),
            Note::Info(message) => tracing::info!("{message}"),
        }
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().context("cannot start tokio")?;
    runtime.block_on(async move {
        let data = config.storage.describe();
        let own_metrics = config.telemetry.metrics.clone();
        let collector = Collector::start(config).await?;
        if let Err(e) = crate::self_metrics::start(&own_metrics, Arc::clone(&collector.metrics)) {
            tracing::error!(error = %e, "the collector's own metrics cannot be exported; they are off");
        }
        let show = |a: Option<SocketAddr>| a.map(|a| a.to_string()).unwrap_or_else(|| "off".into());
        eprintln!(
            "agentrace collector running\n  OTLP/gRPC  {}\n  OTLP/HTTP  {}  (POST /v1/traces)\n  Zipkin     {}\n  UI + API   {}\n  data       {}",
            show(collector.grpc_addr),
            show(collector.http_addr),
            collector.zipkin_addr.map(|a| format!("{a}  (POST /api/v2/spans)")).unwrap_or_else(|| "off".into()),
            collector.api_addr.map(|a| format!("http://{a}")).unwrap_or_else(|| "off".into()),
            data,
        );
        if demo {
            start_demo(collector.http_addr, collector.api_addr);
        }
        wait_for_signal().await;
        eprintln!("agentrace: stopping; finishing requests in flight");
        collector.shutdown().await;
        crate::self_metrics::shutdown();
        crate::logging::shutdown();
        Ok(ExitCode::SUCCESS)
    })
}

/// Runs `agentrace demo` twice in the background, against our own receiver: first with
/// propagation off (its explanation goes to stdout), then on, quietly. A failure is reported and
/// leaves the collector running.
fn start_demo(http: Option<SocketAddr>, api: Option<SocketAddr>) {
    // A wildcard listen address is reachable on loopback.
    let local = |a: SocketAddr| if a.ip().is_unspecified() { SocketAddr::from(([127, 0, 0, 1], a.port())) } else { a };
    let Some(http) = http.map(local) else {
        eprintln!("agentrace: --demo needs the OTLP/HTTP receiver, which is off; no demo");
        return;
    };
    let ui = api.map(local).map(|a| format!("http://{a}")).unwrap_or_else(|| "http://127.0.0.1:4380".into());
    let exe = match std::env::current_exe() {
        Ok(exe) => exe,
        Err(err) => {
            eprintln!("agentrace: --demo cannot find its own binary: {err}");
            return;
        }
    };
    let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let prefix = format!("demo-{secs:x}");
    std::thread::spawn(move || {
        for (mode, quiet) in [("off", false), ("on", true)] {
            let mut cmd = std::process::Command::new(&exe);
            cmd.args(["demo", "--endpoint", &format!("http://{http}"), "--ui", &ui, "--propagation", mode])
                .args(["--session-prefix", &format!("{prefix}-{mode}")]);
            // The user's OTLP settings are for their own agents; the demo talks to us.
            for var in
                ["OTEL_EXPORTER_OTLP_PROTOCOL", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_ENDPOINT"]
            {
                cmd.env_remove(var);
            }
            if quiet {
                cmd.stdout(std::process::Stdio::null());
            }
            match cmd.status() {
                Ok(status) if status.success() => {}
                Ok(status) => eprintln!("agentrace: the demo (propagation {mode}) failed: {status}"),
                Err(err) => eprintln!("agentrace: cannot run the demo: {err}"),
            }
        }
        eprintln!("agentrace: demo done; the same requests with propagation on are sessions {prefix}-on-1 …");
    });
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

fn init_logging(own_traces: Option<&agentrace_collector::config::SelfTracesConfig>) {
    crate::logging::init("warn,agentrace_collector=info", own_traces);
}
