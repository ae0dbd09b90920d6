"""agent-service: an HTTP service (FastAPI, instrumented) answering each user turn with smolagents.
Its own process and TracerProvider (service.name agent-service); OpenInference's smolagents
instrumentation (SmolagentsInstrumentor().instrument(tracer_provider=...)), the model an
OpenAIServerModel on the stand-in LLM (chat completions).

Agents, one team per user session (smolagents agents keep memory): a manager ToolCallingAgent with
a managed agent, the researcher (a ToolCallingAgent with the search_docs tool over the docs index).
The manager keeps the session's memory across turns (run(..., reset=False)).

    --endpoint sync      `def chat(...)`: Starlette runs the handler, and so agent.run, in its thread
                         pool with the request's context copied (anyio.to_thread)
    --endpoint executor  `async def chat(...)` handing agent.run to the event loop's default executor
                         (loop.run_in_executor), which does not carry contextvars into the thread
"""

import argparse
import asyncio
import contextvars
import functools
import json
import re
import sqlite3
import threading
import uuid

from common import record, serve, telemetry

parser = argparse.ArgumentParser()
parser.add_argument("--out", required=True)
parser.add_argument("--fd", type=int, required=True)
parser.add_argument("--llm", required=True)
parser.add_argument("--docs", required=True)
parser.add_argument("--endpoint", choices=["sync", "executor"], required=True)
args = parser.parse_args()

tp = telemetry(args.out, "agent-service")

from fastapi import FastAPI  # noqa: E402
from openinference.instrumentation.smolagents import SmolagentsInstrumentor  # noqa: E402
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor  # noqa: E402
from opentelemetry.sdk.trace import SpanProcessor  # noqa: E402
from pydantic import BaseModel  # noqa: E402

SmolagentsInstrumentor().instrument(tracer_provider=tp)

from smolagents import OpenAIServerModel, Tool, ToolCallingAgent  # noqa: E402


# ---------------------------------------------------------------- ground truth (not the product) ---

REQUEST = contextvars.ContextVar("request", default=None)  # the turn being answered, for notes
HANDOFF = contextvars.ContextVar("handoff", default=None)  # the hand-off an executor thread runs


def note(**facts):
    record.note(args.out, **facts)


def hexid(ctx):
    return format(ctx.span_id, "016x") if ctx else None


class TruthNotes(SpanProcessor):
    """Notes facts the case's truth needs, read from the live spans: every agent run span as it
    starts (whether or not it ever ends), and every LLM span as it ends with its time window.
    Adds nothing to any span."""

    def on_start(self, span, parent_context=None):
        if span.attributes.get("openinference.span.kind") == "AGENT":
            ctx = span.get_span_context()
            note(side="agent-span", agent=span.name.removesuffix(".run"), span_id=hexid(ctx),
                 trace_id=format(ctx.trace_id, "032x"), parent_span_id=hexid(span.parent), handoff=HANDOFF.get(),
                 request=(REQUEST.get() or {}).get("request_id"))

    def on_end(self, span):
        if span.attributes.get("openinference.span.kind") == "LLM":
            note(side="llm-span", span_id=hexid(span.get_span_context()), start=span.start_time, end=span.end_time,
                 parent_span_id=hexid(span.parent))


tp.add_span_processor(TruthNotes())


# ------------------------------------------------------------------------------------ the agents ---

INSTRUCTIONS = {
    "manager": "You are the manager of the support desk. Hand every customer question to the researcher "
               "team member and answer the customer with what it found.",
    "researcher": "You are the researcher. Search the product documentation with search_docs and report "
                  "the facts that answer the question.",
}


class SearchDocsTool(Tool):
    name = "search_docs"
    description = "Search the product documentation. Returns the matching documents as JSON."
    inputs = {"query": {"type": "string", "description": "what to look for"}}
    output_type = "string"

    def forward(self, query: str) -> str:
        request = (REQUEST.get() or {}).get("request_id")
        ids = record.current_ids()
        # Keep region names such as eu-west-1 in one piece.
        words = [w for w in re.findall(r"[\w-]+", query) if len(w) > 3]
        try:
            with sqlite3.connect(args.docs) as db:
                rows = db.execute("SELECT payload FROM docs WHERE docs MATCH ? ORDER BY rank LIMIT 2",
                                  (" OR ".join(words),)).fetchall()
        except sqlite3.Error as e:
            note(side="tool", tool="search_docs", query=query, request=request, ids=ids, outcome="raised",
                 error=f"{type(e).__name__}: {e}")
            raise
        result = '{"query": %s, "hits": [%s]}' % (json.dumps(query), ", ".join(r[0] for r in rows))
        try:
            json.loads(result)
            outcome = "ok"
        except ValueError:
            outcome = "malformed"
        note(side="tool", tool="search_docs", query=query, request=request, ids=ids, outcome=outcome)
        return result


model = OpenAIServerModel("stand-in", api_base=args.llm, api_key="stand-in")
TEAMS = {}  # session id -> its manager agent
TEAMS_LOCK = threading.Lock()


def team(session_id):
    with TEAMS_LOCK:
        if session_id not in TEAMS:
            researcher = ToolCallingAgent(
                tools=[SearchDocsTool()], model=model, name="researcher", max_steps=4, verbosity_level=0,
                description="Looks questions up in the product documentation and reports the facts.",
                instructions=INSTRUCTIONS["researcher"])
            TEAMS[session_id] = ToolCallingAgent(
                tools=[], model=model, managed_agents=[researcher], name="manager", max_steps=4, verbosity_level=0,
                instructions=INSTRUCTIONS["manager"])
        return TEAMS[session_id]


def answer(session_id, text):
    return str(team(session_id).run(text, reset=False))


# -------------------------------------------------------------------------------------- the API ---

app = FastAPI()


class Turn(BaseModel):
    session_id: str
    request_id: str
    text: str


@app.get("/healthz")
async def healthz():
    return {"ok": True}


def begin(turn):
    server = record.current_ids()
    REQUEST.set({"request_id": turn.request_id, "session_id": turn.session_id, "server_span": server[1]})
    note(side="request", request=turn.request_id, session=turn.session_id, trace_id=server[0], server_span=server[1])
    return server


if args.endpoint == "sync":

    @app.post("/chat")
    def chat(turn: Turn):
        begin(turn)
        return {"answer": answer(turn.session_id, turn.text)}

else:

    def in_executor(key, request, session_id, text):
        """Runs on a thread of the loop's default executor, in whatever context that thread has."""
        note(side="executor-thread", handoff=key, context=record.current_ids())
        tokens = HANDOFF.set(key), REQUEST.set(request)
        try:
            return answer(session_id, text)
        finally:
            HANDOFF.reset(tokens[0])
            REQUEST.reset(tokens[1])

    @app.post("/chat")
    async def chat(turn: Turn):
        server = begin(turn)
        key = f"turn-{uuid.uuid4().hex[:12]}"
        note(side="executor-caller", handoff=key, request=turn.request_id, trace_id=server[0],
             parent_span_ids=[server[1]])
        loop = asyncio.get_running_loop()
        text = await loop.run_in_executor(None, functools.partial(in_executor, key, REQUEST.get(), turn.session_id,
                                                                  turn.text))
        return {"answer": text}


FastAPIInstrumentor.instrument_app(app, tracer_provider=tp, exclude_spans=["receive", "send"],
                                   excluded_urls="/healthz")

serve(app, args.fd, tp)
