"""The openai_v2 suite: a small hand-written multi-agent support desk whose agents are the team's
own GenAI `invoke_agent` spans (tool calls `execute_tool`), the model calls traced by the official
opentelemetry-instrumentation-openai-v2, on the stand-in LLM through the real openai client.

    make.py --out DIR [CASE...]   writes DIR/<case>/spans.jsonl and truth.json for every case

Processes per case (both services with OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=SPAN_ONLY):
this driver (the chat frontend: instrumented httpx client, turns of 1-2 user
sessions at once, 2 turns per session one after the other, `session.id` in W3C baggage; and the
stand-in LLM, a thread), service.py --role researcher (research-agent) and service.py --role desk
(support-desk). Truth comes from what the services noted while they ran (record.note) and from the
stand-in's log of calls.
"""

import argparse
import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import uuid

from common import HARNESS, SYSTEM, agent_of, bound_socket, make_policy, record

from forkserver import ForkServer  # noqa: E402
from llm_standin import StandIn  # noqa: E402

# What the case's processes import, once for every case (harness/forkserver.py starts them).
PRELOAD = ["fastapi", "fastapi.responses", "httpx", "openai", "opentelemetry.instrumentation.fastapi",
           "opentelemetry.instrumentation.httpx", "opentelemetry.instrumentation.openai_v2",
           "opentelemetry.processor.baggage", "opentelemetry.sdk.trace", "opentelemetry.util.genai.handler",
           "pydantic", "uvicorn"]
FORKS = None  # the suite's ForkServer, while main() runs

HERE = os.path.dirname(os.path.abspath(__file__))

BASE = dict(remote_client="httpx", writer_offload="to_thread", docs_fault="none", llm_fault=None, sessions=1,
            healthy=True, failure=None)
FLOW = ("the `triage` agent (support-desk) calls its tool ask_researcher, which invokes the remote `researcher` "
        "agent (research-agent, over HTTP; it calls its search_docs tool), then its tool write_answer, which runs "
        "the in-process `writer` agent (synchronous code, run off the event loop), then answers")
