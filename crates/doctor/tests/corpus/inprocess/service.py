"""The agent service of the inprocess suite: one process, one TracerProvider, one aiohttp app.

    python service.py --case CASE --out CASE_DIR --llm BASE_URL

Prints `READY <port>` once it listens on 127.0.0.1 (a free port), serves POST /agent/run
({"session_id", "question", "mode"}) until SIGTERM, then waits for its background work and
flushes. What it runs per request depends on the case: each case is the same service written
the way one team would write it (a thread pool with or without
opentelemetry-instrumentation-threading, a plain threading.Thread, a Future done-callback,
loop.call_soon_threadsafe from a worker thread, asyncio.gather / asyncio.to_thread).

Instrumentation is the real one: aiohttp-server (the request span), openai-v2 (LLM calls, to
the LLM stand-in), sqlite3 (the knowledge base), the BaggageSpanProcessor (session.id from
baggage onto every span), asyncio and threading instrumentations where the case says so.

Ground truth: at every hand-off the submitting side notes the spans current on its side
(innermost first) and the receiving side notes the span it started and what was current
before it (`record.note`). Nothing here writes span data by hand.
"""

import argparse
import asyncio
import contextvars
import functools
import json
import os
import re
import signal
import sqlite3
import sys
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor

import record

CASES = (
    "inprocess_healthy",
    "inprocess_thread_pool_loses_context",
    "inprocess_thread_and_callback",
    "inprocess_concurrent_same_name",
    "inprocess_cross_session",
)

args = argparse.ArgumentParser()
args.add_argument("--case", required=True, choices=CASES)
args.add_argument("--out", required=True)
args.add_argument("--llm", required=True)
ARGS = args.parse_args()
OUT = ARGS.out

if ARGS.case == "inprocess_healthy":
    # opentelemetry-instrumentation-asyncio reads these when it instruments.
    os.environ["OTEL_PYTHON_ASYNCIO_COROUTINE_NAMES_TO_TRACE"] = "search_source"
    os.environ["OTEL_PYTHON_ASYNCIO_TO_THREAD_FUNCTION_NAMES_TO_TRACE"] = "lookup_source"

from opentelemetry import baggage, context, trace  # noqa: E402
from opentelemetry.sdk.trace import SpanProcessor  # noqa: E402
from opentelemetry.processor.baggage import ALLOW_ALL_BAGGAGE_KEYS, BaggageSpanProcessor  # noqa: E402


class Lineage(SpanProcessor):
    """Remembers each live span's parent, so a hand-off can note every span current on its side."""

    def __init__(self):
        self.parent = {}

    def on_start(self, span, parent_context=None):
        if span.parent is not None:
            self.parent[span.context.span_id] = (span.parent.span_id, span.parent.trace_id)


LINEAGE = Lineage()
tp = record.provider(OUT, "research-agent")
tp.add_span_processor(BaggageSpanProcessor(ALLOW_ALL_BAGGAGE_KEYS))
tp.add_span_processor(LINEAGE)

# The knowledge base: an SQLite FTS5 index, seeded before sqlite3 is instrumented (a deploy step).
KB_DIR = tempfile.mkdtemp(prefix="inprocess-kb-")
KB = os.path.join(KB_DIR, "kb.sqlite")
DOCS = [
    ("kb", "Thread pools in Python do not copy contextvars into the worker thread."),
    ("kb", "asyncio.to_thread copies the current context into the worker thread."),
    ("kb", "asyncio tasks run in a copy of the context taken when the task is created."),
    ("kb", "loop.call_soon_threadsafe runs its callback in the context of the calling thread."),
    ("notes", "A done callback of a concurrent future runs on the thread that completed it."),
    ("notes", "The BaggageSpanProcessor copies baggage entries onto every span started under them."),
    ("notes", "OpenTelemetry context is a contextvar: a new thread starts with an empty one."),
    ("notes", "Retries of an LLM call should carry the same session id."),
]
with sqlite3.connect(KB) as c:
    c.execute("CREATE VIRTUAL TABLE docs USING fts5(source, body)")
    c.executemany("INSERT INTO docs(source, body) VALUES (?, ?)", DOCS)
    c.execute("CREATE TABLE memory (session_id TEXT, question TEXT, summary TEXT)")
    c.execute("CREATE TABLE score_cache (question TEXT, scores TEXT)")

