"""The MCP tool server of the mcp_instrumented cases: a FastMCP server (the `mcp` SDK's own),
in its own process, with its own TracerProvider (service.name "weather-tools").

    tools_server.py --out CASE_DIR --lib openllmetry|openinference|none --transport stdio|streamable-http|sse
                    [--fd N] [--label SESSION_LABEL]

`--lib none` is the field mistake of the broken cases: the server's author set up OpenTelemetry
(provider, baggage processor, spans of their own) but never installed the MCP instrumentation,
so nothing extracts the `_meta.traceparent` the agent sends.

Ground truth (never span data): each tool notes the context it was entered with (the remote parent
extracted by the instrumentation, if any) and the JSON-RPC request id it serves; every span that
ends here without any parent (a root) is noted with the request it belongs to.
"""

import argparse
import contextvars
import os
import sys

import anyio

import record

ap = argparse.ArgumentParser()
ap.add_argument("--out", required=True)
ap.add_argument("--lib", required=True, choices=["openllmetry", "openinference", "none"])
ap.add_argument("--transport", default="stdio", choices=["stdio", "streamable-http", "sse"])
ap.add_argument("--fd", type=int, help="HTTP and SSE: the listening socket the agent bound and handed over")
ap.add_argument("--label", default=os.environ.get("MCP_SESSION_LABEL", "shared"))
args = ap.parse_args()
OUT = args.out

from opentelemetry import trace  # noqa: E402
from opentelemetry.processor.baggage import ALLOW_ALL_BAGGAGE_KEYS, BaggageSpanProcessor  # noqa: E402
from opentelemetry.sdk.trace import SpanProcessor  # noqa: E402

# The JSON-RPC request a tool is serving, for the truth notes of the spans it starts.
SERVING = contextvars.ContextVar("serving_rpc", default=None)


class RootNotes(SpanProcessor):
    """Truth only: notes each span of this process that ended as a root (no parent at all)."""

    def on_end(self, span):
        if span.parent is not None:
            return
        rpc = SERVING.get()
        if rpc is None and span.attributes.get("mcp.request.id") is not None:
            rpc = str(span.attributes["mcp.request.id"])  # the id of the JSON-RPC response it wrote
        record.note(OUT, side="server", event="root", label=args.label, rpc_id=rpc, name=span.name,
                    ids=record.current_ids(span))


tp = record.provider(OUT, "weather-tools")
tp.add_span_processor(BaggageSpanProcessor(ALLOW_ALL_BAGGAGE_KEYS))
tp.add_span_processor(RootNotes())

if args.lib == "openllmetry":
    from opentelemetry.instrumentation.mcp import McpInstrumentor

    McpInstrumentor().instrument(tracer_provider=tp)
elif args.lib == "openinference":
    from openinference.instrumentation.mcp import MCPInstrumentor

    MCPInstrumentor().instrument(tracer_provider=tp)

from mcp.server.fastmcp import Context, FastMCP  # noqa: E402

tracer = trace.get_tracer("weather_tools")
mcp = FastMCP("weather-tools", host="127.0.0.1", log_level="WARNING")

FORECASTS = {"paris": (18, "light rain"), "oslo": (4, "snow"), "lima": (22, "overcast")}


def entered(ctx: Context, tool: str):
    """Truth: the context this tool was entered with, and the request it serves."""
    SERVING.set(str(ctx.request_id))
    record.note(OUT, side="server", event="tool", label=args.label, rpc_id=str(ctx.request_id), tool=tool,
                entry=record.current_ids())


@mcp.tool()
async def get_forecast(city: str, ctx: Context) -> str:
    """Today's forecast for a city (temperature in Celsius)."""
    entered(ctx, "get_forecast")
    with tracer.start_as_current_span("forecast.lookup", attributes={"weather.city": city}):
        await anyio.sleep(0.02)  # the upstream weather API
        temp, sky = FORECASTS.get(city.lower(), (15, "clear"))
        return f"{city}: {temp} C, {sky}"


@mcp.tool()
async def get_air_quality(city: str, ctx: Context) -> str:
    """Air quality index for a city."""
    entered(ctx, "get_air_quality")
    with tracer.start_as_current_span("air_quality.lookup", attributes={"weather.city": city}):
        await anyio.sleep(0.01)
        return f"{city}: AQI {len(city) * 7}"


@mcp.tool()
async def celsius_to_fahrenheit(celsius: float, ctx: Context) -> str:
    """Converts a temperature."""
    entered(ctx, "celsius_to_fahrenheit")
    with tracer.start_as_current_span("convert.temperature"):
        return f"{celsius * 9 / 5 + 32:.1f} F"


if __name__ == "__main__":
    try:
        if args.transport == "stdio":
            mcp.run(args.transport)
        else:
            # FastMCP's own app, served on the socket the agent bound (so that nothing else on the
            # machine can take the port between the agent choosing it and this server listening).
            from serving import serve

            serve(mcp.sse_app() if args.transport == "sse" else mcp.streamable_http_app(), args.fd, tp)
    finally:
        tp.shutdown()
        sys.stderr.flush()
