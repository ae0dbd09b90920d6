"""An MCP gateway of the mcp2 suite: a real `MCPServer` (mcp 2.3.0, streamable HTTP, its built-in
OpenTelemetry on, service "mcp-gateway") that exposes the shop's tools to agents and forwards
each call to the backend tool server with a hand-rolled JSON-RPC client (httpx2, the 2025-11-25
streamable-HTTP protocol: initialize once at start-up, then one POST per call with the
Mcp-Session-Id), as gateways written before the SDK had a client often do. That client
builds `params` from the tool's arguments only: no `_meta`, so no `traceparent` reaches the
backend, whose SERVER spans start new traces. It opens no span of its own.
"""

import argparse
import itertools
import json
import socket
import time

import httpx2

import record
from _suite import tracing
from serving import serve

ap = argparse.ArgumentParser()
ap.add_argument("--out", required=True)
ap.add_argument("--fd", type=int, required=True, help="the listening socket the driver bound and handed over")
ap.add_argument("--backend", required=True, help="the backend's streamable-HTTP URL")
ap.add_argument("--backend-port", type=int, required=True)
args = ap.parse_args()
OUT = args.out

tp, tracer = tracing(OUT, "mcp-gateway")

from mcp.server import MCPServer  # noqa: E402

PROTOCOL = "2025-11-25"
ids = itertools.count(1)
session = {}


def sse_or_json(resp):
    if resp.headers.get("content-type", "").startswith("text/event-stream"):
        for line in resp.text.splitlines():
            if line.startswith("data:") and line[5:].strip():
                msg = json.loads(line[5:])
                if "id" in msg:
                    return msg
        raise RuntimeError(f"no response in the event stream: {resp.text[:200]}")
    return resp.json()


def headers():
    h = {"accept": "application/json, text/event-stream", "content-type": "application/json",
         "mcp-protocol-version": PROTOCOL}
    if "id" in session:
        h["mcp-session-id"] = session["id"]
    return h


def connect():
    """Start-up: wait for the backend, then the initialize handshake (no request is in flight)."""
    deadline = time.time() + 60
    while True:
        try:
            socket.create_connection(("127.0.0.1", args.backend_port), timeout=0.5).close()
            break
        except OSError:
            if time.time() > deadline:
                raise
            time.sleep(0.1)
    with httpx2.Client(timeout=20) as c:
        r = c.post(args.backend, headers=headers(), json={
            "jsonrpc": "2.0", "id": next(ids), "method": "initialize",
            "params": {"protocolVersion": PROTOCOL, "capabilities": {},
                       "clientInfo": {"name": "shop-gateway", "version": "1.4.2"}}})
        r.raise_for_status()
        session["id"] = r.headers["mcp-session-id"]
        sse_or_json(r)
        c.post(args.backend, headers=headers(), json={"jsonrpc": "2.0", "method": "notifications/initialized"})


backend = httpx2.AsyncClient(timeout=20)


async def forward(name, arguments):
    rid = next(ids)
    record.note(OUT, kind="gateway_forward", tool=name, rid=str(rid), caller=record.current_ids())
    r = await backend.post(args.backend, headers=headers(), json={
        "jsonrpc": "2.0", "id": rid, "method": "tools/call", "params": {"name": name, "arguments": arguments}})
    r.raise_for_status()
    msg = sse_or_json(r)
    if "error" in msg:
        raise RuntimeError(msg["error"].get("message"))
    result = msg["result"]
    if result.get("structuredContent") is not None:
        return result["structuredContent"]
    return {"text": " ".join(c.get("text", "") for c in result.get("content", []))}


mcp = MCPServer("shop-gateway")


@mcp.tool()
async def lookup_order(order_id: str) -> dict:
    """Look an order up: its customer, total in USD, status and warehouse."""
    return await forward("lookup_order", {"order_id": order_id})


@mcp.tool()
async def convert_currency(amount: float, currency: str) -> dict:
    """Convert an amount in USD to another currency."""
    return await forward("convert_currency", {"amount": amount, "currency": currency})


@mcp.tool()
async def shipping_eta(order_id: str) -> dict:
    """Estimated delivery of an order, in days."""
    return await forward("shipping_eta", {"order_id": order_id})


if __name__ == "__main__":
    connect()
    serve(mcp.streamable_http_app(host="127.0.0.1"), args.fd, tp)
