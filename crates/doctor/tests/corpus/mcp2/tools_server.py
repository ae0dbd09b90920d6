"""The MCP tool server of the mcp2 suite: a real `MCPServer` (mcp 2.3.0) run in its own process,
over stdio (spawned by the agent's `stdio_client`) or streamable HTTP (the SDK's own runner, uvicorn).

Its tracing is the SDK's built-in `OpenTelemetryMiddleware` (one SERVER span per inbound message,
parented on the W3C context the client put in `params._meta`) plus the tools' own spans.

    --fx-executor   the field break: `convert_currency` hands its blocking rate computation to
                    `loop.run_in_executor` (which, unlike `asyncio.to_thread`, does not copy
                    contextvars), so the span opened there starts a new trace.
    --no-sdk-otel   the SDK's own telemetry switched off, as its docs say to opt out ("drop it
                    from this list"): `OpenTelemetryMiddleware` removed from `mcp.middleware`.
                    No SERVER spans, nothing extracts `_meta`; the tools' own spans are roots.
"""

import argparse
import asyncio
import functools
import os
import sqlite3
import sys
import time

from opentelemetry import trace

import record
from _suite import hexid, tracing
from serving import serve

ap = argparse.ArgumentParser()
ap.add_argument("--out", required=True)
ap.add_argument("--transport", choices=("stdio", "http"), default="stdio")
ap.add_argument("--fd", type=int, help="HTTP: the listening socket the driver bound and handed over")
ap.add_argument("--service", default="shop-tools")
ap.add_argument("--fx-executor", action="store_true")
ap.add_argument("--no-sdk-otel", action="store_true")
args = ap.parse_args()
OUT = args.out

tp, tracer = tracing(OUT, args.service)

from mcp.server import MCPServer  # noqa: E402  (after the provider, as an app's startup does)

DB = sqlite3.connect(":memory:", check_same_thread=False)
DB.executescript("""
    create table orders (id text primary key, customer text, total_usd real, status text, warehouse text);
    insert into orders values ('1001', 'alice', 129.90, 'shipped', 'LYS');
    insert into orders values ('1002', 'bob', 54.25, 'packed', 'AMS');
    insert into orders values ('1003', 'carol', 310.00, 'ordered', 'LYS');
""")
DB_LOCK = __import__("threading").Lock()
RATES = {"EUR": 0.9215, "GBP": 0.7893, "JPY": 151.42, "CHF": 0.8801}
TRANSIT_DAYS = {"LYS": 2, "AMS": 1}


class HandOffNotes:
    """Ground truth only: notes, for each inbound message, the SERVER span the SDK opened for it
    (this middleware runs inside the SDK's OpenTelemetry middleware), the parent it extracted,
    and the gateway's X-Request-Id when the request came through one."""

    async def __call__(self, ctx, call_next):
        span = trace.get_current_span()
        headers = getattr(ctx.request, "headers", None)
        name = ctx.params.get("name") if ctx.params else None
        record.note(OUT, kind="server_request", service=args.service, method=ctx.method, rid=None if ctx.request_id is None else str(ctx.request_id),
                    tool=name, ids=record.current_ids(), extracted_parent=hexid(getattr(span, "parent", None)),
                    xrid=headers.get("x-request-id") if headers is not None else None,
                    wire_traceparent=(ctx.meta or {}).get("traceparent"))
        return await call_next(ctx)


mcp = MCPServer("shop-tools", middleware=[HandOffNotes()])
if args.no_sdk_otel:
    mcp.middleware[:] = [m for m in mcp.middleware if type(m).__name__ != "OpenTelemetryMiddleware"]


@mcp.tool()
async def lookup_order(order_id: str) -> dict:
    """Look an order up: its customer, total in USD, status and warehouse."""
    with DB_LOCK:
        row = DB.execute("select id, customer, total_usd, status, warehouse from orders where id = ?", (order_id,)).fetchone()
    if row is None:
        return {"found": False}
    return {"found": True, "order_id": row[0], "customer": row[1], "total_usd": row[2], "status": row[3], "warehouse": row[4]}


def _convert(amount, currency, handoff):
    # Blocking work (a rates table refresh and the arithmetic), run off the event loop.
    with tracer.start_as_current_span("fx.convert", attributes={"fx.currency": currency, "fx.amount": amount}):
        if handoff is not None:
            record.note(OUT, kind="executor_handoff", tool="convert_currency", caller=handoff, orphan=record.current_ids())
        if args.no_sdk_otel:
            record.note(OUT, kind="tool_span", tool="convert_currency", ids=record.current_ids())
        time.sleep(0.02)
        rate = RATES[currency]
        return {"amount": round(amount * rate, 2), "currency": currency, "rate": rate}


@mcp.tool()
async def convert_currency(amount: float, currency: str) -> dict:
    """Convert an amount in USD to another currency."""
    if args.fx_executor:
        loop = asyncio.get_running_loop()
        caller = record.current_ids()
        return await loop.run_in_executor(None, functools.partial(_convert, amount, currency, caller))
    return await asyncio.to_thread(_convert, amount, currency, None)


@mcp.tool()
async def shipping_eta(order_id: str) -> dict:
    """Estimated delivery of an order, in days."""
    with DB_LOCK:
        row = DB.execute("select status, warehouse from orders where id = ?", (order_id,)).fetchone()
    if row is None:
        return {"found": False}
    days = TRANSIT_DAYS.get(row[1], 4) + (0 if row[0] == "shipped" else 2)
    await asyncio.sleep(0.01)
    return {"found": True, "order_id": order_id, "days": days}


if __name__ == "__main__":
    if args.transport == "stdio":
        mcp.run()
    else:
        serve(mcp.streamable_http_app(host="127.0.0.1"), args.fd, tp)
