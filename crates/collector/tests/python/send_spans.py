"""Send agent-shaped spans to agentrace with the official OpenTelemetry Python SDK.

Used by the collector's integration tests as a real OTLP client. Every span
goes through the SDK's own OTLP exporter (gRPC or HTTP/protobuf) to the
collector, and through an in-memory exporter beside it; at the end the
script prints, as JSON on stdout, the spans the SDK sent, encoded by the
SDK's own OTLP encoder, so the test can compare them field by field with
what the collector returns.

Exit status: 0 when every export was acknowledged, 1 otherwise.
"""

import argparse
import json
import sys

from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Link, SpanKind, Status, StatusCode, TraceState


def make_exporter(protocol, endpoint, headers):
    if protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        return OTLPSpanExporter(endpoint=endpoint, insecure=not endpoint.startswith("https"), headers=headers)
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    return OTLPSpanExporter(endpoint=endpoint.rstrip("/") + "/v1/traces", headers=headers)


class CountingExporter:
    """Wraps an exporter and remembers whether every export succeeded."""

    def __init__(self, inner):
        self.inner = inner
        self.results = []

    def export(self, spans):
        result = self.inner.export(spans)
        self.results.append(result)
        return result

    def shutdown(self):
        self.inner.shutdown()

    def force_flush(self, timeout_millis=30000):
        return True


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--protocol", choices=["grpc", "http/protobuf"], required=True)
    parser.add_argument("--endpoint", required=True)
    parser.add_argument("--header", action="append", default=[], help="key=value")
    parser.add_argument("--service", default="py-orchestrator")
    parser.add_argument("--requests", type=int, default=1, help="user requests to simulate")
    args = parser.parse_args()
    headers = dict(h.split("=", 1) for h in args.header) or None

    resource = Resource.create(
        {
            "service.name": args.service,
            "service.instance.id": "instance-1",
            "deployment.environment.name": "test",
            "process.pid": 4242,
        }
    )
    provider = TracerProvider(resource=resource)
    memory = InMemorySpanExporter()
    sender = CountingExporter(make_exporter(args.protocol, args.endpoint, headers))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    provider.add_span_processor(SimpleSpanProcessor(sender))
    tracer = provider.get_tracer("agentrace.tests", "1.2.3", schema_url="https://opentelemetry.io/schemas/1.30.0")

    for i in range(args.requests):
        state = TraceState([("vendor", "v1"), ("agentrace", f"r{i}")])
        with tracer.start_as_current_span(
            "invoke_agent orchestrator",
            kind=SpanKind.SERVER,
            attributes={
                "gen_ai.operation.name": "invoke_agent",
                "gen_ai.agent.name": "orchestrator",
                "session.id": f"session-{i}",
                "gen_ai.conversation.id": f"conv-{i}",
                "user.id": "user-7",
                "app.agent.delegation.depth": 0,
                "ratio": 0.25,
                "flag": True,
                "tags": ["plan", "route"],
                "counts": [1, 2, 3],
                "weights": [0.5, 1.5],
                "bools": [True, False],
            },
        ) as root:
            root.add_event("gen_ai.user.message", {"sensitive": True, "content": "hello ünïcode ✓"})
            with tracer.start_as_current_span(
                "chat gpt-4o",
                kind=SpanKind.CLIENT,
                attributes={
                    "gen_ai.operation.name": "chat",
                    "gen_ai.provider.name": "openai",
                    "gen_ai.request.model": "gpt-4o",
                    "gen_ai.usage.input_tokens": 1200,
                    "gen_ai.usage.output_tokens": 340,
                },
            ):
                pass
            producer_ctx = None
            with tracer.start_as_current_span(
                "send tasks",
                kind=SpanKind.PRODUCER,
                attributes={
                    "messaging.system": "jobtable",
                    "messaging.destination.name": "tasks",
                    "messaging.message.id": f"msg-{i}",
                    "messaging.operation.type": "send",
                },
            ) as producer:
                producer_ctx = producer.get_span_context()
            link_ctx = trace.SpanContext(
                producer_ctx.trace_id, producer_ctx.span_id, is_remote=True,
                trace_flags=producer_ctx.trace_flags, trace_state=state,
            )
            with tracer.start_as_current_span(
                "execute_tool search",
                kind=SpanKind.INTERNAL,
                links=[Link(link_ctx, {"agentrace.link.kind": "test", "n": 1})],
                attributes={"gen_ai.tool.name": "search", "gen_ai.tool.call.id": f"call-{i}"},
            ) as tool:
                try:
                    raise ValueError("malformed JSON from tool")
                except ValueError as exc:
                    tool.record_exception(exc)
                    tool.set_status(Status(StatusCode.ERROR, "tool returned malformed JSON"))
            with tracer.start_as_current_span("ok step") as ok:
                ok.set_status(Status(StatusCode.OK))
        # A consumer in a fresh trace, as a broken hand-off leaves it.
        with tracer.start_as_current_span(
            "process tasks",
            context=trace.set_span_in_context(trace.INVALID_SPAN),
            kind=SpanKind.CONSUMER,
            attributes={"messaging.message.id": f"msg-{i}", "messaging.system": "jobtable"},
        ):
            pass

    spans = memory.get_finished_spans()
    sent = encode_spans(spans).SerializeToString()
    provider.shutdown()
    ok = all(r == SpanExportResult.SUCCESS for r in sender.results) and len(sender.results) == len(spans)
    json.dump(
        {
            "sent_hex": sent.hex(),
            "spans": len(spans),
            "exports_ok": ok,
            "trace_ids": sorted({format(s.context.trace_id, "032x") for s in spans}),
        },
        sys.stdout,
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
