"""The research worker's entrypoint: `celery -A worker_main worker --pool threads ...`.

Telemetry is set up at import, in the worker's main process (the threads pool runs tasks
there; `worker_process_init` only fires for prefork children). WORKER_CELERY_OTEL=0 is the
worker whose team never added the Celery instrumentation: it still has its TracerProvider,
its own spans and the OpenAI instrumentation.
"""

import os

from celery.signals import worker_ready
from opentelemetry.instrumentation.openai_v2 import OpenAIInstrumentor
from opentelemetry.processor.baggage import ALLOW_ALL_BAGGAGE_KEYS, BaggageSpanProcessor

import record

CASE_DIR = os.environ["CORPUS_CASE_DIR"]

tp = record.provider(CASE_DIR, "research-worker")
tp.add_span_processor(BaggageSpanProcessor(ALLOW_ALL_BAGGAGE_KEYS))
OpenAIInstrumentor().instrument(tracer_provider=tp)
if os.environ.get("WORKER_CELERY_OTEL", "1") == "1":
    from opentelemetry.instrumentation.celery import CeleryInstrumentor

    CeleryInstrumentor().instrument(tracer_provider=tp)

from tasks import app  # noqa: E402  (after instrumentation, as the docs show)


@worker_ready.connect(weak=False)
def _ready(**_):
    with open(os.environ["WORKER_READY_FILE"], "w") as f:
        f.write(str(os.getpid()))
