//! Synthetic agent systems for property tests and benchmarks: random agent
//! trees whose hops (queue, MCP, remote tool, linked consumer) can be cut
//! the way broken propagation cuts them — the callee starts a new trace —
//! while keeping the evidence a real system would still emit.

#![allow(dead_code)]

use std::sync::Arc;

use agentrace_model::{Link, Resource, Span, SpanId, SpanKind, TraceId, Value};

/// SplitMix64: small, fast, and the same sequence everywhere.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Hop {
    Queue,
    Mcp,
    RemoteTool,
    LinkedQueue,
}

/// One generated session: the spans as a healthy system emits them, and
/// the same spans with some hops cut.
pub struct Generated {
    pub original: Vec<Span>,
    pub cut: Vec<Span>,
    pub cuts: usize,
}

struct Builder<'r> {
    rng: &'r mut Rng,
    session: u64,
    next_span: u64,
    next_trace: u64,
    spans: Vec<Span>,
    /// For each span, the trace it would have after cutting.
    cut_trace: Vec<TraceId>,
    cut_root: Vec<bool>,
    cut_percent: u64,
    cuts: usize,
    budget: usize,
    resources: Vec<Arc<Resource>>,
}

impl Builder<'_> {
    fn trace_id(&mut self) -> TraceId {
        self.next_trace += 1;
        let mut b = [0u8; 16];
        b[..8].copy_from_slice(&(self.session + 1).to_be_bytes());
        b[8..].copy_from_slice(&self.next_trace.to_be_bytes());
        TraceId::new(b).expect("non-zero")
    }

    fn span_id(&mut self) -> SpanId {
        self.next_span += 1;
        SpanId::new(((self.session + 1) << 24 | self.next_span).to_be_bytes()).expect("non-zero")
    }

    fn resource(&mut self, service: &str) -> Arc<Resource> {
        if let Some(r) = self.resources.iter().find(|r| r.service_name() == service) {
            return Arc::clone(r);
        }
        let mut r = Resource::for_service(service);
        r.attributes.set("service.instance.id", format!("{service}-1"));
        let r = Arc::new(r);
        self.resources.push(Arc::clone(&r));
        r
    }

    #[allow(clippy::too_many_arguments)]
    fn push(
        &mut self,
        parent: Option<usize>,
        service: &str,
        name: &str,
        kind: SpanKind,
        start: u64,
        end: u64,
        attrs: Vec<(&str, Value)>,
        cut_here: bool,
    ) -> usize {
        let trace = parent.map(|p| self.spans[p].trace_id).unwrap_or_else(|| self.trace_id());
        let mut span = Span::new(trace, self.span_id(), parent.map(|p| self.spans[p].span_id), name);
        span.kind = kind;
        span.start_unix_nano = start;
        span.end_unix_nano = end;
        span.resource = self.resource(service);
        span.attributes.set("session.id", format!("s-{}", self.session));
        for (k, v) in attrs {
            span.attributes.set(k, v);
        }
        let cut_trace = match (parent, cut_here) {
            (Some(_), true) => self.trace_id(),
            (Some(p), false) => self.cut_trace[p],
            (None, _) => trace,
        };
        self.spans.push(span);
        self.cut_trace.push(cut_trace);
        self.cut_root.push(cut_here && parent.is_some());
        self.budget = self.budget.saturating_sub(1);
        self.spans.len() - 1
    }

    /// An agent working in [start, end] under `parent`, delegating deeper while budget lasts.
    fn agent(&mut self, parent: usize, service: &str, name: &str, depth: u32, start: u64, end: u64) {
        let me = self.push(
            Some(parent),
            service,
            &format!("invoke_agent {name}"),
            SpanKind::Internal,
            start,
            end,
            vec![("gen_ai.operation.name", "invoke_agent".into()), ("gen_ai.agent.name", name.into())],
            false,
        );
        let steps = 2 + self.rng.below(4);
        let slot = (end - start) / (steps + 1);
        for k in 0..steps {
            let (s, e) = (start + slot * k + slot / 10, start + slot * (k + 1));
            if self.budget < 4 || depth >= 6 || self.rng.chance(45) {
                let tokens = 100 + self.rng.below(2000) as i64;
                self.push(
                    Some(me),
                    service,
                    "chat gpt-4o-mini",
                    SpanKind::Client,
                    s,
                    e,
                    vec![
                        ("gen_ai.operation.name", "chat".into()),
                        ("gen_ai.request.model", "gpt-4o-mini".into()),
                        ("gen_ai.usage.input_tokens", tokens.into()),
                        ("gen_ai.usage.output_tokens", (tokens / 4).into()),
                    ],
                    false,
                );
                continue;
            }
            let hop = match self.rng.below(4) {
                0 => Hop::Queue,
                1 => Hop::Mcp,
                2 => Hop::RemoteTool,
                _ => Hop::LinkedQueue,
            };
            let cut = self.rng.chance(self.cut_percent);
            self.cuts += usize::from(cut);
            let id = format!("{}-{}", self.session, self.next_span);
            let callee = format!("svc-{}-{}", depth + 1, self.rng.below(3));
            let sub = format!("agent-{}-{}", depth + 1, self.rng.below(5));
            let third = (e - s) / 3;
            match hop {
                Hop::Queue | Hop::LinkedQueue => {
                    let msg: Vec<(&str, Value)> = vec![
                        ("messaging.system", "rabbitmq".into()),
                        ("messaging.destination.name", "work".into()),
                        ("messaging.message.id", id.as_str().into()),
                    ];
                    let producer = self.push(
                        Some(me),
                        service,
                        "send work",
                        SpanKind::Producer,
                        s,
                        s + third / 4,
                        msg.clone(),
                        false,
                    );
                    let consumer = self.push(
                        Some(producer),
                        &callee,
                        "process work",
                        SpanKind::Consumer,
                        s + third / 2,
                        e,
                        msg,
                        cut,
                    );
                    if hop == Hop::LinkedQueue {
                        let (t, sp) = (self.spans[producer].trace_id, self.spans[producer].span_id);
                        self.spans[consumer].links.push(Link {
                            trace_id: t,
                            span_id: sp,
                            trace_state: String::new(),
                            attributes: Default::default(),
                            dropped_attributes_count: 0,
                            flags: 1,
                        });
                        // The link carries the evidence: drop the message id so the tier tested is the link.
                        self.spans[consumer].attributes.0.retain(|(k, _)| k != "messaging.message.id");
                    }
                    self.agent(consumer, &callee, &sub, depth + 1, s + third / 2 + 1, e - 1);
                }
                Hop::Mcp => {
                    let mcp: Vec<(&str, Value)> = vec![
                        ("mcp.method.name", "tools/call".into()),
                        ("mcp.session.id", format!("m-{id}").into()),
                        ("jsonrpc.request.id", (self.next_span as i64).into()),
                    ];
                    let client =
                        self.push(Some(me), service, "tools/call search", SpanKind::Client, s, e, mcp.clone(), false);
                    self.push(Some(client), &callee, "tools/call search", SpanKind::Server, s + 1, e - 1, mcp, cut);
                }
                Hop::RemoteTool => {
                    let tool: Vec<(&str, Value)> = vec![
                        ("gen_ai.operation.name", "execute_tool".into()),
                        ("gen_ai.tool.call.id", format!("call_{id}").into()),
                    ];
                    let call =
                        self.push(Some(me), service, "execute_tool fetch", SpanKind::Client, s, e, tool.clone(), false);
                    let server =
                        self.push(Some(call), &callee, "execute_tool fetch", SpanKind::Server, s + 1, e - 1, tool, cut);
                    if self.budget > 8 {
                        self.agent(server, &callee, &sub, depth + 1, s + 2, e - 2);
                    }
                }
            }
        }
    }
}

