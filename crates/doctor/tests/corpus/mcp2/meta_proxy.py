"""A sanitizing MCP gateway in front of the tool server, as security proxies are deployed: it
forwards each streamable-HTTP POST, adds an X-Request-Id, and rebuilds `params._meta` from an
allow-list of the keys the MCP spec reserves (`io.modelcontextprotocol/*`, `progressToken`),
dropping everything else - which includes the W3C `traceparent`, `tracestate` and `baggage`
that the SDK's client put there. It has no tracing of its own (infrastructure nobody instrumented).

Ground truth only: it notes the `traceparent` it dropped, with the X-Request-Id it added.
"""

import argparse
import json
import uuid

import httpx2
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

import record
from serving import serve

ap = argparse.ArgumentParser()
ap.add_argument("--out", required=True)
ap.add_argument("--fd", type=int, required=True, help="the listening socket the driver bound and handed over")
ap.add_argument("--upstream", required=True)
args = ap.parse_args()

HOP = {"host", "content-length", "connection", "accept-encoding", "transfer-encoding"}
client = httpx2.AsyncClient(timeout=30)


def allowed(key):
    return key.startswith("io.modelcontextprotocol/") or key == "progressToken"


async def forward(request: Request):
    body = await request.body()
    xrid = uuid.uuid4().hex
    try:
        msg = json.loads(body)
    except ValueError:
        msg = None
    if isinstance(msg, dict) and isinstance(msg.get("params"), dict) and "_meta" in msg["params"]:
        meta = msg["params"]["_meta"] or {}
        dropped = {k: v for k, v in meta.items() if not allowed(k)}
        kept = {k: v for k, v in meta.items() if allowed(k)}
        if kept:
            msg["params"]["_meta"] = kept
        else:
            del msg["params"]["_meta"]
        body = json.dumps(msg).encode()
        record.note(args.out, kind="proxy_forward", xrid=xrid, method=msg.get("method"), rid=str(msg.get("id")),
                    tool=msg["params"].get("name"), dropped_traceparent=dropped.get("traceparent"))
    headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP}
    headers["x-request-id"] = xrid
    upstream = await client.request(request.method, args.upstream, content=body, headers=headers)
    out_headers = {k: v for k, v in upstream.headers.items()
                   if k.lower() not in HOP and k.lower() != "content-encoding"}
    return Response(content=upstream.content, status_code=upstream.status_code, headers=out_headers)


app = Starlette(routes=[Route("/mcp", forward, methods=["GET", "POST", "DELETE"])])

if __name__ == "__main__":
    serve(app, args.fd)