from opentelemetry.instrumentation.aiohttp_server import AioHttpServerInstrumentor  # noqa: E402
from opentelemetry.instrumentation.openai_v2 import OpenAIInstrumentor  # noqa: E402
from opentelemetry.instrumentation.sqlite3 import SQLite3Instrumentor  # noqa: E402

AioHttpServerInstrumentor().instrument()
OpenAIInstrumentor().instrument()
SQLite3Instrumentor().instrument()
if ARGS.case == "inprocess_healthy":
    from opentelemetry.instrumentation.asyncio import AsyncioInstrumentor
    from opentelemetry.instrumentation.threading import ThreadingInstrumentor

    ThreadingInstrumentor().instrument()
    AsyncioInstrumentor().instrument()

import httpx2  # noqa: E402
from aiohttp import web  # noqa: E402
from openai import AsyncOpenAI, OpenAI  # noqa: E402
from opentelemetry.trace import SpanKind  # noqa: E402

tracer = trace.get_tracer("research_agent", "1.4.0")

# ------------------------------------------------------------------ ground truth -------------

HOP = contextvars.ContextVar("hop", default=None)  # set by the receiving side itself


def chain():
    """The spans current here, innermost first, as [trace_id, span_id] hex pairs."""
    span = trace.get_current_span()
    ctx = span.get_span_context()
    if not ctx.is_valid:
        return []
    out = [[format(ctx.trace_id, "032x"), format(ctx.span_id, "016x")]]
    sid = ctx.span_id
    while sid in LINEAGE.parent:
        sid, tid = LINEAGE.parent[sid]
        out.append([format(tid, "032x"), format(sid, "016x")])
    return out


def hand_off(hop, what, session):
    """The submitting side of a hand-off: what is current here."""
    record.note(OUT, hop=hop, side="caller", what=what, session=session, chain=chain(),
                thread=threading.current_thread().name)


def received(hop, before):
    """The receiving side: the span it just started and what was current before it."""
    span = trace.get_current_span()
    parent = getattr(span, "parent", None)
    record.note(OUT, hop=hop, side="callee", span=list(record.current_ids()), name=span.name,
                before=list(before) if before else None,
                parent=format(parent.span_id, "016x") if parent else None,
                thread=threading.current_thread().name)


def note_llm_request(request):
    """httpx2 request hook of the sync OpenAI client: the openai-v2 span is current here."""
    hop = HOP.get()
    if hop is not None and hop.startswith("llm:"):
        HOP.set(None)
        received(hop, HOP_BEFORE.get())


HOP_BEFORE = contextvars.ContextVar("hop_before", default=None)


def sql_trace(statement):
    """sqlite3 trace callback: runs inside the instrumented execute, its span current."""
    hop = HOP.get()
    if hop is not None and hop.startswith("sql:"):
        HOP.set(None)
        received(hop, HOP_BEFORE.get())


# ------------------------------------------------------------------ the service's tools ------

POOL = ThreadPoolExecutor(max_workers=4, thread_name_prefix="agent-pool")
BACKGROUND = []  # fire-and-forget threads and futures, waited for at shutdown
llm = OpenAI(base_url=ARGS.llm, api_key="stand-in", max_retries=0, timeout=20,
             http_client=httpx2.Client(event_hooks={"request": [note_llm_request]}, timeout=20))
allm = AsyncOpenAI(base_url=ARGS.llm, api_key="stand-in", max_retries=0, timeout=20)


def kb_connect():
    conn = sqlite3.connect(KB)
    conn.set_trace_callback(sql_trace)
    return conn


def kb_query(question, source=None, limit=3):
    """Full-text search in the knowledge base (blocking)."""
    terms = " OR ".join(f'"{w}"' for w in re.findall(r"[a-z]{4,}", question.lower())) or '"context"'
    sql = "SELECT source, body FROM docs WHERE docs MATCH ?"
    params = [terms]
    if source:
        sql += " AND source = ?"
        params.append(source)
    conn = kb_connect()
    try:
        return conn.cursor().execute(sql + " ORDER BY rank LIMIT ?", params + [limit]).fetchall()
    finally:
        conn.close()


