"""The agent service of the mcp2 suite: one process, its own TracerProvider ("support-agent").

Each user request: `session.id` put in baggage at the edge (the BaggageSpanProcessor copies it
onto every span started under it), a request span, then agent steps: a chat completion through
the real `openai` client (instrumented by opentelemetry-instrumentation-openai-v2) against the
LLM stand-in, and the tool calls it asks for, made on the MCP server through the SDK's `Client`.

    --sessions startup      one MCP session opened when the service starts (handshake and
                            tools/list outside any request), shared by the requests
    --sessions per-request  each request opens its own MCP session (per-user credentials)
    --client-thread         the field break on the client side: tools are run by a synchronous
                            tool adapter in a worker thread (`loop.run_in_executor`), which bridges
                            back to the async MCP session with `asyncio.run_coroutine_threadsafe`;
                            the coroutine runs in the worker thread's (empty) context
"""

import argparse
import asyncio
import faulthandler
import functools
import json
import os
import signal
import sys

from opentelemetry import baggage, context, trace

import record
from _suite import tracing

# When the driver finds the agent overran its time, it asks where it waits: SIGUSR1 prints every
# thread's stack (from the first line on, imports included), SIGUSR2 every asyncio task's.
faulthandler.register(signal.SIGUSR1, all_threads=True)
signal.signal(signal.SIGUSR2, lambda *_: None)  # until the event loop runs (main)

ap = argparse.ArgumentParser()
ap.add_argument("--out", required=True)
ap.add_argument("--llm", required=True)
ap.add_argument("--server", required=True, help="'stdio' or the streamable-HTTP URL")
ap.add_argument("--server-args", default="[]", help="JSON list: extra args for the stdio server")
ap.add_argument("--mode", default="auto")
ap.add_argument("--sessions", choices=("startup", "per-request"), default="startup")
ap.add_argument("--users", required=True, help="JSON list of {user, session, question}")
ap.add_argument("--client-thread", action="store_true")
ap.add_argument("--wait-port", type=int, action="append", default=[], help="dependencies to wait for at start-up")
args = ap.parse_args()
OUT = args.out

tp, tracer = tracing(OUT, "support-agent")

from opentelemetry.instrumentation.openai_v2 import OpenAIInstrumentor  # noqa: E402

OpenAIInstrumentor().instrument(tracer_provider=tp)

import openai  # noqa: E402
from mcp import Client  # noqa: E402
from mcp.client.stdio import StdioServerParameters  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
llm = openai.AsyncOpenAI(base_url=args.llm, api_key="stand-in", max_retries=0, timeout=20)


def server_target():
    if args.server == "stdio":
        env = dict(os.environ)
        return StdioServerParameters(command=sys.executable,
                                     args=[os.path.join(HERE, "tools_server.py"), "--out", OUT, "--transport", "stdio",
                                           *json.loads(args.server_args)],
                                     env=env)
    return args.server


def openai_tools(tools):
    return [{"type": "function", "function": {"name": t.name, "description": t.description or "",
                                              "parameters": t.input_schema}} for t in tools]


async def call_tool(client, name, arguments, user, k):
    """One tool call on the MCP server, as the agent's tool layer makes it."""
    record.note(OUT, kind="tool_call", user=user, k=k, tool=name, caller=record.current_ids())
    if not args.client_thread:
        result = await client.call_tool(name, arguments)
    else:
        loop = asyncio.get_running_loop()

        def sync_tool():  # a synchronous tool function, as sync agent frameworks expect
            record.note(OUT, kind="tool_thread", user=user, k=k, tool=name, thread_ctx=record.current_ids())
            future = asyncio.run_coroutine_threadsafe(client.call_tool(name, arguments), loop)
            return future.result(timeout=20)

        result = await loop.run_in_executor(None, sync_tool)
    if result.structured_content is not None:
        return json.dumps(result.structured_content)
    return " ".join(getattr(c, "text", "") for c in result.content)


async def run_agent(client, tools, user, question):
    messages = [{"role": "system", "content": "You are the shop's support agent. Use the tools."},
                {"role": "user", "content": question}]
    k = 0
    for step in range(4):
        with tracer.start_as_current_span("agent.step", attributes={"agent.step": step}):
            resp = await llm.chat.completions.create(model="stand-in", messages=messages, tools=tools)
            msg = resp.choices[0].message
            if not msg.tool_calls:
                return msg.content
            messages.append({"role": "assistant", "content": None,
                             "tool_calls": [tc.model_dump() for tc in msg.tool_calls]})
            for tc in msg.tool_calls:  # one after the other, as most agent loops do
                out = await call_tool(client, tc.function.name, json.loads(tc.function.arguments), user, k)
                k += 1
                messages.append({"role": "tool", "tool_call_id": tc.id, "content": out})
    return None


async def handle_request(user, session_id, question, shared):
    # The edge of the service: the session id goes into baggage, the request span opens.
    token = context.attach(baggage.set_baggage("session.id", session_id))
    try:
        with tracer.start_as_current_span("agent.request", attributes={"enduser.id": user}):
            record.note(OUT, kind="request", user=user, ids=record.current_ids())
            if shared is not None:
                client, tools = shared
                return await run_agent(client, tools, user, question)
            async with Client(server_target(), mode=args.mode) as client:
                tools = openai_tools((await client.list_tools()).tools)
                return await run_agent(client, tools, user, question)
    finally:
        context.detach(token)


async def wait_for_dependencies():
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 30
    for port in args.wait_port:
        while True:
            try:
                _, w = await asyncio.open_connection("127.0.0.1", port)
                w.close()
                break
            except OSError:
                if loop.time() > deadline:
                    raise
                await asyncio.sleep(0.1)


def dump_tasks():
    # Asked by the driver when the agent overran its time: where every coroutine waits.
    # (A task's own stack stops at its outer coroutine: the awaited chain is walked here.)
    for task in asyncio.all_tasks():
        print(f"task {task.get_name()}:", file=sys.stderr)
        coro = task.get_coro()
        while coro is not None:
            frame = getattr(coro, "cr_frame", None) or getattr(coro, "gi_frame", None) or getattr(coro, "ag_frame", None)
            if frame is not None:
                print(f"  {frame.f_code.co_filename}:{frame.f_lineno} in {frame.f_code.co_name}", file=sys.stderr)
            coro = getattr(coro, "cr_await", None) or getattr(coro, "gi_yieldfrom", None) or getattr(coro, "ag_await", None)
    sys.stderr.flush()


async def main():
    asyncio.get_running_loop().add_signal_handler(signal.SIGUSR2, dump_tasks)
    await wait_for_dependencies()
    users = json.loads(args.users)
    if args.sessions == "startup":
        # Service start-up: connect once, learn the tools; requests reuse the session.
        async with Client(server_target(), mode=args.mode) as client:
            tools = openai_tools((await client.list_tools()).tools)
            for u in users:
                answer = await handle_request(u["user"], u["session"], u["question"], (client, tools))
                record.note(OUT, kind="answer", user=u["user"], answer=answer)
    else:
        answers = await asyncio.gather(*(handle_request(u["user"], u["session"], u["question"], None) for u in users))
        for u, a in zip(users, answers):
            record.note(OUT, kind="answer", user=u["user"], answer=a)


asyncio.run(main())
