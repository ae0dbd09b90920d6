//! Recognising what a span is, under every naming convention in the field.
//!
//! First stop on the doctor's road: each span's attributes are read once,
//! in one pass, into `Facts` — its category (LLM call, tool call, …), its
//! session, agent, model, tokens, and the join keys repairs use. Everything
//! downstream reads facts, never attribute names, so a new convention is a
//! change to this file alone.
//!
//! Understood without configuration: the OpenTelemetry GenAI conventions
//! (current and legacy: `gen_ai.system`, `gen_ai.usage.prompt_tokens`, …),
//! the MCP and messaging conventions, OpenInference (`openinference.span.kind`,
//! `llm.token_count.*`, `llm.model_name`), OpenLLMetry/Traceloop
//! (`traceloop.span.kind`, `traceloop.entity.name`, `llm.usage.*`) and openlit
//! (which emits the GenAI names). Cache reads and reasoning tokens are read
//! under each of their names; as the GenAI conventions define them, they
//! are parts of the input and output counts, never added to them.

use std::borrow::{Borrow, Cow};
use std::collections::HashMap;
use std::num::NonZeroU32;

use agentrace_model::keys::{KeySet, Slot, marks};
use agentrace_model::{Span, SpanKind, StatusCode, Value};

use crate::assemble::FastHash;

/// What kind of work a span does. The same names serve the failure
/// categories of PRODUCT.md; time uses [`Category::Agent`] for
/// [`Category::Other`] and adds [`Category::Unexplained`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Category {
    /// A call to a language model (chat, completion, content generation).
    Llm,
    /// A tool call: `execute_tool`, MCP `tools/call`, a framework's tool span.
    Tool,
    /// Retrieval: vector or database queries, embeddings, rerankers.
    Retrieval,
    /// A hand-off between agents: messaging spans and queue transit.
    Handoff,
    /// Agent logic: agent, workflow and chain spans.
    Agent,
    /// Nothing recognised (plain HTTP, internal work without conventions).
    Other,
    /// Time on the critical path that no span explains (time only).
    Unexplained,
}

impl Category {
    /// The category this span's self time counts under.
    pub fn for_time(self) -> Category {
        match self {
            Category::Other => Category::Agent,
            c => c,
        }
    }

    /// The lowercase name, as in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Category::Llm => "llm",
            Category::Tool => "tool",
            Category::Retrieval => "retrieval",
            Category::Handoff => "handoff",
            Category::Agent => "agent",
            Category::Other => "other",
            Category::Unexplained => "unexplained",
        }
    }
}

/// What was wrong with a tool's output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BadOutput {
    /// Structured output that does not parse (truncated or malformed JSON).
    Malformed,
    /// The tool answered with an error payload (MCP `isError: true`, or an
    /// `error` member that says what went wrong).
    ErrorPayload,
    /// The tool answered with empty text. Unusable only where the same tool
    /// answered with structured output earlier in the request (see
    /// `failure.rs`). An empty JSON value (`[]`, `{}`, `null`) is an answer:
    /// a search that finds nothing, a lookup of something absent.
    Empty,
}

/// Whether a tool's output text claims to be JSON: it opens with `{"`, `{}`,
/// `[{`, `["`, `[[` or `[]`.
fn opens_like_json(t: &str) -> bool {
    let t = t.trim_start();
    let mut chars = t.chars();
    let first = chars.next();
    let next = chars.find(|c| !c.is_whitespace());
    matches!((first, next), (Some('{'), Some('"' | '}')) | (Some('['), Some('{' | '"' | '[' | ']')))
}

/// Whether a tool's output is empty text (also as a JSON string, `""`).
fn is_empty_output(t: &str) -> bool {
    matches!(t.trim(), "" | "\"\"")
}

/// Judges a tool's recorded output. Only text that opens like JSON (`{"`,
/// `[{`, `["`) is held to JSON's rules, so plain-text answers never count;
/// wrappers that carry the tool's text (`content`, `text`, `output`) are
/// looked into.
pub(crate) fn judge_output(text: &str) -> Option<BadOutput> {
    // `answer`: `v` is the tool's answer itself, or what a wrapper that
    // carries the answer holds (MCP's `content` items, LangChain's
    // `content`), not data inside it: an `error` member counts only there,
    // so a listing of failed jobs (`[{"job": "nightly", "error": "disk
    // full"}]`) is data, not the tool's failure.
    fn inner(v: &serde_json::Value, depth: usize, answer: bool) -> Option<BadOutput> {
        if depth > 6 {
            return None;
        }
        match v {
            serde_json::Value::Object(map) => {
                if map.get("isError").and_then(|e| e.as_bool()) == Some(true) {
                    return Some(BadOutput::ErrorPayload);
                }
                // `{"error": "…"}` or `{"error": {…}}`: a tool that caught its
                // failure and answered with it (an empty or null member is none).
                match map.get("error") {
                    Some(serde_json::Value::String(e)) if answer && !e.trim().is_empty() => {
                        return Some(BadOutput::ErrorPayload);
                    }
                    Some(serde_json::Value::Object(e)) if answer && !e.is_empty() => {
                        return Some(BadOutput::ErrorPayload);
                    }
                    _ => {}
                }
                for (key, carries_answer) in
                    [("content", true), ("text", true), ("output", true), ("result", false), ("data", false)]
                {
                    if let Some(found) = map.get(key).and_then(|x| inner(x, depth + 1, answer && carries_answer)) {
                        return Some(found);
                    }
                }
                None
            }
            // A list holds the answer's items, not the answer, unless they are
            // typed content blocks (MCP's `{"type": "text", "text": …}`).
            serde_json::Value::Array(items) => items
                .iter()
                .take(16)
                .find_map(|x| inner(x, depth + 1, answer && x.get("type").is_some_and(|t| t.is_string()))),
            serde_json::Value::String(s) if opens_like_json(s) => match serde_json::from_str(s) {
                Ok(v) => inner(&v, depth + 1, answer),
                Err(_) => Some(BadOutput::Malformed),
            },
            _ => None,
        }
    }
    if text.len() > 1 << 20 || !opens_like_json(text) {
        return None;
    }
    match serde_json::from_str::<serde_json::Value>(text) {
        Ok(v) => inner(&v, 0, true),
        Err(_) => Some(BadOutput::Malformed),
    }
}

/// A RabbitMQ destination as a consumer names it. aio-pika's
/// instrumentation names a publish's destination `{exchange},{routing key}`
/// (`,research` on the default exchange, which routes by queue name) and a
/// delivery's by its queue (`research`); pika's names both by routing key
/// or queue. The routing key is what both sides share on the default
/// exchange and on a direct binding of the queue's own name.
fn amqp_queue(destination: Cow<'_, str>) -> Cow<'_, str> {
    match destination.split_once(',') {
        Some((_, key)) if !key.is_empty() => Cow::Owned(key.to_owned()),
        _ => destination,
    }
}

/// An AutoGen address, as autogen-core writes it into `messaging.destination`
/// and its span names: an agent `{type}.({key})-A` or a topic
/// `{type}.({source})-T`. A message published to a topic is delivered to
/// each subscribed agent under the key that is the topic's source (the
/// default `TypeSubscription`), so a delivery to `writer.(s1)-A` and a
/// publish to `drafting.(s1)-T` can be one message: their keys agree,
/// though which agent types subscribe to which topics is nowhere in the
/// spans. Returns the key and whether it is an agent's (`-A`).
pub(crate) fn autogen_address_key(address: &str) -> Option<(&str, bool)> {
    let (rest, agent) = match address.strip_suffix(")-A") {
        Some(rest) => (rest, true),
        None => (address.strip_suffix(")-T")?, false),
    };
    let (kind, key) = rest.split_once(".(")?;
    (!kind.is_empty() && !key.is_empty()).then_some((key, agent))
}

/// Whether an AutoGen agent type is an autogen-agentchat team member's,
/// `{name}_{team UUID}` (`researcher_225020b8-bc04-47e8-9d75-ab56b7440e3d`).
fn has_team_id(agent_type: &str) -> bool {
    agent_type.rsplit_once('_').is_some_and(|(_, id)| {
        id.len() == 36
            && id
                .chars()
                .enumerate()
                .all(|(i, c)| if matches!(i, 8 | 13 | 18 | 23) { c == '-' } else { c.is_ascii_hexdigit() })
    })
}

/// Which convention named an agent, as the agent graph reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AgentSource {
    /// OpenTelemetry GenAI: `gen_ai.agent.name` on an agent span.
    GenAi,
    /// pydantic-ai's own `agent_name`.
    PydanticAi,
    /// OpenInference: an AGENT span, `graph.node.id`.
    #[serde(rename = "openinference")]
    OpenInference,
    /// A LangGraph node (`metadata.langgraph_node`).
    #[serde(rename = "langgraph")]
    LangGraph,
    /// OpenLLMetry/Traceloop: `traceloop.span.kind = agent` and its entity name.
    Traceloop,
    /// The span name (`invoke_agent {name}`), no attribute.
    SpanName,
    /// autogen-core's runtime: the agent type a delivered message's
    /// CONSUMER span names as its recipient (`recipient_agent_type`).
    #[serde(rename = "autogen")]
    AutoGen,
    /// No agent named: the service stands for it.
    Service,
}

