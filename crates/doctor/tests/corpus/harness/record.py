"""Recording real libraries' spans, and the ground truth, for the doctor's corpus.

Shared by every suite under crates/doctor/tests/corpus/. A case is one run of
real code (real instrumentation packages from PyPI, real brokers and servers
where the library needs one, a named stand-in only for an LLM). It writes:

    <out>/<case>/spans.jsonl   one OTLP ExportTraceServiceRequest (JSON, hex IDs) per line,
                               as the OpenTelemetry Collector's file exporter writes them,
                               encoded by the official OTLP encoder of the Python SDK
    <out>/<case>/truth.json    what really happened, recorded while it ran (see Truth)

Every process of a case (a Celery worker, an MCP server subprocess, ...) calls
`provider(out_dir, service)` to get a TracerProvider whose spans go to its own
file `<case>/parts/spans-<service>-<pid>.jsonl`, and `note(out_dir, **facts)` to
write facts it saw (span IDs at a hand-off) to `<case>/parts/notes-<pid>.jsonl`.
The case's driver then calls `finish(case_dir, truth)`, which merges the parts
and writes the two files above. Nothing here invents a span.
"""

import base64
import glob
import json
import os
import threading

from google.protobuf.json_format import MessageToDict
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult


def hex_ids(request):
    """OTLP JSON wants trace and span IDs as lowercase hex; protobuf's JSON printer writes base64."""

    def fix(obj, keys):
        for k in keys:
            if obj.get(k):
                obj[k] = base64.b64decode(obj[k]).hex()

    for rs in request.get("resourceSpans", []):
        for ss in rs.get("scopeSpans", []):
            for span in ss.get("spans", []):
                fix(span, ("traceId", "spanId", "parentSpanId"))
                for link in span.get("links", []):
                    fix(link, ("traceId", "spanId"))
    return request


class JsonLinesExporter(SpanExporter):
    """Writes each export as one OTLP JSON line, through the SDK's own OTLP encoder."""

    def __init__(self, path):
        self.path = path
        self.lock = threading.Lock()
        os.makedirs(os.path.dirname(path), exist_ok=True)

    def export(self, spans):
        line = json.dumps(hex_ids(MessageToDict(encode_spans(spans))), separators=(",", ":"))
        with self.lock, open(self.path, "a") as f:
            f.write(line + "\n")
        return SpanExportResult.SUCCESS

    def shutdown(self):
        pass


def case_dir(out_dir):
    os.makedirs(os.path.join(out_dir, "parts"), exist_ok=True)
    return out_dir


def provider(out_dir, service, instance=None, set_global=True, extra=None):
    """A TracerProvider for one service of the case, exporting to the case's parts.

    `instance` sets `service.instance.id` (default: the pid), as real deployments do.
    """
    attrs = {
        "service.name": service,
        "service.instance.id": instance or f"{service}-{os.getpid()}",
    }
    attrs.update(extra or {})
    resource = Resource.create(attrs)
    tp = TracerProvider(resource=resource)
    path = os.path.join(case_dir(out_dir), "parts", f"spans-{service}-{os.getpid()}.jsonl")
    tp.add_span_processor(SimpleSpanProcessor(JsonLinesExporter(path)))
    if set_global:
        trace.set_tracer_provider(tp)
    return tp


def current_ids(span=None):
    """(trace_id, span_id) of the current (or given) span, as lowercase hex; None when there is none."""
    span = span or trace.get_current_span()
    ctx = span.get_span_context()
    if not ctx.is_valid:
        return None
    return (format(ctx.trace_id, "032x"), format(ctx.span_id, "016x"))


def note(out_dir, **facts):
    """Appends one fact (a dict) seen by this process to the case's notes."""
    path = os.path.join(case_dir(out_dir), "parts", f"notes-{os.getpid()}.jsonl")
    with open(path, "a") as f:
        f.write(json.dumps(facts, sort_keys=True) + "\n")


def notes(out_dir):
    """Every fact noted by any process of the case, in no particular order."""
    out = []
    for path in sorted(glob.glob(os.path.join(out_dir, "parts", "notes-*.jsonl"))):
        with open(path) as f:
            out.extend(json.loads(line) for line in f if line.strip())
    return out


def finish(out_dir, truth):
    """Merges the span parts into spans.jsonl, writes truth.json and removes the parts.

    `truth` is a dict (see the corpus README for its fields):
      case, suite, description, versions, healthy,
      broken_hops: [{hop, orphan_span_id, orphan_trace_id, parent_span_ids, must_repair, kinds}]
    """
    lines = []
    for path in sorted(glob.glob(os.path.join(out_dir, "parts", "spans-*.jsonl"))):
        with open(path) as f:
            lines.extend(line for line in f if line.strip())
    with open(os.path.join(out_dir, "spans.jsonl"), "w") as f:
        f.writelines(lines)
    with open(os.path.join(out_dir, "truth.json"), "w") as f:
        json.dump(truth, f, indent=1, sort_keys=True)
        f.write("\n")
    for path in glob.glob(os.path.join(out_dir, "parts", "*")):
        os.remove(path)
    os.rmdir(os.path.join(out_dir, "parts"))


def versions(*packages):
    """The installed versions of these PyPI packages, for truth.json."""
    from importlib.metadata import version

    return {p: version(p) for p in packages}
