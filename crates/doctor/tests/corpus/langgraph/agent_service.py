"""agent-service: a FastAPI service that answers a user's chat turn with a LangGraph supervisor graph.

The graph (langgraph StateGraph over MessagesState, an InMemorySaver checkpointer, thread_id = the
user's session id, so a session's turns share one conversation):

    supervisor --(Command goto)--> researcher --> supervisor --> writer --> supervisor --> END

  supervisor  ChatOpenAI.with_structured_output(Router) picks the next worker or FINISH
  researcher  ChatOpenAI.bind_tools([search_docs]); the search_docs tool asks a LangChain retriever
              (DocsRetriever, a BaseRetriever over docs-service's HTTP API, httpx) and returns the hits
              as JSON text cut to MAX_TOOL_CHARS; the model then reports its findings
  writer      ChatOpenAI writes the answer

Telemetry as a user sets it up: one TracerProvider (service.name agent-service), OpenInference's
LangChainInstrumentor (LangChain/LangGraph runs -> spans), the FastAPI and httpx instrumentations,
and the BaggageSpanProcessor for `session.id`. ChatOpenAI is pointed at the stand-in LLM.

--mode threadpool  `def chat(...)`: FastAPI runs the handler in its thread pool (contextvars
                   copied), the handler calls graph.invoke
--mode executor    `async def chat(...)` hands graph.invoke to a concurrent.futures thread pool with
                   loop.run_in_executor, which does not carry contextvars: the graph runs with no
                   OpenTelemetry context
"""

import argparse
import asyncio
import concurrent.futures
import contextvars
import functools
import json
from typing import Literal

from typing_extensions import TypedDict

from common import PROMPTS, agent_of, record, serve, telemetry

parser = argparse.ArgumentParser()
parser.add_argument("--out", required=True)
parser.add_argument("--fd", type=int, required=True)
parser.add_argument("--llm", required=True, help="the stand-in LLM's base_url")
parser.add_argument("--docs", required=True, help="docs-service's base URL")
parser.add_argument("--mode", choices=("threadpool", "executor"), default="threadpool")
args = parser.parse_args()

tp = telemetry(args.out, "agent-service")

import httpx  # noqa: E402
from fastapi import FastAPI, Request  # noqa: E402
from langchain_core.callbacks import BaseCallbackHandler, CallbackManagerForRetrieverRun  # noqa: E402
from langchain_core.documents import Document  # noqa: E402
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage  # noqa: E402
from langchain_core.retrievers import BaseRetriever  # noqa: E402
from langchain_core.tools import tool  # noqa: E402
from langchain_openai import ChatOpenAI  # noqa: E402
from langgraph.checkpoint.memory import InMemorySaver  # noqa: E402
from langgraph.graph import END, START, MessagesState, StateGraph  # noqa: E402
from langgraph.types import Command  # noqa: E402
from openinference.instrumentation.langchain import (LangChainInstrumentor, get_ancestor_spans,  # noqa: E402
                                                     get_current_span)
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor  # noqa: E402
from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor  # noqa: E402

LangChainInstrumentor().instrument(tracer_provider=tp)

# ---- ground truth taken while the case runs (not part of the service's behaviour) ----------
_retrieval = contextvars.ContextVar("retrieval", default=None)
_request = contextvars.ContextVar("request", default=None)  # "<session>#<turn>", set by run_graph


def _oi_ids(span):
    return record.current_ids(span) if span is not None else None


def _docs_request_hook(span, request):
    """The httpx instrumentation's request hook: notes the CLIENT span of a docs-service call with
    the retriever run that made it (the retriever's LangChain span and its ancestors)."""
    if (seen := _retrieval.get()) is not None:
        record.note(args.out, side="docs-client", request=_request.get(), client=record.current_ids(span), **seen)


class LLMSpans(BaseCallbackHandler):
    """Notes each chat model run's OpenInference span with the agent that made the call. LangChain
    calls this handler and the OpenInference tracer in an order that varies from run to run, so the
    span is looked up at the run's start (there if the tracer went first) and at its end (still
    there if this handler goes first)."""

    def __init__(self):
        self.started = {}

    def on_chat_model_start(self, serialized, messages, *, run_id, **kwargs):
        system = next((m.content for m in messages[0] if m.type == "system"), "")
        human = [m.content for m in messages[0] if m.type == "human"]
        self.started[run_id] = (agent_of([{"role": "system", "content": system}]), human[-1] if human else None,
                                LangChainInstrumentor().get_span(run_id))

    def _ended(self, run_id, error=None):
        agent, last_user, span = self.started.pop(run_id, (None, None, None))
        span = LangChainInstrumentor().get_span(run_id) or span
        record.note(args.out, side="llm", request=_request.get(), agent=agent, span=_oi_ids(span),
                    name=span.name if span is not None else None, last_user=last_user, error=error)

    def on_llm_end(self, response, *, run_id, **kwargs):
        self._ended(run_id)

    def on_llm_error(self, error, *, run_id, **kwargs):
        self._ended(run_id, repr(error))


HTTPXClientInstrumentor().instrument(tracer_provider=tp, request_hook=_docs_request_hook)

# ---- the service -----------------------------------------------------------------------------
MAX_TOOL_CHARS = 1200  # keep tool output within the model's context budget
http = httpx.Client(timeout=10)


