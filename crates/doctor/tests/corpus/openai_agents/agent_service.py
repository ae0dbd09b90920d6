"""support-agents: an HTTP service (FastAPI, instrumented) answering each user turn with the OpenAI
Agents SDK. Its own process and TracerProvider (service.name support-agents).

The agents: `triage` hands off to `researcher`; `researcher` has the function tool `search_docs`
and the agent `writer` as its tool `draft_answer` (Agent.as_tool); each session keeps its history
in an SQLiteSession. The model is the stand-in, through the SDK's AsyncOpenAI client.

    --instrumentation openinference   OpenInference's OpenAIAgentsInstrumentor (its processor
                                      replaces the SDK's exporter to OpenAI), search_docs mapped
                                      to the RETRIEVER span kind, session.id via using_session
    --instrumentation openllmetry     OpenLLMetry's OpenAIAgentsInstrumentor
                                      (replace_existing_processors=True)
    --api responses|chat              OpenAIResponsesModel, or OpenAIChatCompletionsModel
    --runner async                    the handler awaits Runner.run
    --runner executor                 the handler hands the SDK's synchronous entry point
                                      (Runner.run_sync, in a plain function shared with batch
                                      jobs) to a ThreadPoolExecutor with loop.run_in_executor,
                                      which does not carry contextvars into the worker thread
    --docs-fault none|truncated|down  search_docs for a query about the nightly export: returns
                                      a truncated JSON document (no exception), or raises
    --handoff-fault none|refused      triage's hand-off to the researcher, for a question about the
                                      nightly export: its on_handoff callback raises (the
                                      researcher cannot take it), so the researcher never runs
"""

import argparse
import asyncio
import concurrent.futures
import functools
import json
import os
import threading

from common import agent_of, record, serve, telemetry

parser = argparse.ArgumentParser()
parser.add_argument("--out", required=True)
parser.add_argument("--fd", type=int, required=True)
parser.add_argument("--llm", required=True)
parser.add_argument("--instrumentation", choices=["openinference", "openllmetry"], required=True)
parser.add_argument("--api", choices=["responses", "chat"], required=True)
parser.add_argument("--runner", choices=["async", "executor"], required=True)
parser.add_argument("--docs-fault", choices=["none", "truncated", "down"], default="none")
parser.add_argument("--handoff-fault", choices=["none", "refused"], default="none")
args = parser.parse_args()

SERVICE = "support-agents"
tp = telemetry(args.out, SERVICE)

from opentelemetry import trace  # noqa: E402
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor  # noqa: E402

if args.instrumentation == "openinference":
    from openinference.instrumentation import using_session
    from openinference.instrumentation.openai_agents import OpenAIAgentsInstrumentor

    OpenAIAgentsInstrumentor().instrument(tracer_provider=tp, tool_span_kinds={"search_docs": "RETRIEVER"})
else:
    import contextlib

    from opentelemetry.instrumentation.openai_agents import OpenAIAgentsInstrumentor

    OpenAIAgentsInstrumentor(replace_existing_processors=True).instrument(tracer_provider=tp)

    def using_session(session_id):
        return contextlib.nullcontext()

from agents import (  # noqa: E402
    Agent,
    RunHooks,
    OpenAIChatCompletionsModel,
    OpenAIResponsesModel,
    RunConfig,
    Runner,
    SQLiteSession,
    function_tool,
    handoff,
)
from fastapi import FastAPI  # noqa: E402
from fastapi.responses import JSONResponse  # noqa: E402
from openai import AsyncOpenAI, DefaultAsyncHttpxClient  # noqa: E402
from pydantic import BaseModel  # noqa: E402


async def on_llm_response(response):
    """httpx event hook on the SDK's OpenAI client: notes, for the case's truth, which agent made
    each model call (from the tools it offered), the HTTP status and the span current at the call."""
    await response.aread()
    body = json.loads(response.request.content or b"{}")
    tools = [t.get("name") or (t.get("function") or {}).get("name") for t in body.get("tools") or []]
    record.note(args.out, side="llm-call", agent=agent_of(tools), status=response.status_code,
                span=record.current_ids())


def model(name, client):
    if args.api == "chat":
        return OpenAIChatCompletionsModel(model=name, openai_client=client)
    return OpenAIResponsesModel(model=name, openai_client=client)


