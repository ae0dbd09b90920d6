//! `agentrace demo`: a real multi-agent workload, with trace propagation on, off, or broken at
//! one hop, exported over OTLP to a collector, so that a newcomer sees the article's failure and
//! its cure within a minute, and so that we prove the SDK, the collector and the doctor work
//! together (the `demo_*` tests run it against the real collector).
//!
//! It sits outside the data's road: a client of the collector, like any agent service. Agents
//! (see [`agents`]) are tokio tasks of this process, each exporting as its own service
//! (`planner`, `researcher`, `budgeter`); the MCP tool server ([`tools`]) is a subprocess,
//! `demo-tools`. What they use: the job [`queue`], the [`index`] for retrieval, and the
//! [`llm::LlmStandIn`]. Everything is deterministic except span IDs and timestamps.
//!
//! Faults, on a fixed schedule so every run tells the same story (request numbers from 1):
//! - request 1 (and every 4th after): the hotel tool returns malformed JSON, and the researcher
//!   fails to parse it: the doctor blames the tool;
//! - request 2: the budgeter's job waits [`SLOW_QUEUE`] in the queue: a `timing_gap`;
//! - request 3: the planner's last model call is rate-limited once and retried;
//! - every request, unless the thread-pool hop propagates: retrieval runs on a pool thread that
//!   lost the context: `lost_context`.
//!
//! It must never leave spans unflushed, processes running, or a job table behind.

#![allow(clippy::print_stdout)]

mod agents;
mod index;
mod llm;
mod queue;
mod telemetry;
mod tools;

use std::collections::HashMap;
use std::net::{TcpStream, ToSocketAddrs};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use agentrace::propagation::{W3CPropagator, install_global_propagator};
use anyhow::{Context as _, bail};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::SdkTracerProvider;

pub use tools::{McpServerArgs, run_server as run_mcp_server};

/// How long the slow queue holds request 2's budget job.
pub const SLOW_QUEUE: Duration = Duration::from_millis(1200);

/// Where trace context is carried.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Propagation {
    /// Every hop carries context: one connected trace per request.
    On,
    /// No hop does: orphans at the queue, the MCP call and the thread pool.
    Off,
    /// Only the hop named by --broken-hop is broken.
    Partial,
}

/// A hop where context can be lost.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Hop {
    /// The job queue between the planner and the specialists.
    Queue,
    /// The MCP call from a specialist to the tool server.
    Mcp,
    /// The thread pool that runs retrieval.
    ThreadPool,
}

/// Which hops propagate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Plan {
    propagation: Propagation,
    broken: Hop,
}

impl Plan {
    /// Whether `hop` carries context under this plan.
    pub fn propagates(&self, hop: Hop) -> bool {
        match self.propagation {
            Propagation::On => true,
            Propagation::Off => false,
            Propagation::Partial => hop != self.broken,
        }
    }
}

/// One user request and the faults it meets.
#[derive(Debug, Clone)]
pub struct RequestPlan {
    /// `session.id`.
    pub session: String,
    /// City of the trip.
    pub city: String,
    /// Nights.
    pub nights: u32,
    /// The specialist whose job the queue holds back.
    pub slow_queue_for: Option<&'static str>,
    /// Whether the planner's final model call is rate-limited once.
    pub rate_limited: bool,
}

const CITIES: [&str; 4] = ["Zürich", "Lisbon", "Kyoto", "Oaxaca"];

fn requests(prefix: &str, count: u32) -> Vec<RequestPlan> {
    (1..=count)
        .map(|n| RequestPlan {
            session: format!("{prefix}-{n}"),
            city: CITIES[(n as usize - 1) % CITIES.len()].to_owned(),
            nights: 2 + n % 3,
            slow_queue_for: (n == 2).then_some("budgeter"),
            rate_limited: n == 3,
        })
        .collect()
}

