//! Attribute names and values this crate writes, in one place.
//!
//! The GenAI conventions live in their own repository now and `opentelemetry-semantic-conventions`
//! marks its `GEN_AI_*` constants deprecated, so we keep the names we rely on here. Only names the
//! conventions define go under `gen_ai.*`, `messaging.*`, `mcp.*` and `jsonrpc.*`; what the
//! standard does not cover yet (agent coordination) lives under `app.agent.*`.

/// `gen_ai.operation.name`.
pub const GEN_AI_OPERATION_NAME: &str = "gen_ai.operation.name";
/// `gen_ai.provider.name` (formerly `gen_ai.system`).
pub const GEN_AI_PROVIDER_NAME: &str = "gen_ai.provider.name";
/// `gen_ai.request.model`.
pub const GEN_AI_REQUEST_MODEL: &str = "gen_ai.request.model";
/// `gen_ai.response.model`.
pub const GEN_AI_RESPONSE_MODEL: &str = "gen_ai.response.model";
/// `gen_ai.response.id`.
pub const GEN_AI_RESPONSE_ID: &str = "gen_ai.response.id";
/// `gen_ai.response.finish_reasons`.
pub const GEN_AI_RESPONSE_FINISH_REASONS: &str = "gen_ai.response.finish_reasons";
/// `gen_ai.usage.input_tokens`.
pub const GEN_AI_USAGE_INPUT_TOKENS: &str = "gen_ai.usage.input_tokens";
/// `gen_ai.usage.output_tokens`.
pub const GEN_AI_USAGE_OUTPUT_TOKENS: &str = "gen_ai.usage.output_tokens";
/// `gen_ai.usage.cache_read.input_tokens`.
pub const GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS: &str = "gen_ai.usage.cache_read.input_tokens";
/// `gen_ai.usage.cache_creation.input_tokens`.
pub const GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS: &str = "gen_ai.usage.cache_creation.input_tokens";
/// `gen_ai.conversation.id`.
pub const GEN_AI_CONVERSATION_ID: &str = "gen_ai.conversation.id";
/// `gen_ai.agent.id`.
pub const GEN_AI_AGENT_ID: &str = "gen_ai.agent.id";
/// `gen_ai.agent.name`.
pub const GEN_AI_AGENT_NAME: &str = "gen_ai.agent.name";
/// `gen_ai.agent.description`.
pub const GEN_AI_AGENT_DESCRIPTION: &str = "gen_ai.agent.description";
/// `gen_ai.tool.name`.
pub const GEN_AI_TOOL_NAME: &str = "gen_ai.tool.name";
/// `gen_ai.tool.call.id`.
pub const GEN_AI_TOOL_CALL_ID: &str = "gen_ai.tool.call.id";
/// `gen_ai.tool.type` (`function`, `extension`, `datastore`).
pub const GEN_AI_TOOL_TYPE: &str = "gen_ai.tool.type";
/// `gen_ai.data_source.id` (retrieval).
pub const GEN_AI_DATA_SOURCE_ID: &str = "gen_ai.data_source.id";
/// `gen_ai.input.messages` (sensitive: only ever in a span event here).
pub const GEN_AI_INPUT_MESSAGES: &str = "gen_ai.input.messages";
/// `gen_ai.output.messages` (sensitive).
pub const GEN_AI_OUTPUT_MESSAGES: &str = "gen_ai.output.messages";
/// `gen_ai.system_instructions` (sensitive).
pub const GEN_AI_SYSTEM_INSTRUCTIONS: &str = "gen_ai.system_instructions";
/// `gen_ai.tool.call.arguments` (sensitive).
pub const GEN_AI_TOOL_CALL_ARGUMENTS: &str = "gen_ai.tool.call.arguments";
/// `gen_ai.tool.call.result` (sensitive).
pub const GEN_AI_TOOL_CALL_RESULT: &str = "gen_ai.tool.call.result";
/// Event that carries content of an inference, per the GenAI conventions.
pub const GEN_AI_CONTENT_EVENT: &str = "gen_ai.client.inference.operation.details";
/// `error.type`.
pub const ERROR_TYPE: &str = "error.type";

/// Values of `gen_ai.operation.name`.
pub mod gen_ai_operation {
    /// Chat completion.
    pub const CHAT: &str = "chat";
    /// Embeddings.
    pub const EMBEDDINGS: &str = "embeddings";
    /// Retrieval from a data source (vector store, search).
    pub const RETRIEVAL: &str = "retrieval";
    /// Tool execution.
    pub const EXECUTE_TOOL: &str = "execute_tool";
    /// Agent invocation.
    pub const INVOKE_AGENT: &str = "invoke_agent";
}

/// Attribute on a span event whose content is sensitive (prompts, completions, tool arguments):
/// the collector strips such events before data leaves it.
pub const SENSITIVE: &str = "sensitive";

/// `app.agent.role`: the agent's role in the system (`orchestrator`, `researcher`, …).
pub const APP_AGENT_ROLE: &str = "app.agent.role";
/// `app.agent.delegation.depth`: 0 for the top agent, +1 for each delegation.
pub const APP_AGENT_DELEGATION_DEPTH: &str = "app.agent.delegation.depth";
/// `app.agent.delegating.name`: the agent that delegated to this one.
pub const APP_AGENT_DELEGATING_NAME: &str = "app.agent.delegating.name";
/// `app.agent.delegating.id`: id of the agent that delegated to this one.
pub const APP_AGENT_DELEGATING_ID: &str = "app.agent.delegating.id";
/// Baggage key that carries the current agent's name to the next process.
pub const BAGGAGE_AGENT_NAME: &str = "app.agent.name";
/// Baggage key that carries the current delegation depth to the next process.
pub const BAGGAGE_AGENT_DEPTH: &str = "app.agent.delegation.depth";

/// `messaging.system`.
pub const MESSAGING_SYSTEM: &str = "messaging.system";
/// `messaging.destination.name`.
pub const MESSAGING_DESTINATION_NAME: &str = "messaging.destination.name";
/// `messaging.message.id`.
pub const MESSAGING_MESSAGE_ID: &str = "messaging.message.id";
/// `messaging.operation.type` (`send`, `receive`, `process`, `create`, `settle`).
pub const MESSAGING_OPERATION_TYPE: &str = "messaging.operation.type";
/// `messaging.operation.name` (system-specific verb, e.g. `publish`, `xadd`).
pub const MESSAGING_OPERATION_NAME: &str = "messaging.operation.name";

/// `mcp.method.name`.
pub const MCP_METHOD_NAME: &str = "mcp.method.name";
/// `mcp.session.id`.
pub const MCP_SESSION_ID: &str = "mcp.session.id";
/// `mcp.protocol.version`.
pub const MCP_PROTOCOL_VERSION: &str = "mcp.protocol.version";
/// `jsonrpc.request.id`.
pub const JSONRPC_REQUEST_ID: &str = "jsonrpc.request.id";
/// `network.transport` (`pipe` for stdio, `tcp` for HTTP).
pub const NETWORK_TRANSPORT: &str = "network.transport";
