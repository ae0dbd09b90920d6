//! Span helpers for the OpenTelemetry GenAI conventions, and agent coordination attributes.
//!
//! Each builder gives the span the conventional name (`{operation} {model|agent|tool}`), kind and
//! attributes; [`GenAiSpanExt`] records usage and content after the call. Content (prompts,
//! completions, tool arguments and results) is only ever written as a span event tagged
//! `sensitive = true`, never as a span attribute, so the collector can strip it in one place.
//!
//! Agent coordination is not covered by the standard yet, so it lives under `app.agent.*`:
//! [`AgentSpan`] computes `app.agent.delegation.depth` and the delegating agent from the context
//! it starts in (in process), or from the `app.agent.*` baggage that a previous hop left (across
//! processes); nothing custom is written under `gen_ai.*`. Like the GenAI specification, these
//! helpers never infer causality from timing or names: that is the collector's job.

use std::borrow::Cow;
use std::sync::Arc;

use opentelemetry::baggage::{BaggageExt, KeyValueMetadata};
use opentelemetry::trace::{SpanBuilder, SpanKind, SpanRef, TraceContextExt, Tracer};
use opentelemetry::{Context, KeyValue, StringValue};

use crate::semconv::{self, gen_ai_operation};

/// Token usage of one model call: `Usage::new(input, output)`, then the
/// cache counts a provider reports. More counts may come (the conventions
/// grow), so it is built through these methods, not a struct literal.
///
/// ```
/// use agentrace::genai::Usage;
/// let usage = Usage::new(812, 64).with_cache_read(700).with_cache_creation(100);
/// assert_eq!(usage.input_tokens, 812);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Usage {
    /// Prompt tokens, cached ones included (as the conventions count them).
    pub input_tokens: u64,
    /// Completion tokens.
    pub output_tokens: u64,
    /// Prompt tokens served from a cache, when the provider reports them
    /// (`gen_ai.usage.cache_read.input_tokens`).
    pub cache_read_input_tokens: Option<u64>,
    /// Prompt tokens written to a cache, which some providers price above
    /// plain input (`gen_ai.usage.cache_creation.input_tokens`).
    pub cache_creation_input_tokens: Option<u64>,
}

impl Usage {
    /// Prompt and completion tokens.
    pub fn new(input_tokens: u64, output_tokens: u64) -> Self {
        Usage { input_tokens, output_tokens, ..Usage::default() }
    }

    /// With the prompt tokens served from a cache.
    #[must_use]
    pub fn with_cache_read(mut self, tokens: u64) -> Self {
        self.cache_read_input_tokens = Some(tokens);
        self
    }

    /// With the prompt tokens written to a cache.
    #[must_use]
    pub fn with_cache_creation(mut self, tokens: u64) -> Self {
        self.cache_creation_input_tokens = Some(tokens);
        self
    }
}

/// A GenAI span about to start.
#[derive(Debug, Clone)]
pub struct GenAiSpan {
    name: String,
    kind: SpanKind,
    attributes: Vec<KeyValue>,
}

fn clamp_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

impl GenAiSpan {
    fn new(operation: &'static str, target: &str, kind: SpanKind) -> Self {
        let name = if target.is_empty() { operation.to_owned() } else { format!("{operation} {target}") };
        GenAiSpan { name, kind, attributes: vec![KeyValue::new(semconv::GEN_AI_OPERATION_NAME, operation)] }
    }

    /// `chat {model}`: a chat completion call (CLIENT).
    pub fn chat(provider: &str, model: &str) -> Self {
        Self::new(gen_ai_operation::CHAT, model, SpanKind::Client).with_model(provider, model)
    }

    /// `embeddings {model}` (CLIENT).
    pub fn embeddings(provider: &str, model: &str) -> Self {
        Self::new(gen_ai_operation::EMBEDDINGS, model, SpanKind::Client).with_model(provider, model)
    }