/// The flags of `agentrace demo` (its help text is on the subcommand).
#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// OTLP/HTTP endpoint of the collector; spans are posted as protobuf to URL/v1/traces.
    /// Without it, as an OpenTelemetry SDK: `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` (the whole
    /// URL), else `OTEL_EXPORTER_OTLP_ENDPOINT`, else http://127.0.0.1:4318.
    /// `OTEL_EXPORTER_OTLP_HEADERS` (e.g. `Authorization=Bearer%20TOKEN`), `_TIMEOUT` and
    /// `_COMPRESSION` (gzip) are honoured, and `OTEL_EXPORTER_OTLP_PROTOCOL` must be
    /// `http/protobuf` when set.
    #[arg(long, value_name = "URL")]
    endpoint: Option<String>,
    /// Where trace context is carried: on (one trace per request), off (the article's orphans),
    /// partial (only --broken-hop is broken).
    #[arg(long, value_enum, default_value_t = Propagation::Off)]
    propagation: Propagation,
    /// The hop that --propagation partial breaks.
    #[arg(long, value_enum, value_name = "HOP", default_value_t = Hop::Queue)]
    broken_hop: Hop,
    /// The queue between agents: nats://HOST:PORT or redis://HOST:PORT, in a build with
    /// `--features brokers` [default: an embedded job table, a SQLite file in the temporary
    /// directory].
    #[arg(long, value_name = "URL")]
    queue: Option<String>,
    /// How many user requests to run, one after another.
    #[arg(long, value_name = "N", default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=1000))]
    requests: u32,
    /// Address of the collector's UI and API, printed at the end.
    #[arg(long, value_name = "URL", default_value = "http://127.0.0.1:4380")]
    ui: String,
    /// Session IDs are PREFIX-1, PREFIX-2, … [default: demo-<milliseconds since 1970, hex>].
    #[arg(long, value_name = "PREFIX")]
    session_prefix: Option<String>,
}

/// Fails early, with advice, when the endpoint will not take the demo's spans: nothing listens,
/// it is no OTLP/HTTP receiver (an OTLP/gRPC port answers an HTTP/1.1 POST with 200 and a
/// `grpc-status`, which the exporter would count as delivered), or it wants a token. An empty
/// export request is sent, as any OTLP/HTTP receiver accepts one.
fn check_endpoint(endpoint: &str) -> anyhow::Result<()> {
    for var in ["OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"] {
        if let Ok(protocol) = std::env::var(var)
            && !protocol.is_empty()
            && protocol != "http/protobuf"
        {
            bail!(
                "{var}={protocol}: the demo speaks OTLP/HTTP protobuf only; unset it or set http/protobuf, and give \
                 the collector's OTLP/HTTP address (port 4318 by default)"
            );
        }
    }
    let url = reqwest::Url::parse(endpoint).with_context(|| format!("endpoint {endpoint:?} is not a URL"))?;
    if url.scheme() != "http" {
        bail!("endpoint {endpoint}: the demo speaks OTLP/HTTP without TLS; use http://HOST:PORT");
    }
    let host = url.host_str().context("the endpoint has no host")?;
    let port = url.port_or_known_default().unwrap_or(4318);
    let addrs: Vec<_> = (host, port).to_socket_addrs().with_context(|| format!("cannot resolve {host}"))?.collect();
    if !addrs.iter().any(|a| TcpStream::connect_timeout(a, Duration::from_secs(2)).is_ok()) {
        bail!(
            "nothing listens at {endpoint}: start the collector first (`agentrace serve`), or point --endpoint (or \
             OTEL_EXPORTER_OTLP_ENDPOINT) at one"
        );
    }
    let client = reqwest::blocking::Client::builder().timeout(Duration::from_secs(10)).build()?;
    let mut probe = client.post(endpoint).header("content-type", "application/x-protobuf").body(Vec::new());
    for (name, value) in env_headers() {
        probe = probe.header(name, value);
    }
    let not_otlp = "is it the collector's OTLP/HTTP address (port 4318 by default)? An OTLP/gRPC port (4317) does \
                    not take the demo's spans";
    let response = match probe.send() {
        Ok(response) => response,
        Err(e) => bail!("{endpoint} did not answer an OTLP/HTTP export ({e}): {not_otlp}"),
    };
    let status = response.status();
    if response.headers().contains_key("grpc-status") {
        bail!("{endpoint} answered as a gRPC server (grpc-status on a POST): {not_otlp}");
    }
    match status.as_u16() {
        200..=299 => Ok(()),
        401 | 403 => bail!(
            "{endpoint} refused the demo's spans ({status}): it wants a token; set \
             OTEL_EXPORTER_OTLP_HEADERS=Authorization=Bearer%20<token>"
        ),
        _ => bail!("{endpoint} refused an OTLP/HTTP export ({status}): {not_otlp}"),
    }
}

