"""docs-service: the documentation search service behind the researcher's retriever. A separate
process with its own TracerProvider, instrumented with opentelemetry-instrumentation-fastapi
(extracts `traceparent` and `baggage` from each request).

    POST /search {"query": "...", "k": 3}  ->  {"documents": [{"id", "title", "text"}, ...]}

`--rebuilding SHARD` makes the index answer 503 for queries that land on that shard, as a search
cluster does while a shard is being rebuilt."""

import argparse
import asyncio

from common import record, serve, telemetry

parser = argparse.ArgumentParser()
parser.add_argument("--out", required=True)
parser.add_argument("--fd", type=int, required=True, help="listening socket handed over by the driver")
parser.add_argument("--rebuilding", default=None, help="a shard that answers 503")
args = parser.parse_args()

tp = telemetry(args.out, "docs-service")

from fastapi import FastAPI, Request  # noqa: E402
from fastapi.responses import JSONResponse  # noqa: E402
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor  # noqa: E402

STEPS = ("Open the console, select the project, and follow the on-screen checklist; every change is "
         "written to the audit trail and can be rolled back within thirty days by an administrator. ")

# shard -> (keywords, documents)
SHARDS = {
    "billing": (("billing", "api", "keys", "rotate"), [
        {"id": "kb-101", "title": "Rotating API keys of the billing service",
         "text": "Create the new key under Settings > API keys, deploy it, then revoke the old key."},
        {"id": "kb-102", "title": "Key expiry", "text": "Billing keys expire after 365 days."},
    ]),
    "warehouse": (("export", "warehouse", "nightly", "time"), [
        {"id": "kb-201", "title": "Nightly export time-outs",
         "text": "The export times out when the warehouse is resized during the run; move the resize window."},
    ]),
    "regions": (("regions", "region", "archive", "tier"), [
        {"id": "kb-301", "title": "Archive storage tier", "text": "The archive tier is offered in eu-west and us-east."},
    ]),
    "webhooks": (("webhook", "webhooks", "retries", "retry"), [
        {"id": "kb-401", "title": "Webhook retries",
         "text": "Failed deliveries are retried 5 times with exponential back-off, then dropped."},
    ]),
    # The audit-log runbooks are long: the whole answer is several kilobytes of JSON.
    "audit": (("audit", "logs", "log", "siem"), [
        {"id": f"kb-50{k}", "title": f"Audit log export, part {k}", "text": STEPS * 3} for k in range(1, 6)
    ]),
}

app = FastAPI()


@app.post("/search")
async def search(body: dict, request: Request):
    query = str(body.get("query", ""))
    words = {w.strip("?.,()").lower() for w in query.split()}
    shard = max(SHARDS, key=lambda s: len(words & set(SHARDS[s][0])))
    record.note(args.out, side="docs-service", query=query, shard=shard,
                traceparent=request.headers.get("traceparent"), server=record.current_ids())
    await asyncio.sleep(0.05)  # the index's latency
    if shard == args.rebuilding:
        return JSONResponse({"detail": f"shard '{shard}' is being rebuilt"}, status_code=503)
    return {"documents": SHARDS[shard][1][: int(body.get("k", 5))]}


@app.get("/healthz")
async def healthz():
    return {"ok": True}


FastAPIInstrumentor.instrument_app(app, tracer_provider=tp, exclude_spans=["receive", "send"],
                                   excluded_urls="/healthz")
serve(app, args.fd, tp)