/// A text that spans carried (a session ID, a message ID, a model name),
/// interned: equal texts get equal symbols, so everything downstream
/// compares and indexes small integers instead of strings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct Sym(NonZeroU32);

impl Sym {
    /// Position in [`Texts`], dense from zero.
    pub fn index(self) -> usize {
        self.0.get() as usize - 1
    }
}

/// The interned texts of one analysis. Texts borrow from the spans; only
/// values that are not strings (an integer `jsonrpc.request.id`) are owned.
/// A network address as spans write it under any HTTP/RPC convention
/// (`server.address` + `server.port`, `url.full`, the older `http.url`,
/// `http.host`, `net.peer.*` on clients and `net.host.*` on servers).
/// Loopback names are one host, since a client that dials `localhost`
/// reaches a server that reports `127.0.0.1`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Address {
    pub host: Option<Sym>,
    pub port: Option<u16>,
}

impl Address {
    /// Whether two spans name the same server: the ports agree where both
    /// are known, the hosts where both are known, and at least one of them
    /// is known on both sides.
    pub fn matches(self, other: Address) -> bool {
        let port = match (self.port, other.port) {
            (Some(a), Some(b)) => Some(a == b),
            _ => None,
        };
        let host = match (self.host, other.host) {
            (Some(a), Some(b)) => Some(a == b),
            _ => None,
        };
        match (host, port) {
            (None, None) => false,
            (h, p) => h.unwrap_or(true) && p.unwrap_or(true),
        }
    }
}

#[derive(Debug, Default)]
pub(crate) struct Texts<'a> {
    list: Vec<Cow<'a, str>>,
    ids: HashMap<Cow<'a, str>, Sym, FastHash>,
    /// The last few texts interned: neighbouring spans repeat the same
    /// session, agent and model, and a compare is cheaper than a hash.
    recent: [Option<Sym>; 4],
    next_recent: usize,
}

impl<'a> Texts<'a> {
    pub fn intern(&mut self, text: Cow<'a, str>) -> Sym {
        for sym in self.recent.iter().flatten() {
            if self.list[sym.index()] == text {
                return *sym;
            }
        }
        let sym = self.lookup_or_insert(text);
        self.recent[self.next_recent] = Some(sym);
        self.next_recent = (self.next_recent + 1) % self.recent.len();
        sym
    }

    fn lookup_or_insert(&mut self, text: Cow<'a, str>) -> Sym {
        if let Some(&sym) = self.ids.get(text.as_ref()) {
            return sym;
        }
        // More than four billion distinct texts cannot occur: spans are
        // capped below that, and each carries a handful.
        let sym = Sym(u32::try_from(self.list.len() + 1).ok().and_then(NonZeroU32::new).unwrap_or(NonZeroU32::MAX));
        self.list.push(text.clone());
        self.ids.insert(text, sym);
        sym
    }

    pub fn get(&self, sym: Sym) -> &str {
        self.list.get(sym.index()).map_or("", |t| t.as_ref())
    }

    /// The text of an optional symbol.
    pub fn opt(&self, sym: Option<Sym>) -> Option<&str> {
        sym.map(|s| self.get(s))
    }

    pub fn len(&self) -> usize {
        self.list.len()
    }
}

/// What the doctor knows about one span after reading its attributes once:
/// small and `Copy`, with every text interned in [`Texts`].
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Facts {
    pub category: Option<Category>,
    pub error: bool,
    pub synthetic: bool,
    pub session: Option<Sym>,
    /// The session came from `gen_ai.conversation.id` alone.
    pub session_is_conversation: bool,
    pub agent_name: Option<Sym>,
    /// Which convention named the agent.
    pub agent_source: Option<AgentSource>,
    /// The agent a graph framework says handed work to this one
    /// (OpenInference `graph.node.parent_id`).
    pub graph_parent: Option<Sym>,
    /// The graph node this node span routed to next (LangGraph `goto`), or
    /// the agent a hand-off span names as its target
    /// (`gen_ai.handoff.to_agent`, when known).
    pub routes_to: Option<Sym>,
    /// A hand-off span: its agent handed the conversation to another
    /// (`gen_ai.operation.name` or `traceloop.span.kind` `handoff`, the
    /// OpenAI Agents SDK under OpenLLMetry).
    pub hands_off: bool,
    /// An autogen-agentchat team's delivery (a `{name}_{team id}` agent
    /// type, the group chat manager's included): a turn the team routes,
    /// so what runs under it is no work of the agent that sent it.
    pub team_turn: bool,
    /// A tool span whose recorded output is unusable: JSON that does not
    /// parse, or an MCP result flagged `isError`, though the span itself
    /// recorded no error.
    pub bad_output: Option<BadOutput>,
    /// A tool span whose recorded output is structured (JSON that parses and
    /// holds something): a later empty answer of the same tool is unusable.
    pub structured_output: bool,
    /// A model call the model refused or a content filter stopped
    /// (`finish_reasons` of `content_filter`, a `refusal` in the output).
    pub refused: bool,
    pub model: Option<Sym>,
    pub input_tokens: Option<i64>,
    pub output_tokens: Option<i64>,
    /// Input tokens read from a prompt cache, counted inside `input_tokens`.
    pub cached_input_tokens: Option<i64>,
    /// Input tokens written to a prompt cache, counted inside `input_tokens`.
    pub cache_write_input_tokens: Option<i64>,
    /// Output tokens spent on reasoning, counted inside `output_tokens`.
    pub reasoning_tokens: Option<i64>,
    pub message_id: Option<Sym>,
    /// A message's correlation ID besides a message ID that differs
    /// ([`agentrace_model::keys::KeySet::correlation`]).
    pub correlation_id: Option<Sym>,
    /// Where a message went or came from; for RabbitMQ, the routing key
    /// (see [`amqp_queue`]).
    pub destination: Option<Sym>,
    pub mcp_session: Option<Sym>,
    pub jsonrpc_id: Option<Sym>,
    pub tool_call_id: Option<Sym>,
    pub tool_name: Option<Sym>,
    pub peer_service: Option<Sym>,
    /// The server's address as this span names it: the target of a CLIENT
    /// span, the listening address of a SERVER span (host normalised, see
    /// [`Address`]).
    pub address: Option<Address>,
    pub rpc_service: Option<Sym>,
    /// HTTP method and path, for telling one call to a server from another
    /// (a health probe from the request a client is waiting on).
    pub http_method: Option<Sym>,
    pub http_path: Option<Sym>,
    /// The HTTP client library that sent the request, as far as the span
    /// says: a server's `User-Agent`, a client's own recorded one, else the
    /// library its CLIENT span's instrumentation scope instruments (see
    /// [`HTTP_CLIENTS`]). None when nothing names a known library (a custom
    /// agent string, a scope that wraps no one library).
    pub http_client: Option<&'static str>,
    pub mcp_method: Option<Sym>,
    pub error_type: Option<Sym>,
    pub error_message: Option<Sym>,
}

impl Facts {
    pub fn category(&self) -> Category {
        self.category.unwrap_or(Category::Other)
    }

