//! [`LlmStandIn`]: a deterministic stand-in for a language model, because no model can run here
//! and the demo must give the same trace every time.
//!
//! It is not a model and does not pretend to be one: its replies are templates, its spans say
//! `gen_ai.provider.name = "agentrace.stand_in"`. What it imitates faithfully is what a trace
//! of a real model call carries: a `chat {model}` CLIENT span with the request model (a priced
//! one, so the doctor's cost rollup has something to add up), `gen_ai.usage.input_tokens` and
//! `output_tokens` counted from the text, a latency that grows with the output, the prompt and
//! completion as sensitive events (never attributes), a tool call with its `gen_ai.tool.call.id`,
//! and, on request, a provider error (HTTP 429) that the caller retries.

use std::time::Duration;

use agentrace::genai::{GenAiSpan, GenAiSpanExt, Usage};
use opentelemetry::trace::{Status, TraceContextExt};
use opentelemetry::{Array, Context, KeyValue, StringValue, Value};
use opentelemetry_sdk::trace::SdkTracer;

/// `gen_ai.provider.name` of every stand-in span: plainly not a real provider.
pub const PROVIDER: &str = "agentrace.stand_in";

/// Tokens of the (imaginary) system prompt, added to every call's input.
const SYSTEM_PROMPT_TOKENS: u64 = 120;

/// A tool call the stand-in asks for.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolCall {
    /// `gen_ai.tool.call.id`: what joins the model's request to the tool's execution.
    pub id: String,
    /// The tool's name.
    pub name: String,
    /// The arguments, as the tool's JSON schema wants them.
    pub arguments: serde_json::Map<String, serde_json::Value>,
}

/// One call to make.
#[derive(Debug, Clone)]
pub struct ChatRequest<'a> {
    /// The prompt (recorded as a sensitive event).
    pub prompt: &'a str,
    /// `gen_ai.conversation.id`.
    pub conversation: &'a str,
    /// A tool the model should call, with its id and arguments; `None` for a plain answer.
    pub tool_call: Option<ToolCall>,
    /// Answer this call with a provider rate-limit error (the fault a retry recovers from).
    pub rate_limited: bool,
}

/// What the stand-in answers.
#[derive(Debug, Clone)]
pub struct Completion {
    /// The reply text.
    pub text: String,
    /// The tool call it asks for, if the request named one.
    pub tool_call: Option<ToolCall>,
}

/// Why a call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LlmError {
    /// The provider said 429; wait `retry_after` and call again.
    #[error("rate limited by the provider (HTTP 429), retry after {} ms", retry_after.as_millis())]
    RateLimited {
        /// How long the provider asks the caller to wait.
        retry_after: Duration,
    },
}

/// A deterministic stand-in for a chat model (see the module docs).
#[derive(Debug, Clone)]
pub struct LlmStandIn {
    model: &'static str,
}

/// A rough token count: about four characters a token, as real tokenizers give for English.
pub fn count_tokens(text: &str) -> u64 {
    (text.chars().count() as u64).div_ceil(4).max(1)
}

impl LlmStandIn {
    /// A stand-in that reports `model` as its request model.
    pub fn new(model: &'static str) -> LlmStandIn {
        LlmStandIn { model }
    }

    /// Answers `request` inside a `chat {model}` span under `parent`.
    pub async fn chat(
        &self,
        tracer: &SdkTracer,
        parent: &Context,
        request: ChatRequest<'_>,
    ) -> Result<Completion, LlmError> {
        let cx = GenAiSpan::chat(PROVIDER, self.model).with_conversation_id(request.conversation).start(tracer, parent);
        let span = cx.span();
        span.record_input_messages(&serde_json::json!([{"role": "user", "content": request.prompt}]).to_string());
        let input_tokens = SYSTEM_PROMPT_TOKENS + count_tokens(request.prompt);
        if request.rate_limited {
            // A provider rejects fast: the time is the round trip, not generation.
            tokio::time::sleep(Duration::from_millis(12)).await;
            let err = LlmError::RateLimited { retry_after: Duration::from_millis(40) };
            span.set_attribute(KeyValue::new("http.response.status_code", 429));
            span.set_attribute(KeyValue::new(agentrace::semconv::ERROR_TYPE, "rate_limited"));
            // One status, set once: the SDK keeps the first of two error statuses in some orders.
            span.set_status(Status::error(err.to_string()));
            span.end();
            return Err(err);
        }
        let text = match &request.tool_call {
            Some(call) => format!("I will call `{}` to answer this.", call.name),
            None => format!(
                "Here is a short answer, drawn from what I was given: {}",
                request.prompt.chars().take(160).collect::<String>()
            ),
        };
        let output_tokens = count_tokens(&text) + request.tool_call.as_ref().map_or(0, |_| 24);
        // Time to first token plus a steady decode rate: tens of milliseconds, like a small model.
        tokio::time::sleep(Duration::from_millis(18 + output_tokens / 2)).await;
        let usage = Usage::new(input_tokens, output_tokens);
        span.record_usage(usage);
        let reason = if request.tool_call.is_some() { "tool_calls" } else { "stop" };
        span.set_attribute(KeyValue::new(
            agentrace::semconv::GEN_AI_RESPONSE_FINISH_REASONS,
            Value::Array(Array::String(vec![StringValue::from(reason)])),
        ));
        if let Some(call) = &request.tool_call {
            span.add_event(
                "gen_ai.tool.call",
                vec![
                    KeyValue::new("gen_ai.tool.call.id", call.id.clone()),
                    KeyValue::new("gen_ai.tool.name", call.name.clone()),
                ],
            );
        }
        span.record_output_messages(&serde_json::json!([{"role": "assistant", "content": text}]).to_string());
        span.end();
        Ok(Completion { text, tool_call: request.tool_call })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_grow_with_the_text_and_never_reach_zero() {
        assert_eq!(count_tokens(""), 1);
        assert_eq!(count_tokens("abcd"), 1);
        assert_eq!(count_tokens("abcde"), 2);
        assert!(count_tokens(&"word ".repeat(100)) > 100);
    }
}