    /// `retrieval {data_source}`: a query to a vector store or search index (CLIENT).
    pub fn retrieval(data_source: &str) -> Self {
        Self::new(gen_ai_operation::RETRIEVAL, data_source, SpanKind::Client)
            .with_attribute(KeyValue::new(semconv::GEN_AI_DATA_SOURCE_ID, data_source.to_owned()))
    }

    /// `execute_tool {tool}` (INTERNAL), with the model's tool call id when there is one: the id is
    /// what lets the collector join a tool span to the model call that requested it.
    pub fn execute_tool(tool: &str, call_id: Option<&str>) -> Self {
        let mut span = Self::new(gen_ai_operation::EXECUTE_TOOL, tool, SpanKind::Internal)
            .with_attribute(KeyValue::new(semconv::GEN_AI_TOOL_NAME, tool.to_owned()))
            .with_attribute(KeyValue::new(semconv::GEN_AI_TOOL_TYPE, "function"));
        if let Some(id) = call_id {
            span = span.with_attribute(KeyValue::new(semconv::GEN_AI_TOOL_CALL_ID, id.to_owned()));
        }
        span
    }

    fn with_model(self, provider: &str, model: &str) -> Self {
        self.with_attribute(KeyValue::new(semconv::GEN_AI_PROVIDER_NAME, provider.to_owned()))
            .with_attribute(KeyValue::new(semconv::GEN_AI_REQUEST_MODEL, model.to_owned()))
    }

    /// Adds `gen_ai.conversation.id`.
    pub fn with_conversation_id(self, id: &str) -> Self {
        self.with_attribute(KeyValue::new(semconv::GEN_AI_CONVERSATION_ID, id.to_owned()))
    }

    /// Adds any attribute.
    pub fn with_attribute(mut self, kv: KeyValue) -> Self {
        self.attributes.push(kv);
        self
    }

    /// The span name this builder will use.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Starts the span as a child of `parent` and returns the context that holds it.
    pub fn start<T>(self, tracer: &T, parent: &Context) -> Context
    where
        T: Tracer,
        T::Span: Send + Sync + 'static,
    {
        let span = SpanBuilder::from_name(self.name)
            .with_kind(self.kind)
            .with_attributes(self.attributes)
            .start_with_context(tracer, parent);
        parent.with_span(span)
    }
}

/// The agent a span runs as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Agent {
    /// `gen_ai.agent.name`.
    pub name: String,
    /// `gen_ai.agent.id`.
    pub id: Option<String>,
    /// `app.agent.role`.
    pub role: Option<String>,
}

impl Agent {
    /// An agent with a name only.
    pub fn new(name: impl Into<String>) -> Self {
        Agent { name: name.into(), id: None, role: None }
    }

    /// Sets `gen_ai.agent.id`.
    pub fn with_id(mut self, id: impl Into<String>) -> Self {
        self.id = Some(id.into());
        self
    }

    /// Sets `app.agent.role`.
    pub fn with_role(mut self, role: impl Into<String>) -> Self {
        self.role = Some(role.into());
        self
    }
}

/// The agent whose `invoke_agent` span is current, stored in the [`Context`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentScope {
    /// The running agent.
    pub agent: Arc<Agent>,
    /// Its delegation depth: 0 for the agent that took the user's request.
    pub depth: u32,
}

impl AgentScope {
    /// The agent scope of `cx`: from the context itself, else from `app.agent.*` baggage that an
    /// upstream process left, else none.
    pub fn of(cx: &Context) -> Option<AgentScope> {
        if let Some(scope) = cx.get::<AgentScope>() {
            return Some(scope.clone());
        }
        let bag = cx.baggage();
        let name = bag.get(semconv::BAGGAGE_AGENT_NAME)?;
        let depth = bag.get(semconv::BAGGAGE_AGENT_DEPTH).and_then(|d| d.as_str().parse().ok()).unwrap_or(0);
        Some(AgentScope { agent: Arc::new(Agent::new(name.as_str().to_owned())), depth })
    }
}

