"""docs-service: the HTTP search service the agents' `search_docs` tool calls. A separate
process with its own TracerProvider, instrumented with opentelemetry-instrumentation-fastapi
(extracts `traceparent` and `baggage` from each request)."""

import argparse
import asyncio

from common import record, serve, telemetry

parser = argparse.ArgumentParser()
parser.add_argument("--out", required=True)
parser.add_argument("--fd", type=int, required=True, help="listening socket handed over by the driver")
args = parser.parse_args()

tp = telemetry(args.out, "docs-service")

from fastapi import FastAPI, Request  # noqa: E402
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor  # noqa: E402

app = FastAPI()


@app.get("/search")
async def search(query: str, request: Request):
    # What this side saw of the hop: the traceparent it was sent, and its own server span.
    record.note(args.out, side="docs-service", query=query,
                traceparent=request.headers.get("traceparent"), server=record.current_ids())
    await asyncio.sleep(0.25)  # the search backend's latency
    return {"query": query, "results": [f"doc-{len(query) % 7}: notes on {query[:40]}"]}


@app.get("/healthz")
async def healthz():
    return {"ok": True}


FastAPIInstrumentor.instrument_app(app, tracer_provider=tp, exclude_spans=["receive", "send"],
                                   excluded_urls="/healthz")
serve(app, args.fd, tp)