async def achat(model, prompt, tools=None, messages=None):
    """An LLM call from the event loop (AsyncOpenAI)."""
    kw = {"tools": tools} if tools else {}
    return await allm.chat.completions.create(
        model=model, messages=messages or [{"role": "user", "content": prompt}], **kw)


def complete(model, prompt, hop=None):
    """A blocking LLM call (sync OpenAI client), as code in a worker thread makes it."""
    if hop:
        HOP.set(hop)
        HOP_BEFORE.set(record.current_ids())
    resp = llm.chat.completions.create(model=model, messages=[{"role": "user", "content": prompt}])
    return resp.choices[0].message.content


def retrieve_documents(question, hop):
    """Retrieval job run in the thread pool."""
    before = record.current_ids()
    with tracer.start_as_current_span("retrieve_documents", attributes={"retrieval.source": "kb"}):
        received(hop, before)
        return kb_query(question)


def summarize_documents(rows, hop):
    before = record.current_ids()
    with tracer.start_as_current_span("summarize_documents", attributes={"retrieval.documents": len(rows)}):
        received(hop, before)
        return complete("summarizer", "Summarize: " + " ".join(r[1] for r in rows))


def score_documents(rows, question, hop):
    before = record.current_ids()
    with tracer.start_as_current_span("score_documents", attributes={"retrieval.documents": len(rows)}):
        received(hop, before)
        return complete("reranker", f"Score for '{question}': " + " | ".join(r[1] for r in rows))


def cache_scores(future, hop):
    """Done-callback of the scoring future: runs on the pool thread that completed it."""
    before = record.current_ids()
    with tracer.start_as_current_span("cache_scores"):
        received(hop, before)
        conn = kb_connect()
        try:
            with conn:
                conn.cursor().execute("INSERT INTO score_cache VALUES (?, ?)", ("q", json.dumps(future.result())))
        finally:
            conn.close()


def save_memory(session_id, question, answer, hop):
    """Background thread: summarize the exchange and store it as the session's memory."""
    before = record.current_ids()
    with tracer.start_as_current_span("save_memory", attributes={"memory.store": "sqlite"}):
        received(hop, before)
        summary = complete("summarizer", f"Summarize for memory: Q: {question} A: {answer}")
        conn = kb_connect()
        try:
            with conn:
                conn.cursor().execute("INSERT INTO memory VALUES (?, ?, ?)", (session_id, question, summary))
        finally:
            conn.close()


def kb_worker(loop, question, done, sql_hop, cb_hop):
    """A worker thread of a callback-style search client; reports back through the loop."""
    HOP.set(sql_hop)
    HOP_BEFORE.set(record.current_ids())
    try:
        rows = kb_query(question)
    except BaseException as exc:  # report, never hang the request
        loop.call_soon_threadsafe(done.set_exception, exc)
        return
    loop.call_soon_threadsafe(on_kb_rows, rows, done, cb_hop)


def on_kb_rows(rows, done, hop):
    """Runs on the event loop thread, in the context call_soon_threadsafe captured."""
    before = record.current_ids()
    with tracer.start_as_current_span("on_search_results", attributes={"retrieval.documents": len(rows)}):
        received(hop, before)
        if not done.done():
            done.set_result(rows)


def search_kb(query, hop):
    """The search_kb tool's implementation (blocking): full-text search, then an LLM rerank."""
    before = record.current_ids()
    with tracer.start_as_current_span("search_kb", attributes={"retrieval.source": "kb"}):
        received(hop, before)
        rows = kb_query(query)
        return complete("reranker", f"Rerank for '{query}': " + " | ".join(r[1] for r in rows))


async def search_source(source, question, hop, session):
    """Retrieval from one source, as a coroutine (fanned out with asyncio.gather)."""
    with tracer.start_as_current_span("retrieve_documents", attributes={"retrieval.source": source}):
        hand_off(hop, f"asyncio.to_thread(lookup_source) source={source}", session)
        return await asyncio.to_thread(lookup_source, question, source, hop)


def lookup_source(question, source, hop):
    HOP.set(hop)
    HOP_BEFORE.set(record.current_ids())
    return kb_query(question, source)


# ------------------------------------------------------------------ the agents, per case -----

