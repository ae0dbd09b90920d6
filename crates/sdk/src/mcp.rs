//! MCP instrumentation for the official Rust SDK (`rmcp`), per SEP-414 and the OpenTelemetry MCP
//! conventions.
//!
//! - Client: [`call_tool`] starts a CLIENT span `tools/call {tool}` (`mcp.method.name`,
//!   `gen_ai.tool.name`, `jsonrpc.request.id`, `mcp.session.id` when known), writes its context
//!   into `params._meta`, and ends the span with the result.
//! - Server: wrap any handler in [`TracedService`]. Each request gets a SERVER span parented on
//!   the `_meta` context and linked to the transport context (HTTP headers, for streamable HTTP),
//!   and the handler runs with that span current, so the tool's own spans are its children.
//!
//! Over stdio there are no headers: `_meta` is the only carrier per request, and the child
//! process's environment (see [`crate::carrier::env`]) carries the context it was started in.

use std::borrow::Cow;

use opentelemetry::context::FutureExt as _;
use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::{Link, SpanBuilder, SpanKind, Status, TraceContextExt, Tracer};
use opentelemetry::{Context, KeyValue};
use std::future::Future;

use rmcp::model::{
    CallToolRequest, CallToolRequestParams, CallToolResponse, CallToolResult, ClientRequest, RequestMetaObject,
    ServerResult,
};
use rmcp::service::{Peer, PeerRequestOptions, RequestContext, RoleClient, RoleServer, ServiceError};

use crate::carrier::ContextCarrier;
use crate::carrier::http::HeaderExtractor;
use crate::carrier::meta::MetaExtractor;
use crate::propagation::W3CPropagator;
use crate::semconv;

/// The method of a tool call.
pub const TOOLS_CALL: &str = "tools/call";
/// HTTP header of the MCP session (streamable HTTP).
pub const SESSION_HEADER: &str = "mcp-session-id";

/// Calls a tool through `peer` inside a CLIENT span, with the span's context in `_meta`.
///
/// The span is a child of the current context. `session_id` is the streamable-HTTP session, if
/// the caller knows it (stdio has none).
pub async fn call_tool<T>(
    tracer: &T,
    peer: &Peer<RoleClient>,
    mut params: CallToolRequestParams,
    session_id: Option<&str>,
) -> Result<CallToolResult, ServiceError>
where
    T: Tracer,
    T::Span: Send + Sync + 'static,
{
    let tool = params.name.to_string();
    let mut attributes = vec![
        KeyValue::new(semconv::MCP_METHOD_NAME, TOOLS_CALL),
        KeyValue::new(semconv::GEN_AI_TOOL_NAME, tool.clone()),
        KeyValue::new(semconv::GEN_AI_OPERATION_NAME, semconv::gen_ai_operation::EXECUTE_TOOL),
    ];
    if let Some(id) = session_id {
        attributes.push(KeyValue::new(semconv::MCP_SESSION_ID, id.to_owned()));
    }
    let parent = Context::current();
    let span = SpanBuilder::from_name(format!("{TOOLS_CALL} {tool}"))
        .with_kind(SpanKind::Client)
        .with_attributes(attributes)
        .start_with_context(tracer, &parent);
    let cx = parent.with_span(span);
    let meta = params.meta.get_or_insert_with(RequestMetaObject::new);
    meta.0.0.inject_context(&cx);

    let outcome = async {
        let handle = peer
            .send_request_with_option(
                ClientRequest::CallToolRequest(CallToolRequest::new(params)),
                PeerRequestOptions::no_options(),
            )
            .await?;
        cx.span().set_attribute(KeyValue::new(semconv::JSONRPC_REQUEST_ID, handle.id.to_string()));
        match handle.await_response().await? {
            ServerResult::CallToolResult(result) => Ok(result),
            _ => Err(ServiceError::UnexpectedResponse),
        }
    }
    .with_context(cx.clone())
    .await;
    let span = cx.span();
    match &outcome {
        Ok(result) if result.is_error == Some(true) => {
            span.set_attribute(KeyValue::new(semconv::ERROR_TYPE, "tool_error"));
            span.set_status(Status::error("tool returned an error"));
        }
        Ok(_) => {}
        Err(e) => {
            span.set_attribute(KeyValue::new(semconv::ERROR_TYPE, "transport"));
            span.set_status(Status::error(e.to_string()));
        }
    }
    span.end();
    outcome
}

