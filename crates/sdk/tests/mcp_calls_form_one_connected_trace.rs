//! MCP calls give one connected trace, whatever the two sides are written in:
//! Rust client → Rust server over stdio (a child process: `_meta` and the env carrier) and over
//! streamable HTTP (in process: `_meta` parent, HTTP header context linked), Python client →
//! Rust server, and Rust client → Python server (the official `mcp` package, 2.x).
//!
//! Each test reads the far side's spans (OTLP JSON from the Rust child, JSON lines from Python)
//! and asserts their trace id, their parent (or link) and the baggage they carry.

mod common;

use std::path::PathBuf;
use std::time::Duration;

use agentrace::carrier::env::CommandExt;
use agentrace::mcp::{TracedService, call_tool};
use common::otlp_receiver::{OtlpJsonReceiver, wait_for_jsonl_span};
use common::{Telemetry, attr};
use opentelemetry::baggage::BaggageExt;
use opentelemetry::context::FutureExt;
use opentelemetry::trace::{SpanKind, TraceContextExt, Tracer};
use opentelemetry::{Context, KeyValue};
use rmcp::ServiceExt;
use rmcp::model::CallToolRequestParams;
use rmcp::transport::TokioChildProcess;

const WAIT: Duration = Duration::from_secs(20);

fn target_dir() -> PathBuf {
    // tests run from target/<profile>/deps/
    std::env::current_exe().unwrap().parent().unwrap().parent().unwrap().to_path_buf()
}

fn demo_server() -> PathBuf {
    let path = target_dir().join("examples").join("mcp-demo-server");
    assert!(
        path.exists(),
        "{} is missing: `cargo test -p agentrace` builds the examples (or run `cargo build -p agentrace --examples`)",
        path.display()
    );
    path
}

fn python() -> PathBuf {
    let venv = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.venv");
    // Canonical directory, but not the interpreter itself (a symlink to the base Python): Python
    // finds its venv textually from the path it was started by.
    let dir = std::fs::canonicalize(&venv).unwrap_or_else(|_| {
        panic!(
            "no Python venv at {}: run `python3 -m venv .venv && .venv/bin/pip install -r scripts/requirements-test.txt`",
            venv.display()
        )
    });
    dir.join("bin/python")
}

fn python_script(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/python").join(name)
}

fn hex_trace(cx: &Context) -> String {
    format!("{:032x}", cx.span().span_context().trace_id())
}

fn hex_span(id: opentelemetry::trace::SpanId) -> String {
    format!("{id:016x}")
}

fn spans_file(tag: &str) -> PathBuf {
    let path = std::env::temp_dir().join(format!("agentrace-{tag}-{}.jsonl", std::process::id()));
    let _ = std::fs::remove_file(&path);
    path
}

/// Starts `cmd` as an MCP server on stdio, calls its `whoami` tool inside
/// `cx`, ends the agent's span, and returns what the server saw.
async fn whoami_over_stdio(
    tracer: &opentelemetry_sdk::trace::SdkTracer,
    cmd: tokio::process::Command,
    cx: &Context,
) -> serde_json::Value {
    let client = ().serve(TokioChildProcess::new(cmd).unwrap()).await.expect("MCP server starts");
    let result = call_tool(tracer, client.peer(), CallToolRequestParams::new("whoami"), None)
        .with_context(cx.clone())
        .await
        .expect("tools/call whoami");
    client.cancel().await.unwrap();
    cx.span().end();
    serde_json::from_str(&result.content[0].as_text().unwrap().text).unwrap()
}

fn agent_turn(t: &Telemetry, session: &str) -> Context {
    let edge = Context::new().with_baggage([KeyValue::new("session.id", session.to_owned())]);
    let span = t.tracer("agent").start_with_context("agent turn", &edge);
    edge.with_span(span)
}

