"""The agent service of the mcp_instrumented cases, in its own process (service.name "weather-agent").

Each user request is handled the way a hand-written agent service does it: the edge span
`POST /chat` (SERVER, `session.id` from baggage through the BaggageSpanProcessor), the agent step
`invoke_agent weather_agent`, an LLM call (the real `openai` client, instrumented, against the
LLM stand-in) that asks for three tools, one `execute_tool <name>` span per tool call around the
real MCP client's `call_tool`, and a last LLM call for the answer.

    agent.py --out CASE_DIR --lib openllmetry|openinference --transport stdio|streamable-http|sse
             [--client-api current|legacy] [--no-client-mcp] [--server-lib LIB] [--users N]

The MCP connection is set up as such services set it up: over stdio the tool server is a
subprocess started per request (inside the request); over HTTP (streamable HTTP or SSE) the tool
server is a separate process started beforehand and the agent opens one MCP session at start-up,
lists the tools once and shares the session between requests.

Ground truth (never span data): a probe between the MCP ClientSession and its transport notes,
for each JSON-RPC message leaving this process, the spans current at that moment (innermost
first, including a span the instrumentation starts inside the transport's send).
"""

import argparse
import asyncio
import contextvars
import json
import os
import socket
import subprocess
import sys
import time

import record
from llm_standin import StandIn
from serving import bound_socket

HERE = os.path.dirname(os.path.abspath(__file__))

ap = argparse.ArgumentParser()
ap.add_argument("--out", required=True)
ap.add_argument("--lib", required=True, choices=["openllmetry", "openinference"])
ap.add_argument("--transport", default="stdio", choices=["stdio", "streamable-http", "sse"])
ap.add_argument("--client-api", default="current", choices=["current", "legacy"],
                help="streamable HTTP: mcp's streamable_http_client (current) or the deprecated streamablehttp_client")
ap.add_argument("--no-client-mcp", action="store_true", help="the agent does not install the MCP instrumentation")
ap.add_argument("--server-lib", default=None, help="the tool server's instrumentation (default: --lib)")
ap.add_argument("--users", type=int, default=1)
args = ap.parse_args()
OUT = args.out
SERVER_LIB = args.server_lib or args.lib

from opentelemetry import baggage, context, trace  # noqa: E402
from opentelemetry.processor.baggage import ALLOW_ALL_BAGGAGE_KEYS, BaggageSpanProcessor  # noqa: E402
from opentelemetry.sdk.trace import SpanProcessor  # noqa: E402

# Set by the probe while a JSON-RPC message is being handed to the transport.
SENDING = contextvars.ContextVar("sending_rpc", default=None)


class ParentMap(SpanProcessor):
    """Truth only: parent of every span started here, and spans started inside the probe's send."""

    def __init__(self):
        self.parent = {}
        self.inner = {}

    def on_start(self, span, parent_context=None):
        sid = format(span.context.span_id, "016x")
        self.parent[sid] = format(span.parent.span_id, "016x") if span.parent else None
        sending = SENDING.get()
        if sending is not None and sending not in self.inner:
            self.inner[sending] = sid

    def chain(self, sid):
        out = []
        while sid:
            out.append(sid)
            sid = self.parent.get(sid)
        return out


tp = record.provider(OUT, "weather-agent")
tp.add_span_processor(BaggageSpanProcessor(ALLOW_ALL_BAGGAGE_KEYS))
PARENTS = ParentMap()
tp.add_span_processor(PARENTS)

if args.lib == "openllmetry":
    from opentelemetry.instrumentation.openai import OpenAIInstrumentor

    OpenAIInstrumentor().instrument(tracer_provider=tp)
    if not args.no_client_mcp:
        from opentelemetry.instrumentation.mcp import McpInstrumentor

        McpInstrumentor().instrument(tracer_provider=tp)
else:
    from openinference.instrumentation.openai import OpenAIInstrumentor

    OpenAIInstrumentor().instrument(tracer_provider=tp)
    if not args.no_client_mcp:
        from openinference.instrumentation.mcp import MCPInstrumentor

        MCPInstrumentor().instrument(tracer_provider=tp)

