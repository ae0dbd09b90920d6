"""The openai_v2 suite's services: a small hand-written multi-agent support desk. Each agent is the
team's own loop over the OpenAI chat-completions API (openai 2.x, traced by the official
opentelemetry-instrumentation-openai-v2), recorded as GenAI `invoke_agent` spans and its tool calls
as `execute_tool` spans (opentelemetry-util-genai's TelemetryHandler; the remote agent's CLIENT
span written by hand with the same conventions).

    --role desk        service.name support-desk: POST /chat runs the `triage` agent, whose tools
                       are ask_researcher (the remote researcher agent, over HTTP) and write_answer
                       (the in-process `writer` agent, a synchronous function run off the loop)
    --role researcher  service.name research-agent: POST /research runs the `researcher` agent
                       with the search_docs tool (a search over the docs index)

    --remote-client httpx|urllib   how the desk calls the researcher: the instrumented httpx
                       client, or the team's small A2A client on urllib (no instrumentation)
    --writer-offload to_thread|executor   how write_answer runs the synchronous writer:
                       asyncio.to_thread (copies contextvars) or loop.run_in_executor with a
                       ThreadPoolExecutor (does not)
    --docs-fault none|truncated|down   search_docs for a query about the nightly export
"""

import argparse
import asyncio
import concurrent.futures
import contextvars
import functools
import json
import urllib.parse
import urllib.request

from common import SYSTEM, agent_of, record, serve, telemetry

parser = argparse.ArgumentParser()
parser.add_argument("--out", required=True)
parser.add_argument("--fd", type=int, required=True)
parser.add_argument("--llm", required=True)
parser.add_argument("--role", choices=["desk", "researcher"], required=True)
parser.add_argument("--researcher", help="the research-agent's base URL (desk)")
parser.add_argument("--remote-client", choices=["httpx", "urllib"], default="httpx")
parser.add_argument("--writer-offload", choices=["to_thread", "executor"], default="to_thread")
parser.add_argument("--docs-fault", choices=["none", "truncated", "down"], default="none")
args = parser.parse_args()

SERVICE = {"desk": "support-desk", "researcher": "research-agent"}[args.role]
tp = telemetry(args.out, SERVICE)

from opentelemetry import trace  # noqa: E402
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor  # noqa: E402
from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor  # noqa: E402
from opentelemetry.instrumentation.openai_v2 import OpenAIInstrumentor  # noqa: E402
from opentelemetry.trace import SpanKind, Status, StatusCode  # noqa: E402
from opentelemetry.util.genai.handler import TelemetryHandler  # noqa: E402

OpenAIInstrumentor().instrument(tracer_provider=tp)
HTTPXClientInstrumentor().instrument(tracer_provider=tp)
genai = TelemetryHandler(tracer_provider=tp)
tracer = tp.get_tracer("support-desk.agents")

import httpx  # noqa: E402
import openai  # noqa: E402
from fastapi import FastAPI, Request  # noqa: E402
from fastapi.responses import JSONResponse  # noqa: E402
from pydantic import BaseModel  # noqa: E402

MODEL = {"triage": "gpt-4.1-mini", "researcher": "gpt-4.1", "writer": "gpt-4.1-mini"}


def note_llm(response, body):
    request = json.loads(response.request.content or b"{}")
    refusal = None
    if response.status_code == 200:
        refusal = json.loads(body)["choices"][0]["message"].get("refusal")
    record.note(args.out, side="llm-call", agent=agent_of(request.get("messages") or []),
                status=response.status_code, refusal=refusal, span=record.current_ids())


async def on_llm_response(response):
    """httpx event hook on the OpenAI client: notes, for the case's truth, which agent made each
    model call, its HTTP status, whether it was a refusal, and the span current at the call."""
    note_llm(response, await response.aread())


def on_llm_response_sync(response):
    note_llm(response, response.read())


aclient = openai.AsyncOpenAI(base_url=args.llm, api_key="stand-in", max_retries=2,
                             http_client=openai.DefaultAsyncHttpxClient(event_hooks={"response": [on_llm_response]}))
sclient = openai.OpenAI(base_url=args.llm, api_key="stand-in", max_retries=2,
                        http_client=openai.DefaultHttpxClient(event_hooks={"response": [on_llm_response_sync]}))


AGENT_SPAN = contextvars.ContextVar("agent_span", default=None)  # the running agent's span id (notes)


class Refused(Exception):
    pass


def schema(name, description, **params):
    return {"type": "function", "function": {
        "name": name, "description": description,
        "parameters": {"type": "object", "properties": {p: {"type": "string"} for p in params},
                       "required": list(params)}}}


async def run_agent(name, session_id, text, tools):
    """The team's agent loop: chat until the model answers without tool calls; each tool call an
    execute_tool span. `tools`: {name: (schema, tool type, async fn(**arguments))}."""
    with genai.invoke_local_agent(agent_name=name, request_model=MODEL[name]) as agent:
        agent.conversation_id = session_id
        record.note(args.out, side="agent", agent=name, session=session_id, span=record.current_ids())
        AGENT_SPAN.set(record.current_ids()[1])
        messages = [{"role": "system", "content": SYSTEM[name]}, {"role": "user", "content": text}]
        for _ in range(6):
            response = await aclient.chat.completions.create(
                model=MODEL[name], messages=messages, tools=[t[0] for t in tools.values()])
            message = response.choices[0].message
            if message.refusal:
                raise Refused(message.refusal)
            if not message.tool_calls:
                return message.content
            messages.append(message.model_dump(exclude_none=True))
            for call in message.tool_calls:
                _, tool_type, fn = tools[call.function.name]
                arguments = json.loads(call.function.arguments)
                try:
                    with genai.tool(call.function.name, tool_call_id=call.id, tool_type=tool_type) as tool:
                        if genai.should_capture_content():
                            tool.arguments = arguments
                        result = await fn(**arguments)
                        if genai.should_capture_content():
                            tool.tool_result = result
                except ConnectionError as exc:  # a tool's backend is down: tell the model
                    result = f"error: {type(exc).__name__}: {exc}"
                messages.append({"role": "tool", "tool_call_id": call.id, "content": result})
        raise RuntimeError(f"{name} did not finish in 6 steps")


