"""A Python MCP server (official `mcp` package) on stdio. The package's own middleware extracts
`_meta` and records the SERVER span; the tool copies the baggage it sees onto that span."""

import json
import sys

sys.path.insert(0, __import__("os").path.dirname(__file__))
import otel_jsonl  # noqa: E402

otel_jsonl.install()

from opentelemetry import baggage, propagate, trace  # noqa: E402
from mcp.server import MCPServer  # noqa: E402
from mcp.server.mcpserver import Context  # noqa: E402

server = MCPServer("py-tools")


@server.tool()
def whoami(ctx: Context) -> str:
    """The trace id and session.id baggage this tool runs in."""
    span = trace.get_current_span()
    # The package's middleware parents its span on `_meta` but does not make `_meta`'s baggage
    # current, so read it from `_meta` (SEP-414) with the global W3C propagators.
    meta = ctx.request_context.meta
    carrier = dict(meta) if isinstance(meta, dict) else (meta.model_dump() if meta is not None else {})
    session = baggage.get_baggage("session.id", propagate.extract(carrier))
    if session is not None:
        span.set_attribute("session.id", str(session))
    ctx = span.get_span_context()
    return json.dumps({"trace_id": format(ctx.trace_id, "032x"), "session_id": session})


if __name__ == "__main__":
    server.run("stdio")