import mcp.client.sse  # noqa: E402
import mcp.client.stdio  # noqa: E402
import mcp.client.streamable_http  # noqa: E402
from mcp import ClientSession, StdioServerParameters  # noqa: E402
from mcp.types import JSONRPCNotification, JSONRPCRequest  # noqa: E402
from openai import AsyncOpenAI  # noqa: E402

tracer = trace.get_tracer("weather_agent")


class ProbeWriter:
    """Truth only: sits between ClientSession and the (possibly instrumented) transport writer and
    notes which spans were current when each JSON-RPC message left. Forwards every message as is."""

    def __init__(self, inner, label):
        self.inner = inner
        self.label = label

    async def send(self, item):
        msg = item.message.root
        if isinstance(msg, (JSONRPCRequest, JSONRPCNotification)):
            rpc = str(msg.id) if isinstance(msg, JSONRPCRequest) else None
            key = f"{self.label}/{rpc if rpc is not None else msg.method}/{time.monotonic_ns()}"
            token = SENDING.set(key)
            try:
                current = record.current_ids()
                result = await self.inner.send(item)
            finally:
                SENDING.reset(token)
            chain = PARENTS.chain(current[1]) if current else []
            inner = PARENTS.inner.get(key)
            if inner and inner not in chain:
                chain = [inner] + chain
            params = msg.params or {}
            record.note(OUT, side="client", event="send", label=self.label, rpc_id=rpc, method=msg.method,
                        tool=params.get("name"), chain=chain)
            return result
        return await self.inner.send(item)

    async def aclose(self):
        await self.inner.aclose()

    def __getattr__(self, name):
        return getattr(self.inner, name)

    async def __aenter__(self):
        await self.inner.__aenter__()
        return self

    async def __aexit__(self, *exc):
        return await self.inner.__aexit__(*exc)


CITIES = ["Paris", "Oslo", "Lima"]


def policy(call):
    """The stand-in LLM: ask for the three tools, then answer from their results."""
    tool_results = [m for m in call["messages"] if m.get("role") == "tool"]
    if not tool_results:
        city = next((c for c in CITIES if c in call["last_user"]), "Paris")
        return {"tool_calls": [
            {"name": "get_forecast", "arguments": {"city": city}},
            {"name": "get_air_quality", "arguments": {"city": city}},
            {"name": "celsius_to_fahrenheit", "arguments": {"celsius": 18}},
        ]}
    return {"text": "Here is the weather: " + "; ".join(str(m.get("content")) for m in tool_results)}


def openai_tools(listed):
    return [{"type": "function", "function": {"name": t.name, "description": t.description or "",
                                              "parameters": t.inputSchema}} for t in listed.tools]


async def run_agent(llm, session, tools, user, question):
    """The agent step: LLM, tools over MCP, LLM."""
    with tracer.start_as_current_span("invoke_agent weather_agent", attributes={
            "gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": "weather_agent"}):
        if session is None:  # stdio: this request's own tool server
            session, tools, closer = await open_stdio_session(user)
        else:
            closer = None
        try:
            messages = [{"role": "system", "content": "You answer weather questions with the tools."},
                        {"role": "user", "content": question}]
            first = await llm.chat.completions.create(model="gpt-4o-mini", messages=messages, tools=tools)
            msg = first.choices[0].message
            messages.append({"role": "assistant", "content": msg.content, "tool_calls": [
                tc.model_dump() for tc in msg.tool_calls or []]})
            for tc in msg.tool_calls or []:
                with tracer.start_as_current_span(f"execute_tool {tc.function.name}", attributes={
                        "gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": tc.function.name,
                        "gen_ai.tool.call.id": tc.id}):
                    result = await session.call_tool(tc.function.name, json.loads(tc.function.arguments))
                messages.append({"role": "tool", "tool_call_id": tc.id,
                                 "content": "\n".join(c.text for c in result.content if hasattr(c, "text"))})
            final = await llm.chat.completions.create(model="gpt-4o-mini", messages=messages, tools=tools)
            return final.choices[0].message.content
        finally:
            if closer is not None:
                await closer.aclose()


