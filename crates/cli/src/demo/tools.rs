//! The demo's MCP tool server, and how a specialist reaches it.
//!
//! The server is this same binary (`agentrace demo-mcp-server`, hidden), launched by a
//! specialist as a stdio subprocess through rmcp's child-process transport: a real MCP server,
//! wrapped in the SDK's [`TracedService`], exporting its own spans as service `demo-tools`. The
//! caller's context reaches it twice, as SEP-414 and the OpenTelemetry spec describe: the
//! process's environment (`TRACEPARENT`, `BAGGAGE`) for its start-up, and `params._meta` for
//! each request (`initialize` included).
//!
//! Tools: `search_hotels` (whose upstream garbles the JSON for a city name that is not plain
//! ASCII: the demo's malformed-output fault) and `estimate_budget`. Each call also reads the
//! model's `gen_ai.tool.call.id` from `_meta` and records it on the server span: an application
//! id that survives even when the trace context does not, and the evidence the doctor joins by.

use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use agentrace::carrier::ContextCarrier;
use agentrace::carrier::env::{CommandExt, extract_from_env};
use agentrace::genai::GenAiSpan;
use agentrace::mcp::TracedService;
use agentrace::propagation::{W3CPropagator, install_global_propagator};
use anyhow::Context as _;
use opentelemetry::context::FutureExt as _;
use opentelemetry::trace::{Span as _, SpanBuilder, TraceContextExt, TracerProvider as _};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::trace::SdkTracer;
use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{
    CallToolRequestParams, ClientCapabilities, ClientConfig, Implementation, RequestMetaObject, ServerCapabilities,
    ServerConfig,
};
use rmcp::service::{RoleClient, RunningService};
use rmcp::transport::TokioChildProcess;
use rmcp::{ClientHandler, ServerHandler, ServiceExt, schemars, tool, tool_handler, tool_router};

use super::telemetry;

/// Service name of the tool server.
pub const SERVICE: &str = "demo-tools";
/// The `_meta` key that carries the model's tool call id (an application key, not trace context).
pub const TOOL_CALL_ID_META: &str = "gen_ai.tool.call.id";

/// The flags of the hidden `agentrace demo-mcp-server`.
#[derive(Debug, clap::Args)]
pub struct McpServerArgs {
    /// The OTLP/HTTP URL the server posts its own spans to (`…/v1/traces`, as the demo resolved
    /// it).
    #[arg(long, value_name = "URL", default_value = "http://127.0.0.1:4318/v1/traces")]
    endpoint: String,
}

#[derive(Debug, serde::Deserialize, schemars::JsonSchema)]
struct HotelQuery {
    /// City to search.
    city: String,
    /// Number of nights.
    nights: u32,
}

#[derive(Debug, serde::Deserialize, schemars::JsonSchema)]
struct BudgetQuery {
    /// City of the trip.
    city: String,
    /// Number of nights.
    nights: u32,
}

#[derive(Debug, Clone)]
struct DemoTools {
    tool_router: ToolRouter<Self>,
    tracer: SdkTracer,
}

/// Marks the current (server) span with the caller's tool call id, and runs the tool's own work
/// in an `execute_tool` child span that lasts `work`.
async fn traced_work(tracer: &SdkTracer, tool: &str, meta: &RequestMetaObject, work: Duration) {
    let server = Context::current();
    if let Some(id) = meta.0.0.get(TOOL_CALL_ID_META).and_then(|v| v.as_str()) {
        server.span().set_attribute(KeyValue::new(agentrace::semconv::GEN_AI_TOOL_CALL_ID, id.to_owned()));
    }
    let cx = GenAiSpan::execute_tool(tool, None).start(tracer, &server);
    tokio::time::sleep(work).await;
    cx.span().end();
}

#[tool_router]
impl DemoTools {
    #[tool(description = "Hotels in a city, as a JSON array of {name, eur_per_night}")]
    async fn search_hotels(
        &self,
        Parameters(HotelQuery { city, nights }): Parameters<HotelQuery>,
        meta: RequestMetaObject,
    ) -> String {
        traced_work(&self.tracer, "search_hotels", &meta, Duration::from_millis(25)).await;
        let hotels = serde_json::json!([
            {"name": format!("{city} Central"), "eur_per_night": 180, "nights": nights},
            {"name": format!("Hostel {city}"), "eur_per_night": 45, "nights": nights},
        ])
        .to_string();
        if city.is_ascii() {
            hotels
        } else {
            // The fault: this upstream cuts its answer short for names it cannot encode, and
            // the tool passes the broken text on as if it were a result.
            hotels[..hotels.len() / 2].to_owned()
        }
    }