/// Starts `invoke_agent {name}` spans with delegation attributes.
#[derive(Debug, Clone)]
pub struct AgentSpan {
    agent: Agent,
    conversation_id: Option<String>,
    propagate: bool,
}

impl AgentSpan {
    /// An `invoke_agent` span for `agent`.
    pub fn new(agent: Agent) -> Self {
        AgentSpan { agent, conversation_id: None, propagate: true }
    }

    /// Adds `gen_ai.conversation.id`.
    pub fn with_conversation_id(mut self, id: impl Into<String>) -> Self {
        self.conversation_id = Some(id.into());
        self
    }

    /// Whether to write `app.agent.name` and `app.agent.delegation.depth` into the baggage of the
    /// returned context, so the depth survives a hop to another process (default: yes).
    pub fn with_baggage_propagation(mut self, on: bool) -> Self {
        self.propagate = on;
        self
    }

    /// Starts the span under `parent`. The returned context holds the span and the new
    /// [`AgentScope`]; start the agent's own LLM and tool calls from it.
    pub fn start<T>(self, tracer: &T, parent: &Context) -> Context
    where
        T: Tracer,
        T::Span: Send + Sync + 'static,
    {
        let delegator = AgentScope::of(parent);
        let depth = delegator.as_ref().map_or(0, |d| d.depth.saturating_add(1));
        let mut span = GenAiSpan::new(gen_ai_operation::INVOKE_AGENT, &self.agent.name, SpanKind::Internal)
            .with_attribute(KeyValue::new(semconv::GEN_AI_AGENT_NAME, self.agent.name.clone()))
            .with_attribute(KeyValue::new(semconv::APP_AGENT_DELEGATION_DEPTH, i64::from(depth)));
        if let Some(id) = &self.agent.id {
            span = span.with_attribute(KeyValue::new(semconv::GEN_AI_AGENT_ID, id.clone()));
        }
        if let Some(role) = &self.agent.role {
            span = span.with_attribute(KeyValue::new(semconv::APP_AGENT_ROLE, role.clone()));
        }
        if let Some(d) = &delegator {
            span = span.with_attribute(KeyValue::new(semconv::APP_AGENT_DELEGATING_NAME, d.agent.name.clone()));
            if let Some(id) = &d.agent.id {
                span = span.with_attribute(KeyValue::new(semconv::APP_AGENT_DELEGATING_ID, id.clone()));
            }
        }
        if let Some(c) = &self.conversation_id {
            span = span.with_conversation_id(c);
        }
        let mut cx = span.start(tracer, parent);
        if self.propagate {
            // Later entries win on insertion, so the old name and depth are replaced.
            let mut entries = crate::baggage::entries(&cx);
            entries.push(KeyValueMetadata::new(semconv::BAGGAGE_AGENT_NAME, self.agent.name.clone(), ""));
            entries.push(KeyValueMetadata::new(semconv::BAGGAGE_AGENT_DEPTH, depth.to_string(), ""));
            cx = cx.with_baggage(entries);
        }
        cx.with_value(AgentScope { agent: Arc::new(self.agent), depth })
    }
}

/// Recording after the call, on the current span of a GenAI operation.
pub trait GenAiSpanExt {
    /// Sets `gen_ai.usage.*`.
    fn record_usage(&self, usage: Usage);
    /// Sets `gen_ai.response.model` and `gen_ai.response.id`.
    fn record_response(&self, model: &str, response_id: Option<&str>);
    /// Records the prompt messages (JSON, as the conventions shape them) as a sensitive event.
    fn record_input_messages(&self, messages: &str);
    /// Records the completion messages as a sensitive event.
    fn record_output_messages(&self, messages: &str);
    /// Records the system instructions as a sensitive event.
    fn record_system_instructions(&self, instructions: &str);
    /// Records tool call arguments as a sensitive event.
    fn record_tool_arguments(&self, arguments: &str);
    /// Records a tool result as a sensitive event.
    fn record_tool_result(&self, result: &str);
    /// Marks the span failed with an `error.type`.
    fn record_error_type(&self, error_type: &str);
}