CASES = {
    "v2_support_desk_healthy": dict(
        BASE, sessions=2,
        description=f"hand-written agents with GenAI invoke_agent/execute_tool spans (opentelemetry-util-genai) and "
                    f"openai-v2 chat spans: {FLOW}; the remote call with instrumented httpx, the writer with "
                    "asyncio.to_thread; 2 concurrent user sessions of 2 turns, session.id in baggage, "
                    "gen_ai.conversation.id on every invoke_agent span."),
    "v2_remote_agent_urllib_broken": dict(
        BASE, sessions=2, remote_client="urllib", healthy=False,
        description=f"as v2_support_desk_healthy ({FLOW}; 2 concurrent sessions of 2 turns), but the desk calls the "
                    "researcher through the team's small A2A client on urllib, which nothing instruments: no "
                    "traceparent (nor baggage) is sent, so research-agent's `POST /research` SERVER span is a root "
                    "per turn."),
    "v2_writer_executor_broken": dict(
        BASE, sessions=2, writer_offload="executor", healthy=False,
        description=f"as v2_support_desk_healthy ({FLOW}; 2 concurrent sessions of 2 turns), but write_answer runs "
                    "the synchronous writer with loop.run_in_executor on a ThreadPoolExecutor, which does not carry "
                    "contextvars: the writer's `invoke_agent writer` span (and its chat span) start a new trace "
                    "per turn."),
    "v2_tool_malformed_json": dict(
        BASE, docs_fault="truncated",
        failure=dict(side="tool-failure", category="tool",
                     why="search_docs returned a truncated JSON document without raising (turn 2, about the nightly "
                         "export); the researcher's next model call could not parse it and answered that it cannot "
                         "answer; triage passed the apology on without the writer",
                     visible_as="execute_tool search_docs has no error (status unset) and gen_ai.tool.call.result "
                                "is cut-off JSON (content capture on); the researcher's next chat span's "
                                "gen_ai.output.messages says it could not parse the search results"),
        description=f"{FLOW}; one session of 2 turns; in turn 2 search_docs returns truncated JSON text (no exception, "
                    "execute_tool status unset) and the researcher's model answers that it could not parse it."),
    "v2_retrieval_tool_raises": dict(
        BASE, docs_fault="down",
        failure=dict(side="tool-failure", category="retrieval",
                     why="search_docs (gen_ai.tool.type datastore) raised ConnectionError in turn 2; the researcher's "
                         "loop gave the model the error text and it answered that the search failed",
                     visible_as="execute_tool search_docs (gen_ai.tool.type datastore) has status ERROR with the "
                                "exception message and error.type ConnectionError; nothing else fails, the request "
                                "answers 200"),
        description=f"{FLOW}; one session of 2 turns; in turn 2 search_docs raises ConnectionError (its execute_tool "
                    "span ends with error status and error.type), the agent loop hands the model the error text, "
                    "the researcher answers that the search failed and triage apologises without the writer."),
    "v2_rate_limited_retry_healthy": dict(
        BASE, llm_fault="rate-limit",
        description=f"{FLOW}; one session of 2 turns; the researcher's first model call is answered 429 once and the "
                    "openai client retries it: one openai-v2 chat span with two httpx POST spans under it "
                    "(429, then 200); nothing fails."),
    "v2_llm_refusal_request_fails": dict(
        BASE, llm_fault="refusal",
        failure=dict(side="llm-call", category="llm",
                     why="the writer's model call in turn 2 came back as a refusal (message.refusal); the writer "
                         "raised, write_answer and the triage agent failed and the request failed with HTTP 500",
                     visible_as="the writer's chat span has no error: finish_reasons [stop], usage, and "
                                "gen_ai.output.messages an assistant message with no parts (openai-v2 does not "
                                "record a chat-completions refusal); the refusal text is the status message of "
                                "`invoke_agent writer` (ERROR, error.type __main__.Refused), repeated on execute_tool "
                                "write_answer and invoke_agent triage; POST /chat is ERROR (500)"),
        description=f"{FLOW}; one session of 2 turns; in turn 2 the writer's model call is a refusal, the writer "
                    "raises, and the error propagates through execute_tool write_answer and invoke_agent triage; "
                    "the desk answers 500."),
}

QUESTIONS = [
    ["How do I rotate the API keys of the billing service", "Why does the nightly export to the warehouse time out"],
    ["Which regions support the archive storage tier", "How do I enable audit logs for the admin console"],
]


def service_env():
    return dict(os.environ, PYTHONPATH=os.pathsep.join([HERE, HARNESS, os.environ.get("PYTHONPATH", "")]),
                # the services record message content on spans (opentelemetry-util-genai), as in staging
                OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT="SPAN_ONLY")


def launch(cmd, case_dir, name, pass_fds=()):
    log = open(os.path.join(case_dir, "parts", f"{name}.log"), "w")
    proc = FORKS.Popen([sys.executable, *cmd], stdout=log, stderr=log, env=service_env(), cwd=HERE, pass_fds=pass_fds)
    return proc, log


def start(cmd, case_dir, name):
    sock = bound_socket()
    proc, log = launch([*cmd, "--fd", str(sock.fileno())], case_dir, name, pass_fds=[sock.fileno()])
    port = sock.getsockname()[1]
    sock.close()
    return proc, log, f"http://127.0.0.1:{port}"


def stop_all(procs):
    for proc, _ in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
    for proc, log in procs:
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


async def wait_healthy(client, url):
    import httpx

    for _ in range(400):
        try:
            if (await client.get(url + "/healthz")).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        await asyncio.sleep(0.05)
    raise RuntimeError(f"{url} never became healthy")


