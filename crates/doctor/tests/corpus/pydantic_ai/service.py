"""agent-service: an HTTP service (FastAPI, instrumented) answering each user turn with Pydantic AI
agents. Its own process and TracerProvider (service.name agent-service); Pydantic AI's native
OpenTelemetry (Agent.instrument_all with InstrumentationSettings(tracer_provider=...)), the model
an OpenAIChatModel on the stand-in LLM through OpenAIProvider(base_url=...).

Agents: a coordinator that delegates through two tools, ask_researcher and ask_writer, to a
researcher (its search_docs tool reads the docs index) and a writer. The coordinator keeps each
session's message history, as a chat service does.

    --delegation async       the tools are `async def` and `await researcher.run(..., usage=ctx.usage)`
                             (Pydantic AI's documented agent delegation)
    --delegation threadpool  the tools are plain `def` (the team's sync helpers): Agent.run_sync
                             refuses to run inside a sync tool, and the shared async client is bound
                             to the service's event loop, so each tool builds a fresh specialist and
                             runs it with run_sync on a ThreadPoolExecutor of its own, which does not
                             carry contextvars (nor the OpenTelemetry context) into its threads
"""

import argparse
import contextvars
import json
import re
import sqlite3
import uuid
from concurrent.futures import ThreadPoolExecutor

from common import record, serve, telemetry

parser = argparse.ArgumentParser()
parser.add_argument("--out", required=True)
parser.add_argument("--fd", type=int, required=True)
parser.add_argument("--llm", required=True)
parser.add_argument("--docs", required=True)
parser.add_argument("--delegation", choices=["async", "threadpool"], required=True)
args = parser.parse_args()

tp = telemetry(args.out, "agent-service")

from fastapi import FastAPI  # noqa: E402
from fastapi.responses import JSONResponse  # noqa: E402
from opentelemetry import trace  # noqa: E402
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor  # noqa: E402
from opentelemetry.sdk.trace import SpanProcessor  # noqa: E402
from pydantic import BaseModel  # noqa: E402
from pydantic_ai import Agent, RunContext  # noqa: E402
from pydantic_ai.models.instrumented import InstrumentationSettings  # noqa: E402
from pydantic_ai.models.openai import OpenAIChatModel  # noqa: E402
from pydantic_ai.providers.openai import OpenAIProvider  # noqa: E402

Agent.instrument_all(InstrumentationSettings(tracer_provider=tp))


# ---------------------------------------------------------------- ground truth (not the product) ---

REQUEST = contextvars.ContextVar("request", default=None)  # the turn being answered, for notes
HANDOFF = contextvars.ContextVar("handoff", default=None)  # the hand-off a specialists thread runs


def note(**facts):
    record.note(args.out, **facts)


def hexid(ctx):
    return format(ctx.span_id, "016x") if ctx else None


class TruthNotes(SpanProcessor):
    """Notes facts the case's truth needs, read from the live spans as they start and end: which
    agent run span each specialist run started (and under which hand-off), and which chat span got
    which response of the stand-in. Adds nothing to any span."""

    def on_start(self, span, parent_context=None):
        if span.name.startswith("invoke_agent "):
            ctx = span.get_span_context()
            note(side="agent-span", agent=span.attributes.get("agent_name"), span_id=hexid(ctx),
                 trace_id=format(ctx.trace_id, "032x"), parent_span_id=hexid(span.parent),
                 handoff=HANDOFF.get())

    def on_end(self, span):
        if span.attributes.get("gen_ai.operation.name") == "chat":
            note(side="llm-span", span_id=hexid(span.get_span_context()),
                 response_id=span.attributes.get("gen_ai.response.id"),
                 agent=span.attributes.get("gen_ai.agent.name"))


tp.add_span_processor(TruthNotes())


# ------------------------------------------------------------------------------------ the agents ---

INSTRUCTIONS = {
    "coordinator": "You are the coordinator of the support desk. Ask the researcher for the facts with "
                   "ask_researcher, then the writer for the reply with ask_writer, and answer the "
                   "customer with the writer's reply.",
    "researcher": "You are the researcher. Search the product documentation with search_docs and report "
                  "the facts that answer the question.",
    "writer": "You are the writer. Turn the researcher's notes into a short, friendly reply to the customer.",
}