/// An MCP server service that records a SERVER span for every request.
#[derive(Debug, Clone)]
pub struct TracedService<S, T> {
    inner: S,
    tracer: T,
    propagator: W3CPropagator,
}

impl<S, T> TracedService<S, T> {
    /// Wraps `inner` (any `rmcp` server handler), recording spans with `tracer`.
    pub fn new(inner: S, tracer: T) -> Self {
        TracedService { inner, tracer, propagator: W3CPropagator::new() }
    }

    /// Uses `propagator` to read `_meta` and headers (for example, with an inbound-baggage policy).
    pub fn with_propagator(mut self, propagator: W3CPropagator) -> Self {
        self.propagator = propagator;
        self
    }

    /// The wrapped handler.
    pub fn inner(&self) -> &S {
        &self.inner
    }
}

impl<S, T> TracedService<S, T>
where
    T: Tracer,
    T::Span: Send + Sync + 'static,
{
    fn start_server_span(&self, method: String, tool: Option<String>, context: &RequestContext<RoleServer>) -> Context {
        let parts = context.extensions.get::<http::request::Parts>();
        let meta_cx = self.propagator.extract_with_context(&Context::new(), &MetaExtractor(&context.meta.0.0));
        let transport_cx = parts
            .map(|p| self.propagator.extract_with_context(&Context::new(), &HeaderExtractor(&p.headers)))
            .unwrap_or_default();
        let meta_sc = meta_cx.span().span_context().clone();
        let transport_sc = transport_cx.span().span_context().clone();
        // `_meta` is the request's own context; the transport's is the HTTP request that carried
        // it, which may batch or outlive several calls: parent on the first, link the second.
        let parent = if meta_sc.is_valid() {
            meta_cx
        } else if transport_sc.is_valid() {
            transport_cx
        } else {
            Context::new()
        };
        let mut links = Vec::new();
        if transport_sc.is_valid() && transport_sc != meta_sc {
            links.push(Link::with_context(transport_sc));
        }
        let mut attributes = vec![
            KeyValue::new(semconv::MCP_METHOD_NAME, method.clone()),
            KeyValue::new(semconv::JSONRPC_REQUEST_ID, context.id.to_string()),
            KeyValue::new(semconv::NETWORK_TRANSPORT, if parts.is_some() { "tcp" } else { "pipe" }),
        ];
        if let Some(tool) = &tool {
            attributes.push(KeyValue::new(semconv::GEN_AI_TOOL_NAME, tool.clone()));
            attributes.push(KeyValue::new(semconv::GEN_AI_OPERATION_NAME, semconv::gen_ai_operation::EXECUTE_TOOL));
        }
        if let Some(session) = parts.and_then(|p| p.headers.get(SESSION_HEADER)).and_then(|v| v.to_str().ok()) {
            attributes.push(KeyValue::new(semconv::MCP_SESSION_ID, session.to_owned()));
        }
        if let Some(version) = context.protocol_version() {
            attributes.push(KeyValue::new(semconv::MCP_PROTOCOL_VERSION, version.to_string()));
        }
        let name: Cow<'static, str> = match tool {
            Some(tool) => format!("{method} {tool}").into(),
            None => method.into(),
        };
        let span = SpanBuilder::from_name(name)
            .with_kind(SpanKind::Server)
            .with_attributes(attributes)
            .with_links(links)
            .start_with_context(&self.tracer, &parent);
        parent.with_span(span)
    }
}