/// A session of about `target` spans starting at `t0` (ns), with each hop
/// cut with probability `cut_percent`.
pub fn session(seed: u64, session: u64, target: usize, cut_percent: u64, t0: u64) -> Generated {
    let mut rng = Rng::new(seed ^ session.wrapping_mul(0x2545_f491_4f6c_dd1d));
    let mut b = Builder {
        rng: &mut rng,
        session,
        next_span: 0,
        next_trace: 0,
        spans: Vec::new(),
        cut_trace: Vec::new(),
        cut_root: Vec::new(),
        cut_percent,
        cuts: 0,
        budget: target,
        resources: Vec::new(),
    };
    let mut t = t0;
    while b.budget > 0 {
        let end = t + 10_000_000_000;
        let root = b.push(None, "gateway", "POST /chat", SpanKind::Server, t, end, vec![], false);
        b.agent(root, "orchestrator", "orchestrator", 0, t + 1_000_000, end - 1_000_000);
        t = end + 1_000_000_000;
    }
    let original = b.spans.clone();
    let mut cut = b.spans;
    let trace_of: std::collections::HashMap<SpanId, TraceId> =
        cut.iter().enumerate().map(|(i, s)| (s.span_id, b.cut_trace[i])).collect();
    for (i, span) in cut.iter_mut().enumerate() {
        span.trace_id = b.cut_trace[i];
        if b.cut_root[i] {
            span.parent_span_id = None;
        }
        // A link carries the producer's context as it really was: in the cut
        // system, the producer's own (possibly new) trace.
        for link in &mut span.links {
            link.trace_id = trace_of.get(&link.span_id).copied().unwrap_or(link.trace_id);
        }
    }
    Generated { original, cut, cuts: b.cuts }
}

/// Removes what repair adds, so a repaired span can be compared with the original.
/// Removes what the doctor writes onto the connected view: repair marks and
/// agent rollups.
pub fn strip_repair_marks(span: &mut Span) {
    span.attributes.0.retain(|(k, _)| {
        !k.starts_with("agentrace.repair.") && !k.starts_with("app.agent.subtree.") && k != "app.agent.graph.depth"
    });
    for link in &mut span.links {
        link.attributes.0.retain(|(k, _)| !k.starts_with("agentrace.repair."));
    }
}

pub fn is_synthetic(span: &Span) -> bool {
    span.attributes.get("agentrace.synthetic") == Some(&Value::Bool(true))
}
