"""agent-service: an HTTP service (FastAPI, instrumented) that answers each user turn with AutoGen
agents. Its own process and TracerProvider (service.name agent-service).

    --app core       autogen-core: a SingleThreadedAgentRuntime (tracer_provider given, started
                     once at start-up) with an orchestrator RoutedAgent that sends (RPC) a
                     research task to a researcher RoutedAgent (stand-in LLM + the search_docs
                     tool) and publishes a drafting task to a writer RoutedAgent, which publishes
                     the answer to a topic a ClosureAgent collects for the HTTP handler.
    --app agentchat  autogen-agentchat: per turn, a RoundRobinGroupChat of two AssistantAgents
                     (researcher with the search_docs FunctionTool, writer), run by the handler.
    --app agentchat-script
                     the same team as a script runs it (service.name agent-script, no HTTP): agents
                     and team built at start-up outside any span, then team.run for each --task
                     in turn (team.reset between), and exit.
    --app grpc-gateway / grpc-worker
                     the same agents distributed with autogen-ext's gRPC runtime: a separate
                     GrpcWorkerAgentRuntimeHost process (grpc_host.py), this service as the
                     gateway (HTTP + orchestrator + collector, service.name agent-gateway) and a
                     worker process (researcher + writer, service.name agent-worker), each a
                     GrpcWorkerAgentRuntime with tracer_provider given.
    --tool async     search_docs is an `async def` calling docs-service with httpx (instrumented)
    --tool sync      search_docs is a plain `def` calling docs-service with requests
                     (instrumented); AutoGen's FunctionTool runs a plain function with
                     loop.run_in_executor, which does not carry contextvars into the thread.
"""

import argparse
import asyncio
import contextlib
import json
from dataclasses import dataclass

from common import quick_exit, record, serve, telemetry

parser = argparse.ArgumentParser()
parser.add_argument("--out", required=True)
parser.add_argument("--fd", type=int, help="listening socket handed over by the driver (HTTP apps)")
parser.add_argument("--ready", help="file to create once the gRPC worker is connected (grpc-worker)")
parser.add_argument("--app", choices=["core", "agentchat", "agentchat-script", "grpc-gateway", "grpc-worker"],
                    required=True)
parser.add_argument("--task", action="append", default=[], help="a task for the agentchat-script app")
parser.add_argument("--host", help="the GrpcWorkerAgentRuntimeHost address (grpc-* apps)")
parser.add_argument("--tool", choices=["async", "sync"], required=True)
parser.add_argument("--llm", required=True)
parser.add_argument("--docs", required=True)
args = parser.parse_args()

SERVICE = {"grpc-gateway": "agent-gateway", "grpc-worker": "agent-worker",
           "agentchat-script": "agent-script"}.get(args.app, "agent-service")
tp = telemetry(args.out, SERVICE)

# The instrumentations a user of these libraries turns on (OpenLLMetry's for the openai client).
from opentelemetry import trace  # noqa: E402
from opentelemetry.sdk.trace import SpanProcessor  # noqa: E402
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor  # noqa: E402
from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor  # noqa: E402
from opentelemetry.instrumentation.openai import OpenAIInstrumentor  # noqa: E402
from opentelemetry.instrumentation.requests import RequestsInstrumentor  # noqa: E402

OpenAIInstrumentor().instrument(tracer_provider=tp)
HTTPXClientInstrumentor().instrument(tracer_provider=tp)
RequestsInstrumentor().instrument(tracer_provider=tp)

import httpx  # noqa: E402
import requests  # noqa: E402
from autogen_core import (  # noqa: E402
    AgentId,
    ClosureAgent,
    ClosureContext,
    MessageContext,
    RoutedAgent,
    SingleThreadedAgentRuntime,
    TopicId,
    TypeSubscription,
    message_handler,
)
from autogen_core.models import (  # noqa: E402
    AssistantMessage,
    FunctionExecutionResult,
    FunctionExecutionResultMessage,
    ModelInfo,
    SystemMessage,
    UserMessage,
)
from autogen_core.tools import FunctionTool  # noqa: E402
from autogen_ext.models.openai import OpenAIChatCompletionClient  # noqa: E402
from fastapi import FastAPI  # noqa: E402
from pydantic import BaseModel  # noqa: E402

