//! Agent-shaped OTLP requests, for the load generator (`examples/loadgen.rs`)
//! and the per-span benches (`benches/span_path.rs`): one definition of
//! what the figures of both are measured on.
//!
//! A request holds one trace of `n` spans of about twenty attributes each
//! (agent, LLM, tool, queue and retrieval spans with GenAI, messaging and
//! session attributes), as a multi-agent service records them.

#![allow(dead_code)]

use std::time::{SystemTime, UNIX_EPOCH};

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status};

/// What the spans of a request look like, for the pipeline's join index and session state.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Shape {
    /// Real agent traffic: one trace per request, its session drawn from `--sessions`, a message
    /// ID shared by each producer/consumer pair, a tool call ID on each tool span, every ID new.
    Agents,
    /// Every span carries its own message, tool call and MCP session IDs, and every request its
    /// own session: the most keys the join index and session state can be given.
    Adversarial,
    /// The generator's shape before the realistic one (kept to compare figures with old runs):
    /// each template's join keys and session repeat on every request sent from it (16 sessions).
    Templates,
}

pub fn kv(key: &str, value: any_value::Value) -> KeyValue {
    KeyValue { key: key.into(), value: Some(AnyValue { value: Some(value) }), key_strindex: 0 }
}

pub fn s(v: &str) -> any_value::Value {
    any_value::Value::StringValue(v.into())
}

pub fn i(v: i64) -> any_value::Value {
    any_value::Value::IntValue(v)
}

/// The 16 hex digits standing for the request in a template's IDs, replaced on each send.
pub fn stamp(variant: u64) -> String {
    format!("{:016x}", 0xfeed_face_0000_0000 | variant)
}

/// About twenty attributes, as an instrumented agent service would set
/// them: ten common to every span (agent, session, conversation), ten
/// specific to the operation. Join keys (`messaging.message.id`,
/// `gen_ai.tool.call.id`, MCP ids) appear only on the spans that carry them
/// in real systems (`Shape::Agents`: a message ID on the producer and on its
/// consumer, the span after it), or on every span (`Shape::Adversarial`).
pub fn attributes(op: &str, variant: u64, k: usize, session: &str, shape: Shape) -> Vec<KeyValue> {
    let id = |k: usize| match shape {
        Shape::Templates => format!("{variant}-{k}"),
        Shape::Agents | Shape::Adversarial => format!("{}-{k}", stamp(variant)),
    };
    let mut a = vec![
        kv("gen_ai.operation.name", s(op)),
        kv("gen_ai.agent.name", s(["planner", "researcher", "writer"][k % 3])),
        kv("gen_ai.agent.id", s(["agent-p", "agent-r", "agent-w"][k % 3])),
        kv("app.agent.role", s(if k.is_multiple_of(3) { "orchestrator" } else { "specialist" })),
        kv("app.agent.delegation.depth", i((k % 4) as i64)),
        kv("session.id", s(session)),
        kv("gen_ai.conversation.id", s(session)),
    ];
    if shape == Shape::Adversarial {
        // Three join keys of its own on every span, in place of three plain attributes.
        a.push(kv("messaging.message.id", s(&format!("msg-{}", id(k)))));
        a.push(kv("gen_ai.tool.call.id", s(&format!("call-{}", id(k)))));
        a.push(kv("mcp.session.id", s(&format!("mcp-{}", id(k)))));
    } else {
        a.push(kv("user.id", s("user-42")));
        a.push(kv("code.function.name", s("agents.run_step")));
        a.push(kv("thread.id", i(7)));
    }
    // The consumer reads the message its producer (the span before it) sent.
    let message = match (shape, op) {
        (Shape::Agents, "process") => id(k - 1),
        _ => id(k),
    };
    let specific: [(&str, any_value::Value); 10] = match op {
        "chat" => [
            ("gen_ai.provider.name", s("openai")),
            ("gen_ai.request.model", s("gpt-4o-mini")),
            ("gen_ai.response.model", s("gpt-4o-mini-2024-07-18")),
            ("gen_ai.usage.input_tokens", i(1200 + k as i64)),
            ("gen_ai.usage.output_tokens", i(300 + k as i64)),
            ("gen_ai.request.temperature", any_value::Value::DoubleValue(0.2)),
            ("gen_ai.request.max_tokens", i(1024)),
            ("gen_ai.response.finish_reasons", s("stop")),
            ("gen_ai.response.id", s(&format!("chatcmpl-{}", id(k)))),
            ("server.address", s("api.openai.com")),
        ],
        "execute_tool" if shape == Shape::Adversarial => [
            ("gen_ai.tool.name", s("web_search")),
            ("gen_ai.tool.description", s("Searches the web")),
            ("gen_ai.tool.type", s("function")),
            ("mcp.method.name", s("tools/call")),
            ("mcp.protocol.version", s("2026-07-28")),
            ("jsonrpc.request.id", i(k as i64)),
            ("rpc.system", s("jsonrpc")),
            ("server.address", s("127.0.0.1")),
            ("server.port", i(8931)),
            ("network.transport", s("pipe")),
        ],
        "execute_tool" => [
            ("gen_ai.tool.name", s("web_search")),
            ("gen_ai.tool.call.id", s(&format!("call-{}", id(k)))),
            ("gen_ai.tool.type", s("function")),
            ("mcp.method.name", s("tools/call")),
            ("mcp.session.id", s(session)),
            ("jsonrpc.request.id", i(k as i64)),
            ("mcp.protocol.version", s("2026-07-28")),
            ("server.address", s("127.0.0.1")),
            ("server.port", i(8931)),
            ("network.transport", s("pipe")),
        ],
        "send" | "process" => [
            ("messaging.system", s("rabbitmq")),
            ("messaging.destination.name", s("tasks")),
            (
                if shape == Shape::Adversarial { "messaging.message.conversation_id" } else { "messaging.message.id" },
                s(&format!("msg-{message}")),
            ),
            ("messaging.operation.type", s(op)),
            ("messaging.operation.name", s(if op == "send" { "publish" } else { "deliver" })),
            ("messaging.client.id", s("worker-3")),
            ("messaging.message.body.size", i(2048)),
            ("server.address", s("rabbit.internal")),
            ("server.port", i(5672)),
            ("messaging.rabbitmq.destination.routing_key", s("tasks.research")),
        ],
        _ => [
            ("db.system.name", s("qdrant")),
            ("db.collection.name", s("docs")),
            ("db.operation.name", s("search")),
            ("gen_ai.data_source.id", s("kb-main")),
            ("app.retrieval.top_k", i(8)),
            ("app.retrieval.documents", i(8)),
            ("server.address", s("qdrant.internal")),
            ("server.port", i(6333)),
            ("http.response.status_code", i(200)),
            ("url.path", s("/collections/docs/points/search")),
        ],
    };
    a.extend(specific.into_iter().map(|(key, v)| kv(key, v)));
    a
}

