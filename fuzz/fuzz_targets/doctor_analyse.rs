//! The doctor on span sets a sender controls: the live collector runs it on
//! whatever arrives. The bytes describe up to 48 spans drawn from a small
//! space of trace and span IDs (so parents, links and keys collide: orphans,
//! cycles, duplicates, a span its own parent), with attributes from the
//! vocabulary repair reads (message IDs, tool call IDs, MCP keys, sessions,
//! agents, addresses, errors) and times that overlap or run backwards.
//! Invariants: no panic; the connected view keeps every distinct input span; every
//! applied repair names spans of the input; the diagnosis serialises.
#![no_main]
use std::sync::Arc;

use agentrace_doctor::Doctor;
use agentrace_model::span::{Link, Resource, Scope, StatusCode};
use agentrace_model::{Span, SpanId, SpanKind, TraceId};
use libfuzzer_sys::fuzz_target;

struct Bytes<'a>(&'a [u8]);

impl Bytes<'_> {
    fn byte(&mut self) -> u8 {
        match self.0.split_first() {
            Some((b, rest)) => {
                self.0 = rest;
                *b
            }
            None => 0,
        }
    }
    fn pick<T: Copy>(&mut self, from: &[T]) -> T {
        from[usize::from(self.byte()) % from.len()]
    }
}

const KEYS: [&str; 14] = [
    "messaging.message.id",
    "gen_ai.tool.call.id",
    "jsonrpc.request.id",
    "mcp.session.id",
    "mcp.method.name",
    "session.id",
    "gen_ai.conversation.id",
    "gen_ai.agent.name",
    "gen_ai.operation.name",
    "gen_ai.tool.name",
    "server.address",
    "messaging.destination.name",
    "gen_ai.usage.input_tokens",
    "error.type",
];
const VALUES: [&str; 8] = ["1", "2", "a", "invoke_agent", "chat", "execute_tool", "tools/call", "q"];
const NAMES: [&str; 8] =
    ["POST /chat", "invoke_agent planner", "chat gpt-4o", "execute_tool search", "send jobs", "process jobs", "tools/call search", "autogen process writer.(s)-A"];
const SERVICES: [&str; 4] = ["planner", "worker", "tools", "gateway"];

fuzz_target!(|data: &[u8]| {
    let mut b = Bytes(data);
    let n = usize::from(b.byte()) % 48;
    let resources: Vec<Arc<Resource>> = SERVICES.iter().map(|s| Arc::new(Resource::for_service(s))).collect();
    let scope = Arc::new(Scope::default());
    let trace = |k: u8| TraceId::new([k % 4 + 1; 16]).unwrap();
    let span_id = |k: u8| SpanId::new([k % 32 + 1; 8]).unwrap();
    let mut spans = Vec::with_capacity(n);
    for _ in 0..n {
        let t = b.byte();
        let id = b.byte();
        let parent = b.byte();
        let mut s = Span::new(trace(t), span_id(id), (parent % 3 != 0).then(|| span_id(parent)), b.pick(&NAMES));
        s.kind = b.pick(&[
            SpanKind::Internal,
            SpanKind::Server,
            SpanKind::Client,
            SpanKind::Producer,
            SpanKind::Consumer,
            SpanKind::Unspecified,
        ]);
        s.resource = Arc::clone(&resources[usize::from(b.byte()) % resources.len()]);
        s.scope = Arc::clone(&scope);
        let start = u64::from(b.byte()) * 1_000_000;
        s.start_unix_nano = start;
        // Sometimes ending before it starts.
        s.end_unix_nano = (start + u64::from(b.byte()) * 2_000_000).saturating_sub(u64::from(b.byte() % 8) * 1_000_000);
        for _ in 0..b.byte() % 5 {
            let key = b.pick(&KEYS);
            if key == "gen_ai.usage.input_tokens" {
                s.attributes.set(key, i64::from(b.byte()) - 8);
            } else {
                s.attributes.set(key, b.pick(&VALUES));
            }
        }
        if b.byte() % 5 == 0 {
            s.status_code = StatusCode::Error;
        }
        if b.byte() % 6 == 0 {
            let (lt, ls) = (b.byte(), b.byte());
            s.links.push(Link {
                trace_id: trace(lt),
                span_id: span_id(ls),
                trace_state: String::new(),
                attributes: Default::default(),
                dropped_attributes_count: 0,
                flags: 0,
            });
        }
        spans.push(s);
    }
    let (diagnosis, view) = Doctor::default().analyse_with_view(&spans);
    // Duplicates (the same trace and span ID twice) are one span to the doctor.
    let distinct: std::collections::HashSet<(TraceId, SpanId)> = spans.iter().map(|s| (s.trace_id, s.span_id)).collect();
    assert!(view.len() >= distinct.len(), "the connected view lost spans");
    for r in diagnosis.repairs.iter().filter(|r| r.applied) {
        assert!(spans.iter().any(|s| s.span_id == r.span_id && s.trace_id == r.trace_id));
        assert!(spans.iter().any(|s| s.span_id == r.parent_span_id && s.trace_id == r.parent_trace_id));
    }
    serde_json::to_string(&diagnosis).expect("the diagnosis serialises");
});