SEARCH_TOOL = [{"type": "function", "function": {
    "name": "search_kb", "description": "Search the knowledge base",
    "parameters": {"type": "object", "properties": {"query": {"type": "string"}}, "required": ["query"]}}}]


def step(name):
    return tracer.start_as_current_span(name)


async def agent_healthy(sid, q, mode, n):
    loop = asyncio.get_running_loop()
    with step("plan"):
        await achat("planner", f"Plan the research for: {q}")
    with step("retrieve"):
        found = await asyncio.gather(search_source("kb", q, f"sql:{sid}/to_thread kb", sid),
                                     search_source("notes", q, f"sql:{sid}/to_thread notes", sid))
        rows = [r for rs in found for r in rs]
    with step("summarize"):
        hop = f"{sid}/run_in_executor summarize_documents"
        hand_off(hop, "loop.run_in_executor(ThreadPoolExecutor, summarize_documents) with ThreadingInstrumentor", sid)
        summary = await loop.run_in_executor(POOL, summarize_documents, rows, hop)
    with step("answer"):
        resp = await achat("writer", f"Answer '{q}' from: {summary}")
    return resp.choices[0].message.content


async def agent_thread_pool(sid, q, mode, n):
    loop = asyncio.get_running_loop()
    with step("plan"):
        await achat("planner", f"Plan the research for: {q}")
    with step("retrieve"):
        hop = f"{sid}/run_in_executor retrieve_documents"
        hand_off(hop, "loop.run_in_executor(ThreadPoolExecutor, retrieve_documents)", sid)
        rows = await loop.run_in_executor(POOL, retrieve_documents, q, hop)
    with step("answer"):
        hop = f"llm:{sid}/run_in_executor chat writer"
        hand_off(hop, "loop.run_in_executor(ThreadPoolExecutor, OpenAI().chat.completions.create)", sid)
        return await loop.run_in_executor(
            POOL, functools.partial(complete, "writer", f"Answer '{q}' from: {rows}", hop))


async def agent_thread_and_callback(sid, q, mode, n):
    loop = asyncio.get_running_loop()
    with step("plan"):
        await achat("planner", f"Plan the research for: {q}")
    with step("research"):
        # A callback-style search client: its worker thread reports through call_soon_threadsafe.
        done = loop.create_future()
        sql_hop, cb_hop = f"sql:{sid}/threading.Thread kb_worker", f"{sid}/call_soon_threadsafe on_search_results"
        hand_off(sql_hop, "threading.Thread(kb_worker): sqlite SELECT in the worker thread", sid)
        hand_off(cb_hop, "kb_worker thread -> loop.call_soon_threadsafe(on_kb_rows)", sid)
        threading.Thread(target=kb_worker, args=(loop, q, done, sql_hop, cb_hop), name="kb-worker").start()
        rows = await asyncio.wait_for(done, 10)
    with step("score"):
        # The job itself is submitted with copy_context().run (the manual fix) ...
        job_hop, cb_hop = f"{sid}/copy_context().run score_documents", f"{sid}/add_done_callback cache_scores"
        hand_off(job_hop, "ThreadPoolExecutor.submit(contextvars.copy_context().run, score_documents)", sid)
        hand_off(cb_hop, "concurrent.futures.Future.add_done_callback(cache_scores)", sid)
        fut = POOL.submit(contextvars.copy_context().run, score_documents, rows, q, job_hop)
        # ... but its done-callback runs on the pool thread, after that context is gone.
        fut.add_done_callback(functools.partial(cache_scores, hop=cb_hop))
        await asyncio.wrap_future(fut)
    with step("answer"):
        resp = await achat("writer", f"Answer '{q}' from: {rows}")
        answer = resp.choices[0].message.content
    with step("finalize"):
        hop = f"{sid}/threading.Thread save_memory"
        hand_off(hop, "threading.Thread(save_memory), not joined", sid)
        t = threading.Thread(target=save_memory, args=(sid, q, answer, hop), name="memory-writer")
        t.start()
        BACKGROUND.append(t)
    return answer