    /// Whether the error looks like a step that could not use its input:
    /// a parse, decode or validation failure.
    pub fn is_parse_error(&self, texts: &Texts, name: &str) -> bool {
        const MARKERS: [&str; 10] = [
            "parse",
            "json",
            "decode",
            "validat",
            "schema",
            "pydantic",
            "deserial",
            "malformed",
            "syntax",
            "unexpected token",
        ];
        let found = [texts.opt(self.error_type), texts.opt(self.error_message), Some(name)];
        found.iter().flatten().any(|t| {
            let lower = t.to_ascii_lowercase();
            MARKERS.iter().any(|m| lower.contains(m))
        })
    }
}

fn text(value: &Value) -> Option<Cow<'_, str>> {
    match value {
        Value::Str(s) if s.is_empty() => None,
        Value::Str(s) => Some(Cow::Borrowed(s.as_str())),
        Value::Int(_) | Value::Double(_) | Value::Bool(_) => Some(Cow::Owned(value.to_text())),
        _ => None,
    }
}

/// Keeps the first value seen for a slot whose sources rank equally, and
/// lets a better-ranked source replace a worse one: `rank` is 0 for the
/// current convention, higher for legacy names.
fn put<'a>(slot: &mut Option<(u8, Cow<'a, str>)>, rank: u8, value: Option<Cow<'a, str>>) {
    if let Some(v) = value
        && slot.as_ref().is_none_or(|(r, _)| rank < *r)
    {
        *slot = Some((rank, v));
    }
}

fn put_i64(slot: &mut Option<(u8, i64)>, rank: u8, value: &Value) {
    if let Some(v) = value.as_i64()
        && slot.as_ref().is_none_or(|(r, _)| rank < *r)
    {
        *slot = Some((rank, v));
    }
}

/// The texts of [`Facts`] before interning.
#[derive(Default)]
struct Raw<'a> {
    peer_service: Option<Cow<'a, str>>,
    rpc_service: Option<Cow<'a, str>>,
    error_type: Option<Cow<'a, str>>,
    error_message: Option<Cow<'a, str>>,
}

/// An agent's name from an agent span's name: smolagents (through
/// OpenInference) names it `{agent}.run`.
fn agent_of_span_name(name: &str) -> Option<&str> {
    [".run", ".arun", ".invoke", ".ainvoke", ".__call__"].iter().find_map(|suffix| name.strip_suffix(suffix))
}

/// Whether a finish reason says the model refused or a filter stopped it.
fn finish_reason_refused(value: &Value) -> bool {
    let refused = |t: &str| matches!(t, "content_filter" | "refusal");
    match value {
        Value::Str(t) => refused(t),
        Value::Array(items) => items.iter().any(|v| v.as_str().is_some_and(refused)),
        _ => false,
    }
}

/// Whether a model's recorded output (OpenInference `output.value`) holds
/// a refusal: a non-empty `refusal` field anywhere in it.
fn output_has_refusal(text: &str) -> bool {
    fn walk(v: &serde_json::Value, depth: usize) -> bool {
        match v {
            _ if depth > 8 => false,
            serde_json::Value::Object(map) => map
                .iter()
                .any(|(k, v)| (k == "refusal" && v.as_str().is_some_and(|r| !r.is_empty())) || walk(v, depth + 1)),
            serde_json::Value::Array(items) => items.iter().any(|v| walk(v, depth + 1)),
            _ => false,
        }
    }
    text.contains("\"refusal\"")
        && text.len() <= 1 << 20
        && serde_json::from_str::<serde_json::Value>(text).is_ok_and(|v| walk(&v, 0))
}

/// `langgraph_node` of OpenInference's `metadata` JSON.
fn langgraph_node(metadata: &str) -> Option<String> {
    let v: serde_json::Value = serde_json::from_str(metadata).ok()?;
    v.get("langgraph_node")?.as_str().map(str::to_owned)
}

fn port(value: &Value) -> Option<u16> {
    value.as_i64().and_then(|p| u16::try_from(p).ok()).or_else(|| value.as_str().and_then(|s| s.trim().parse().ok()))
}

/// The address attributes of one span, before a convention is chosen.
#[derive(Default)]
struct AddressParts<'a> {
    server_host: Option<&'a str>,
    server_port: Option<u16>,
    url: Option<&'a str>,
    peer_host: Option<&'a str>,
    peer_port: Option<u16>,
    host_host: Option<&'a str>,
    host_port: Option<u16>,
    http_host: Option<&'a str>,
}

impl<'a> AddressParts<'a> {
    /// The server's (host, port): the current convention first, then a
    /// URL, then the older `net.*` names that mean the far side on a client
    /// and the near side on a server.
    fn resolve(&self, kind: SpanKind) -> Option<(Option<Cow<'a, str>>, Option<u16>)> {
        let url = self.url.and_then(split_url);
        let (old_host, old_port) = match kind {
            SpanKind::Server | SpanKind::Consumer => {
                let http_host = self.http_host.map(split_host_port);
                (self.host_host.or(http_host.and_then(|h| h.0)), self.host_port.or(http_host.and_then(|h| h.1)))
            }
            _ => (self.peer_host, self.peer_port),
        };
        // Some instrumentations (the ASGI one) write `host:port` into
        // `server.address`.
        let server = self.server_host.map(split_host_port);
        let host = server.and_then(|s| s.0).or(url.and_then(|u| u.0)).or(old_host);
        let port = self.server_port.or(server.and_then(|s| s.1)).or(url.and_then(|u| u.1)).or(old_port);
        if host.is_none() && port.is_none() {
            return None;
        }
        Some((host.map(normalise_host), port))
    }
}

/// A request target without its query or fragment.
fn strip_query(target: &str) -> &str {
    target.split(['?', '#']).next().unwrap_or(target)
}

/// A URL's path (`/` when it has none).
fn url_path(url: &str) -> Option<&str> {
    let (_, rest) = url.split_once("://")?;
    let path = rest.find('/').map_or("/", |i| &rest[i..]);
    Some(strip_query(path))
}

/// `host[:port]` (IPv6 in brackets) into its parts.
fn split_host_port(text: &str) -> (Option<&str>, Option<u16>) {
    let text = text.trim();
    if let Some(rest) = text.strip_prefix('[') {
        let (host, tail) = rest.split_once(']').unwrap_or((rest, ""));
        return (Some(host).filter(|h| !h.is_empty()), tail.strip_prefix(':').and_then(|p| p.parse().ok()));
    }
    match text.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') => (Some(h).filter(|h| !h.is_empty()), p.parse().ok()),
        _ => (Some(text).filter(|h| !h.is_empty()), None),
    }
}

/// A URL's host and port (the scheme's default port when none is written).
fn split_url(url: &str) -> Option<(Option<&str>, Option<u16>)> {
    let (scheme, rest) = url.split_once("://")?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let authority = authority.rsplit_once('@').map_or(authority, |(_, a)| a);
    let (host, port) = split_host_port(authority);
    let default = match scheme.to_ascii_lowercase().as_str() {
        "http" | "ws" => Some(80),
        "https" | "wss" => Some(443),
        _ => None,
    };
    Some((host, port.or(default)))
}

/// Lowercase, and every loopback name as one.
fn normalise_host(host: &str) -> Cow<'_, str> {
    let lower = host.trim().trim_end_matches('.');
    match lower.to_ascii_lowercase().as_str() {
        "localhost" | "127.0.0.1" | "::1" | "0.0.0.0" | "::" | "ip6-localhost" => Cow::Borrowed("loopback"),
        l if l == lower => Cow::Borrowed(lower),
        l => Cow::Owned(l.to_owned()),
    }
}

/// The tool call IDs a model call asked for, read from its output messages
/// when the redaction policy kept them: `gen_ai.output.messages` (GenAI
/// parts of type `tool_call`, or OpenAI-style `tool_calls`) and
/// OpenInference's flattened `llm.output_messages.*.tool_calls.*.tool_call.id`.
pub(crate) fn output_tool_call_ids(span: &Span) -> Vec<String> {
    fn walk(v: &serde_json::Value, out: &mut Vec<String>, depth: usize) {
        if depth > 8 || out.len() >= 64 {
            return;
        }
        match v {
            serde_json::Value::Array(items) => items.iter().for_each(|i| walk(i, out, depth + 1)),
            serde_json::Value::Object(map) => {
                let is_call = map.get("type").and_then(|t| t.as_str()) == Some("tool_call");
                if let (true, Some(id)) = (is_call, map.get("id").and_then(|i| i.as_str())) {
                    out.push(id.to_owned());
                }
                if let Some(calls) = map.get("tool_calls").and_then(|c| c.as_array()) {
                    out.extend(calls.iter().filter_map(|c| c.get("id")?.as_str().map(str::to_owned)));
                }
                for (key, value) in map {
                    if key != "tool_calls" {
                        walk(value, out, depth + 1);
                    }
                }
            }
            _ => {}
        }
    }
    let mut out = Vec::new();
    for (key, value) in span.attributes.iter() {
        if key == "gen_ai.output.messages"
            && let Some(text) = value.as_str()
            && text.len() <= 1 << 20
            && let Ok(v) = serde_json::from_str::<serde_json::Value>(text)
        {
            walk(&v, &mut out, 0);
        } else if key.starts_with("llm.output_messages.")
            && key.ends_with(".tool_call.id")
            && let Some(id) = value.as_str()
        {
            out.push(id.to_owned());
        }
    }
    out.sort_unstable();
    out.dedup();
    out
}