def new_model():
    return OpenAIChatModel("stand-in", provider=OpenAIProvider(base_url=args.llm, api_key="stand-in"))


def search_docs(query: str) -> str:
    """Search the product documentation. Returns the matching documents as JSON."""
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


def new_researcher(model):
    return Agent(model, name="researcher", instructions=INSTRUCTIONS["researcher"], tools=[search_docs])


def new_writer(model):
    return Agent(model, name="writer", instructions=INSTRUCTIONS["writer"])


model = new_model()
researcher = new_researcher(model)
writer = new_writer(model)
coordinator = Agent(model, name="coordinator", instructions=INSTRUCTIONS["coordinator"])


def note_caller(agent, key):
    """The spans current where the coordinator hands work to a specialist: the execute_tool span,
    the coordinator's invoke_agent span (its parent), the request's server span."""
    current = trace.get_current_span()
    request = REQUEST.get() or {}
    note(side="delegate-caller", agent=agent, handoff=key, request=request.get("request_id"),
         trace_id=record.current_ids()[0],
         parent_span_ids=[record.current_ids()[1], hexid(current.parent), request.get("server_span")])


if args.delegation == "async":

    @coordinator.tool
    async def ask_researcher(ctx: RunContext[None], question: str) -> str:
        """Ask the researcher to look the question up in the product documentation."""
        note_caller("researcher", None)
        result = await researcher.run(question, usage=ctx.usage)
        return result.output

    @coordinator.tool
    async def ask_writer(ctx: RunContext[None], question: str, notes: str) -> str:
        """Ask the writer to draft the reply to the customer's question from the researcher's notes."""
        note_caller("writer", None)
        result = await writer.run(f"Question: {question}\nNotes: {notes}", usage=ctx.usage)
        return result.output

else:
    specialists = ThreadPoolExecutor(max_workers=4, thread_name_prefix="specialist")
    FACTORIES = {"researcher": new_researcher, "writer": new_writer}

    def consult(agent, prompt, key, request):
        """Runs on a specialists thread: a fresh specialist (its own client) run to completion."""
        note(side="delegate-thread", agent=agent, handoff=key, context=record.current_ids())
        tokens = HANDOFF.set(key), REQUEST.set(request)
        try:
            return FACTORIES[agent](new_model()).run_sync(prompt).output
        finally:
            HANDOFF.reset(tokens[0])
            REQUEST.reset(tokens[1])

    def delegate(agent, prompt):
        key = f"{agent}-{uuid.uuid4().hex[:12]}"
        note_caller(agent, key)
        request = REQUEST.get()
        return specialists.submit(consult, agent, prompt, key, request).result(timeout=60)

    @coordinator.tool_plain
    def ask_researcher(question: str) -> str:
        """Ask the researcher to look the question up in the product documentation."""
        return delegate("researcher", question)

    @coordinator.tool_plain
    def ask_writer(question: str, notes: str) -> str:
        """Ask the writer to draft the reply to the customer's question from the researcher's notes."""
        return delegate("writer", f"Question: {question}\nNotes: {notes}")


# -------------------------------------------------------------------------------------- the API ---

app = FastAPI()
HISTORY = {}  # session id -> the coordinator's messages so far


class Turn(BaseModel):
    session_id: str
    request_id: str
    text: str


@app.get("/healthz")
async def healthz():
    return {"ok": True}


@app.post("/chat")
async def chat(turn: Turn):
    server = record.current_ids()
    REQUEST.set({"request_id": turn.request_id, "session_id": turn.session_id, "server_span": server[1]})
    note(side="request", request=turn.request_id, session=turn.session_id, trace_id=server[0],
         server_span=server[1])
    try:
        result = await coordinator.run(turn.text, message_history=HISTORY.get(turn.session_id))
    except Exception as e:  # the service answers 500 with what failed
        note(side="request-failed", request=turn.request_id, error=f"{type(e).__name__}: {str(e)[:200]}")
        return JSONResponse({"error": type(e).__name__, "detail": str(e)[:200]}, status_code=500)
    HISTORY[turn.session_id] = result.all_messages()
    return {"answer": result.output}


FastAPIInstrumentor.instrument_app(app, tracer_provider=tp, exclude_spans=["receive", "send"],
                                   excluded_urls="/healthz")

serve(app, args.fd, tp)