async def agent_same_name(sid, q, mode, n):
    loop = asyncio.get_running_loop()
    messages = [{"role": "user", "content": q}]
    with step("plan"):
        resp = await achat("planner", None, tools=SEARCH_TOOL, messages=messages)
    calls = resp.choices[0].message.tool_calls or []
    messages.append(resp.choices[0].message.model_dump(exclude_none=True))

    async def execute_tool(tc):
        with tracer.start_as_current_span(
            f"execute_tool {tc.function.name}",
            attributes={"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": tc.function.name,
                        "gen_ai.tool.call.id": tc.id, "gen_ai.tool.type": "function"},
        ):
            hop = f"{sid}/run_in_executor search_kb {tc.id}"
            hand_off(hop, f"loop.run_in_executor(None, search_kb) for tool call {tc.id}", sid)
            query = json.loads(tc.function.arguments)["query"]
            return await loop.run_in_executor(None, search_kb, query, hop)

    with step("tools"):
        results = await asyncio.gather(*(execute_tool(tc) for tc in calls))
    for tc, result in zip(calls, results):
        messages.append({"role": "tool", "tool_call_id": tc.id, "content": result})
    with step("answer"):
        resp = await achat("writer", None, messages=messages)
    return resp.choices[0].message.content


async def agent_cross_session(sid, q, mode, n):
    loop = asyncio.get_running_loop()
    if mode == "deep":
        # A long research request: everything on the loop or through asyncio.to_thread.
        with step("plan"):
            await achat("planner", f"Plan the research for: {q}")
        with step("retrieve"):
            rows = await asyncio.to_thread(kb_query, q)
        with step("draft"):
            draft = (await achat("drafter", f"Draft an answer to '{q}' from: {rows}")).choices[0].message.content
        with step("review"):
            resp = await achat("planner", f"Review: {draft}")
        return resp.choices[0].message.content
    # A quick request: retrieval in the thread pool, memory saved in the background.
    with step("retrieve"):
        hop = f"{sid}/run_in_executor retrieve_documents"
        hand_off(hop, "loop.run_in_executor(ThreadPoolExecutor, retrieve_documents)", sid)
        rows = await loop.run_in_executor(POOL, retrieve_documents, q, hop)
    with step("answer"):
        answer = (await achat("writer", f"Answer '{q}' from: {rows}")).choices[0].message.content
    with step("finalize"):
        hop = f"{sid}/submit save_memory"
        hand_off(hop, "ThreadPoolExecutor.submit(save_memory), not awaited", sid)
        BACKGROUND.append(POOL.submit(save_memory, sid, q, answer, hop))
    return answer


AGENTS = {
    "inprocess_healthy": agent_healthy,
    "inprocess_thread_pool_loses_context": agent_thread_pool,
    "inprocess_thread_and_callback": agent_thread_and_callback,
    "inprocess_concurrent_same_name": agent_same_name,
    "inprocess_cross_session": agent_cross_session,
}

# ------------------------------------------------------------------ the HTTP edge -----------


async def run_agent(request):
    body = await request.json()
    sid = body["session_id"]
    # The edge: session.id on the request span, and in baggage for every span under it.
    trace.get_current_span().set_attribute("session.id", sid)
    token = context.attach(baggage.set_baggage("session.id", sid))
    try:
        with tracer.start_as_current_span(
            "invoke_agent research_agent", kind=SpanKind.INTERNAL,
            attributes={"gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": "research_agent"},
        ):
            answer = await AGENTS[ARGS.case](sid, body["question"], body.get("mode"), body.get("n", 0))
    finally:
        context.detach(token)
    return web.json_response({"session_id": sid, "answer": answer})


async def main():
    # Readiness check of the LLM provider (GET /models: not a traced call), which also opens
    # both clients' connection pools before the first user request.
    await allm.models.list()
    await asyncio.to_thread(llm.models.list)
    app = web.Application()  # the instrumented Application (AioHttpServerInstrumentor)
    app.router.add_post("/agent/run", run_agent)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    print(f"READY {port}", flush=True)
    await stop.wait()
    await runner.cleanup()
    for job in BACKGROUND:
        if isinstance(job, threading.Thread):
            await asyncio.to_thread(job.join, 20)
        else:
            await asyncio.wrap_future(job)


if __name__ == "__main__":
    try:
        asyncio.run(main())
    finally:
        POOL.shutdown(wait=True)
        tp.shutdown()
        sys.stdout.flush()