/// What some spans add up to, under any of the naming conventions the
/// doctor reads: for callers that summarise spans without a full analysis
/// (the collector's trace list).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct UsageTotals {
    /// LLM calls.
    pub llm_calls: u64,
    /// Input (prompt) tokens of LLM calls.
    pub input_tokens: u64,
    /// Output (completion) tokens of LLM calls.
    pub output_tokens: u64,
    /// Input tokens of LLM calls read from a prompt cache (inside `input_tokens`).
    pub cached_input_tokens: u64,
    /// Input tokens of LLM calls written to a prompt cache (inside `input_tokens`).
    pub cache_write_input_tokens: u64,
    /// Output tokens of LLM calls spent on reasoning (inside `output_tokens`).
    pub reasoning_tokens: u64,
    /// Cost of LLM calls whose model has a price, USD.
    pub cost_usd: f64,
    /// Agents named (`gen_ai.agent.name`, `agent.name`), sorted.
    pub agents: std::collections::BTreeSet<String>,
    /// Models of the LLM calls (the response's model, else the request's), sorted.
    pub models: std::collections::BTreeSet<String>,
    /// The first session named (`session.id`, `gen_ai.conversation.id`, …).
    pub session: Option<String>,
    /// Spans that record an error.
    pub errors: u64,
}

/// The token counts of one call, as the doctor adds them up: never
/// negative, and the cached and reasoning parts never more than the counts
/// they are part of.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Usage {
    pub input: u64,
    pub output: u64,
    pub cached_input: u64,
    pub cache_write_input: u64,
    pub reasoning: u64,
}

impl Usage {
    pub fn of(f: &Facts) -> Usage {
        let count = |v: Option<i64>| v.unwrap_or(0).max(0) as u64;
        let (input, output) = (count(f.input_tokens), count(f.output_tokens));
        let cached_input = count(f.cached_input_tokens).min(input);
        Usage {
            input,
            output,
            cached_input,
            cache_write_input: count(f.cache_write_input_tokens).min(input - cached_input),
            reasoning: count(f.reasoning_tokens).min(output),
        }
    }
}

/// Adds up LLM usage, agents and errors over `spans`, reading each once.
pub fn usage_totals<S: Borrow<Span>>(spans: &[S], prices: &crate::PriceTable) -> UsageTotals {
    let mut texts = Texts::default();
    let mut sum = Totaller::default();
    for span in spans {
        let f = read(span.borrow(), &mut texts);
        sum.add(&f, &texts, prices);
    }
    sum.finish(&texts)
}

/// The one way facts add up to [`UsageTotals`]: over spans read for the purpose
/// ([`usage_totals`]) or over the facts a diagnosis read already (the live
/// pipeline's trace rows, without reading each span a second time).
#[derive(Default)]
pub(crate) struct Totaller {
    totals: UsageTotals,
    agents: Vec<Sym>,
}

impl Totaller {
    pub fn add(&mut self, f: &Facts, texts: &Texts, prices: &crate::PriceTable) {
        let t = &mut self.totals;
        if f.category == Some(Category::Llm) {
            let u = Usage::of(f);
            t.llm_calls += 1;
            t.input_tokens += u.input;
            t.output_tokens += u.output;
            t.cached_input_tokens += u.cached_input;
            t.cache_write_input_tokens += u.cache_write_input;
            t.reasoning_tokens += u.reasoning;
            if let Some(m) = texts.opt(f.model) {
                t.cost_usd +=
                    prices.call_cost(m, u.input, u.cached_input, u.cache_write_input, u.output).map_or(0.0, |c| c.usd);
                if !t.models.contains(m) {
                    t.models.insert(m.to_owned());
                }
            }
        }
        t.errors += u64::from(f.error);
        if let Some(a) = f.agent_name
            && !self.agents.contains(&a)
        {
            self.agents.push(a);
        }
        if t.session.is_none() {
            t.session = texts.opt(f.session).map(str::to_owned);
        }
    }

    pub fn finish(mut self, texts: &Texts) -> UsageTotals {
        self.totals.agents = self.agents.into_iter().map(|a| texts.get(a).to_owned()).collect();
        self.totals
    }
}