/// The template request of `variant`: its IDs are rewritten on every send.
pub fn request(variant: u64, n: usize, shape: Shape) -> ExportTraceServiceRequest {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_nanos() as u64;
    let seq = variant;
    let mut trace_id = [0u8; 16];
    trace_id[..8].copy_from_slice(&seq.to_be_bytes());
    trace_id[8..].copy_from_slice(&(seq ^ 0x9e37_79b9_7f4a_7c15).to_be_bytes());
    // Fixed width, so that a template's session can be rewritten per send.
    let session = format!("session-{:010}", seq % 1000);
    let spans = (0..n)
        .map(|k| {
            // Every producer has its consumer (the span after it): a last span that would be a
            // producer left alone is a retrieval instead, as a message nobody received is what a
            // broken queue hop looks like.
            let which = if k % 6 == 3 && k + 1 == n && shape != Shape::Templates { 5 } else { k % 6 };
            let kind = [1, 3, 3, 4, 5, 2][which];
            let op = ["invoke_agent", "chat", "execute_tool", "send", "process", "retrieval"][which];
            let mut span_id = [0u8; 8];
            span_id.copy_from_slice(&((seq << 16) | k as u64 | 1 << 63).to_be_bytes());
            let parent = if k == 0 { Vec::new() } else { ((seq << 16) | 1 << 63).to_be_bytes().to_vec() };
            Span {
                trace_id: trace_id.to_vec(),
                span_id: span_id.to_vec(),
                parent_span_id: parent,
                name: format!("{op} step-{}", k % 10),
                kind,
                start_time_unix_nano: now + k as u64 * 1_000_000,
                end_time_unix_nano: now + k as u64 * 1_000_000 + 800_000,
                attributes: attributes(op, variant, k, &session, shape),
                status: Some(Status { code: if k % 50 == 49 { 2 } else { 0 }, message: String::new() }),
                ..Default::default()
            }
        })
        .collect();
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![
                    kv("service.name", s("loadgen-agents")),
                    kv("service.instance.id", s("instance-1")),
                    kv("telemetry.sdk.language", s("rust")),
                ],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                scope: Some(InstrumentationScope { name: "agentrace.loadgen".into(), ..Default::default() }),
                spans,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}