class DocsRetriever(BaseRetriever):
    """A retriever over docs-service's search API."""

    base_url: str
    k: int = 5

    def _get_relevant_documents(self, query: str, *, run_manager: CallbackManagerForRetrieverRun):
        span = LangChainInstrumentor().get_span(run_manager.run_id)
        token = _retrieval.set({
            "query": query,
            "retriever": _oi_ids(span),
            "ancestors": [_oi_ids(s) for s in LangChainInstrumentor().get_ancestors(run_manager.run_id)],
            "otel_current": record.current_ids(),
        })
        try:
            r = http.post(f"{self.base_url}/search", json={"query": query, "k": self.k})
            r.raise_for_status()
        except Exception as e:
            record.note(args.out, side="retriever-error", request=_request.get(), query=query, retriever=_oi_ids(span),
                        name=span.name if span is not None else None, error=repr(e))
            raise
        finally:
            _retrieval.reset(token)
        return [Document(page_content=d["text"], metadata={"id": d["id"], "title": d["title"]})
                for d in r.json()["documents"]]


retriever = DocsRetriever(base_url=args.docs)


@tool
def search_docs(query: str) -> str:
    """Search the product documentation; returns the matching documents as JSON."""
    docs = retriever.invoke(query)
    text = json.dumps([{"id": d.metadata["id"], "title": d.metadata["title"], "text": d.page_content}
                       for d in docs])
    out = text[:MAX_TOOL_CHARS]
    span = get_current_span()
    try:
        json.loads(out)
        malformed = False
    except ValueError:
        malformed = True
    record.note(args.out, side="tool", request=_request.get(), query=query, tool=_oi_ids(span), name=span.name if span else None,
                malformed=malformed, chars=len(text))
    return out


llm = ChatOpenAI(model="gpt-4o-mini", base_url=args.llm, api_key="stand-in", max_retries=2, timeout=30)


class Router(TypedDict):
    """The worker to act next, or FINISH."""

    next: Literal["researcher", "writer", "FINISH"]


def _node_note(node, state, **extra):
    span = get_current_span()
    record.note(args.out, side="node", request=_request.get(), node=node, span=_oi_ids(span), name=span.name if span else None,
                ancestors=[_oi_ids(s) for s in get_ancestor_spans()], otel_current=record.current_ids(),
                **extra)


def supervisor(state: MessagesState) -> Command[Literal["researcher", "writer", "__end__"]]:
    decision = llm.with_structured_output(Router).invoke([SystemMessage(PROMPTS["supervisor"]), *state["messages"]])
    goto = decision["next"]
    _node_note("supervisor", state, goto=goto)
    return Command(goto=END if goto == "FINISH" else goto)


def researcher(state: MessagesState) -> Command[Literal["supervisor"]]:
    _node_note("researcher", state)
    model = llm.bind_tools([search_docs])
    messages = [SystemMessage(PROMPTS["researcher"]), *state["messages"]]
    reply = model.invoke(messages)
    for _ in range(3):
        if not reply.tool_calls:
            break
        messages.append(reply)
        messages.extend(search_docs.invoke(call) for call in reply.tool_calls)
        reply = model.invoke(messages)
    return Command(goto="supervisor", update={"messages": [AIMessage(content=reply.content, name="researcher")]})


def writer(state: MessagesState) -> Command[Literal["supervisor"]]:
    _node_note("writer", state)
    reply = llm.invoke([SystemMessage(PROMPTS["writer"]), *state["messages"]])
    return Command(goto="supervisor", update={"messages": [AIMessage(content=reply.content, name="writer")]})


builder = StateGraph(MessagesState)
builder.add_node("supervisor", supervisor)
builder.add_node("researcher", researcher)
builder.add_node("writer", writer)
builder.add_edge(START, "supervisor")
graph = builder.compile(checkpointer=InMemorySaver())


def run_graph(session_id, turn, text):
    _request.set(f"{session_id}#{turn}")
    record.note(args.out, side="graph-start", request=_request.get(), otel_current=record.current_ids())
    result = graph.invoke({"messages": [HumanMessage(content=text)]},
                          {"configurable": {"thread_id": session_id}, "callbacks": [LLMSpans()]})
    return {"answer": result["messages"][-1].content}


app = FastAPI()
pool = concurrent.futures.ThreadPoolExecutor(max_workers=4, thread_name_prefix="graph")


def _handler_note(request, body):
    record.note(args.out, side="handler", request=f"{body['session_id']}#{body['turn']}", server=record.current_ids(),
                traceparent=request.headers.get("traceparent"))


if args.mode == "threadpool":
    @app.post("/chat")
    def chat(body: dict, request: Request):
        _handler_note(request, body)
        return run_graph(body["session_id"], body["turn"], body["text"])
else:
    @app.post("/chat")
    async def chat(body: dict, request: Request):
        _handler_note(request, body)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(pool, functools.partial(run_graph, body["session_id"], body["turn"],
                                                                  body["text"]))


@app.get("/healthz")
def healthz():
    return {"ok": True}


FastAPIInstrumentor.instrument_app(app, tracer_provider=tp, exclude_spans=["receive", "send"],
                                   excluded_urls="/healthz")
serve(app, args.fd, tp)
