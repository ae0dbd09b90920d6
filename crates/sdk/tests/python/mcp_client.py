"""A Python MCP client (official `mcp` package) calling a server over stdio, inside a span with
`session.id` baggage. Usage: mcp_client.py SERVER_COMMAND. Prints the tool's text result."""

import asyncio
import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
import otel_jsonl  # noqa: E402

provider = otel_jsonl.install()

from opentelemetry import baggage, context, trace  # noqa: E402
from mcp import ClientSession, StdioServerParameters, stdio_client  # noqa: E402


async def main():
    params = StdioServerParameters(
        command=sys.argv[1],
        env={k: v for k, v in os.environ.items() if k.startswith("OTEL_")},
    )
    tracer = trace.get_tracer("python-agent")
    token = context.attach(baggage.set_baggage("session.id", "py-sess=9"))
    try:
        with tracer.start_as_current_span("python-agent"):
            async with stdio_client(params) as (read, write):
                async with ClientSession(read, write) as session:
                    await session.initialize()
                    result = await session.call_tool("whoami", {})
                    print(result.content[0].text)
    finally:
        context.detach(token)
    provider.shutdown()


asyncio.run(main())