/// Runs a handler's future with the SERVER span current, then ends the span with the outcome.
fn finish<R>(
    cx: Context,
    fut: impl Future<Output = Result<R, rmcp::ErrorData>>,
) -> impl Future<Output = Result<R, rmcp::ErrorData>> {
    finish_classified(cx, fut, |_| false)
}

/// [`finish`] for `tools/call`, which also fails when the tool reports an error in its result.
fn finish_tool(
    cx: Context,
    fut: impl Future<Output = Result<CallToolResponse, rmcp::ErrorData>>,
) -> impl Future<Output = Result<CallToolResponse, rmcp::ErrorData>> {
    finish_classified(cx, fut, |r| matches!(r, CallToolResponse::Complete(r) if r.is_error == Some(true)))
}

async fn finish_classified<R>(
    cx: Context,
    fut: impl Future<Output = Result<R, rmcp::ErrorData>>,
    is_tool_error: impl FnOnce(&R) -> bool,
) -> Result<R, rmcp::ErrorData> {
    let result = fut.with_context(cx.clone()).await;
    let span = cx.span();
    match &result {
        Ok(r) if is_tool_error(r) => {
            span.set_attribute(KeyValue::new(semconv::ERROR_TYPE, "tool_error"));
            span.set_status(Status::error("tool returned an error"));
        }
        Ok(_) => {}
        Err(e) => {
            span.set_attribute(KeyValue::new(semconv::ERROR_TYPE, e.code.0.to_string()));
            span.set_status(Status::error(e.message.to_string()));
        }
    }
    span.end();
    result
}

// Generated from rmcp 3.11's own delegating `ServerHandler` impl for `Box<T>` (every method of
// the trait, forwarded), with each request method wrapped in a SERVER span. rmcp's HTTP server
// takes a `ServerHandler`, not a `Service`, so the wrapper must be one; regenerate on an rmcp bump.
#[rustfmt::skip]
#[allow(deprecated)] // forwards the legacy methods too, as rmcp's own wrappers do
mod delegate {
use std::borrow::Cow;
use std::future::Future;

use opentelemetry::trace::Tracer;
use rmcp::ErrorData as McpError;
use rmcp::handler::server::ServerHandler;
use rmcp::model::*;
use rmcp::service::{MaybeSendFuture, NotificationContext, RequestContext, RoleServer, SubscriptionContext};

use super::{TracedService, finish, finish_tool};

impl<S, T> ServerHandler for TracedService<S, T>
where
    S: ServerHandler,
    T: Tracer + Send + Sync + 'static,
    T::Span: Send + Sync + 'static,
{
    fn ping(
        &self,
        context: RequestContext<RoleServer>,
    ) -> impl Future<Output = Result<(), McpError>> + MaybeSendFuture + '_ {
        { let cx = self.start_server_span("ping".into(), None, &context); finish(cx, self.inner.ping(context)) }
    }

