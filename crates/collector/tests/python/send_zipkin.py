"""Send spans to agentrace's Zipkin receiver with the OpenTelemetry Python SDK's Zipkin exporter.

Used by the collector's Zipkin test as a real Zipkin sender: spans go through
`opentelemetry-exporter-zipkin-json` (Zipkin v2 JSON, POST /api/v2/spans) or, with
`--protocol proto`, `opentelemetry-exporter-zipkin-proto-http` (Zipkin v2 protobuf; it pins
protobuf 3, so it lives in a venv of its own, `.venv-zipkin-proto`).
Prints, as JSON on stdout, what the test compares with what the collector
stores: each span's IDs, name, kind, parent, status and events, as the SDK
recorded them.

Exit status: 0 when every export succeeded, 1 otherwise.
"""

import argparse
import json
import sys

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, Status, StatusCode


class Checked:
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
    parser.add_argument("--endpoint", required=True, help="http://host:port/api/v2/spans")
    parser.add_argument("--protocol", choices=["json", "proto"], default="json")
    args = parser.parse_args()
    if args.protocol == "proto":
        from opentelemetry.exporter.zipkin.proto.http import ZipkinExporter
    else:
        from opentelemetry.exporter.zipkin.json import ZipkinExporter
    provider = TracerProvider(resource=Resource.create({"service.name": "zipkin-planner", "service.instance.id": "z-1"}))
    memory = InMemorySpanExporter()
    sender = Checked(ZipkinExporter(endpoint=args.endpoint))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    provider.add_span_processor(SimpleSpanProcessor(sender))
    tracer = provider.get_tracer("agentrace.zipkin.tests", "0.1.0")
    with tracer.start_as_current_span(
        "invoke_agent planner", kind=SpanKind.SERVER, attributes={"gen_ai.agent.name": "planner", "session.id": "zs-1"}
    ):
        with tracer.start_as_current_span(
            "chat gpt-4o", kind=SpanKind.CLIENT, attributes={"gen_ai.usage.input_tokens": 12}
        ) as chat:
            chat.add_event("retry", {"attempt": 2})
        with tracer.start_as_current_span("send tasks", kind=SpanKind.PRODUCER) as send:
            send.set_status(Status(StatusCode.ERROR, "queue full"))
        with tracer.start_as_current_span("plan"):
            pass
    spans = memory.get_finished_spans()
    provider.shutdown()
    ok = all(r == SpanExportResult.SUCCESS for r in sender.results) and len(sender.results) == len(spans)
    json.dump(
        {
            "ok": ok,
            "spans": [
                {
                    "trace_id": format(s.context.trace_id, "032x"),
                    "span_id": format(s.context.span_id, "016x"),
                    "parent_id": format(s.parent.span_id, "016x") if s.parent else None,
                    "name": s.name,
                    "kind": s.kind.name,
                    # Rounded to microseconds as the exporter rounds them.
                    "start_us": (s.start_time + 500) // 1000,
                    "status": s.status.status_code.name,
                    "events": [e.name for e in s.events],
                }
                for s in spans
            ],
        },
        sys.stdout,
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