fn sensitive_event(span: &SpanRef<'_>, key: &'static str, content: &str) {
    span.add_event(
        Cow::Borrowed(semconv::GEN_AI_CONTENT_EVENT),
        vec![KeyValue::new(key, StringValue::from(content.to_owned())), KeyValue::new(semconv::SENSITIVE, true)],
    );
}

impl GenAiSpanExt for SpanRef<'_> {
    fn record_usage(&self, usage: Usage) {
        self.set_attribute(KeyValue::new(semconv::GEN_AI_USAGE_INPUT_TOKENS, clamp_i64(usage.input_tokens)));
        self.set_attribute(KeyValue::new(semconv::GEN_AI_USAGE_OUTPUT_TOKENS, clamp_i64(usage.output_tokens)));
        if let Some(cached) = usage.cache_read_input_tokens {
            self.set_attribute(KeyValue::new(semconv::GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS, clamp_i64(cached)));
        }
        if let Some(written) = usage.cache_creation_input_tokens {
            self.set_attribute(KeyValue::new(semconv::GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS, clamp_i64(written)));
        }
    }

    fn record_response(&self, model: &str, response_id: Option<&str>) {
        self.set_attribute(KeyValue::new(semconv::GEN_AI_RESPONSE_MODEL, model.to_owned()));
        if let Some(id) = response_id {
            self.set_attribute(KeyValue::new(semconv::GEN_AI_RESPONSE_ID, id.to_owned()));
        }
    }

    fn record_input_messages(&self, messages: &str) {
        sensitive_event(self, semconv::GEN_AI_INPUT_MESSAGES, messages);
    }

    fn record_output_messages(&self, messages: &str) {
        sensitive_event(self, semconv::GEN_AI_OUTPUT_MESSAGES, messages);
    }

    fn record_system_instructions(&self, instructions: &str) {
        sensitive_event(self, semconv::GEN_AI_SYSTEM_INSTRUCTIONS, instructions);
    }

    fn record_tool_arguments(&self, arguments: &str) {
        sensitive_event(self, semconv::GEN_AI_TOOL_CALL_ARGUMENTS, arguments);
    }

    fn record_tool_result(&self, result: &str) {
        sensitive_event(self, semconv::GEN_AI_TOOL_CALL_RESULT, result);
    }

    fn record_error_type(&self, error_type: &str) {
        self.set_attribute(KeyValue::new(semconv::ERROR_TYPE, error_type.to_owned()));
        self.set_status(opentelemetry::trace::Status::error(error_type.to_owned()));
    }
}