    fn initialize(
        &self,
        request: InitializeRequestParams,
        context: RequestContext<RoleServer>,
    ) -> impl Future<Output = Result<InitializeResult, McpError>> + MaybeSendFuture + '_ {
        { let cx = self.start_server_span("initialize".into(), None, &context); finish(cx, self.inner.initialize(request, context)) }
    }

    fn negotiate_initialize(
        &self,
        request: &InitializeRequestParams,
    ) -> Result<InitializeResult, McpError> {
        self.inner.negotiate_initialize(request)
    }

    fn supported_protocol_versions(&self) -> Cow<'static, [ProtocolVersion]> {
        self.inner.supported_protocol_versions()
    }

    fn discover(
        &self,
        context: RequestContext<RoleServer>,
    ) -> impl Future<Output = Result<DiscoverResult, McpError>> + MaybeSendFuture + '_ {
        { let cx = self.start_server_span("server/discover".into(), None, &context); finish(cx, self.inner.discover(context)) }
    }

    fn complete(
        &self,
        request: CompleteRequestParams,
        context: RequestContext<RoleServer>,
    ) -> impl Future<Output = Result<CompleteResult, McpError>> + MaybeSendFuture + '_ {
        { let cx = self.start_server_span("completion/complete".into(), None, &context); finish(cx, self.inner.complete(request, context)) }
    }

    fn set_level(
        &self,
        request: SetLevelRequestParams,
        context: RequestContext<RoleServer>,
    ) -> impl Future<Output = Result<(), McpError>> + MaybeSendFuture + '_ {
        { let cx = self.start_server_span("logging/setLevel".into(), None, &context); finish(cx, self.inner.set_level(request, context)) }
    }

    fn get_prompt(
        &self,
        request: GetPromptRequestParams,
        context: RequestContext<RoleServer>,
    ) -> impl Future<Output = Result<GetPromptResponse, McpError>> + MaybeSendFuture + '_ {
        { let cx = self.start_server_span("prompts/get".into(), None, &context); finish(cx, self.inner.get_prompt(request, context)) }
    }

    fn list_prompts(
        &self,
        request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> impl Future<Output = Result<ListPromptsResult, McpError>> + MaybeSendFuture + '_ {
        { let cx = self.start_server_span("prompts/list".into(), None, &context); finish(cx, self.inner.list_prompts(request, context)) }
    }

    fn list_resources(
        &self,
        request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> impl Future<Output = Result<ListResourcesResult, McpError>> + MaybeSendFuture + '_ {
        { let cx = self.start_server_span("resources/list".into(), None, &context); finish(cx, self.inner.list_resources(request, context)) }
    }

    fn list_resource_templates(
        &self,
        request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> impl Future<Output = Result<ListResourceTemplatesResult, McpError>> + MaybeSendFuture + '_
    {
        { let cx = self.start_server_span("resources/templates/list".into(), None, &context); finish(cx, self.inner.list_resource_templates(request, context)) }
    }

    fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        context: RequestContext<RoleServer>,
    ) -> impl Future<Output = Result<ReadResourceResponse, McpError>> + MaybeSendFuture + '_ {
        { let cx = self.start_server_span("resources/read".into(), None, &context); finish(cx, self.inner.read_resource(request, context)) }
    }

    fn accepted_subscription_filter(
        &self,
        requested: &SubscriptionFilter,
    ) -> Option<SubscriptionFilter> {
        self.inner.accepted_subscription_filter(requested)
    }

    fn listen(
        &self,
        context: SubscriptionContext,
    ) -> impl Future<Output = Result<(), McpError>> + MaybeSendFuture + '_ {
        self.inner.listen(context)
    }

    fn subscribe(
        &self,
        request: SubscribeRequestParams,
        context: RequestContext<RoleServer>,
    ) -> impl Future<Output = Result<(), McpError>> + MaybeSendFuture + '_ {
        { let cx = self.start_server_span("resources/subscribe".into(), None, &context); finish(cx, self.inner.subscribe(request, context)) }
    }

    fn unsubscribe(
        &self,
        request: UnsubscribeRequestParams,
        context: RequestContext<RoleServer>,
    ) -> impl Future<Output = Result<(), McpError>> + MaybeSendFuture + '_ {
        { let cx = self.start_server_span("resources/unsubscribe".into(), None, &context); finish(cx, self.inner.unsubscribe(request, context)) }
    }

    fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> impl Future<Output = Result<CallToolResponse, McpError>> + MaybeSendFuture + '_ {
        { let cx = self.start_server_span("tools/call".into(), Some(request.name.to_string()), &context); finish_tool(cx, self.inner.call_tool(request, context)) }
    }

    fn list_tools(
        &self,
        request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> impl Future<Output = Result<ListToolsResult, McpError>> + MaybeSendFuture + '_ {
        { let cx = self.start_server_span("tools/list".into(), None, &context); finish(cx, self.inner.list_tools(request, context)) }
    }

    fn get_tool(&self, name: &str) -> Option<Tool> {
        self.inner.get_tool(name)
    }

    fn on_custom_request(
        &self,
        request: CustomRequest,
        context: RequestContext<RoleServer>,
    ) -> impl Future<Output = Result<CustomResult, McpError>> + MaybeSendFuture + '_ {
        { let cx = self.start_server_span(request.method.to_string(), None, &context); finish(cx, self.inner.on_custom_request(request, context)) }
    }

    fn on_cancelled(
        &self,
        notification: CancelledNotificationParam,
        context: NotificationContext<RoleServer>,
    ) -> impl Future<Output = ()> + MaybeSendFuture + '_ {
        self.inner.on_cancelled(notification, context)
    }

    fn on_progress(
        &self,
        notification: ProgressNotificationParam,
        context: NotificationContext<RoleServer>,
    ) -> impl Future<Output = ()> + MaybeSendFuture + '_ {
        self.inner.on_progress(notification, context)
    }

    fn on_initialized(
        &self,
        context: NotificationContext<RoleServer>,
    ) -> impl Future<Output = ()> + MaybeSendFuture + '_ {
        self.inner.on_initialized(context)
    }

    fn on_roots_list_changed(
        &self,
        context: NotificationContext<RoleServer>,
    ) -> impl Future<Output = ()> + MaybeSendFuture + '_ {
        self.inner.on_roots_list_changed(context)
    }

    fn on_custom_notification(
        &self,
        notification: CustomNotification,
        context: NotificationContext<RoleServer>,
    ) -> impl Future<Output = ()> + MaybeSendFuture + '_ {
        self.inner.on_custom_notification(notification, context)
    }

    fn get_info(&self) -> ServerConfig {
        self.inner.get_info()
    }

    fn get_task(
        &self,
        request: GetTaskParams,
        context: RequestContext<RoleServer>,
    ) -> impl Future<Output = Result<GetTaskResult, McpError>> + MaybeSendFuture + '_ {
        { let cx = self.start_server_span("tasks/get".into(), None, &context); finish(cx, self.inner.get_task(request, context)) }
    }

    fn update_task(
        &self,
        request: UpdateTaskParams,
        context: RequestContext<RoleServer>,
    ) -> impl Future<Output = Result<(), McpError>> + MaybeSendFuture + '_ {
        { let cx = self.start_server_span("tasks/update".into(), None, &context); finish(cx, self.inner.update_task(request, context)) }
    }

    fn cancel_task(
        &self,
        request: CancelTaskParams,
        context: RequestContext<RoleServer>,
    ) -> impl Future<Output = Result<(), McpError>> + MaybeSendFuture + '_ {
        { let cx = self.start_server_span("tasks/cancel".into(), None, &context); finish(cx, self.inner.cancel_task(request, context)) }
    }

    fn list_skills(
        &self,
        request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> impl Future<Output = Result<ListSkillsResult, McpError>> + MaybeSendFuture + '_
    {
        { let cx = self.start_server_span("skills/list".into(), None, &context); finish(cx, self.inner.list_skills(request, context)) }
    }

    fn get_skill(
        &self,
        request: GetSkillRequestParams,
        context: RequestContext<RoleServer>,
    ) -> impl Future<Output = Result<GetSkillResult, McpError>> + MaybeSendFuture + '_ {
        { let cx = self.start_server_span("skills/get".into(), None, &context); finish(cx, self.inner.get_skill(request, context)) }
    }

    fn read_resource_directory(
        &self,
        request: ReadResourceDirectoryRequestParams,
        context: RequestContext<RoleServer>,
    ) -> impl Future<Output = Result<ReadResourceDirectoryResult, McpError>>
    + MaybeSendFuture
    + '_ {
        { let cx = self.start_server_span("resources/directory/read".into(), None, &context); finish(cx, self.inner.read_resource_directory(request, context)) }
}
}
}
