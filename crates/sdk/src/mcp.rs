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
//!
//! ```
//! use agentrace::mcp::{TracedService, call_tool};
//! use opentelemetry::trace::{SpanKind, TracerProvider as _};
//! use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider};
//! use rmcp::model::{CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock};
//! use rmcp::model::{ServerCapabilities, ServerConfig};
//! use rmcp::service::{RequestContext, RoleServer};
//! use rmcp::{ErrorData, ServerHandler, ServiceExt};
//!
//! // Any rmcp server handler.
//! struct Echo;
//! impl ServerHandler for Echo {
//!     async fn call_tool(
//!         &self,
//!         request: CallToolRequestParams,
//!         _: RequestContext<RoleServer>,
//!     ) -> Result<CallToolResponse, ErrorData> {
//!         Ok(CallToolResult::success(vec![ContentBlock::text(request.name.to_string())]).into())
//!     }
//!     fn get_info(&self) -> ServerConfig {
//!         ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let exporter = InMemorySpanExporter::default();
//! let provider = SdkTracerProvider::builder().with_simple_exporter(exporter.clone()).build();
//! let (client_io, server_io) = tokio::io::duplex(64 * 1024);
//!
//! // The server side: the handler wrapped, served over any transport (a pipe here).
//! let server = TracedService::new(Echo, provider.tracer("tools"));
//! tokio::spawn(async move {
//!     let running = server.serve(tokio::io::split(server_io)).await.expect("server starts");
//!     running.waiting().await
//! });
//!
//! // The client side: a CLIENT span around the call, its context in the request's `_meta`.
//! let client = ().serve(tokio::io::split(client_io)).await.unwrap();
//! let tracer = provider.tracer("agent");
//! call_tool(&tracer, client.peer(), CallToolRequestParams::new("search"), None).await.unwrap();
//! client.cancel().await.unwrap();
//!
//! let spans = exporter.get_finished_spans().unwrap();
//! let of = |kind: SpanKind| spans.iter().find(|s| s.name == "tools/call search" && s.span_kind == kind);
//! let (client_span, server_span) = (of(SpanKind::Client).unwrap(), of(SpanKind::Server).unwrap());
//! assert_eq!(server_span.parent_span_id, client_span.span_context.span_id());
//! # }
//! ```

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
    // `None`: the installed propagator (see `install_global_propagator`), read per request.
    propagator: Option<W3CPropagator>,
}

impl<S, T> TracedService<S, T> {
    /// Wraps `inner` (any `rmcp` server handler), recording spans with `tracer`.
    pub fn new(inner: S, tracer: T) -> Self {
        TracedService { inner, tracer, propagator: None }
    }

