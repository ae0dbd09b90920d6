//! Claim: spans sent by the official Rust OpenTelemetry SDK
//! (`opentelemetry-otlp`) over gRPC, HTTP/protobuf and HTTP/JSON, gzip or
//! not, come back from `/api/v3/traces/{id}` equal in every field to what the
//! SDK encoded, but for the `sensitive` events that redaction drops (and
//! counts on their span).

use crate::support;

use opentelemetry::trace::{
    Link, SpanContext, SpanKind, Status, TraceContextExt, TraceFlags, TraceState, Tracer, TracerProvider as _,
};
use opentelemetry::{Context, KeyValue, SpanId, TraceId};
use opentelemetry_otlp::{Compression, Protocol, SpanExporter, WithExportConfig, WithHttpConfig, WithTonicConfig};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::transform::common::tonic::ResourceAttributesWithSchema;
use opentelemetry_proto::transform::trace::tonic::group_spans_by_resource_and_scope;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider};

/// Emits one agent request: a server root under a remote parent carrying
/// tracestate, an LLM call, a tool call with a link, an error and events.
fn emit(provider: &SdkTracerProvider) -> String {
    let tracer = provider.tracer_with_scope(
        opentelemetry::InstrumentationScope::builder("agentrace.tests.rust")
            .with_version("0.9.0")
            .with_schema_url("https://opentelemetry.io/schemas/1.30.0")
            .with_attributes([KeyValue::new("scope.attr", "s")])
            .build(),
    );
    let remote = SpanContext::new(
        TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").unwrap(),
        SpanId::from_hex("00f067aa0ba902b7").unwrap(),
        TraceFlags::SAMPLED,
        true,
        TraceState::from_key_value([("vendor", "abc"), ("agentrace", "x1")]).unwrap(),
    );
    let parent = Context::new().with_remote_span_context(remote);
    let root = tracer
        .span_builder("invoke_agent researcher")
        .with_kind(SpanKind::Server)
        .with_attributes([
            KeyValue::new("gen_ai.operation.name", "invoke_agent"),
            KeyValue::new("gen_ai.agent.name", "researcher"),
            KeyValue::new("session.id", "rust-session"),
            KeyValue::new("app.agent.delegation.depth", 1_i64),
            KeyValue::new("score", 0.75),
            KeyValue::new("ok", true),
            KeyValue::new(
                "tags",
                opentelemetry::Value::Array(vec![opentelemetry::StringValue::from("a"), "b".into()].into()),
            ),
            KeyValue::new("ints", opentelemetry::Value::Array(vec![1_i64, 2].into())),
        ])
        .start_with_context(&tracer, &parent);
    let cx = parent.with_span(root);
    {
        let mut llm = tracer
            .span_builder("chat claude")
            .with_kind(SpanKind::Client)
            .with_attributes([
                KeyValue::new("gen_ai.request.model", "claude"),
                KeyValue::new("gen_ai.usage.input_tokens", 900_i64),
            ])
            .start_with_context(&tracer, &cx);
        use opentelemetry::trace::Span as _;
        llm.add_event("gen_ai.choice", vec![KeyValue::new("sensitive", true), KeyValue::new("index", 0_i64)]);
        llm.end();
        let link = SpanContext::new(
            TraceId::from_hex("0af7651916cd43dd8448eb211c80319c").unwrap(),
            SpanId::from_hex("b7ad6b7169203331").unwrap(),
            TraceFlags::SAMPLED,
            true,
            TraceState::default(),
        );
        let mut tool = tracer
            .span_builder("execute_tool fetch")
            .with_links(vec![Link::new(link, vec![KeyValue::new("agentrace.link.kind", "producer")], 0)])
            .start_with_context(&tracer, &cx);
        tool.set_status(Status::error("tool returned malformed JSON"));
        tool.add_event("exception", vec![KeyValue::new("exception.type", "ParseError")]);
        tool.end();
    }
    cx.span().end();
    "4bf92f3577b34da6a3ce929d0e0e4736".to_owned()
}

fn resource() -> Resource {
    Resource::builder_empty()
        .with_service_name("rust-researcher")
        .with_attributes([KeyValue::new("service.instance.id", "r-1"), KeyValue::new("host.arch", "amd64")])
        .build()
}

/// What the SDK's own OTLP encoding of the finished spans is.
fn encoded(memory: &InMemorySpanExporter) -> ExportTraceServiceRequest {
    let spans = memory.get_finished_spans().unwrap();
    assert_eq!(spans.len(), 3);
    let resource = ResourceAttributesWithSchema::from(&resource());
    ExportTraceServiceRequest { resource_spans: group_spans_by_resource_and_scope(spans, &resource) }
}

fn check(collector: &support::Running, memory: &InMemorySpanExporter, trace_id: &str) {
    let mut sent = encoded(memory);
    let mut got = support::fetch_trace(&collector.api(), trace_id);
    // The Rust SDK keeps resource attributes in a HashMap, so two encodings
    // of the same resource list them in different orders; order carries no
    // meaning there, so compare them sorted.
    for request in [&mut sent, &mut got] {
        for rs in &mut request.resource_spans {
            if let Some(r) = rs.resource.as_mut() {
                r.attributes.sort_by(|a, b| a.key.cmp(&b.key));
            }
        }
    }
    support::assert_same_spans(&support::without_sensitive_events(&sent), &got);
}

/// Sends one agent request through `exporter` beside an in-memory copy,
/// and checks the collector returns what the SDK encoded.
fn send_and_check(collector: &support::Running, exporter: SpanExporter) {
    let memory = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_resource(resource())
        .with_simple_exporter(memory.clone())
        .with_simple_exporter(exporter)
        .build();
    let trace_id = emit(&provider);
    provider.force_flush().unwrap();
    check(collector, &memory, &trace_id);
    provider.shutdown().unwrap();
}

#[test]
fn over_grpc_with_gzip() {
    let collector = support::start(|_| {});
    let exporter = collector.runtime.block_on(async {
        SpanExporter::builder()
            .with_tonic()
            .with_endpoint(collector.grpc())
            .with_compression(Compression::Gzip)
            .build()
            .unwrap()
    });
    // The simple processor exports on the thread that ends the span; tonic
    // needs that thread to see the runtime.
    let _guard = collector.runtime.enter();
    send_and_check(&collector, exporter);
}

fn over_http(protocol: Protocol, gzip: bool) {
    let collector = support::start(|_| {});
    let mut builder = SpanExporter::builder()
        .with_http()
        .with_protocol(protocol)
        .with_endpoint(format!("{}/v1/traces", collector.http()));
    if gzip {
        builder = builder.with_compression(Compression::Gzip);
    }
    let exporter = builder.build().unwrap();
    send_and_check(&collector, exporter);
}

#[test]
fn over_http_protobuf_with_gzip() {
    over_http(Protocol::HttpBinary, true);
}

#[test]
fn over_http_json() {
    over_http(Protocol::HttpJson, false);
}