def build_agents(client):
    @function_tool
    def search_docs(query: str) -> str:
        """Search the product documentation; returns the matching passages as JSON."""
        hits = [{"title": "Runbook", "text": f"See the runbook section on {query[:40].lower()}"},
                {"title": "FAQ", "text": "Most issues are solved by the operations console"}]
        if "nightly export" in query and args.docs_fault == "down":
            record.note(args.out, side="tool-failure", tool="search_docs", how="raised",
                        span=record.current_ids())
            raise ConnectionError("search backend 10.0.3.7:9200 refused the connection (shard docs-2 down)")
        text = json.dumps({"hits": hits})
        if "nightly export" in query and args.docs_fault == "truncated":
            record.note(args.out, side="tool-failure", tool="search_docs", how="truncated",
                        span=record.current_ids())
            text = text[: len(text) // 2]  # the index returned a cut-off document
        return text

    writer = Agent(name="writer", model=model("gpt-4.1-mini", client),
                   instructions="You are the writer. Turn research notes into a short, friendly answer.")
    researcher = Agent(
        name="researcher", model=model("gpt-4.1", client),
        instructions="You are the researcher. Search the docs, have the writer draft, then answer.",
        tools=[search_docs, writer.as_tool(tool_name="draft_answer",
                                           tool_description="Have the writer draft the answer from notes.")],
    )
    def take_over(context):
        """The researcher's admission: for the nightly export it cannot take the conversation."""
        if args.handoff_fault == "refused" and "nightly export" in str(context.context or ""):
            record.note(args.out, side="handoff-failure", target="researcher", span=record.current_ids())
            raise PermissionError("researcher cannot take the conversation: its queue for tenant acme is closed")

    triage = Agent(name="triage", model=model("gpt-4.1-mini", client),
                   instructions="You are the triage agent. Hand every product question to the researcher.",
                   handoffs=[handoff(researcher, on_handoff=take_over)])
    return triage


def new_client():
    return AsyncOpenAI(base_url=args.llm, api_key="stand-in", max_retries=2,
                       http_client=DefaultAsyncHttpxClient(event_hooks={"response": [on_llm_response]}))


triage = build_agents(new_client())
DB = os.path.join(record.case_dir(args.out), "parts", "conversations.db")  # removed with the parts
per_thread = threading.local()
executor = concurrent.futures.ThreadPoolExecutor(max_workers=4, thread_name_prefix="agent-run")


class TurnHooks(RunHooks):
    """Notes, for the case's truth, every agent that starts in a turn and the span current then."""

    def __init__(self, session_id, text):
        self.session_id, self.text = session_id, text

    async def on_agent_start(self, context, agent):
        record.note(args.out, side="agent-start", agent=agent.name, session=self.session_id, text=self.text,
                    span=record.current_ids())

    async def on_handoff(self, context, from_agent, to_agent):
        record.note(args.out, side="handoff", source=from_agent.name, target=to_agent.name,
                    session=self.session_id, text=self.text, span=record.current_ids())


def run_config(session_id):
    return RunConfig(workflow_name="support chat", group_id=session_id, trace_metadata={"session": session_id})


async def answer(session_id, text):
    with using_session(session_id):
        # The turn's text as the run's context: what the hand-off's admission reads.
        result = await Runner.run(triage, text, context=text, session=SQLiteSession(session_id, DB),
                                  run_config=run_config(session_id), hooks=TurnHooks(session_id, text))
    return result.final_output


def answer_sync(session_id, text):
    """The same turn through the SDK's synchronous entry point, as batch jobs call it."""
    record.note(args.out, side="worker-thread", session=session_id, context=record.current_ids())
    # Runner.run_sync runs the turn on this thread's own event loop; an async HTTP client belongs
    # to one loop, so each worker thread builds its agents (and client) once.
    if not hasattr(per_thread, "triage"):
        per_thread.triage = build_agents(new_client())
    with using_session(session_id):
        result = Runner.run_sync(per_thread.triage, text, context=text, session=SQLiteSession(session_id, DB),
                                 run_config=run_config(session_id), hooks=TurnHooks(session_id, text))
    return result.final_output


class Turn(BaseModel):
    session_id: str
    text: str


app = FastAPI()


@app.get("/healthz")
async def healthz():
    return {"ok": True}


@app.post("/chat")
async def chat(turn: Turn):
    record.note(args.out, side="handler", session=turn.session_id, text=turn.text, span=record.current_ids())
    try:
        if args.runner == "executor":
            loop = asyncio.get_running_loop()
            text = await loop.run_in_executor(executor, functools.partial(answer_sync, turn.session_id, turn.text))
        else:
            text = await answer(turn.session_id, turn.text)
    except Exception as exc:  # the request fails: the user gets an error
        trace.get_current_span().record_exception(exc)
        return JSONResponse({"error": f"{type(exc).__name__}: {exc}"}, status_code=500)
    return {"answer": text}


FastAPIInstrumentor.instrument_app(app, tracer_provider=tp)

if __name__ == "__main__":
    serve(app, args.fd, tp)