SEARCH_URL = args.docs.rstrip("/") + "/search"


# ------------------------------------------------------------------- the tool, two ways ---

async def search_docs(query: str) -> str:
    """Search the product documentation."""
    async with httpx.AsyncClient(timeout=10) as client:
        r = await client.get(SEARCH_URL, params={"query": query})
        return json.dumps(r.json()["results"])


def search_docs_sync(query: str) -> str:
    """Search the product documentation."""
    # Runs in the default executor's thread: record what context this thread has (none is
    # expected, since run_in_executor does not copy contextvars).
    record.note(args.out, side="tool-thread", query=query, context=record.current_ids())
    r = requests.get(SEARCH_URL, params={"query": query}, timeout=10)
    return json.dumps(r.json()["results"])


class NotingFunctionTool(FunctionTool):
    """AutoGen's FunctionTool, plus a note of the spans current where it hands the call to the
    function (inside AutoGen's `execute_tool` span): the caller's side of the hop, recorded live.
    Recording only; the call itself goes through FunctionTool.run unchanged."""

    async def run(self, args_model, cancellation_token):
        span = trace.get_current_span()
        ids = [record.current_ids(span)[1]]
        if getattr(span, "parent", None) is not None:
            ids.append(format(span.parent.span_id, "016x"))
        record.note(args.out, side="tool-caller", query=getattr(args_model, "query", None),
                    trace_id=record.current_ids(span)[0], caller_span_ids=ids,
                    tool_span_name=getattr(span, "name", None))
        return await super().run(args_model, cancellation_token)


if args.tool == "async":
    tool = NotingFunctionTool(search_docs, name="search_docs", description="Search the product documentation.")
else:
    tool = NotingFunctionTool(search_docs_sync, name="search_docs", description="Search the product documentation.")

MODEL_INFO = ModelInfo(vision=False, function_calling=True, json_output=False, family="unknown",
                       structured_output=False)


def model_client():
    return OpenAIChatCompletionClient(model="stand-in", base_url=args.llm, api_key="stand-in",
                                      model_info=MODEL_INFO)


class Turn(BaseModel):
    session_id: str
    text: str


# ---------------------------------------------------------------------- autogen-core app ---

@dataclass
class UserRequest:
    session_id: str
    text: str


@dataclass
class Accepted:
    session_id: str


@dataclass
class ResearchTask:
    session_id: str
    question: str


@dataclass
class ResearchResult:
    session_id: str
    notes: str


@dataclass
class DraftTask:
    session_id: str
    question: str
    notes: str


@dataclass
class FinalAnswer:
    session_id: str
    text: str


def note_consumer(message_type, session_id):
    """The receiving side of a runtime hop, recorded live in the handler: the span current there
    (AutoGen's `autogen process ...` span) and its parent, if any."""
    span = trace.get_current_span()
    parent = getattr(span, "parent", None)
    record.note(args.out, side="consumer", service=SERVICE, message_type=message_type, session_id=session_id,
                span=record.current_ids(span), parent_span_id=format(parent.span_id, "016x") if parent else None)


class NoteRuntimeSpans(SpanProcessor):
    """Records AutoGen's runtime spans of the gRPC apps as they end, from the live span objects
    (recording only): each `autogen create|publish <topic>` span (the sending side of a publish)
    with its parent, each RPC's `autogen send <agent>` span (parent: its create span), `autogen
    process <agent>` span (request_id, links) and `autogen ack` span (the response reaching the
    requester)."""

    def on_end(self, span):
        name = span.name
        common = dict(service=SERVICE, name=name, span=record.current_ids(span),
                      parent_span_id=format(span.parent.span_id, "016x") if span.parent else None,
                      links=[format(link.context.span_id, "016x") for link in span.links],
                      request_id=(span.attributes or {}).get("request_id"))
        if name.startswith(("autogen create ", "autogen publish ")) and name.endswith("-T"):
            record.note(args.out, side="producer", **common)
        elif name.startswith("autogen send "):
            record.note(args.out, side="rpc-send", **common)
        elif name.startswith("autogen process ") and common["request_id"] is not None:
            record.note(args.out, side="rpc-process", **common)
        elif name.startswith("autogen ack"):
            record.note(args.out, side="rpc-ack", **common)