async def frontend(tp, url, other_urls, sessions):
    """The chat frontend: each user session's turns one after the other, the sessions at once; each
    turn a span with `session.id` in baggage, so the instrumented httpx client sends it."""
    import httpx
    from opentelemetry import baggage, context
    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor

    tracer = tp.get_tracer("chat-frontend")
    async with httpx.AsyncClient(timeout=5) as plain:
        for u in [*other_urls, url]:
            await wait_healthy(plain, u)
    HTTPXClientInstrumentor().instrument(tracer_provider=tp)
    try:
        async def session(k, session_id):
            answers = []
            async with httpx.AsyncClient(timeout=60) as client:
                for question in QUESTIONS[k]:
                    token = context.attach(baggage.set_baggage("session.id", session_id))
                    try:
                        with tracer.start_as_current_span("chat turn", attributes={"session.id": session_id}):
                            r = await client.post(url + "/chat", json={"session_id": session_id,
                                                                       "text": f"{question}?"})
                            answers.append((r.status_code, r.json()))
                    finally:
                        context.detach(token)
            return answers

        ids = [f"sess-{uuid.uuid4().hex[:12]}" for _ in range(sessions)]
        return await asyncio.gather(*(session(k, s) for k, s in enumerate(ids)))
    finally:
        HTTPXClientInstrumentor().uninstrument()


def load_spans(case_dir):
    spans = []
    with open(os.path.join(case_dir, "spans.jsonl")) as f:
        for line in f:
            for rs in json.loads(line)["resourceSpans"]:
                svc = next(a["value"]["stringValue"] for a in rs["resource"]["attributes"]
                           if a["key"] == "service.name")
                for ss in rs["scopeSpans"]:
                    for s in ss["spans"]:
                        s["service"] = svc
                        s["scope"] = ss["scope"]["name"]
                        s["attrs"] = {a["key"]: next(iter(a["value"].values()), None) for a in s.get("attributes", [])}
                        spans.append(s)
    return spans


def agents_truth(calls):
    """Per agent, from the stand-in's log: calls that returned usage, their tokens, and whom it
    delegated to (a call of a tool that runs another agent)."""
    delegation = {"ask_researcher": "researcher", "write_answer": "writer"}
    out = {}
    for call, reply, (inp, outp) in calls:
        agent = agent_of(call["messages"])
        a = out.setdefault(agent, {"name": agent, "delegates_to": [], "llm_calls": 0,
                                   "input_tokens": 0, "output_tokens": 0})
        if "error" in reply:
            continue
        a["llm_calls"] += 1
        a["input_tokens"] += inp
        a["output_tokens"] += outp
        for tc in reply.get("tool_calls", []):
            target = delegation.get(tc["name"])
            if target and target not in a["delegates_to"]:
                a["delegates_to"].append(target)
    return [out[name] for name in SYSTEM if name in out]


def in_flight(spans, t0, **match):
    return [s for s in spans if int(s["startTimeUnixNano"]) <= t0 < int(s["endTimeUnixNano"])
            and all(s.get(k) == v for k, v in match.items())]


def conversation_of(spans, by_id, span):
    """gen_ai.conversation.id of the span or of the nearest invoke_agent span above it (same trace)."""
    while span is not None:
        if span["attrs"].get("gen_ai.conversation.id"):
            return span["attrs"]["gen_ai.conversation.id"]
        span = by_id.get(span.get("parentSpanId"))
    return None


