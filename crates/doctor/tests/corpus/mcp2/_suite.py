"""What every process of the mcp2 suite shares: its TracerProvider, and the ground-truth tap.

`tracing(out, service)` is the setup each service of a real deployment has: one
TracerProvider (service.name, service.instance.id), the BaggageSpanProcessor that copies
`session.id` from baggage onto spans. `TruthTap` is not part of that deployment: it only
READS each span as it starts (IDs, parent, a few attributes) and notes it, so that the
driver can walk the real parent chain of a hand-off when it writes truth.json. It never
changes a span.
"""

import os

from opentelemetry import trace
from opentelemetry.processor.baggage import ALLOW_ALL_BAGGAGE_KEYS, BaggageSpanProcessor
from opentelemetry.sdk.trace import SpanProcessor

import record

TAPPED = ("jsonrpc.request.id", "mcp.method.name", "gen_ai.tool.name", "session.id")


def hexid(span_context):
    if span_context is None or not span_context.is_valid:
        return None
    return format(span_context.span_id, "016x")


class TruthTap(SpanProcessor):
    def __init__(self, out, service):
        self.out = out
        self.service = service

    def on_start(self, span, parent_context=None):
        ctx = span.get_span_context()
        attrs = {k: span.attributes.get(k) for k in TAPPED if span.attributes and k in span.attributes}
        record.note(self.out, kind="span", service=self.service, pid=os.getpid(),
                    trace=format(ctx.trace_id, "032x"), span=format(ctx.span_id, "016x"),
                    parent=hexid(span.parent), name=span.name, attrs=attrs)

    def on_end(self, span):
        pass

    def shutdown(self):
        pass

    def force_flush(self, timeout_millis=30000):
        return True


def tracing(out, service):
    tp = record.provider(out, service)
    tp.add_span_processor(BaggageSpanProcessor(ALLOW_ALL_BAGGAGE_KEYS))
    tp.add_span_processor(TruthTap(out, service))
    return tp, trace.get_tracer(service)