/// Reads a span's attributes and events once into [`Facts`], interning
/// their texts into `texts`.
pub(crate) fn read<'a>(span: &'a Span, texts: &mut Texts<'a>) -> Facts {
    let mut operation: Option<&str> = None;
    let mut oi_kind: Option<&str> = None;
    let mut tl_kind: Option<&str> = None;
    let mut tl_entity: Option<&str> = None;
    let mut mcp_method: Option<&str> = None;
    let mut llm_hint = false;
    let mut messaging = false;
    let mut rabbitmq = false;
    let mut database = false;
    let mut keys = KeySet::new();
    let mut agent = None;
    let mut agent_id = None;
    let mut model = None;
    let mut input = None;
    let mut output = None;
    let mut cached = None;
    let mut cache_write = None;
    let mut reasoning = None;
    let mut tool_name = None;
    let mut destination = None;
    let mut pydantic_agent: Option<&str> = None;
    let mut handoff_to: Option<&str> = None;
    let mut autogen_recipient: Option<&str> = None;
    let mut oi_node: Option<&str> = None;
    let mut oi_parent: Option<&str> = None;
    let mut metadata: Option<&str> = None;
    let mut output_value: Option<&str> = None;
    let mut tool_output: Option<&str> = None;
    let mut http_method = None;
    let mut http_path: Option<(u8, Cow<'a, str>)> = None;
    let mut user_agent: Option<(u8, Cow<'a, str>)> = None;
    let mut finish_refused = false;
    // Address parts, by convention: (host, port) of `server.*`, of a URL,
    // of `net.peer.*` (a client's target), of `net.host.*` / `http.host`
    // (a server's own address).
    let mut addr = AddressParts::default();
    let mut f = Facts::default();
    let mut raw = Raw::default();

    for (key, value) in span.attributes.iter() {
        match key {
            "gen_ai.operation.name" => operation = value.as_str(),
            "openinference.span.kind" => oi_kind = value.as_str(),
            "traceloop.span.kind" => tl_kind = value.as_str(),
            "traceloop.entity.name" => tl_entity = value.as_str(),
            "mcp.method.name" => mcp_method = value.as_str(),
            "gen_ai.provider.name" | "gen_ai.system" | "llm.provider" | "llm.system" => llm_hint = true,
            "gen_ai.response.model" => put(&mut model, 0, text(value)),
            "gen_ai.request.model" => put(&mut model, 1, text(value)),
            "llm.model_name" | "llm.response.model" => put(&mut model, 2, text(value)),
            "llm.request.model" => put(&mut model, 3, text(value)),
            "gen_ai.usage.input_tokens" => put_i64(&mut input, 0, value),
            "gen_ai.usage.prompt_tokens" => put_i64(&mut input, 1, value),
            "llm.token_count.prompt" => put_i64(&mut input, 2, value),
            "llm.usage.prompt_tokens" => put_i64(&mut input, 3, value),
            "gen_ai.usage.output_tokens" => put_i64(&mut output, 0, value),
            "gen_ai.usage.completion_tokens" => put_i64(&mut output, 1, value),
            "llm.token_count.completion" => put_i64(&mut output, 2, value),
            "llm.usage.completion_tokens" => put_i64(&mut output, 3, value),
            // Cache reads and reasoning: the GenAI names, OpenLLMetry's,
            // OpenInference's, and Sentry's.
            "gen_ai.usage.cache_read.input_tokens" => put_i64(&mut cached, 0, value),
            "gen_ai.usage.cache_read_input_tokens" => put_i64(&mut cached, 1, value),
            "llm.token_count.prompt_details.cache_read" => put_i64(&mut cached, 2, value),
            "gen_ai.usage.input_tokens.cached" => put_i64(&mut cached, 3, value),
            "gen_ai.usage.cache_creation.input_tokens" => put_i64(&mut cache_write, 0, value),
            "gen_ai.usage.cache_creation_input_tokens" => put_i64(&mut cache_write, 1, value),
            "llm.token_count.prompt_details.cache_write" => put_i64(&mut cache_write, 2, value),
            "gen_ai.usage.input_tokens.cache_write" => put_i64(&mut cache_write, 3, value),
            "gen_ai.usage.reasoning.output_tokens" => put_i64(&mut reasoning, 0, value),
            "gen_ai.usage.reasoning_tokens" => put_i64(&mut reasoning, 1, value),
            "llm.token_count.completion_details.reasoning" => put_i64(&mut reasoning, 2, value),
            "gen_ai.usage.output_tokens.reasoning" => put_i64(&mut reasoning, 3, value),
            "gen_ai.agent.name" => put(&mut agent, 0, text(value)),
            "agent.name" => put(&mut agent, 1, text(value)),
            "gen_ai.agent.id" => agent_id = text(value),
            "agent_name" => pydantic_agent = value.as_str(),
            "gen_ai.handoff.to_agent" => handoff_to = value.as_str(),
            "recipient_agent_type" => autogen_recipient = value.as_str(),
            "graph.node.id" => oi_node = value.as_str(),
            "graph.node.parent_id" => oi_parent = value.as_str(),
            "metadata" => metadata = value.as_str(),
            "output.value" => output_value = value.as_str(),
            "gen_ai.response.finish_reasons" | "llm.finish_reason" => {
                finish_refused = finish_reason_refused(value);
            }
            "gen_ai.tool.call.result" | "traceloop.entity.output" | "mcp.response.value" => {
                tool_output = tool_output.or(value.as_str())
            }
            "messaging.destination.name" => put(&mut destination, 0, text(value)),
            "messaging.destination" => put(&mut destination, 1, text(value)),
            "messaging.system" => {
                messaging = true;
                rabbitmq = value.as_str() == Some("rabbitmq");
            }
            "gen_ai.tool.name" => put(&mut tool_name, 0, text(value)),
            "mcp.tool.name" => put(&mut tool_name, 1, text(value)),
            "tool.name" => put(&mut tool_name, 2, text(value)),
            "peer.service" => raw.peer_service = text(value),
            "rpc.service" => raw.rpc_service = text(value),
            "server.address" => addr.server_host = value.as_str(),
            "server.port" => addr.server_port = port(value),
            "url.full" => addr.url = value.as_str().or(addr.url),
            "http.url" => addr.url = addr.url.or(value.as_str()),
            "net.peer.name" => addr.peer_host = value.as_str(),
            "net.peer.port" => addr.peer_port = port(value),
            "net.host.name" => addr.host_host = value.as_str(),
            "net.host.port" => addr.host_port = port(value),
            "http.host" => addr.http_host = value.as_str(),
            "http.request.method" => put(&mut http_method, 0, text(value)),
            "http.method" => put(&mut http_method, 1, text(value)),
            "url.path" => put(&mut http_path, 0, text(value)),
            "http.target" => put(&mut http_path, 1, value.as_str().map(|t| Cow::Borrowed(strip_query(t)))),
            "user_agent.original" => put(&mut user_agent, 0, text(value)),
            "http.user_agent" => put(&mut user_agent, 1, text(value)),
            "db.system" | "db.system.name" => database = true,
            "error.type" => {
                f.error = true;
                raw.error_type = text(value);
            }
            marks::SYNTHETIC => f.synthetic = value.as_bool().unwrap_or(false),
            // Session and join keys: the one vocabulary every path shares.
            _ => keys.offer(key, || text(value)),
        }
    }
    if span.status_code == StatusCode::Error {
        f.error = true;
        if !span.status_message.is_empty() {
            raw.error_message = Some(Cow::Borrowed(span.status_message.as_str()));
        }
    }
    for event in &span.events {
        if event.name == "exception" {
            f.error = true;
            if raw.error_message.is_none() {
                raw.error_message = event.attributes.get("exception.message").and_then(text);
            }
            if let Some(t) = event.attributes.get("exception.type").and_then(text) {
                raw.error_type = Some(t);
            }
        }
    }

    let name = span.name.as_str();
    let category = classify(
        span.kind,
        operation,
        oi_kind,
        tl_kind,
        mcp_method,
        llm_hint || model.is_some(),
        messaging,
        database,
        name,
    );
    let mut source = agent.as_ref().map(|_| AgentSource::GenAi);
    // pydantic-ai writes the caller's name into `gen_ai.agent.name` on a
    // nested agent run and its own in `agent_name`: its own wins.
    if let Some(own) = pydantic_agent.filter(|a| !a.is_empty())
        && category == Category::Agent
    {
        agent = Some((0, Cow::Borrowed(own)));
        source = Some(AgentSource::PydanticAi);
    }
    // A LangGraph node's own span: its name is the node's.
    let node = metadata.filter(|m| m.contains("langgraph_node")).and_then(langgraph_node);
    if let Some(node) = node
        && node == name
        && !node.starts_with("__")
        && agent.is_none()
    {
        agent = Some((0, Cow::Owned(node)));
        source = Some(AgentSource::LangGraph);
        f.routes_to = output_value
            .filter(|o| o.contains("goto"))
            .and_then(|o| serde_json::from_str::<serde_json::Value>(o).ok())
            .and_then(|v| v.get("goto").and_then(|g| g.as_str()).map(str::to_owned))
            .map(|g| texts.intern(Cow::Owned(g)));
    }
    f.hands_off = [operation, tl_kind].iter().flatten().any(|k| k.eq_ignore_ascii_case("handoff"));
    if f.hands_off
        && let Some(to) = handoff_to.filter(|t| !t.is_empty() && !t.eq_ignore_ascii_case("unknown"))
    {
        f.routes_to = Some(texts.intern(Cow::Borrowed(to)));
    }
    let oi_agent = oi_kind.is_some_and(|k| k.eq_ignore_ascii_case("AGENT"));
    // An OpenInference AGENT span is named by `graph.node.id`, or by a span
    // name of the form `{agent}.run` (smolagents); an AGENT span named after
    // the workflow (the Agents SDK's trace span) names no agent.
    if agent.is_none()
        && oi_agent
        && let Some(id) = oi_node.or_else(|| agent_of_span_name(name)).filter(|n| !n.is_empty())
    {
        agent = Some((0, Cow::Borrowed(id)));
        source = Some(AgentSource::OpenInference);
    }
    if oi_agent && let Some((_, me)) = &agent {
        f.graph_parent =
            oi_parent.filter(|p| !p.is_empty() && *p != me.as_ref()).map(|p| texts.intern(Cow::Borrowed(p)));
    }
    if agent.is_none() && category == Category::Agent {
        // Traceloop names agents by entity; GenAI span names are
        // `invoke_agent {name}` when the attribute is missing.
        if tl_kind == Some("agent") {
            agent = tl_entity.map(|e| (4, Cow::Borrowed(e)));
            source = agent.as_ref().map(|_| AgentSource::Traceloop);
        } else if let Some(rest) = name.strip_prefix("invoke_agent ").or_else(|| name.strip_prefix("create_agent ")) {
            agent = Some((5, Cow::Borrowed(rest.trim())));
            source = Some(AgentSource::SpanName);
        }
    }
    // autogen-core delivers each message to an agent in a CONSUMER span
    // that names the recipient's type (its gRPC runtime only in the span
    // name, `autogen process {type}.({key})-A`): that agent's work is under it.
    let autogen_recipient = autogen_recipient.or_else(|| {
        name.strip_prefix("autogen process ")
            .filter(|d| autogen_address_key(d).is_some_and(|(_, agent)| agent))
            .and_then(|d| d.split_once(".("))
            .map(|(agent_type, _)| agent_type)
    });
    // autogen-agentchat runs a team on the same runtime, its agents typed
    // `{name}_{team id}` and its group chat manager routing the turns: a
    // delivery there is a turn, not a delegation, and its agents name
    // themselves on their own `invoke_agent` spans.
    f.team_turn = span.kind == SpanKind::Consumer && autogen_recipient.is_some_and(has_team_id);
    let autogen_recipient = autogen_recipient.filter(|r| !has_team_id(r));
    if agent.is_none()
        && span.kind == SpanKind::Consumer
        && let Some(recipient) = autogen_recipient.filter(|r| !r.is_empty())
    {
        agent = Some((6, Cow::Borrowed(recipient)));
        source = Some(AgentSource::AutoGen);
    }
    // Only an ID (`gen_ai.agent.id`) on an agent span, nothing else naming
    // the agent (not even its span's name): the ID names it.
    if agent.is_none()
        && category == Category::Agent
        && let Some(id) = agent_id.filter(|i: &Cow<str>| !i.is_empty())
    {
        agent = Some((7, id));
        source = Some(AgentSource::GenAi);
    }
    f.agent_source = source.filter(|_| agent.is_some());
    if category == Category::Llm {
        f.refused = finish_refused || output_value.is_some_and(output_has_refusal);
    }
    if matches!(category, Category::Tool | Category::Retrieval) && !f.error {
        let output = tool_output.or(output_value);
        f.bad_output = output.and_then(judge_output);
        if f.bad_output.is_none() {
            f.structured_output = output.is_some_and(|t| opens_like_json(t) && !is_empty_output(t));
            f.bad_output = output.filter(|t| is_empty_output(t)).map(|_| BadOutput::Empty);
        }
    }
    if tool_name.is_none() && category == Category::Tool {
        // The `mcp` SDK names its client span `MCP send tools/call {tool}`
        // and records the tool nowhere else.
        let rest = name
            .strip_prefix("execute_tool ")
            .or_else(|| name.strip_prefix("tools/call "))
            .or_else(|| name.strip_prefix("MCP send tools/call "));
        tool_name = rest.map(|r| (5, Cow::Borrowed(r.trim()))).or_else(|| tl_entity.map(|e| (6, Cow::Borrowed(e))));
    }
    let address = addr.resolve(span.kind);
    if let Some(url) = addr.url {
        put(&mut http_path, 2, url_path(url).map(Cow::Borrowed));
    }
    f.address = address.map(|(host, port)| Address { host: host.map(|h| texts.intern(h)), port });
    let mut intern = |t: Option<Cow<'a, str>>| t.map(|t| texts.intern(t));
    f.category = Some(category);
    f.session_is_conversation = keys.get(Slot::Session).is_none() && keys.get(Slot::Conversation).is_some();
    f.session = intern(keys.take(Slot::Session).or_else(|| keys.take(Slot::Conversation)));
    f.agent_name = intern(agent.map(|(_, v)| v));
    f.model = intern(model.map(|(_, v)| v));
    f.input_tokens = input.map(|(_, v)| v);
    f.output_tokens = output.map(|(_, v)| v);
    f.cached_input_tokens = cached.map(|(_, v)| v);
    f.cache_write_input_tokens = cache_write.map(|(_, v)| v);
    f.reasoning_tokens = reasoning.map(|(_, v)| v);
    f.jsonrpc_id = intern(keys.take(Slot::RpcId));
    f.tool_call_id = intern(keys.take(Slot::ToolCall));
    f.tool_name = intern(tool_name.map(|(_, v)| v));
    f.correlation_id = intern(keys.correlation().map(|c| Cow::Owned(c.to_owned())));
    f.message_id = intern(keys.take(Slot::Message));
    f.destination = intern(destination.map(|(_, v)| if rabbitmq { amqp_queue(v) } else { v }));
    f.mcp_session = intern(keys.take(Slot::McpSession));
    f.peer_service = intern(raw.peer_service);
    f.rpc_service = intern(raw.rpc_service);
    f.mcp_method = intern(mcp_method.map(Cow::Borrowed));
    f.http_method = intern(http_method.map(|(_, v)| Cow::Owned(v.to_ascii_uppercase())));
    f.http_path = intern(http_path.map(|(_, v)| v));
    // A recorded agent string is what was sent, even a custom one; only a
    // client span that recorded none is named by its instrumentation.
    f.http_client = match user_agent {
        Some((_, ua)) => http_client_of_user_agent(&ua),
        None if span.kind == SpanKind::Client => http_client_of_scope(&span.scope.name),
        None => None,
    };
    f.error_type = intern(raw.error_type);
    f.error_message = intern(raw.error_message);
    f
}

#[allow(clippy::too_many_arguments)]
fn classify(
    kind: SpanKind,
    operation: Option<&str>,
    oi_kind: Option<&str>,
    tl_kind: Option<&str>,
    mcp_method: Option<&str>,
    llm_hint: bool,
    messaging: bool,
    database: bool,
    name: &str,
) -> Category {
    // The explicit operation names of each convention come first, in order
    // of how precisely they are defined; attribute hints and span names last.
    if let Some(op) = operation {
        match op {
            "chat" | "text_completion" | "generate_content" => return Category::Llm,
            "embeddings" | "retrieval" => return Category::Retrieval,
            "execute_tool" => return Category::Tool,
            "invoke_agent" | "create_agent" | "invoke_workflow" => return Category::Agent,
            _ => {}
        }
    }
    // An MCP call is a tool call only for `tools/call`: the handshake and
    // the listings are the protocol's plumbing.
    match mcp_method {
        Some("tools/call") => return Category::Tool,
        Some(_) => return Category::Other,
        None => {}
    }
    if let Some(k) = oi_kind {
        match k.to_ascii_uppercase().as_str() {
            "LLM" => return Category::Llm,
            "EMBEDDING" | "RETRIEVER" | "RERANKER" => return Category::Retrieval,
            "TOOL" => return Category::Tool,
            "AGENT" | "CHAIN" => return Category::Agent,
            _ => {}
        }
    }
    if let Some(k) = tl_kind {
        match k {
            "tool" => return Category::Tool,
            "agent" | "workflow" | "task" => return Category::Agent,
            _ => {}
        }
    }
    if llm_hint {
        return Category::Llm;
    }
    if messaging || matches!(kind, SpanKind::Producer | SpanKind::Consumer) {
        return Category::Handoff;
    }
    if database {
        return Category::Retrieval;
    }
    let first = name.split_whitespace().next().unwrap_or("");
    match first {
        // A model call is a CLIENT span; an INTERNAL `chat turn` is the
        // user's own step that happens to start with the same word.
        "chat" | "text_completion" | "generate_content" if kind == SpanKind::Client => Category::Llm,
        "execute_tool" | "tools/call" => Category::Tool,
        "invoke_agent" | "create_agent" | "invoke_workflow" => Category::Agent,
        "retrieval" | "embeddings" => Category::Retrieval,
        _ => Category::Other,
    }
}

/// Well-known HTTP client libraries: the product token of the `User-Agent`
/// each sends unless told otherwise (`name/version`, case aside), and the
/// instrumentation scopes that record its CLIENT spans. Two calls to the
/// same route are told apart by it (see the hold reasons in `repair.rs`).
pub(crate) const HTTP_CLIENTS: [(&str, &[&str], &[&str]); 12] = [
    ("httpx", &["python-httpx"], &["opentelemetry.instrumentation.httpx"]),
    // `Python/3.12 aiohttp/3.9.5`
    ("aiohttp", &["aiohttp"], &["opentelemetry.instrumentation.aiohttp_client"]),
    ("requests", &["python-requests"], &["opentelemetry.instrumentation.requests"]),
    ("urllib3", &["python-urllib3"], &["opentelemetry.instrumentation.urllib3"]),
    ("urllib", &["python-urllib"], &["opentelemetry.instrumentation.urllib"]),
    // Node's `fetch`: `undici` in older releases, `node` in newer ones.
    ("undici", &["undici", "node"], &["@opentelemetry/instrumentation-undici"]),
    ("go", &["go-http-client"], &["go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"]),
    ("java-http-client", &["java-http-client"], &["io.opentelemetry.java-http-client"]),
    ("okhttp", &["okhttp"], &["io.opentelemetry.okhttp-3.0"]),
    (
        "apache-httpclient",
        &["apache-httpclient"],
        &[
            "io.opentelemetry.apache-httpclient-4.0",
            "io.opentelemetry.apache-httpclient-4.3",
            "io.opentelemetry.apache-httpclient-5.0",
        ],
    ),
    // No instrumented service calls with these: a person or a script does.
    ("curl", &["curl"], &[]),
    ("wget", &["wget"], &[]),
];

/// The library of [`HTTP_CLIENTS`] a `User-Agent` names: the first product
/// token (`name` or `name/version`) that is one of theirs.
pub(crate) fn http_client_of_user_agent(ua: &str) -> Option<&'static str> {
    ua.split_ascii_whitespace().find_map(|token| {
        let product = token.split('/').next().unwrap_or(token);
        HTTP_CLIENTS.iter().find(|(_, agents, _)| agents.iter().any(|a| a.eq_ignore_ascii_case(product))).map(|e| e.0)
    })
}