async def open_stdio_session(user):
    """Starts this request's tool server (a subprocess speaking MCP over stdio) and initializes it."""
    from contextlib import AsyncExitStack

    stack = AsyncExitStack()
    label = f"stdio-{user}"
    env = dict(os.environ, MCP_SESSION_LABEL=label)
    params = StdioServerParameters(
        command=sys.executable,
        args=[os.path.join(HERE, "tools_server.py"), "--out", OUT, "--lib", SERVER_LIB, "--transport", "stdio"],
        env=env)
    errlog = open(os.path.join(OUT, "parts", f"server-{label}.log"), "a")
    stack.callback(errlog.close)
    read, write = await stack.enter_async_context(mcp.client.stdio.stdio_client(params, errlog=errlog))
    session = await stack.enter_async_context(ClientSession(read, ProbeWriter(write, label)))
    await session.initialize()
    tools = openai_tools(await session.list_tools())
    return session, tools, stack


async def handle_request(llm, session, tools, user, k):
    """One user's request, as the service's HTTP edge handles it."""
    session_id = f"sess-{user}-{os.getpid()}"
    token = context.attach(baggage.set_baggage("session.id", session_id))
    try:
        with tracer.start_as_current_span("POST /chat", kind=trace.SpanKind.SERVER, attributes={
                "http.request.method": "POST", "http.route": "/chat", "url.path": "/chat", "enduser.id": user}):
            return await run_agent(llm, session, tools, user, f"What's the weather in {CITIES[k % len(CITIES)]}?")
    finally:
        context.detach(token)


async def main():
    users = [f"user{k + 1}" for k in range(args.users)]
    with StandIn(policy) as standin:
        llm = AsyncOpenAI(base_url=standin.base_url, api_key="stand-in", max_retries=0)
        if args.transport == "stdio":
            answers = await asyncio.gather(*(handle_request(llm, None, None, u, k) for k, u in enumerate(users)))
        else:
            sock = bound_socket()
            port = sock.getsockname()[1]
            log = open(os.path.join(OUT, "parts", "server-http.log"), "a")
            server = subprocess.Popen(
                [sys.executable, os.path.join(HERE, "tools_server.py"), "--out", OUT, "--lib", SERVER_LIB,
                 "--transport", args.transport, "--fd", str(sock.fileno()), "--label", "shared"],
                stdout=log, stderr=log, env=dict(os.environ), pass_fds=[sock.fileno()])
            sock.close()  # the server holds the port now
            try:
                deadline = time.monotonic() + 20
                while True:
                    try:
                        socket.create_connection(("127.0.0.1", port), 0.2).close()
                        break
                    except OSError:
                        if server.poll() is not None or time.monotonic() > deadline:
                            raise RuntimeError("tool server did not start")
                        await asyncio.sleep(0.05)
                if args.transport == "sse":
                    transport = mcp.client.sse.sse_client(f"http://127.0.0.1:{port}/sse")
                elif args.client_api == "legacy":
                    transport = mcp.client.streamable_http.streamablehttp_client(f"http://127.0.0.1:{port}/mcp")
                else:
                    transport = mcp.client.streamable_http.streamable_http_client(f"http://127.0.0.1:{port}/mcp")
                # Start-up: one MCP session for the life of the service, tools listed once.
                async with transport as streams:
                    read, write = streams[0], streams[1]
                    async with ClientSession(read, ProbeWriter(write, "shared")) as session:
                        await session.initialize()
                        tools = openai_tools(await session.list_tools())
                        answers = await asyncio.gather(
                            *(handle_request(llm, session, tools, u, k) for k, u in enumerate(users)))
                await asyncio.sleep(0.2)  # the server's last spans are written before it is stopped
            finally:
                server.terminate()
                try:
                    server.wait(10)
                except subprocess.TimeoutExpired:
                    server.kill()
                    server.wait()
                log.close()
    for a in answers:
        assert a and a.startswith("Here is the weather"), a


asyncio.run(main())
tp.shutdown()