def remote_hops(spans, notes):
    """One hop per turn: the desk's `invoke_agent researcher` CLIENT span (and the execute_tool and
    invoke_agent triage spans around it) -> research-agent's `POST /research` SERVER span, a root."""
    by_id = {s["spanId"]: s for s in spans}
    calls = {(n["session"], n["question"]): n for n in notes if n["side"] == "remote-call"}
    hops = []
    for n in (n for n in notes if n["side"] == "remote-serve"):
        assert n["traceparent"] is None, "the researcher got a traceparent: no break happened"
        orphan = by_id[n["span"][1]]
        assert not orphan.get("parentSpanId"), "the researcher's server span has a parent"
        caller = calls[(n["session"], n["question"])]
        t0 = int(orphan["startTimeUnixNano"])
        clients = in_flight(spans, t0, name="invoke_agent researcher", service="support-desk")
        # the orphan's own agent span (its child) carries the conversation id
        inner = [s for s in spans if s.get("parentSpanId") == orphan["spanId"] and s["name"] == "invoke_agent researcher"]
        conv = inner[0]["attrs"].get("gen_ai.conversation.id") if inner else None
        same = [s["spanId"] for s in clients if s["attrs"].get("gen_ai.conversation.id") == conv]
        assert caller["spans"][0] in [s["spanId"] for s in clients]
        must = same == [caller["spans"][0]]
        hops.append({
            "hop": "support-desk invoke_agent researcher (CLIENT) -> urllib POST /research (no traceparent) -> "
                   "research-agent POST /research (SERVER)",
            "orphan_trace_id": orphan["traceId"],
            "orphan_span_id": orphan["spanId"],
            "parent_span_ids": caller["spans"],
            "must_repair": must,
            "why": (f"{len(clients)} `invoke_agent researcher` CLIENT spans of support-desk were in flight when the "
                    "orphan started; one only has the gen_ai.conversation.id that the orphan's child `invoke_agent "
                    "researcher` span carries (a session's turns run one after the other); its server.address/"
                    "server.port are the orphan's http.host/net.host.port") if must else
                   f"{len(clients)} candidates and gen_ai.conversation.id does not single one out",
            "kinds": ["orphan_root"],
        })
    return hops


def writer_hops(spans, notes):
    """One hop per turn: the desk's `execute_tool write_answer` span (inside `invoke_agent triage`)
    -> the writer's `invoke_agent writer` span, started in an executor thread with no context."""
    by_id = {s["spanId"]: s for s in spans}
    hops = []
    for n in (n for n in notes if n["side"] == "writer-start"):
        assert n["context"] is None, "the writer thread had a context: no break happened"
        orphan = by_id[n["span"][1]]
        assert not orphan.get("parentSpanId"), "the writer's span has a parent"
        t0 = int(orphan["startTimeUnixNano"])
        tools = in_flight(spans, t0, name="execute_tool write_answer", service="support-desk")
        conv = orphan["attrs"].get("gen_ai.conversation.id")
        same = [s["spanId"] for s in tools if conversation_of(spans, by_id, s) == conv]
        assert n["caller"][0] in [s["spanId"] for s in tools]
        must = same == [n["caller"][0]]
        hops.append({
            "hop": "support-desk execute_tool write_answer -> loop.run_in_executor(ThreadPoolExecutor) -> "
                   "invoke_agent writer",
            "orphan_trace_id": orphan["traceId"],
            "orphan_span_id": orphan["spanId"],
            "parent_span_ids": n["caller"],
            "must_repair": must,
            "why": (f"{len(tools)} `execute_tool write_answer` spans of support-desk (same service.instance.id) were "
                    "in flight when the orphan started; one only is inside an `invoke_agent triage` span with the "
                    "orphan's gen_ai.conversation.id (a session's turns run one after the other)") if must else
                   f"{len(tools)} candidates and gen_ai.conversation.id does not single one out",
            "kinds": ["lost_context", "orphan_root"],
        })
    return hops


def misparented(spans, notes):
    """Spans an instrumentation put into another request's trace (none expected here): a span whose
    session.id (BaggageSpanProcessor, from the live context) is not its trace's session."""
    session_of_trace = {n["span"][0]: n["session"] for n in notes if n["side"] == "handler"}
    return [{"span_id": s["spanId"], "span_name": s["name"], "trace_id": s["traceId"]}
            for s in spans if session_of_trace.get(s["traceId"]) and s["attrs"].get("session.id")
            and s["attrs"]["session.id"] != session_of_trace[s["traceId"]]]