#[cfg(test)]
mod tests {
    use opentelemetry::Value;
    use opentelemetry::trace::TracerProvider as _;
    use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};

    use super::*;

    fn attr<'a>(span: &'a SpanData, key: &str) -> Option<&'a Value> {
        span.attributes.iter().find(|kv| kv.key.as_str() == key).map(|kv| &kv.value)
    }

    #[test]
    fn delegation_depth_and_delegator_come_from_the_context() {
        let exporter = InMemorySpanExporter::default();
        let provider = SdkTracerProvider::builder().with_simple_exporter(exporter.clone()).build();
        let tracer = provider.tracer("t");
        let root = AgentSpan::new(Agent::new("planner").with_role("orchestrator").with_id("a1"))
            .with_conversation_id("conv-1")
            .start(&tracer, &Context::new());
        let child = AgentSpan::new(Agent::new("researcher")).start(&tracer, &root);
        let chat = GenAiSpan::chat("openai", "gpt-4o").with_conversation_id("conv-1").start(&tracer, &child);
        chat.span().record_usage(Usage::new(10, 5).with_cache_read(2).with_cache_creation(3));
        chat.span().record_input_messages(r#"[{"role":"user","content":"secret prompt"}]"#);
        chat.span().end();
        child.span().end();
        root.span().end();

        let spans = exporter.get_finished_spans().unwrap();
        let by_name = |n: &str| spans.iter().find(|s| s.name == n).unwrap();
        let planner = by_name("invoke_agent planner");
        let researcher = by_name("invoke_agent researcher");
        let chat = by_name("chat gpt-4o");
        assert_eq!(attr(planner, semconv::APP_AGENT_DELEGATION_DEPTH), Some(&Value::I64(0)));
        assert_eq!(attr(planner, semconv::APP_AGENT_ROLE), Some(&Value::from("orchestrator")));
        assert_eq!(attr(researcher, semconv::APP_AGENT_DELEGATION_DEPTH), Some(&Value::I64(1)));
        assert_eq!(attr(researcher, semconv::APP_AGENT_DELEGATING_NAME), Some(&Value::from("planner")));
        assert_eq!(attr(researcher, semconv::APP_AGENT_DELEGATING_ID), Some(&Value::from("a1")));
        assert_eq!(researcher.parent_span_id, planner.span_context.span_id());
        assert_eq!(attr(chat, semconv::GEN_AI_USAGE_INPUT_TOKENS), Some(&Value::I64(10)));
        assert_eq!(attr(chat, semconv::GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS), Some(&Value::I64(2)));
        assert_eq!(attr(chat, semconv::GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS), Some(&Value::I64(3)));
        assert_eq!(attr(chat, semconv::GEN_AI_CONVERSATION_ID), Some(&Value::from("conv-1")));
        assert_eq!(chat.span_kind, SpanKind::Client);
        // Content never as an attribute; always as an event marked sensitive.
        assert!(chat.attributes.iter().all(|kv| !kv.value.to_string().contains("secret prompt")));
        let event = chat.events.iter().next().unwrap();
        assert!(
            event.attributes.iter().any(|kv| kv.key.as_str() == semconv::SENSITIVE && kv.value == Value::Bool(true))
        );
        // Nothing custom under gen_ai.*: every gen_ai key is one the conventions define.
        let standard = [
            semconv::GEN_AI_OPERATION_NAME,
            semconv::GEN_AI_PROVIDER_NAME,
            semconv::GEN_AI_REQUEST_MODEL,
            semconv::GEN_AI_USAGE_INPUT_TOKENS,
            semconv::GEN_AI_USAGE_OUTPUT_TOKENS,
            semconv::GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS,
            semconv::GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS,
            semconv::GEN_AI_CONVERSATION_ID,
            semconv::GEN_AI_AGENT_NAME,
            semconv::GEN_AI_AGENT_ID,
        ];
        for s in [planner, researcher, chat] {
            for kv in s.attributes.iter().filter(|kv| kv.key.as_str().starts_with("gen_ai.")) {
                assert!(standard.contains(&kv.key.as_str()), "custom gen_ai key {}", kv.key);
            }
        }
    }

    #[test]
    fn depth_crosses_processes_through_baggage() {
        let exporter = InMemorySpanExporter::default();
        let provider = SdkTracerProvider::builder().with_simple_exporter(exporter.clone()).build();
        let tracer = provider.tracer("t");
        let upstream = AgentSpan::new(Agent::new("planner")).start(&tracer, &Context::new());
        let mut wire = std::collections::HashMap::new();
        crate::propagation::inject_context(&upstream, &mut wire);
        let remote = crate::propagation::W3CPropagator::new();
        let downstream_parent = opentelemetry::propagation::TextMapPropagator::extract(&remote, &wire);
        let scope = AgentScope::of(&downstream_parent).unwrap();
        assert_eq!((scope.agent.name.as_str(), scope.depth), ("planner", 0));
        let tool = GenAiSpan::execute_tool("search", Some("call_1")).start(&tracer, &downstream_parent);
        assert_eq!(GenAiSpan::retrieval("kb").name(), "retrieval kb");
        assert_eq!(GenAiSpan::embeddings("openai", "e3").name(), "embeddings e3");
        tool.span().end();
    }
}
