//! Claim: the inbound baggage policy installed with
//! `install_global_propagator` holds at every boundary the crate carries
//! context over, not only where a propagator is passed explicitly: HTTP
//! headers (and the tower layer), envelopes, MCP `_meta`, the environment,
//! NATS, AMQP, Kafka and Redis, and the MCP server wrapper made without a
//! propagator of its own. A caller's `user.id=admin` does not get in;
//! its trace and the allowed `session.id` do.
//!
//! One test in its own binary: the policy is process-global.

use agentrace::carrier::ContextCarrier;
use agentrace::carrier::env::EnvCarrier;
use agentrace::carrier::envelope::ContextEnvelope;
use agentrace::propagation::{InboundBaggage, W3CPropagator, install_global_propagator};
use opentelemetry::baggage::BaggageExt;
use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState};
use opentelemetry::{Context, KeyValue};

const TRACE: &str = "0af7651916cd43dd8448eb211c80319c";

/// What a caller outside the trust boundary sends.
fn outbound() -> Context {
    let sc = SpanContext::new(
        TraceId::from_hex(TRACE).unwrap(),
        SpanId::from_hex("b7ad6b7169203331").unwrap(),
        TraceFlags::SAMPLED,
        true,
        TraceState::default(),
    );
    Context::new()
        .with_remote_span_context(sc)
        .with_baggage(vec![KeyValue::new("user.id", "admin"), KeyValue::new("session.id", "s-1")])
}

/// The trace and the baggage keys a receiver ends up with.
fn seen(cx: &Context) -> (String, Vec<String>) {
    let mut keys: Vec<String> = cx.baggage().iter().map(|(k, _)| k.to_string()).collect();
    keys.sort();
    (format!("{:032x}", cx.span().span_context().trace_id()), keys)
}

#[test]
fn every_carrier_applies_the_installed_inbound_baggage_policy() {
    let cx = outbound();
    // Before any policy: everything valid is accepted.
    let envelope = ContextEnvelope::from_context(&cx);
    assert_eq!(seen(&envelope.extract_context()).1, ["session.id", "user.id"]);

    install_global_propagator(W3CPropagator::new().with_inbound_baggage(InboundBaggage::allow(["session.id"])));
    let want = (TRACE.to_owned(), vec!["session.id".to_owned()]);
    let mut got: Vec<(&str, (String, Vec<String>))> = Vec::new();

    let envelope = ContextEnvelope::from_context(&cx);
    got.push(("envelope", seen(&envelope.extract_context())));

    let mut meta = serde_json::Map::new();
    meta.inject_context(&cx);
    got.push(("MCP _meta", seen(&meta.extract_context())));

    let env = EnvCarrier::from_lookup(|name| match name {
        "TRACEPARENT" => envelope.traceparent.clone(),
        "BAGGAGE" => envelope.baggage.clone(),
        _ => None,
    });
    got.push(("environment", seen(&agentrace::propagation::extract_context(&env))));

    #[cfg(feature = "http")]
    {
        let mut headers = http::HeaderMap::new();
        headers.inject_context(&cx);
        got.push(("HTTP headers", seen(&headers.extract_context())));
        // The tower layer made without an explicit policy takes the installed one.
        let layer = agentrace::carrier::http::ExtractContextLayer::new();
        assert!(format!("{layer:?}").contains("session.id"), "{layer:?}");
    }
    #[cfg(feature = "nats")]
    {
        let mut headers = async_nats::HeaderMap::new();
        headers.inject_context(&cx);
        got.push(("NATS headers", seen(&headers.extract_context())));
    }
    #[cfg(feature = "amqp")]
    {
        let mut table = lapin::types::FieldTable::default();
        table.inject_context(&cx);
        got.push(("AMQP headers", seen(&table.extract_context())));
    }
    #[cfg(feature = "kafka")]
    {
        let headers = agentrace::carrier::kafka::inject_into(rdkafka::message::OwnedHeaders::new(), &cx);
        got.push(("Kafka headers", seen(&agentrace::carrier::kafka::extract_from(&headers))));
    }
    #[cfg(feature = "redis")]
    {
        let fields = agentrace::carrier::redis::StreamFields::from_context(&cx);
        let entry: std::collections::HashMap<String, redis::Value> =
            fields.0.into_iter().map(|(k, v)| (k, redis::Value::BulkString(v.into_bytes()))).collect();
        got.push(("Redis stream fields", seen(&agentrace::carrier::redis::extract_from_entry(&entry))));
    }

    #[cfg(feature = "mcp")]
    got.push(("MCP server (TracedService)", mcp::tool_sees(&cx)));

    for (carrier, seen) in &got {
        assert_eq!(seen, &want, "{carrier}");
    }
}

/// An rmcp server wrapped in `TracedService` (no propagator of its own), called in process over
/// a pipe by our `call_tool`: what its tool sees as the current context.
#[cfg(feature = "mcp")]
mod mcp {
    use std::sync::{Arc, Mutex};

    use agentrace::mcp::{TracedService, call_tool};
    use opentelemetry::Context;
    use opentelemetry::context::FutureExt as _;
    use opentelemetry::trace::TracerProvider as _;
    use opentelemetry_sdk::trace::SdkTracerProvider;
    use rmcp::model::{CallToolRequestParams, CallToolResponse, CallToolResult, ServerCapabilities, ServerConfig};
    use rmcp::service::{RequestContext, RoleServer};
    use rmcp::{ErrorData, ServerHandler, ServiceExt};

    type Seen = Arc<Mutex<Option<(String, Vec<String>)>>>;

    struct Recorder(Seen);

    impl ServerHandler for Recorder {
        async fn call_tool(
            &self,
            _request: CallToolRequestParams,
            _context: RequestContext<RoleServer>,
        ) -> Result<CallToolResponse, ErrorData> {
            *self.0.lock().unwrap() = Some(super::seen(&Context::current()));
            Ok(CallToolResult::success(vec![]).into())
        }

        fn get_info(&self) -> ServerConfig {
            ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
        }
    }

    pub fn tool_sees(cx: &Context) -> (String, Vec<String>) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let provider = SdkTracerProvider::builder().build();
            let seen: Seen = Arc::default();
            let (client_io, server_io) = tokio::io::duplex(64 * 1024);
            let server = TracedService::new(Recorder(seen.clone()), provider.tracer("server"));
            let server = tokio::spawn(async move {
                let running = server.serve(tokio::io::split(server_io)).await.expect("server starts");
                running.waiting().await
            });
            let client = ().serve(tokio::io::split(client_io)).await.expect("client connects");
            call_tool(&provider.tracer("client"), client.peer(), CallToolRequestParams::new("whoami"), None)
                .with_context(cx.clone())
                .await
                .expect("tools/call whoami");
            client.cancel().await.unwrap();
            let _ = server.await;
            let seen = seen.lock().unwrap().take();
            seen.expect("the tool ran")
        })
    }
}
