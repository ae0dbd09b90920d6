"""Replay a broken multi-agent flow with the official OpenTelemetry Python SDK.

Three services, each with its own tracer provider and OTLP/gRPC exporter, as
three processes of a real system would have:

- `orchestrator` plans, hands a task to the researcher through a job queue
  (a PRODUCER span with `messaging.message.id`), and calls an MCP tool
  (a CLIENT span with `mcp.session.id` and `jsonrpc.request.id`);
- `researcher` consumes the task in a trace of its own (the queue dropped
  the context) and calls an LLM; the prompt and the completion are recorded
  as span events tagged `sensitive`, the prompt also as the content attribute
  `gen_ai.input.messages`, and an API key leaks into an attribute;
- `mcp-search` serves the tool call in a trace of its own (the MCP hop
  dropped the context).

Prints one JSON object: the trace IDs (hex) of the three traces and the
secrets that must not leave the collector. Exit status 0 when every export
was acknowledged.
"""

import argparse
import json
import sys

from opentelemetry import context as otel_context
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import SpanKind, set_span_in_context

PROMPT = "Summarise the Q3 incident report for ACME, customer #99812"
COMPLETION = "ACME's Q3 outage lasted 4 hours because of a bad config push"
API_KEY = "sk-proj-Zx8Kq2Lm4Np6Rt8Vw0Yb2Dc4"


# The MCP call's attributes, on the client's span and on the server's.
MCP_CALL = {
    "mcp.method.name": "tools/call",
    "gen_ai.tool.name": "search",
    "mcp.session.id": "mcp-7",
    "jsonrpc.request.id": "3",
}


def job(operation):
    """Messaging attributes of the job hand-off, on its producer and its consumer."""
    return {
        "messaging.system": "jobtable",
        "messaging.destination.name": "tasks",
        "messaging.operation.type": operation,
        "messaging.message.id": "job-42",
    }


class Tracked:
    def __init__(self, inner):
        self.inner = inner
        self.ok = True

    def export(self, spans):
        result = self.inner.export(spans)
        self.ok = self.ok and result.name == "SUCCESS"
        return result

    def shutdown(self):
        self.inner.shutdown()

    def force_flush(self, timeout_millis=30000):
        return True


def provider(service, endpoint, exporters):
    p = TracerProvider(resource=Resource.create({"service.name": service}))
    e = Tracked(OTLPSpanExporter(endpoint=endpoint, insecure=True))
    exporters.append(e)
    p.add_span_processor(SimpleSpanProcessor(e))
    return p.get_tracer("broken-flow", "1.0")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--endpoint", required=True, help="OTLP/gRPC endpoint")
    parser.add_argument("--session", default="session-broken-1")
    args = parser.parse_args()
    exporters = []
    orchestrator = provider("orchestrator", args.endpoint, exporters)
    researcher = provider("researcher", args.endpoint, exporters)
    mcp = provider("mcp-search", args.endpoint, exporters)
    session = {"session.id": args.session}
    empty = otel_context.Context()

    with orchestrator.start_as_current_span(
        "invoke_agent orchestrator",
        kind=SpanKind.SERVER,
        attributes={**session, "gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": "orchestrator"},
    ) as root:
        with orchestrator.start_as_current_span(
            "send tasks",
            kind=SpanKind.PRODUCER,
            attributes={**session, **job("send")},
        ):
            pass
        # The queue lost the context: the researcher starts a new trace.
        with researcher.start_as_current_span(
            "process tasks",
            context=empty,
            kind=SpanKind.CONSUMER,
            attributes={**session, **job("process")},
        ) as consumer:
            with researcher.start_as_current_span(
                "invoke_agent researcher",
                attributes={**session, "gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": "researcher"},
            ):
                with researcher.start_as_current_span(
                    "chat gpt-4o",
                    kind=SpanKind.CLIENT,
                    attributes={
                        **session,
                        "gen_ai.operation.name": "chat",
                        "gen_ai.provider.name": "openai",
                        "gen_ai.request.model": "gpt-4o",
                        "gen_ai.usage.input_tokens": 1500,
                        "gen_ai.usage.output_tokens": 250,
                        "gen_ai.input.messages": json.dumps([{"role": "user", "content": PROMPT}]),
                        "http.request.header.authorization": f"Bearer {API_KEY}",
                    },
                ) as chat:
                    chat.add_event("gen_ai.user.message", {"sensitive": True, "content": PROMPT})
                    chat.add_event("gen_ai.choice", {"sensitive": "true", "content": COMPLETION})
        trace_researcher = consumer.get_span_context().trace_id
        with orchestrator.start_as_current_span(
            "tools/call search",
            context=set_span_in_context(root),
            kind=SpanKind.CLIENT,
            attributes={**session, **MCP_CALL},
        ):
            # The MCP hop lost the context: the server starts a new trace.
            with mcp.start_as_current_span(
                "tools/call search",
                context=empty,
                kind=SpanKind.SERVER,
                attributes=MCP_CALL,
            ) as server:
                trace_mcp = server.get_span_context().trace_id
        trace_root = root.get_span_context().trace_id

    ok = all(e.ok for e in exporters)
    json.dump(
        {
            "orchestrator": format(trace_root, "032x"),
            "researcher": format(trace_researcher, "032x"),
            "mcp": format(trace_mcp, "032x"),
            "secrets": [PROMPT, COMPLETION, API_KEY],
            "spans": 7,
        },
        sys.stdout,
    )
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
