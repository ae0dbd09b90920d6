//! The service the official W3C Trace Context test harness drives (`w3c/trace-context`, `test/`).
//!
//! `POST /test` takes a JSON array of `{url, arguments}` and, for each element, POSTs
//! `arguments` to `url`. The incoming context is read by our tower layer (strict W3C parsing);
//! each outgoing call is a CLIENT span whose context our reqwest extension writes into the
//! headers. Spans are exported over OTLP as the `OTEL_*` variables say.
//!
//! Run: `cargo run -p agentrace --example w3c-test-service 127.0.0.1:5000`, then in the
//! harness's `test/` folder: `python test.py http://127.0.0.1:5000/test`. With port 0 it binds a
//! free port and prints the URL to drive on its first line.

#[path = "common/otlp.rs"]
mod otlp;

use agentrace::carrier::http::{ExtractContextLayer, RequestBuilderExt};
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use opentelemetry::Context;
use opentelemetry::trace::{SpanKind, TraceContextExt, Tracer};
use opentelemetry_sdk::trace::SdkTracer;
use serde::Deserialize;

#[derive(Debug, Deserialize)]
struct Call {
    url: String,
    #[serde(default)]
    arguments: serde_json::Value,
}

#[derive(Clone)]
struct App {
    tracer: SdkTracer,
    http: reqwest::Client,
}

async fn test(State(app): State<App>, body: axum::body::Bytes) -> StatusCode {
    let Ok(calls) = serde_json::from_slice::<Vec<Call>>(&body) else { return StatusCode::BAD_REQUEST };
    // The layer made the caller's context current; the server span is its child.
    let parent = Context::current();
    let server =
        app.tracer.span_builder("POST /test").with_kind(SpanKind::Server).start_with_context(&app.tracer, &parent);
    let server_cx = parent.with_span(server);
    for call in calls {
        let client =
            app.tracer.span_builder("POST").with_kind(SpanKind::Client).start_with_context(&app.tracer, &server_cx);
        let cx = server_cx.with_span(client);
        let sent = app.http.post(&call.url).with_trace_context(&cx).json(&call.arguments).send().await;
        if sent.is_err() {
            cx.span().set_status(opentelemetry::trace::Status::error("callback failed"));
        }
        cx.span().end();
    }
    server_cx.span().end();
    StatusCode::OK
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let addr = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:5000".to_owned());
    let telemetry = otlp::Telemetry::init("w3c-test-service");
    let app = App { tracer: telemetry.tracer("w3c-test-service"), http: reqwest::Client::new() };
    let router = axum::Router::new().route("/test", post(test)).layer(ExtractContextLayer::new()).with_state(app);
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    // Port 0 binds a free port: the line says which (a test reads it).
    let local = listener.local_addr()?;
    #[allow(clippy::print_stdout)]
    {
        println!("listening on http://{local}/test");
    }
    let shutdown = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    axum::serve(listener, router).with_graceful_shutdown(shutdown).await?;
    telemetry.shutdown();
    Ok(())
}