/// The library of [`HTTP_CLIENTS`] whose CLIENT spans a scope records.
pub(crate) fn http_client_of_scope(scope: &str) -> Option<&'static str> {
    HTTP_CLIENTS.iter().find(|(_, _, scopes)| scopes.contains(&scope)).map(|e| e.0)
}

/// The identity of the process that emitted a span, for "same service
/// instance" questions; `strong` when the resource names the instance, not
/// just the service (replicas share a service name).
pub(crate) fn instance_key(span: &Span) -> (String, bool) {
    let attrs = &span.resource.attributes;
    let service = span.service_name();
    if let Some(id) = attrs.first_text(&["service.instance.id"]) {
        return (format!("{service}\u{0}{id}"), true);
    }
    match (attrs.first_text(&["host.name"]), attrs.first_text(&["process.pid"])) {
        (Some(h), Some(p)) => (format!("{service}\u{0}{h}\u{0}{p}"), true),
        _ => (service.to_owned(), false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use agentrace_model::{SpanId, TraceId};

    fn span(attrs: &[(&str, Value)]) -> Span {
        let mut s = Span::new(TraceId::new([1; 16]).unwrap(), SpanId::new([1; 8]).unwrap(), None, "x");
        for (k, v) in attrs {
            s.attributes.set(*k, v.clone());
        }
        s
    }

    #[test]
    fn an_agent_recorded_only_by_its_id_is_named_by_it() {
        // The span's name names it first (`invoke_agent planner`, id a per-instance handle).
        let mut texts = Texts::default();
        let mut named = span(&[("gen_ai.operation.name", "invoke_agent".into()), ("gen_ai.agent.id", "a-7f3".into())]);
        named.name = "invoke_agent planner".into();
        let f = read(&named, &mut texts);
        assert_eq!(texts.opt(f.agent_name), Some("planner"));
        let mut texts = Texts::default();
        let op = ("gen_ai.operation.name", Value::from("invoke_agent"));
        let only_id = span(&[op.clone(), ("gen_ai.agent.id", "asst_42".into())]);
        let f = read(&only_id, &mut texts);
        assert_eq!(texts.opt(f.agent_name), Some("asst_42"));
        let both = span(&[op, ("gen_ai.agent.id", "asst_42".into()), ("gen_ai.agent.name", "planner".into())]);
        let f = read(&both, &mut texts);
        assert_eq!(texts.opt(f.agent_name), Some("planner"));
    }

    #[test]
    fn http_clients_are_named_by_user_agent_and_by_scope() {
        for (ua, lib) in [
            ("python-httpx/0.28.1", Some("httpx")),
            ("Python/3.11 aiohttp/3.14.5", Some("aiohttp")),
            ("python-requests/2.34.2", Some("requests")),
            ("python-urllib3/2.2.1", Some("urllib3")),
            ("Python-urllib/3.11", Some("urllib")),
            ("python-urllib/admin", Some("urllib")),
            ("undici", Some("undici")),
            ("node", Some("undici")),
            ("Go-http-client/1.1", Some("go")),
            ("Java-http-client/17.0.2", Some("java-http-client")),
            ("okhttp/4.12.0", Some("okhttp")),
            ("Apache-HttpClient/4.5.14 (Java/17.0.2)", Some("apache-httpclient")),
            ("curl/8.5.0", Some("curl")),
            // Custom agents, SDKs over a library, probes: nothing known.
            ("OpenAI/Python 1.54.0", None),
            ("node-fetch/1.0", None),
            ("kube-probe/1.30", None),
            ("user", None),
            ("", None),
        ] {
            assert_eq!(http_client_of_user_agent(ua), lib, "{ua}");
        }
        assert_eq!(http_client_of_scope("opentelemetry.instrumentation.httpx"), Some("httpx"));
        assert_eq!(http_client_of_scope("opentelemetry.instrumentation.urllib"), Some("urllib"));
        assert_eq!(http_client_of_scope("opentelemetry.instrumentation.urllib3"), Some("urllib3"));
        assert_eq!(http_client_of_scope("opentelemetry.instrumentation.aiohttp_server"), None);
        assert_eq!(http_client_of_scope("mcp-python-sdk"), None);

        // A server reads the agent it was sent; a client its own recorded
        // agent over its scope, and its scope only when it recorded none.
        let mut server = span(&[("http.user_agent", "python-urllib/admin".into())]);
        server.kind = SpanKind::Server;
        assert_eq!(read(&server, &mut Texts::default()).http_client, Some("urllib"));
        let mut client = span(&[]);
        client.kind = SpanKind::Client;
        let httpx = std::sync::Arc::new(agentrace_model::Scope {
            name: "opentelemetry.instrumentation.httpx".into(),
            ..Default::default()
        });
        client.scope = httpx.clone();
        assert_eq!(read(&client, &mut Texts::default()).http_client, Some("httpx"));
        client.attributes.set("user_agent.original", Value::from("my-agent/1.0"));
        assert_eq!(read(&client, &mut Texts::default()).http_client, None);
        let mut internal = span(&[]);
        internal.scope = httpx;
        assert_eq!(read(&internal, &mut Texts::default()).http_client, None);
    }

    #[test]
    fn legacy_token_names_are_read_and_current_names_win() {
        let s = span(&[
            ("gen_ai.system", "openai".into()),
            ("gen_ai.usage.prompt_tokens", 10i64.into()),
            ("gen_ai.usage.input_tokens", 12i64.into()),
            ("llm.token_count.completion", "7".into()),
        ]);
        let f = read(&s, &mut Texts::default());
        assert_eq!(f.category(), Category::Llm);
        assert_eq!(f.input_tokens, Some(12));
        assert_eq!(f.output_tokens, Some(7));
    }

    #[test]
    fn cache_reads_writes_and_reasoning_are_read_as_parts_of_the_counts() {
        let genai = span(&[
            ("gen_ai.usage.input_tokens", 1000i64.into()),
            ("gen_ai.usage.output_tokens", 300i64.into()),
            ("gen_ai.usage.cache_read.input_tokens", 800i64.into()),
            ("gen_ai.usage.cache_creation.input_tokens", 150i64.into()),
            ("gen_ai.usage.reasoning.output_tokens", 200i64.into()),
        ]);
        let openinference = span(&[
            ("llm.token_count.prompt", 1000i64.into()),
            ("llm.token_count.completion", 300i64.into()),
            ("llm.token_count.prompt_details.cache_read", 800i64.into()),
            ("llm.token_count.prompt_details.cache_write", 150i64.into()),
            ("llm.token_count.completion_details.reasoning", 200i64.into()),
        ]);
        let openllmetry = span(&[
            ("gen_ai.usage.prompt_tokens", 1000i64.into()),
            ("gen_ai.usage.completion_tokens", 300i64.into()),
            ("gen_ai.usage.cache_read_input_tokens", 800i64.into()),
            ("gen_ai.usage.cache_creation_input_tokens", 150i64.into()),
            ("gen_ai.usage.reasoning_tokens", "200".into()),
        ]);
        for s in [&genai, &openinference, &openllmetry] {
            let f = read(s, &mut Texts::default());
            let u = Usage::of(&f);
            let want = Usage { input: 1000, output: 300, cached_input: 800, cache_write_input: 150, reasoning: 200 };
            assert_eq!(u, want, "{:?}", s.attributes);
        }
        // A part never exceeds its whole: reads first, then writes of what is left.
        let odd = span(&[
            ("gen_ai.usage.input_tokens", 10i64.into()),
            ("gen_ai.usage.cache_read.input_tokens", 8i64.into()),
            ("gen_ai.usage.cache_creation.input_tokens", 50i64.into()),
            ("gen_ai.usage.reasoning.output_tokens", 5i64.into()),
        ]);
        let u = Usage::of(&read(&odd, &mut Texts::default()));
        assert_eq!((u.input, u.cached_input, u.cache_write_input, u.output, u.reasoning), (10, 8, 2, 0, 0));
    }

    #[test]
    fn openinference_and_traceloop_kinds_are_recognised() {
        let retriever = span(&[("openinference.span.kind", "RETRIEVER".into())]);
        assert_eq!(read(&retriever, &mut Texts::default()).category(), Category::Retrieval);
        let s = span(&[("traceloop.span.kind", "agent".into()), ("traceloop.entity.name", "planner".into())]);
        let mut texts = Texts::default();
        let f = read(&s, &mut texts);
        assert_eq!(f.category(), Category::Agent);
        assert_eq!(texts.opt(f.agent_name), Some("planner"));
    }

    #[test]
    fn autogen_core_deliveries_name_their_recipient_agent_and_team_turns_do_not() {
        let agent_of = |name: &str, kind: SpanKind, attrs: &[(&str, Value)]| {
            let mut s = span(attrs);
            s.name = name.into();
            s.kind = kind;
            let mut texts = Texts::default();
            let f = read(&s, &mut texts);
            (texts.opt(f.agent_name).map(str::to_owned), f.agent_source)
        };
        // SingleThreadedAgentRuntime: the recipient's type is an attribute.
        let single =
            [("recipient_agent_type", Value::from("researcher")), ("sender_agent_type", "orchestrator".into())];
        assert_eq!(
            agent_of("autogen process researcher.(sess-1)-A", SpanKind::Consumer, &single),
            (Some("researcher".into()), Some(AgentSource::AutoGen))
        );
        // The gRPC worker runtime says it only in the span name.
        assert_eq!(
            agent_of("autogen process writer.(sess-1)-A", SpanKind::Consumer, &[]),
            (Some("writer".into()), Some(AgentSource::AutoGen))
        );
        // A publish to a topic, a producer, and an agentchat team's turn name no agent.
        assert_eq!(agent_of("autogen process drafting.(sess-1)-T", SpanKind::Consumer, &[]).0, None);
        assert_eq!(agent_of("autogen send writer.(sess-1)-A", SpanKind::Producer, &single).0, None);
        let team = [("recipient_agent_type", Value::from("researcher_225020b8-bc04-47e8-9d75-ab56b7440e3d"))];
        assert_eq!(agent_of("autogen process researcher_225020b8", SpanKind::Consumer, &team).0, None);
        // ... and a team's turn is marked as one, so the sender's agent does not run under it.
        let mut s = span(&team);
        s.name = "autogen process researcher_225020b8".into();
        s.kind = SpanKind::Consumer;
        assert!(read(&s, &mut Texts::default()).team_turn);
        let mut s = span(&single);
        s.name = "autogen process researcher.(sess-1)-A".into();
        s.kind = SpanKind::Consumer;
        assert!(!read(&s, &mut Texts::default()).team_turn);
    }

    #[test]
    fn autogen_addresses_give_their_key_and_say_agent_or_topic() {
        assert_eq!(autogen_address_key("writer.(sess-1)-A"), Some(("sess-1", true)));
        assert_eq!(autogen_address_key("drafting.(sess-1)-T"), Some(("sess-1", false)));
        assert_eq!(autogen_address_key("group_topic_ed84.(ed84)-T"), Some(("ed84", false)));
        for not in ["writer", "writer.()-A", ".(k)-A", "orders.created", "writer.(k)"] {
            assert_eq!(autogen_address_key(not), None, "{not}");
        }
    }

    #[test]
    fn addresses_are_read_under_every_convention_and_compared_by_server() {
        let cases: [(SpanKind, &[(&str, Value)]); 6] = [
            (SpanKind::Client, &[("server.address", "127.0.0.1".into()), ("server.port", 8080i64.into())]),
            (SpanKind::Client, &[("http.url", "http://localhost:8080/research?q=1".into())]),
            // The ASGI instrumentation writes host:port into server.address.
            (SpanKind::Server, &[("server.address", "127.0.0.1:8080".into())]),
            (SpanKind::Server, &[("net.host.name", "127.0.0.1".into()), ("net.host.port", "8080".into())]),
            // On a server, net.peer.* is the client, never its own address.
            (SpanKind::Server, &[("http.host", "127.0.0.1:9090".into()), ("net.peer.port", 8080i64.into())]),
            (SpanKind::Client, &[("url.full", "https://api.example.com/v1".into())]),
        ];
        // Hosts are interned per analysis: the spans outlive the texts.
        let arena: Vec<Span> = cases
            .iter()
            .map(|(kind, attrs)| {
                let mut s = span(attrs);
                s.kind = *kind;
                s
            })
            .collect();
        let mut texts = Texts::default();
        let a: Vec<Address> = arena.iter().map(|s| read(s, &mut texts).address.expect("an address")).collect();
        assert!(a[0].matches(a[1]));
        assert!(a[0].matches(a[2]));
        assert!(a[1].matches(a[3]));
        assert!(!a[0].matches(a[4]));
        assert_eq!(a[5].port, Some(443));
        assert!(!a[5].matches(a[0]));
    }

    #[test]
    fn output_messages_name_the_tool_calls_asked_for() {
        let s = span(&[(
            "gen_ai.output.messages",
            r#"[{"role":"assistant","parts":[{"type":"text","content":"x"},{"type":"tool_call","id":"c1","name":"a"}]},
                {"role":"assistant","tool_calls":[{"id":"c2","type":"function"}]}]"#
                .into(),
        )]);
        assert_eq!(output_tool_call_ids(&s), vec!["c1".to_owned(), "c2".to_owned()]);
        assert!(output_tool_call_ids(&span(&[("gen_ai.output.messages", "not json".into())])).is_empty());
    }

    #[test]
    fn tool_output_is_judged_only_when_it_claims_to_be_json() {
        assert_eq!(judge_output(r#"{"city": "Paris", "temp": 2"#), Some(BadOutput::Malformed));
        assert_eq!(judge_output(r#"{"city": "Paris"}"#), None);
        // A wrapper (LangChain's ToolMessage) whose content is cut JSON.
        assert_eq!(judge_output(r#"{"type":"tool","content":"[{\"title\": \"x\", \"bo"}"#), Some(BadOutput::Malformed));
        assert_eq!(
            judge_output(r#"{"content":[{"type":"text","text":"oops"}],"isError":true}"#),
            Some(BadOutput::ErrorPayload)
        );
        assert_eq!(judge_output("[INFO] done, 3 rows"), None);
        assert_eq!(judge_output("plain text answer"), None);
        // An `error` member is the tool's failure only in the answer itself (or the text of an
        // MCP content block), not in the data it returns.
        assert_eq!(judge_output(r#"{"error": "upstream timed out"}"#), Some(BadOutput::ErrorPayload));
        assert_eq!(
            judge_output(r#"{"content":[{"type":"text","text":"{\"error\": \"no such city\"}"}]}"#),
            Some(BadOutput::ErrorPayload)
        );
        assert_eq!(judge_output(r#"[{"job": "nightly", "error": "disk full"}]"#), None);
        assert_eq!(judge_output(r#"{"result": {"failed": [{"job": "x", "error": "disk full"}]}}"#), None);
        assert_eq!(judge_output(r#"{"data": {"error": "in a row"}}"#), None);
        assert_eq!(judge_output(r#"{"content": "[{\"job\": \"nightly\", \"error\": \"disk full\"}]"}"#), None);
        assert_eq!(judge_output(r#"{"error": null, "rows": []}"#), None);
    }

    #[test]
    fn parse_errors_are_told_from_other_errors() {
        let s = span(&[]);
        let mut texts = Texts::default();
        let mut f = read(&s, &mut texts);
        f.error_type = Some(texts.intern("json.decoder.JSONDecodeError".into()));
        assert!(f.is_parse_error(&texts, "plan"));
        f.error_type = Some(texts.intern("TimeoutError".into()));
        assert!(!f.is_parse_error(&texts, "plan"));
    }
}