    /// Uses `propagator` to read `_meta` and headers instead of the installed one (by default,
    /// the one [`install_global_propagator`](crate::propagation::install_global_propagator) set,
    /// with its inbound-baggage policy).
    pub fn with_propagator(mut self, propagator: W3CPropagator) -> Self {
        self.propagator = Some(propagator);
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
    fn start_server_span(
        &self,
        method: Cow<'static, str>,
        tool: Option<String>,
        context: &RequestContext<RoleServer>,
    ) -> Context {
        let installed;
        let propagator = match &self.propagator {
            Some(p) => p,
            None => {
                installed = crate::propagation::installed_propagator();
                &installed
            }
        };
        let parts = context.extensions.get::<http::request::Parts>();
        let meta_cx = propagator.extract_with_context(&Context::new(), &MetaExtractor(&context.meta.0.0));
        let transport_cx = parts
            .map(|p| propagator.extract_with_context(&Context::new(), &HeaderExtractor(&p.headers)))
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
            None => method,
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

// rmcp's HTTP server takes a `ServerHandler`, not a `Service`, so the wrapper must be one, and a
// handler wrapper must name every method of the trait (rmcp's own `Box`/`Arc` wrappers do, through
// a macro it does not export). The two tables below are that list, one line per method, and the
// span code is written once: a request method starts a SERVER span named by rmcp's own method
// constant and runs the inner handler with it current; the others are forwarded unchanged. The
// test `every_server_handler_method_is_forwarded` reads the `ServerHandler` of the rmcp that
// `cargo` resolved and fails on a method missing here, so an rmcp bump that adds one says which
// line to add instead of silently answering with the trait's default.
mod delegate {
    use std::borrow::Cow;
    use std::future::Future;

    use opentelemetry::trace::Tracer;
    use rmcp::ErrorData as McpError;
    use rmcp::handler::server::ServerHandler;
    use rmcp::model::*;
    use rmcp::service::{MaybeSendFuture, NotificationContext, RequestContext, RoleServer, SubscriptionContext};

    use super::{TracedService, finish, finish_tool};

    /// `ServerHandler` for [`TracedService`] from three lists: request methods (`name(arguments
    /// before the context) -> result = rmcp's method constant`), each in a SERVER span; methods
    /// written out after them (named in `written`); and methods forwarded as they are. It also
    /// names them all in `FORWARDED`, for the completeness test.
    macro_rules! traced_server_handler {
        (
            requests { $($name:ident($($arg:ident: $ty:ty),*) -> $out:ty = $method:ty;)* }
            forwarded { $($fname:ident($($farg:ident: $fty:ty),*) -> $fout:ty;)* }
            written { $($wname:ident),* }
            $($written:tt)*
        ) => {
            #[cfg(test)]
            pub(super) const FORWARDED: &[&str] =
                &[$(stringify!($name),)* $(stringify!($fname),)* $(stringify!($wname),)*];

            #[allow(deprecated)] // forwards the legacy methods too, as rmcp's own wrappers do
            impl<S, T> ServerHandler for TracedService<S, T>
            where
                S: ServerHandler,
                T: Tracer + Send + Sync + 'static,
                T::Span: Send + Sync + 'static,
            {
                $(
                    fn $name(
                        &self,
                        $($arg: $ty,)*
                        context: RequestContext<RoleServer>,
                    ) -> impl Future<Output = Result<$out, McpError>> + MaybeSendFuture + '_ {
                        let method = Cow::Borrowed(<$method as ConstString>::VALUE);
                        let cx = self.start_server_span(method, None, &context);
                        finish(cx, self.inner.$name($($arg,)* context))
                    }
                )*

                $(
                    fn $fname(&self, $($farg: $fty),*) -> $fout {
                        self.inner.$fname($($farg),*)
                    }
                )*

                $($written)*
            }
        };
    }

    traced_server_handler! {
        requests {
            ping() -> () = PingRequestMethod;
            initialize(request: InitializeRequestParams) -> InitializeResult = InitializeResultMethod;
            discover() -> DiscoverResult = DiscoverRequestMethod;
            complete(request: CompleteRequestParams) -> CompleteResult = CompleteRequestMethod;
            set_level(request: SetLevelRequestParams) -> () = SetLevelRequestMethod;
            get_prompt(request: GetPromptRequestParams) -> GetPromptResponse = GetPromptRequestMethod;
            list_prompts(request: Option<PaginatedRequestParams>) -> ListPromptsResult = ListPromptsRequestMethod;
            list_resources(request: Option<PaginatedRequestParams>) -> ListResourcesResult = ListResourcesRequestMethod;
            list_resource_templates(request: Option<PaginatedRequestParams>) -> ListResourceTemplatesResult
                = ListResourceTemplatesRequestMethod;
            read_resource(request: ReadResourceRequestParams) -> ReadResourceResponse = ReadResourceRequestMethod;
            subscribe(request: SubscribeRequestParams) -> () = SubscribeRequestMethod;
            unsubscribe(request: UnsubscribeRequestParams) -> () = UnsubscribeRequestMethod;
            list_tools(request: Option<PaginatedRequestParams>) -> ListToolsResult = ListToolsRequestMethod;
            get_task(request: GetTaskParams) -> GetTaskResult = GetTaskMethod;
            update_task(request: UpdateTaskParams) -> () = UpdateTaskMethod;
            cancel_task(request: CancelTaskParams) -> () = CancelTaskMethod;
            list_skills(request: Option<PaginatedRequestParams>) -> ListSkillsResult = ListSkillsRequestMethod;
            get_skill(request: GetSkillRequestParams) -> GetSkillResult = GetSkillRequestMethod;
            read_resource_directory(request: ReadResourceDirectoryRequestParams) -> ReadResourceDirectoryResult
                = ReadResourceDirectoryRequestMethod;
        }
        forwarded {
            negotiate_initialize(request: &InitializeRequestParams) -> Result<InitializeResult, McpError>;
            supported_protocol_versions() -> Cow<'static, [ProtocolVersion]>;
            accepted_subscription_filter(requested: &SubscriptionFilter) -> Option<SubscriptionFilter>;
            // A subscription stream is not a request with a reply: no span of its own.
            listen(context: SubscriptionContext) -> impl Future<Output = Result<(), McpError>> + MaybeSendFuture + '_;
            get_tool(name: &str) -> Option<Tool>;
            on_cancelled(notification: CancelledNotificationParam, context: NotificationContext<RoleServer>)
                -> impl Future<Output = ()> + MaybeSendFuture + '_;
            on_progress(notification: ProgressNotificationParam, context: NotificationContext<RoleServer>)
                -> impl Future<Output = ()> + MaybeSendFuture + '_;
            on_initialized(context: NotificationContext<RoleServer>) -> impl Future<Output = ()> + MaybeSendFuture + '_;
            on_roots_list_changed(context: NotificationContext<RoleServer>)
                -> impl Future<Output = ()> + MaybeSendFuture + '_;
            on_custom_notification(notification: CustomNotification, context: NotificationContext<RoleServer>)
                -> impl Future<Output = ()> + MaybeSendFuture + '_;
            get_info() -> ServerConfig;
        }
        written { call_tool, on_custom_request }

        // A tool call's span also names the tool, and a tool's error result fails it.
        fn call_tool(
            &self,
            request: CallToolRequestParams,
            context: RequestContext<RoleServer>,
        ) -> impl Future<Output = Result<CallToolResponse, McpError>> + MaybeSendFuture + '_ {
            let method = Cow::Borrowed(<CallToolRequestMethod as ConstString>::VALUE);
            let cx = self.start_server_span(method, Some(request.name.to_string()), &context);
            finish_tool(cx, self.inner.call_tool(request, context))
        }

        // A custom request is named by its own method.
        fn on_custom_request(
            &self,
            request: CustomRequest,
            context: RequestContext<RoleServer>,
        ) -> impl Future<Output = Result<CustomResult, McpError>> + MaybeSendFuture + '_ {
            let cx = self.start_server_span(Cow::Owned(request.method.to_string()), None, &context);
            finish(cx, self.inner.on_custom_request(request, context))
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::path::PathBuf;
    use std::process::Command;

    /// The source of `rmcp`'s `handler/server.rs` in the build `cargo` resolved.
    fn rmcp_server_handler_source() -> String {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
        // Only this machine's dependencies: offline, cargo has not fetched
        // those of other platforms (a crate for Redox, say).
        let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".to_owned());
        let version = Command::new(rustc).arg("-vV").output().expect("rustc -vV runs");
        let version = String::from_utf8_lossy(&version.stdout).into_owned();
        let host = version.lines().find_map(|l| l.strip_prefix("host: ")).expect("rustc names its host").to_owned();
        let out = Command::new(cargo)
            .args(["metadata", "--format-version", "1", "--offline", "--filter-platform", &host, "--manifest-path"])
            .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml"))
            .output()
            .expect("cargo metadata runs");
        assert!(out.status.success(), "cargo metadata: {}", String::from_utf8_lossy(&out.stderr));
        let meta: serde_json::Value = serde_json::from_slice(&out.stdout).expect("cargo metadata is JSON");
        let manifest = meta["packages"]
            .as_array()
            .expect("packages")
            .iter()
            .find(|p| p["name"] == "rmcp")
            .and_then(|p| p["manifest_path"].as_str())
            .expect("rmcp is a dependency");
        let path = PathBuf::from(manifest).with_file_name("src/handler/server.rs");
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    /// The methods of rmcp's `ServerHandler`, read from the macro that declares them (doc
    /// examples, which are comments, aside).
    fn server_handler_methods(source: &str) -> BTreeSet<String> {
        let start = source
            .find("macro_rules! server_handler_methods")
            .expect("rmcp declares ServerHandler's methods in a macro");
        let body = &source[start..];
        let end = body[1..].find("macro_rules!").map_or(body.len(), |i| i + 1);
        body[..end]
            .lines()
            .map(str::trim_start)
            .filter(|line| !line.starts_with("//"))
            .filter_map(|line| line.strip_prefix("fn ").or_else(|| line.strip_prefix("async fn ")))
            .filter_map(|rest| rest.split(['(', '<']).next())
            .map(str::to_owned)
            .collect()
    }

    // A handler wrapper that misses a method answers that request with the trait's default (most
    // often "method not found") whatever the wrapped handler does: this fails instead, naming it.
    #[test]
    fn every_server_handler_method_is_forwarded() {
        let theirs = server_handler_methods(&rmcp_server_handler_source());
        assert!(theirs.contains("call_tool") && theirs.contains("get_info"), "parsed rmcp's ServerHandler: {theirs:?}");
        let ours: BTreeSet<String> = super::delegate::FORWARDED.iter().map(|s| (*s).to_owned()).collect();
        let missing: Vec<_> = theirs.difference(&ours).collect();
        let gone: Vec<_> = ours.difference(&theirs).collect();
        assert!(missing.is_empty(), "rmcp's ServerHandler has methods TracedService does not forward: {missing:?}");
        assert!(gone.is_empty(), "TracedService lists methods rmcp's ServerHandler no longer has: {gone:?}");
    }
}