if args.app.startswith("grpc"):
    tp.add_span_processor(NoteRuntimeSpans())


class Orchestrator(RoutedAgent):
    def __init__(self):
        super().__init__("Plans each user request: research first, then drafting.")

    @message_handler
    async def on_request(self, message: UserRequest, ctx: MessageContext) -> Accepted:
        research = await self.send_message(ResearchTask(message.session_id, message.text),
                                           AgentId("researcher", message.session_id))
        await self.publish_message(DraftTask(message.session_id, message.text, research.notes),
                                   TopicId("drafting", source=message.session_id))
        return Accepted(message.session_id)


class Researcher(RoutedAgent):
    def __init__(self, client):
        super().__init__("Researches a question with the search_docs tool.")
        self._client = client

    @message_handler
    async def on_task(self, message: ResearchTask, ctx: MessageContext) -> ResearchResult:
        history = [SystemMessage(content="You research questions with search_docs."),
                   UserMessage(content=message.question, source="orchestrator")]
        result = await self._client.create(history, tools=[tool], cancellation_token=ctx.cancellation_token)
        while isinstance(result.content, list):
            history.append(AssistantMessage(content=result.content, source="researcher"))
            outputs = []
            for call in result.content:
                out = await tool.run_json(json.loads(call.arguments), ctx.cancellation_token, call_id=call.id)
                outputs.append(FunctionExecutionResult(content=tool.return_value_as_string(out), name=call.name,
                                                       call_id=call.id, is_error=False))
            history.append(FunctionExecutionResultMessage(content=outputs))
            result = await self._client.create(history, tools=[tool], cancellation_token=ctx.cancellation_token)
        return ResearchResult(message.session_id, result.content)


class Writer(RoutedAgent):
    def __init__(self, client):
        super().__init__("Writes the answer from research notes.")
        self._client = client

    @message_handler
    async def on_draft(self, message: DraftTask, ctx: MessageContext) -> None:
        note_consumer("DraftTask", message.session_id)
        result = await self._client.create(
            [SystemMessage(content="You write short answers."),
             UserMessage(content=f"Question: {message.question}\nNotes: {message.notes}", source="orchestrator")],
            cancellation_token=ctx.cancellation_token)
        await self.publish_message(FinalAnswer(message.session_id, result.content),
                                   TopicId("answers", source=message.session_id))


MESSAGE_TYPES = (UserRequest, Accepted, ResearchTask, ResearchResult, DraftTask, FinalAnswer)


async def new_runtime():
    """The runtime as each app creates it: in-process, or a worker of the gRPC host."""
    if args.app == "core":
        return SingleThreadedAgentRuntime(tracer_provider=tp)
    from autogen_core import try_get_known_serializers_for_type
    from autogen_ext.runtimes.grpc import GrpcWorkerAgentRuntime

    runtime = GrpcWorkerAgentRuntime(host_address=args.host, tracer_provider=tp)
    for t in MESSAGE_TYPES:
        runtime.add_message_serializer(try_get_known_serializers_for_type(t))
    await runtime.start()
    return runtime


def core_app():
    state = {}
    waiting = {}

    async def collect(_closure: ClosureContext, message: FinalAnswer, ctx: MessageContext) -> None:
        note_consumer("FinalAnswer", message.session_id)
        fut = waiting.get(message.session_id)
        if fut is not None and not fut.done():
            fut.set_result(message.text)

    @contextlib.asynccontextmanager
    async def lifespan(app):
        client = model_client()
        runtime = await new_runtime()
        await Orchestrator.register(runtime, "orchestrator", lambda: Orchestrator())
        if args.app == "core":
            await register_workers(runtime, client)
        await ClosureAgent.register_closure(
            runtime, "collector", collect,
            subscriptions=lambda: [TypeSubscription(topic_type="answers", agent_type="collector")])
        if args.app == "core":
            runtime.start()
        state["runtime"] = runtime
        yield
        if args.app == "core":
            await runtime.stop_when_idle()
        else:
            await runtime.stop()
        await client.close()

    app = FastAPI(lifespan=lifespan)

    @app.post("/chat")
    async def chat(turn: Turn):
        runtime = state["runtime"]
        fut = asyncio.get_running_loop().create_future()
        waiting[turn.session_id] = fut
        try:
            await runtime.send_message(UserRequest(turn.session_id, turn.text),
                                       AgentId("orchestrator", turn.session_id))
            answer = await asyncio.wait_for(fut, timeout=20)
        finally:
            waiting.pop(turn.session_id, None)
        return {"session_id": turn.session_id, "answer": answer}

    return app


