"""What the RabbitMQ suite's processes share: telemetry set-up (each process its own
TracerProvider, the baggage span processor and the OpenAI instrumentation, as a deployment
does), the broker's address, the ready file and the IDs a message's headers name.

Only the harness (record.py) and the OpenTelemetry API/SDK are used here; each service adds
the pika or aio-pika instrumentation its case asks for.
"""

import os

import record

CASE_DIR = os.environ["CORPUS_CASE_DIR"]
AMQP_URL = os.environ["AGENTRACE_AMQP_URL"]
JOB_QUEUE = os.environ.get("JOB_QUEUE", "")


def telemetry(service):
    from opentelemetry.instrumentation.openai_v2 import OpenAIInstrumentor
    from opentelemetry.processor.baggage import ALLOW_ALL_BAGGAGE_KEYS, BaggageSpanProcessor

    tp = record.provider(CASE_DIR, service)
    tp.add_span_processor(BaggageSpanProcessor(ALLOW_ALL_BAGGAGE_KEYS))
    OpenAIInstrumentor().instrument(tracer_provider=tp)
    return tp


def ready(path, value):
    """Tells make.py the service is ready (a file it polls for), atomically."""
    with open(path + ".tmp", "w") as f:
        f.write(str(value))
    os.replace(path + ".tmp", path)


def sent_ids(headers):
    """(trace_id, span_id) the headers of a message carry (W3C traceparent or B3 multi), or None:
    the span current in the sender when its instrumentation injected them (its PRODUCER span)."""
    headers = headers or {}
    tp = headers.get("traceparent")
    if isinstance(tp, bytes):
        tp = tp.decode()
    if tp:
        parts = tp.split("-")
        return (parts[1], parts[2])
    t, s = headers.get("x-b3-traceid"), headers.get("x-b3-spanid")
    if t and s:
        t = t.decode() if isinstance(t, bytes) else t
        s = s.decode() if isinstance(s, bytes) else s
        return (t.rjust(32, "0"), s)
    return None


def dedupe(chain):
    seen, out = set(), []
    for ids in chain:
        if ids and tuple(ids) not in seen:
            seen.add(tuple(ids))
            out.append(list(ids))
    return out