#[tokio::test]
async fn rust_client_and_rust_server_over_stdio() {
    let receiver = OtlpJsonReceiver::start().await;
    let t = Telemetry::new();
    let tracer = t.tracer("agent");
    let cx = agent_turn(&t, "sess=stdio");

    let mut cmd = tokio::process::Command::new(demo_server());
    cmd.with_trace_context(&cx)
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", &receiver.endpoint)
        .env("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json")
        .env("OTEL_SERVICE_NAME", "mcp-demo-server");
    let seen = whoami_over_stdio(&tracer, cmd, &cx).await;
    assert_eq!(seen["trace_id"], hex_trace(&cx));
    assert_eq!(seen["session_id"], "sess=stdio");

    let client_span = t.span("tools/call whoami");
    assert_eq!(client_span.span_kind, SpanKind::Client);
    assert_eq!(client_span.parent_span_id, cx.span().span_context().span_id());
    assert_eq!(attr(&client_span, "mcp.method.name").as_deref(), Some("tools/call"));
    assert_eq!(attr(&client_span, "gen_ai.tool.name").as_deref(), Some("whoami"));
    let request_id = attr(&client_span, "jsonrpc.request.id").expect("client records jsonrpc.request.id");

    let server_span = receiver.wait_for("tools/call whoami", WAIT).await;
    assert_eq!(server_span.trace_id, hex_trace(&cx));
    assert_eq!(server_span.parent_span_id, hex_span(client_span.span_context.span_id()));
    assert_eq!(server_span.attributes.get("session.id").map(String::as_str), Some("sess=stdio"));
    assert_eq!(server_span.attributes.get("jsonrpc.request.id"), Some(&request_id));
    assert_eq!(server_span.attributes.get("network.transport").map(String::as_str), Some("pipe"));
    // The process start joined the trace through TRACEPARENT/BAGGAGE in its environment.
    let start = receiver.wait_for("mcp-demo-server start", WAIT).await;
    assert_eq!(start.trace_id, hex_trace(&cx));
    assert_eq!(start.parent_span_id, hex_span(cx.span().span_context().span_id()));
    assert_eq!(start.attributes.get("session.id").map(String::as_str), Some("sess=stdio"));
}

mod http_tools {
    use rmcp::handler::server::router::tool::ToolRouter;
    use rmcp::model::{ServerCapabilities, ServerConfig};
    use rmcp::{ServerHandler, tool, tool_handler, tool_router};

    #[derive(Debug, Clone)]
    pub struct Tools {
        tool_router: ToolRouter<Self>,
    }

    impl Tools {
        pub fn new() -> Self {
            Tools { tool_router: Self::tool_router() }
        }
    }

    #[tool_router]
    impl Tools {
        #[tool(description = "ping")]
        fn ping(&self) -> String {
            "pong".into()
        }
    }

    #[tool_handler(router = self.tool_router)]
    impl ServerHandler for Tools {
        fn get_info(&self) -> ServerConfig {
            ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
        }
    }
}

