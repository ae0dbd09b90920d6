"""Shared plumbing of the autogen suite's processes: telemetry setup as each service does it,
and serving an ASGI app on a socket bound to a free port chosen at run time."""

import asyncio
import os
import socket
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
HARNESS = os.path.join(os.path.dirname(HERE), "harness")
if HARNESS not in sys.path:
    sys.path.insert(0, HARNESS)

import record  # noqa: E402
from serving import bound_socket  # noqa: E402
from opentelemetry.processor.baggage import BaggageSpanProcessor  # noqa: E402


def telemetry(out_dir, service):
    """One TracerProvider for this process (service.name = service), as a service sets it up at
    start: spans to the case's parts, and `session.id` copied from baggage onto every span started
    where that baggage is in context (opentelemetry-processor-baggage)."""
    tp = record.provider(out_dir, service)
    tp.add_span_processor(BaggageSpanProcessor(lambda key: key == "session.id"))
    return tp


def serve(app, fd, tp):
    """Serves `app` with uvicorn on the listening socket `fd` that the case's driver bound to a free
    port and handed to this process, until SIGINT; then flushes `tp` and exits at once (the
    interpreter's own teardown of these libraries takes seconds and adds nothing)."""
    import uvicorn

    sock = socket.socket(fileno=fd)
    config = uvicorn.Config(app, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    try:
        asyncio.run(server.serve(sockets=[sock]))
    except KeyboardInterrupt:  # uvicorn re-raises the signal it shut down on
        pass
    quick_exit(tp)


def quick_exit(tp):
    tp.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