async def register_workers(runtime, client):
    await Researcher.register(runtime, "researcher", lambda: Researcher(client))
    await Writer.register(runtime, "writer", lambda: Writer(client))
    await runtime.add_subscription(TypeSubscription(topic_type="drafting", agent_type="writer"))


async def grpc_worker():
    """The worker process of the distributed runtime: researcher and writer, until SIGINT."""
    client = model_client()
    runtime = await new_runtime()
    await register_workers(runtime, client)
    with open(args.ready, "w") as f:
        f.write("ready\n")
    await runtime.stop_when_signal()
    await client.close()


# ---------------------------------------------------------------- autogen-agentchat app ---

def agentchat_app():
    from autogen_agentchat.agents import AssistantAgent
    from autogen_agentchat.conditions import MaxMessageTermination, TextMentionTermination
    from autogen_agentchat.teams import RoundRobinGroupChat

    state = {}

    @contextlib.asynccontextmanager
    async def lifespan(app):
        state["client"] = model_client()
        yield
        await state["client"].close()

    app = FastAPI(lifespan=lifespan)

    @app.post("/chat")
    async def chat(turn: Turn):
        client = state["client"]
        researcher = AssistantAgent("researcher", model_client=client, tools=[tool], reflect_on_tool_use=True,
                                    description="Finds facts with search_docs.",
                                    system_message="You research questions with search_docs.")
        writer = AssistantAgent("writer", model_client=client, description="Writes the final answer.",
                                system_message="You write short answers and end with TERMINATE.")
        team = RoundRobinGroupChat([researcher, writer],
                                   termination_condition=TextMentionTermination("TERMINATE") | MaxMessageTermination(8))
        result = await asyncio.wait_for(team.run(task=turn.text), timeout=20)
        return {"session_id": turn.session_id, "answer": result.messages[-1].to_text(),
                "stop_reason": result.stop_reason}

    return app


async def agentchat_script():
    """The way AutoGen's own examples run a team: built once, outside any span, then run per task."""
    from autogen_agentchat.agents import AssistantAgent
    from autogen_agentchat.conditions import MaxMessageTermination, TextMentionTermination
    from autogen_agentchat.teams import RoundRobinGroupChat

    client = model_client()
    researcher = AssistantAgent("researcher", model_client=client, tools=[tool], reflect_on_tool_use=True,
                                description="Finds facts with search_docs.",
                                system_message="You research questions with search_docs.")
    writer = AssistantAgent("writer", model_client=client, description="Writes the final answer.",
                            system_message="You write short answers and end with TERMINATE.")
    team = RoundRobinGroupChat([researcher, writer],
                               termination_condition=TextMentionTermination("TERMINATE") | MaxMessageTermination(8))
    for task in args.task:
        result = await asyncio.wait_for(team.run(task=task), timeout=20)
        assert result.messages[-1].to_text().endswith("TERMINATE"), result
        await team.reset()
    await client.close()


if args.app == "grpc-worker":
    asyncio.run(grpc_worker())
    quick_exit(tp)
if args.app == "agentchat-script":
    asyncio.run(agentchat_script())
    quick_exit(tp)

app = agentchat_app() if args.app == "agentchat" else core_app()

@app.get("/healthz")
async def healthz():
    return {"ok": True}


FastAPIInstrumentor.instrument_app(app, tracer_provider=tp, exclude_spans=["receive", "send"],
                                   excluded_urls="/healthz")
serve(app, args.fd, tp)
