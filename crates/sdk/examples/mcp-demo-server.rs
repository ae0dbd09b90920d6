//! An instrumented MCP tool server on stdio: every request gets a SERVER span parented on the
//! caller's `_meta` context; the process start itself joins the trace of whoever spawned it
//! (`TRACEPARENT`/`BAGGAGE` in its environment). Spans go out over OTLP (`OTEL_*` variables).
//!
//! Tools: `add` (a + b), `echo` (text back), `whoami` (the trace id and `session.id` baggage the
//! tool sees, as JSON: what a test on the calling side compares with its own).
//!
//! Run: `cargo run -p agentrace --example mcp-demo-server` and speak MCP on stdin/stdout.

#[path = "common/otlp.rs"]
mod otlp;

use agentrace::carrier::env::extract_from_env;
use agentrace::genai::GenAiSpan;
use agentrace::mcp::TracedService;
use opentelemetry::Context;
use opentelemetry::baggage::BaggageExt;
use opentelemetry::trace::{Span as _, TraceContextExt, Tracer};
use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{ServerCapabilities, ServerConfig};
use rmcp::{ServerHandler, ServiceExt, schemars, tool, tool_handler, tool_router};

#[derive(Debug, serde::Deserialize, schemars::JsonSchema)]
struct AddRequest {
    a: i64,
    b: i64,
}

#[derive(Debug, serde::Deserialize, schemars::JsonSchema)]
struct EchoRequest {
    text: String,
}

#[derive(Debug, Clone)]
struct DemoTools {
    tool_router: ToolRouter<Self>,
    tracer: opentelemetry_sdk::trace::SdkTracer,
}

#[tool_router]
impl DemoTools {
    #[tool(description = "Add two integers")]
    fn add(&self, Parameters(AddRequest { a, b }): Parameters<AddRequest>) -> String {
        // The tool's own work is a child of the SERVER span, which is current here.
        let cx = GenAiSpan::execute_tool("add", None).start(&self.tracer, &Context::current());
        let sum = a.saturating_add(b);
        cx.span().end();
        sum.to_string()
    }

    #[tool(description = "Echo the text back")]
    fn echo(&self, Parameters(EchoRequest { text }): Parameters<EchoRequest>) -> String {
        text
    }

    #[tool(description = "The trace id and session.id baggage this tool runs in, as JSON")]
    fn whoami(&self) -> String {
        let cx = Context::current();
        let session = cx.baggage().get("session.id").map(|v| v.as_str().to_owned());
        serde_json::json!({
            "trace_id": format!("{:032x}", cx.span().span_context().trace_id()),
            "span_id": format!("{:016x}", cx.span().span_context().span_id()),
            "session_id": session,
        })
        .to_string()
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for DemoTools {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_instructions("agentrace demo tools: add, echo, whoami")
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let telemetry = otlp::Telemetry::init("mcp-demo-server");
    let tracer = telemetry.tracer("mcp-demo-server");
    // The spawning process's context: the server's start-up joins its trace.
    let parent = extract_from_env();
    tracer.start_with_context("mcp-demo-server start", &parent).end();

    let tools = DemoTools { tool_router: DemoTools::tool_router(), tracer: tracer.clone() };
    let service = TracedService::new(tools, tracer).serve(rmcp::transport::stdio()).await?;
    service.waiting().await?;
    telemetry.shutdown();
    Ok(())
}