    #[tool(description = "A budget estimate for a trip, as JSON {city, nights, eur}")]
    async fn estimate_budget(
        &self,
        Parameters(BudgetQuery { city, nights }): Parameters<BudgetQuery>,
        meta: RequestMetaObject,
    ) -> String {
        traced_work(&self.tracer, "estimate_budget", &meta, Duration::from_millis(15)).await;
        serde_json::json!({"city": city, "nights": nights, "eur": 150 * u64::from(nights)}).to_string()
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for DemoTools {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_instructions("agentrace demo tools: search_hotels, estimate_budget")
    }
}

/// Runs the tool server on stdin/stdout until the client closes it.
pub fn run_server(args: McpServerArgs) -> anyhow::Result<ExitCode> {
    // The start-up span begins here, before the exporter and the runtime exist, so the caller's
    // trace shows where the launch time went.
    let launched = SystemTime::now();
    super::init_logging();
    install_global_propagator(W3CPropagator::new());
    let provider = telemetry::provider(&args.endpoint, SERVICE)?;
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().context("cannot start tokio")?;
    let tracer = provider.tracer("agentrace-demo");
    let outcome = runtime.block_on(async {
        // The process's start joins the trace of whoever launched it (the env carrier), and
        // lasts until the handshake is done.
        let mut start = SpanBuilder::from_name("demo-tools start")
            .with_start_time(launched)
            .start_with_context(&tracer, &extract_from_env());
        let tools = DemoTools { tool_router: DemoTools::tool_router(), tracer: tracer.clone() };
        let service = TracedService::new(tools, tracer.clone()).serve(rmcp::transport::stdio()).await;
        start.end();
        service?.waiting().await?;
        anyhow::Ok(())
    });
    drop(runtime);
    telemetry::shutdown(&provider, SERVICE);
    outcome.map(|()| ExitCode::SUCCESS)
}

/// The client side's identity, with the trace context in `initialize`'s `_meta` when it
/// propagates, so even the handshake joins the caller's trace.
#[derive(Debug, Clone)]
struct DemoClient {
    info: ClientConfig,
}

impl ClientHandler for DemoClient {
    fn get_info(&self) -> ClientConfig {
        self.info.clone()
    }
}

/// A connection to a freshly launched tool server.
pub struct ToolClient {
    service: RunningService<RoleClient, DemoClient>,
    propagate: bool,
}

impl ToolClient {
    /// Launches `exe demo-mcp-server` and initialises it, inside `cx`. With `propagate` the
    /// context goes into the child's environment and `initialize`'s `_meta`; without, the child
    /// gets neither (and inherits no stale `TRACEPARENT` of ours).
    pub async fn launch(
        exe: &Path,
        endpoint: &str,
        agent: &str,
        cx: &Context,
        propagate: bool,
    ) -> anyhow::Result<ToolClient> {
        let mut cmd = tokio::process::Command::new(exe);
        cmd.arg("demo-mcp-server").arg("--endpoint").arg(endpoint).stderr(std::process::Stdio::inherit());
        let empty = Context::new();
        cmd.with_trace_context(if propagate { cx } else { &empty });
        let mut info =
            ClientConfig::new(ClientCapabilities::default(), Implementation::new(agent, env!("CARGO_PKG_VERSION")));
        if propagate {
            info.meta.get_or_insert_with(RequestMetaObject::new).0.0.inject_context(cx);
        }
        let transport = TokioChildProcess::new(cmd).context("cannot launch the demo MCP server")?;
        let service =
            DemoClient { info }.serve(transport).with_context(cx.clone()).await.context("MCP initialize failed")?;
        Ok(ToolClient { service, propagate })
    }

    /// Calls `tool` with `arguments` as the model asked (`call_id`), inside `cx` (the
    /// `execute_tool` span), and returns the text it answered.
    pub async fn call(
        &self,
        tracer: &SdkTracer,
        cx: &Context,
        tool: &str,
        call_id: &str,
        arguments: serde_json::Map<String, serde_json::Value>,
    ) -> anyhow::Result<String> {
        let mut params = CallToolRequestParams::new(tool.to_owned()).with_arguments(arguments);
        params.meta.get_or_insert_with(RequestMetaObject::new).0.0.insert(TOOL_CALL_ID_META.to_owned(), call_id.into());
        let result = if self.propagate {
            // The SDK's client: a CLIENT span, and its context in `params._meta`.
            agentrace::mcp::call_tool(tracer, self.service.peer(), params, None).with_context(cx.clone()).await
        } else {
            // The article's client: a plain rmcp call, no context in `_meta`.
            self.service.peer().call_tool(params).with_context(cx.clone()).await
        };
        let result = anyhow::Context::with_context(result, || format!("tools/call {tool} failed"))?;
        Ok(result.content.iter().filter_map(|c| c.as_text().map(|t| t.text.as_str())).collect::<Vec<_>>().join(""))
    }

    /// Closes stdin and waits for the server to exit, which it does after flushing its spans.
    pub async fn close(self) {
        if let Err(err) = self.service.cancel().await {
            tracing::warn!("demo: closing the MCP server: {err}");
        }
    }
}