def run_case(out, name, spec):
    case_dir = os.path.join(os.path.abspath(out), name)
    shutil.rmtree(case_dir, ignore_errors=True)
    record.case_dir(case_dir)
    procs = []
    try:
        with StandIn(make_policy(spec["llm_fault"])) as llm:
            common = ["service.py", "--out", case_dir, "--llm", llm.base_url]
            proc, log, research_url = start([*common, "--role", "researcher", "--docs-fault", spec["docs_fault"]],
                                            case_dir, "research-agent")
            procs.append((proc, log))
            proc, log, desk_url = start([*common, "--role", "desk", "--researcher", research_url,
                                         "--remote-client", spec["remote_client"],
                                         "--writer-offload", spec["writer_offload"]], case_dir, "support-desk")
            procs.append((proc, log))
            tp = record.provider(case_dir, "chat-frontend", set_global=False)
            results = asyncio.run(frontend(tp, desk_url, [research_url], spec["sessions"]))
            tp.shutdown()
            calls = list(llm.calls)
    finally:
        stop_all(procs)
    for path in os.listdir(os.path.join(case_dir, "parts")):
        if path.endswith(".log"):
            with open(os.path.join(case_dir, "parts", path)) as f:
                text = f.read().strip()
            if "Traceback" in text:
                print(f"--- {name} {path}:\n{text[-3000:]}", file=sys.stderr)
            os.remove(os.path.join(case_dir, "parts", path))
    statuses = [status for answers in results for status, _ in answers]
    expect_500 = 1 if spec["llm_fault"] == "refusal" else 0
    assert statuses.count(500) == expect_500 and statuses.count(200) == len(statuses) - expect_500, results
    notes = record.notes(case_dir)
    truth = {
        "case": name, "suite": "openai_v2", "description": spec["description"],
        "versions": record.versions("openai", "opentelemetry-instrumentation-openai-v2", "opentelemetry-util-genai",
                                    "opentelemetry-sdk", "opentelemetry-instrumentation-fastapi",
                                    "opentelemetry-instrumentation-httpx", "opentelemetry-processor-baggage",
                                    "fastapi", "uvicorn", "httpx"),
        "healthy": spec["healthy"], "broken_hops": [],
        "agents": agents_truth(calls),
        "failure": None,
        "sessions": spec["sessions"],
        "requests": len(statuses),
    }
    record.finish(case_dir, truth)
    spans = load_spans(case_dir)
    by_id = {s["spanId"]: s for s in spans}
    llm_notes = [n for n in notes if n["side"] == "llm-call"]
    assert len(llm_notes) == len(calls), (len(llm_notes), len(calls))
    if spec["llm_fault"] == "rate-limit":
        assert [n["status"] for n in llm_notes].count(429) == 1
    if spec["failure"]:
        f = spec["failure"]
        hits = [n for n in notes if n["side"] == f["side"] and (f["side"] != "llm-call" or n["refusal"])]
        assert len(hits) == 1, hits
        span = by_id[hits[0]["span"][1]]
        truth["failure"] = {"span_name": span["name"], "span_id": span["spanId"], "category": f["category"],
                            "why": f["why"], "visible_as": f["visible_as"]}
    if spec["remote_client"] == "urllib":
        truth["broken_hops"] += remote_hops(spans, notes)
    else:
        calls_by = {(n["session"], n["question"]): n for n in notes if n["side"] == "remote-call"}
        for n in (n for n in notes if n["side"] == "remote-serve"):
            assert n["traceparent"].split("-")[1] == by_id[calls_by[(n["session"], n["question"])]["spans"][0]]["traceId"]
    if spec["writer_offload"] == "executor":
        truth["broken_hops"] += writer_hops(spans, notes)
    else:
        for n in (n for n in notes if n["side"] == "writer-start"):
            assert n["context"] is not None and n["span"][0] == by_id[n["caller"][0]]["traceId"], "writer left its trace"
    assert bool(truth["broken_hops"]) != spec["healthy"]
    assert not misparented(spans, notes)
    with open(os.path.join(case_dir, "truth.json"), "w") as f:
        json.dump(truth, f, indent=1, sort_keys=True)
        f.write("\n")
    print(f"{name}: {len(spans)} spans, {len(truth['broken_hops'])} broken hops, "
          f"failure={truth['failure'] and truth['failure']['category']}")


def record_cases():
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    parser.add_argument("cases", nargs="*")
    a = parser.parse_args()
    for name, spec in CASES.items():
        if a.cases and name not in a.cases:
            continue
        run_case(a.out, name, spec)


def main():
    global FORKS
    with ForkServer(PRELOAD, env=service_env(), cwd=HERE) as FORKS:
        record_cases()


if __name__ == "__main__":
    main()