#[tokio::test]
async fn rust_client_and_rust_server_over_streamable_http() {
    use rmcp::transport::StreamableHttpClientTransport;
    use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
    use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
    use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};

    let t = Telemetry::new();
    let server_tracer = t.tracer("server");
    let service: StreamableHttpService<_, LocalSessionManager> = StreamableHttpService::new(
        move || Ok(TracedService::new(http_tools::Tools::new(), server_tracer.clone())),
        Default::default(),
        StreamableHttpServerConfig::default(),
    );
    let router = axum::Router::new().nest_service("/mcp", service);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/mcp", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await });

    let tracer = t.tracer("agent");
    let cx = agent_turn(&t, "sess-http");
    // The transport's own context: an HTTP-level span whose traceparent rides on every request.
    let transport_cx = Context::new().with_span(tracer.start_with_context("http connection", &Context::new()));
    let mut headers = std::collections::HashMap::new();
    let mut header_map = http::HeaderMap::new();
    agentrace::carrier::ContextCarrier::inject_context(&mut header_map, &transport_cx);
    for (k, v) in header_map.iter() {
        headers.insert(k.clone(), v.clone());
    }
    let transport = StreamableHttpClientTransport::from_config(
        StreamableHttpClientTransportConfig::with_uri(url).custom_headers(headers),
    );
    let client = ().serve(transport).await.expect("client connects");
    let result = call_tool(&tracer, client.peer(), CallToolRequestParams::new("ping"), None)
        .with_context(cx.clone())
        .await
        .expect("tools/call ping");
    assert_eq!(result.content[0].as_text().unwrap().text, "pong");
    client.cancel().await.unwrap();
    cx.span().end();

    // Both sides export to the same in-memory exporter here: tell them apart by kind.
    let of_kind = |kind: SpanKind| {
        t.spans().into_iter().find(|s| s.name == "tools/call ping" && s.span_kind == kind).expect("span of this kind")
    };
    let (client_span, server_span) = (of_kind(SpanKind::Client), of_kind(SpanKind::Server));
    assert_eq!(server_span.span_context.trace_id(), cx.span().span_context().trace_id());
    assert_eq!(server_span.parent_span_id, client_span.span_context.span_id());
    assert_eq!(server_span.links.links.len(), 1, "server span links the transport context");
    assert_eq!(server_span.links.links[0].span_context.span_id(), transport_cx.span().span_context().span_id());
    assert_eq!(attr(&server_span, "session.id").as_deref(), Some("sess-http"));
    assert_eq!(attr(&server_span, "network.transport").as_deref(), Some("tcp"));
    assert!(attr(&server_span, "mcp.session.id").is_some_and(|s| !s.is_empty()));
}

#[tokio::test]
async fn python_client_and_rust_server() {
    let receiver = OtlpJsonReceiver::start().await;
    let file = spans_file("pyclient");
    let out = tokio::process::Command::new(python())
        .arg(python_script("mcp_client.py"))
        .arg(demo_server())
        .env("SPANS_FILE", &file)
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", &receiver.endpoint)
        .env("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json")
        .env("OTEL_SERVICE_NAME", "mcp-demo-server")
        .output()
        .await
        .unwrap();
    assert!(out.status.success(), "python client failed: {}", String::from_utf8_lossy(&out.stderr));

    let agent = wait_for_jsonl_span(&file, "python-agent", WAIT).await;
    let send = wait_for_jsonl_span(&file, "MCP send tools/call whoami", WAIT).await;
    let server_span = receiver.wait_for("tools/call whoami", WAIT).await;
    assert_eq!(server_span.trace_id, agent.trace_id);
    assert_eq!(server_span.parent_span_id, send.span_id, "Rust server parents on the Python client span");
    assert_eq!(server_span.attributes.get("session.id").map(String::as_str), Some("py-sess=9"));
    let _ = std::fs::remove_file(&file);
}

#[tokio::test]
async fn rust_client_and_python_server() {
    let file = spans_file("pyserver");
    let t = Telemetry::new();
    let tracer = t.tracer("agent");
    let cx = agent_turn(&t, "sess=to-python");
    let mut cmd = tokio::process::Command::new(python());
    cmd.arg(python_script("mcp_server.py")).env("SPANS_FILE", &file).with_trace_context(&cx);
    let seen = whoami_over_stdio(&tracer, cmd, &cx).await;
    assert_eq!(seen["trace_id"], hex_trace(&cx));
    let client_span = t.span("tools/call whoami");
    let server_span = wait_for_jsonl_span(&file, "tools/call whoami", WAIT).await;
    assert_eq!(server_span.trace_id, hex_trace(&cx));
    assert_eq!(server_span.parent_span_id, hex_span(client_span.span_context.span_id()));
    assert_eq!(server_span.attributes.get("session.id").map(String::as_str), Some("sess=to-python"));
    let _ = std::fs::remove_file(&file);
}