def run_writer(session_id, notes, caller_ids):
    """The writer agent: synchronous code (shared with the nightly digest job), one model call."""
    context = record.current_ids()
    with genai.invoke_local_agent(agent_name="writer", request_model=MODEL["writer"]) as agent:
        agent.conversation_id = session_id
        record.note(args.out, side="writer-start", session=session_id, notes=notes, context=context,
                    caller=caller_ids, span=record.current_ids())
        response = sclient.chat.completions.create(
            model=MODEL["writer"], messages=[{"role": "system", "content": SYSTEM["writer"]},
                                             {"role": "user", "content": notes}])
        message = response.choices[0].message
        if message.refusal:
            raise Refused(message.refusal)
        return message.content


# ---------------------------------------------------------------------------------- support-desk ---

executor = concurrent.futures.ThreadPoolExecutor(max_workers=4, thread_name_prefix="writer")


def desk_tools(session_id):
    async def ask_researcher(question):
        tool_span = record.current_ids()[1]
        url = urllib.parse.urlsplit(args.researcher)
        with tracer.start_as_current_span("invoke_agent researcher", kind=SpanKind.CLIENT, attributes={
                "gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": "researcher",
                "gen_ai.conversation.id": session_id,
                "server.address": url.hostname, "server.port": url.port}) as span:
            record.note(args.out, side="remote-call", session=session_id, question=question,
                        spans=[record.current_ids()[1], tool_span, AGENT_SPAN.get()])
            payload = {"session_id": session_id, "question": question}
            if args.remote_client == "httpx":
                async with httpx.AsyncClient(timeout=30) as client:
                    r = await client.post(args.researcher + "/research", json=payload)
                    r.raise_for_status()
                    findings = r.json()["findings"]
            else:
                findings = (await asyncio.to_thread(a2a_post, args.researcher + "/research", payload))["findings"]
            span.set_status(Status(StatusCode.OK))
            return findings

    async def write_answer(notes):
        caller = [record.current_ids()[1], AGENT_SPAN.get()]
        record.note(args.out, side="writer-call", session=session_id, notes=notes, spans=caller)
        job = functools.partial(run_writer, session_id, notes, caller)
        if args.writer_offload == "executor":
            return await asyncio.get_running_loop().run_in_executor(executor, job)
        return await asyncio.to_thread(job)

    return {
        "ask_researcher": (schema("ask_researcher", "Ask the research agent a question.", question=1),
                           "function", ask_researcher),
        "write_answer": (schema("write_answer", "Have the writer draft the answer from notes.", notes=1),
                         "function", write_answer),
    }


def a2a_post(url, payload):
    """The team's A2A client: JSON over HTTP with urllib, no tracing headers."""
    req = urllib.request.Request(url, data=json.dumps(payload).encode(), method="POST",
                                 headers={"content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read())


# -------------------------------------------------------------------------------- research-agent ---

async def search_docs(query):
    """Search the docs index; returns the matching passages as JSON."""
    hits = [{"title": "Runbook", "text": f"See the runbook section on {query[:40].lower()}"},
            {"title": "FAQ", "text": "Most issues are solved by the operations console"}]
    if "nightly export" in query and args.docs_fault == "down":
        record.note(args.out, side="tool-failure", tool="search_docs", how="raised", span=record.current_ids())
        raise ConnectionError("search backend 10.0.3.7:9200 refused the connection (shard docs-2 down)")
    text = json.dumps({"hits": hits})
    if "nightly export" in query and args.docs_fault == "truncated":
        record.note(args.out, side="tool-failure", tool="search_docs", how="truncated", span=record.current_ids())
        text = text[: len(text) // 2]  # the index returned a cut-off document
    return text


RESEARCH_TOOLS = {"search_docs": (schema("search_docs", "Search the product docs.", query=1), "datastore",
                                  search_docs)}

# ------------------------------------------------------------------------------------------ HTTP ---


class Turn(BaseModel):
    session_id: str
    text: str


class Question(BaseModel):
    session_id: str
    question: str


app = FastAPI()


@app.get("/healthz")
async def healthz():
    return {"ok": True}


@app.post("/chat")
async def chat(turn: Turn):
    record.note(args.out, side="handler", session=turn.session_id, text=turn.text, span=record.current_ids())
    try:
        text = await run_agent("triage", turn.session_id, turn.text, desk_tools(turn.session_id))
    except Exception as exc:  # the request fails: the user gets an error
        trace.get_current_span().record_exception(exc)
        return JSONResponse({"error": f"{type(exc).__name__}: {exc}"}, status_code=500)
    return {"answer": text}


@app.post("/research")
async def research(q: Question, request: Request):
    record.note(args.out, side="remote-serve", session=q.session_id, question=q.question,
                traceparent=request.headers.get("traceparent"), span=record.current_ids())
    return {"findings": await run_agent("researcher", q.session_id, q.question, RESEARCH_TOOLS)}


FastAPIInstrumentor.instrument_app(app, tracer_provider=tp)

if __name__ == "__main__":
    serve(app, args.fd, tp)