/// `OTEL_EXPORTER_OTLP_TRACES_HEADERS` or `OTEL_EXPORTER_OTLP_HEADERS` (`k=v,k2=v2`, values
/// percent-encoded), which the exporter sends too.
fn env_headers() -> Vec<(String, String)> {
    let raw = std::env::var("OTEL_EXPORTER_OTLP_TRACES_HEADERS")
        .or_else(|_| std::env::var("OTEL_EXPORTER_OTLP_HEADERS"))
        .unwrap_or_default();
    raw.split(',')
        .filter_map(|pair| pair.split_once('='))
        .map(|(k, v)| {
            (k.trim().to_owned(), percent_encoding::percent_decode_str(v.trim()).decode_utf8_lossy().into_owned())
        })
        .filter(|(k, _)| !k.is_empty())
        .collect()
}

/// Warnings (a job that cannot be read, an MCP server that will not close) go to stderr;
/// `AGENTRACE_LOG` (else `RUST_LOG`) sets the filter, as for `serve`.
pub(crate) fn init_logging() {
    crate::logging::init("warn", None);
}

/// Runs the demo: the requests, then a flush, then what to look at.
pub fn run(args: DemoArgs) -> anyhow::Result<ExitCode> {
    init_logging();
    let traces = telemetry::traces_target(args.endpoint.as_deref(), |name| std::env::var(name).ok());
    check_endpoint(&traces)?;
    install_global_propagator(W3CPropagator::new());
    let plan = Plan { propagation: args.propagation, broken: args.broken_hop };
    let prefix = args.session_prefix.clone().unwrap_or_else(|| {
        // Milliseconds: two runs in the same second must not share session IDs.
        let millis = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis());
        format!("demo-{millis:x}")
    });
    let requests = requests(&prefix, args.requests);
    let exe = std::env::current_exe().context("cannot find this binary to launch the MCP server")?;

    // Providers are built and shut down outside the runtime (see `telemetry`).
    let mut providers: HashMap<&'static str, SdkTracerProvider> = HashMap::new();
    for service in std::iter::once(agents::ORCHESTRATOR).chain(agents::SPECIALISTS.iter().map(|s| s.name)) {
        providers.insert(service, telemetry::provider(&traces, service)?);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start tokio")?;
    let started = Instant::now();
    let outcome = runtime.block_on(run_requests(&args, &traces, plan, &requests, exe, &providers));
    drop(runtime);
    for (service, provider) in &providers {
        telemetry::shutdown(provider, service);
    }
    let answers = outcome?;
    let elapsed = started.elapsed();
    let (lost, why) = telemetry::lost();
    if lost > 0 {
        bail!(
            "{lost} span(s) did not reach {traces} ({}); the collector has an incomplete picture of this run",
            why.unwrap_or_else(|| "no reason given".to_owned())
        );
    }

    for (request, answer) in requests.iter().zip(&answers) {
        println!("{}  {:<7} {answer}", request.session, request.city);
    }
    println!();
    println!("{}", explain(&args, &requests, elapsed));
    Ok(ExitCode::SUCCESS)
}

async fn run_requests(
    args: &DemoArgs,
    traces: &str,
    plan: Plan,
    requests: &[RequestPlan],
    exe: std::path::PathBuf,
    providers: &HashMap<&'static str, SdkTracerProvider>,
) -> anyhow::Result<Vec<String>> {
    let queue = queue::Queue::open(args.queue.as_deref(), &std::env::temp_dir()).await?;
    let shared = Arc::new(agents::Shared {
        plan,
        queue: queue.clone(),
        endpoint: traces.to_owned(),
        exe,
        index: Arc::new(index::VectorIndex::travel_guide()),
        replies: Mutex::new(HashMap::new()),
    });
    let tracer = |service: &str| providers.get(service).map(|p| p.tracer("agentrace-demo"));
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut workers = Vec::new();
    for specialist in agents::SPECIALISTS {
        // Subscribed before anything is sent: core NATS keeps nothing for late subscribers.
        let receiver = queue.subscribe(&specialist.destination()).await?;
        let tracer = tracer(specialist.name).context("no tracer for a specialist")?;
        workers.push(tokio::spawn(agents::serve_specialist(
            Arc::clone(&shared),
            specialist,
            tracer,
            receiver,
            stop_rx.clone(),
        )));
    }
    let planner = tracer(agents::ORCHESTRATOR).context("no tracer for the planner")?;
    let llm = llm::LlmStandIn::new("gpt-4o");
    let mut answers = Vec::new();
    let mut failed = None;
    for request in requests {
        match agents::orchestrate(&shared, &planner, &llm, request).await {
            Ok(answer) => answers.push(answer),
            Err(err) => {
                failed = Some(err.context(format!("request {} failed", request.session)));
                break;
            }
        }
    }
    let _ = stop_tx.send(true);
    for worker in workers {
        match worker.await {
            Ok(Ok(())) => {}
            Ok(Err(err)) => failed = failed.or(Some(err.context("a specialist stopped"))),
            Err(err) => failed = failed.or(Some(anyhow::anyhow!("a specialist panicked: {err}"))),
        }
    }
    queue.close();
    match failed {
        Some(err) => Err(err),
        None => Ok(answers),
    }
}

/// The paragraph printed at the end: where to look and what the doctor will say.
fn explain(args: &DemoArgs, requests: &[RequestPlan], elapsed: Duration) -> String {
    let ui = args.ui.trim_end_matches('/');
    let first = &requests[0].session;
    let mode = match args.propagation {
        Propagation::On => "with propagation on, so each request is one connected trace".to_owned(),
        Propagation::Off => "with propagation off, as in the article".to_owned(),
        Propagation::Partial => format!(
            "with propagation broken at the {} hop only",
            match args.broken_hop {
                Hop::Queue => "queue",
                Hop::Mcp => "MCP",
                Hop::ThreadPool => "thread-pool",
            }
        ),
    };
    let what = match args.propagation {
        Propagation::On => "Every hop carried W3C context: the job row's envelope, MCP `_meta` and the \
             tool server's environment, and the thread-pool job. The doctor finds no broken hop; \
             what remains are the faults themselves."
            .to_owned(),
        _ => "Where a hop dropped the context, the spans still left evidence: the job id \
             (`messaging.message.id`) on both ends of the queue, and the model's \
             `gen_ai.tool.call.id` on both ends of the MCP call. The doctor reports each orphan \
             (`orphan_root`, `tool_root`) and repairs it from that evidence. The retrieval span \
             that lost its context on the thread pool left none: it is reported as \
             `lost_context` with a timing-only guess, which is not applied."
            .to_owned(),
    };
    // Only the faults of the requests that ran, each with the session that shows it.
    let faults: Vec<String> = [
        "the researcher could not parse `search_hotels` (malformed JSON), and the doctor blames the tool, \
         not the parser"
            .to_owned(),
        format!("the budget job waited {} ms in the queue (`timing_gap`)", SLOW_QUEUE.as_millis()),
        "the planner's last model call was rate-limited and retried".to_owned(),
    ]
    .into_iter()
    .zip(requests)
    .map(|(fault, request)| format!("in session {}, {fault}", request.session))
    .collect();
    format!(
        "Sent {n} request{plural} from planner, researcher, budgeter and the demo-tools MCP server in {secs:.1} s, {mode}.\n\
         \n\
         Open {ui} and look at session {first}. {what} Then find the faults: {faults}. From a \
         terminal:\n\
         \n  agentrace doctor --server {ui} --session {first}\n\
         \nRun it again with --propagation on (the cure) or --propagation partial --broken-hop mcp.",
        n = requests.len(),
        plural = if requests.len() == 1 { "" } else { "s" },
        secs = elapsed.as_secs_f64(),
        faults = faults.join("; "),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partial_breaks_only_the_chosen_hop() {
        let plan = Plan { propagation: Propagation::Partial, broken: Hop::Mcp };
        assert!(plan.propagates(Hop::Queue) && plan.propagates(Hop::ThreadPool) && !plan.propagates(Hop::Mcp));
        let off = Plan { propagation: Propagation::Off, broken: Hop::Mcp };
        assert!([Hop::Queue, Hop::Mcp, Hop::ThreadPool].iter().all(|h| !off.propagates(*h)));
    }

    #[test]
    fn faults_fall_on_fixed_requests() {
        let r = requests("s", 5);
        assert_eq!(r[0].city, "Zürich");
        assert_eq!(r[4].city, "Zürich");
        assert_eq!(r.iter().filter(|r| r.slow_queue_for.is_some()).count(), 1);
        assert!(r[2].rate_limited && !r[0].rate_limited);
        assert!(r.iter().skip(1).take(3).all(|r| r.city.is_ascii()));
    }
}
