"""The openai_agents suite: the OpenAI Agents SDK behind an HTTP service, traced by OpenInference's
(or OpenLLMetry's) instrumentation for it; a triage agent hands off to a researcher, which uses a
search tool and a writer agent as a tool; the stand-in LLM through the SDK's real OpenAI client.

    make.py --out DIR [CASE...]   writes DIR/<case>/spans.jsonl and truth.json for every case

Processes per case: this driver (the chat frontend: instrumented httpx client, turns of 1-2 user
sessions at once, 2 turns per session one after the other, `session.id` in W3C baggage; and the
stand-in LLM, a thread) and agent_service.py (FastAPI + the Agents SDK). Truth comes from what
the service noted while it ran (record.note) and from the stand-in's log of calls.
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

from common import AGENT_TOOLS, HARNESS, agent_of, bound_socket, make_policy, record

from forkserver import ForkServer  # noqa: E402
from llm_standin import StandIn  # noqa: E402

# What the case's processes import, once for every case (harness/forkserver.py starts them).
PRELOAD = ["agents", "fastapi", "fastapi.responses", "httpx", "openai",
           "openinference.instrumentation.openai_agents", "opentelemetry.instrumentation.fastapi",
           "opentelemetry.instrumentation.openai_agents", "opentelemetry.processor.baggage",
           "opentelemetry.sdk.trace", "pydantic", "uvicorn"]
FORKS = None  # the suite's ForkServer, while main() runs

HERE = os.path.dirname(os.path.abspath(__file__))

BASE = dict(instrumentation="openinference", api="responses", runner="async", docs_fault="none", handoff_fault="none",
            llm_fault=None, sessions=1, healthy=True, failure=None, tokens_in_spans=True)
FLOW = ("`triage` hands off to `researcher` (handoff), which calls the function tool search_docs, then "
        "the `writer` agent as its tool draft_answer (Agent.as_tool), then answers")
CASES = {
    "agents_handoff_healthy": dict(
        BASE, sessions=2,
        description=f"OpenAI Agents SDK behind FastAPI, OpenInference instrumentation, Responses API: {FLOW}; "
                    "2 concurrent user sessions of 2 turns each, session history in SQLiteSession, session.id in "
                    "baggage (BaggageSpanProcessor) and via OpenInference's using_session."),
    "agents_openllmetry_handoff_healthy": dict(
        BASE, sessions=2, instrumentation="openllmetry",
        description=f"as agents_handoff_healthy, traced by OpenLLMetry's opentelemetry-instrumentation-openai-agents "
                    f"(replace_existing_processors=True) instead of OpenInference: {FLOW}; 2 concurrent sessions of 2 "
                    "turns, session.id in baggage. No context breaks; but OpenLLMetry parents each handoff span "
                    "under the first in-flight agent span named like the handoff's source in ANY run of the process "
                    "(_find_agent_span), so when both sessions' triage agents are in flight a handoff span lands in "
                    "the other session's trace (see misparented_spans). OpenLLMetry also hangs every agent span "
                    "directly under its `Agent Workflow` span (the writer, run as draft_answer's agent-as-tool, is "
                    "not under the draft_answer tool span), and names the handoff `triage → unknown.handoff` "
                    "(to_agent is not known when the SDK starts the handoff span)."),
    "agents_openllmetry_chat_healthy": dict(
        BASE, instrumentation="openllmetry", api="chat", tokens_in_spans=False,
        description=f"OpenLLMetry's instrumentation with the agents on chat completions (OpenAIChatCompletionsModel): "
                    f"{FLOW}; one session of 2 turns. OpenLLMetry reads token usage from a Responses object only, "
                    "so its chat spans carry no gen_ai.usage.* (the tokens in `agents` are not in the spans)."),
    "agents_tool_malformed_json": dict(
        BASE, docs_fault="truncated",
        failure=dict(side="tool-failure", category="tool",
                     why="search_docs returned a truncated JSON document without raising (turn 2, about the "
                         "nightly export); the researcher's next model call could not parse it and answered that "
                         "it cannot answer",
                     visible_as="OpenInference: the search_docs span (RETRIEVER) has status OK and output.value "
                                "cut-off JSON; the researcher's next LLM span's output says it could not parse the "
                                "search results; no span has an error; OpenLLMetry: gen_ai.tool.call.result"),
        description=f"as agents_handoff_healthy with one session of 2 turns: {FLOW}; in turn 2 search_docs returns "
                    "truncated JSON text (no exception, span status OK) and the model answers that it could not "
                    "parse it (no draft_answer, no writer)."),
    "agents_retrieval_tool_raises": dict(
        BASE, docs_fault="down",
        failure=dict(side="tool-failure", category="retrieval",
                     why="search_docs (a RETRIEVER span) raised ConnectionError in turn 2; the SDK's default "
                         "failure_error_function gave the model an error text and the researcher answered that the "
                         "search failed",
                     visible_as="the search_docs span (openinference.span.kind RETRIEVER, from tool_span_kinds) has "
                                "status ERROR \"Error running tool (non-fatal): ... Error details are redacted.\" "
                                "(the SDK redacts the exception) and output.value the SDK's error text; every other "
                                "span is OK, the request answers 200"),
        description=f"as agents_handoff_healthy with one session of 2 turns: {FLOW}; in turn 2 search_docs raises "
                    "ConnectionError (the search backend is down); the SDK catches it, marks the tool span as an "
                    "error and sends the model an error text; the researcher answers that the search failed."),
    "agents_rate_limited_retry_healthy": dict(
        BASE, llm_fault="rate-limit", api="chat",
        description=f"OpenInference instrumentation with the agents on chat completions (OpenAIChatCompletionsModel), "
                    f"one session of 2 turns: {FLOW}; the researcher's first model call is answered 429 once and the "
                    "OpenAI client retries it (inside one generation span); nothing fails."),
    "agents_llm_error_request_fails": dict(
        BASE, llm_fault="llm-error",
        failure=dict(side="llm-call", category="llm",
                     why="the researcher's model call in turn 2 was answered HTTP 400 (context length exceeded); "
                         "openai.BadRequestError propagated out of Runner.run and the request failed with HTTP 500",
                     visible_as="the `response` LLM span has status ERROR (\"Error getting response: ... 400 ...\"), "
                                "its `researcher` AGENT span ERROR (\"Error in agent run: ...\"); the `turn` and "
                                "`support chat` spans stay OK; the FastAPI SERVER span is ERROR (500) with an "
                                "exception event"),
        description=f"as agents_handoff_healthy with one session of 2 turns: {FLOW}; in turn 2 the researcher's "
                    "first model call gets HTTP 400 (context length), the run raises and the service answers 500."),
    "agents_rate_limit_exhausted_request_fails": dict(
        BASE, llm_fault="rate-limit-exhausted",
        failure=dict(side="llm-call", category="llm",
                     why="the researcher's model call in turn 2 was answered 429 on every attempt; the OpenAI "
                         "client's two retries ran out, openai.RateLimitError propagated out of Runner.run and the "
                         "request failed with HTTP 500",
                     visible_as="one `response` LLM span with status ERROR (the client retries inside it, so the "
                                "attempts are not spans of their own), its `researcher` AGENT span ERROR; the FastAPI "
                                "SERVER span is ERROR (500)"),
        description=f"as agents_handoff_healthy with one session of 2 turns: {FLOW}; in turn 2 the researcher's "
                    "first model call is rate-limited on every attempt, the client gives up after its retries, the "
                    "run raises and the service answers 500."),
    "agents_handoff_refused_request_fails": dict(
        BASE, handoff_fault="refused",
        failure=dict(side="handoff-failure", category="handoff",
                     why="triage handed the turn-2 question (the nightly export) to the researcher, whose admission "
                         "(the hand-off's on_handoff callback) raised PermissionError: the researcher never ran, "
                         "Runner.run raised and the request failed with HTTP 500",
                     visible_as="the `handoff to researcher` span is the innermost span with an error, under the "
                                "`triage` AGENT span; no `researcher` agent span in turn 2; the FastAPI SERVER span "
                                "is ERROR (500)"),
        description=f"as agents_handoff_healthy with one session of 2 turns: {FLOW}; in turn 2 the hand-off to the "
                    "researcher is refused (on_handoff raises), the run raises and the service answers 500."),
    "agents_run_sync_executor_broken": dict(
        BASE, sessions=2, runner="executor", healthy=False,
        description=f"as agents_handoff_healthy (2 concurrent sessions of 2 turns, {FLOW}), but the FastAPI handler "
                    "runs the turn through a plain function calling Runner.run_sync, handed to a ThreadPoolExecutor "
                    "with loop.run_in_executor, which does not carry contextvars: OpenInference's trace span "
                    "(`support chat`, the SDK trace) starts with no parent, a root of its own trace, per turn."),
}

QUESTIONS = [
    ["How do I rotate the API keys of the billing service", "Why does the nightly export to the warehouse time out"],
    ["Which regions support the archive storage tier", "How do I enable audit logs for the admin console"],
]


def launch(cmd, case_dir, name, pass_fds=()):
    log = open(os.path.join(case_dir, "parts", f"{name}.log"), "w")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([HERE, HARNESS, os.environ.get("PYTHONPATH", "")]))
    proc = FORKS.Popen([sys.executable, *cmd], stdout=log, stderr=log, env=env, cwd=HERE, pass_fds=pass_fds)
    return proc, log


def stop(proc, log):
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    log.close()


async def frontend(tp, url, sessions):
    """The chat frontend: each user session's turns one after the other, the sessions at once; each
    turn a span with `session.id` in baggage, so the instrumented httpx client sends it."""
    import httpx
    from opentelemetry import baggage, context
    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor

    tracer = tp.get_tracer("chat-frontend")
    async with httpx.AsyncClient(timeout=5) as plain:
        for _ in range(400):
            try:
                if (await plain.get(url + "/healthz")).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.05)
        else:
            raise RuntimeError("support-agents never became healthy")
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
    delegated to (a handoff tool call or an agent-as-tool call in its replies)."""
    delegation = {"transfer_to_researcher": "researcher", "draft_answer": "writer"}
    out = {}
    for call, reply, (inp, outp) in calls:
        agent = agent_of(call["tool_names"])
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
    return [out[name] for name in AGENT_TOOLS if name in out]


def executor_hops(case_dir, notes):
    """One broken hop per turn: the handler's span (FastAPI SERVER span, current where the turn was
    handed to the executor) -> the root of the trace the turn's agents ran in."""
    spans = load_spans(case_dir)
    by_id = {s["spanId"]: s for s in spans}
    servers = [s for s in spans if s["service"] == "support-agents" and s["kind"] == "SPAN_KIND_SERVER"]
    hops = []
    for h in (n for n in notes if n["side"] == "handler"):
        worker = [n for n in notes if n["side"] == "worker-thread" and n["session"] == h["session"]]
        assert worker and all(n["context"] is None for n in worker), "the worker thread had a context"
        starts = [n for n in notes if n["side"] == "agent-start" and n["session"] == h["session"]
                  and n["text"] == h["text"]]
        traces = {n["span"][0] for n in starts}
        assert len(traces) == 1 and h["span"][0] not in traces, "the turn ran in the handler's trace"
        orphan_trace = traces.pop()
        roots = [s for s in spans if s["traceId"] == orphan_trace and not s.get("parentSpanId")]
        assert len(roots) == 1, roots
        orphan = roots[0]
        t0 = int(orphan["startTimeUnixNano"])
        in_flight = [s for s in servers if int(s["startTimeUnixNano"]) <= t0 < int(s["endTimeUnixNano"])]
        same_session = [s for s in in_flight if s["attrs"].get("session.id") == orphan["attrs"].get("session.id")]
        assert by_id[h["span"][1]] in in_flight
        if len(in_flight) == 1:
            must, why = True, ("one and only one SERVER span of support-agents (same service.instance.id) was in "
                               "flight when the orphan started, and it encloses it")
        elif [s["spanId"] for s in same_session] == [h["span"][1]]:
            must, why = True, (f"{len(in_flight)} SERVER spans of support-agents (concurrent sessions) were in flight "
                               "when the orphan started, and one only carries the orphan's session.id (the server "
                               "span from baggage via BaggageSpanProcessor, the orphan from OpenInference's "
                               "using_session); a session's turns run one after the other")
        else:
            must, why = False, f"{len(in_flight)} candidate SERVER spans and session.id does not single one out"
        hops.append({
            "hop": "FastAPI handler -> loop.run_in_executor(ThreadPoolExecutor, Runner.run_sync) -> OpenInference "
                   "trace span",
            "orphan_trace_id": orphan_trace,
            "orphan_span_id": orphan["spanId"],
            "parent_span_ids": [h["span"][1]],
            "must_repair": must,
            "why": why,
            "kinds": ["lost_context", "orphan_root"],
        })
    return hops


def misparented(spans, notes):
    """Spans an instrumentation put into another request's trace (no context was lost): a span
    whose session.id (BaggageSpanProcessor, from the live context of the task that started it)
    is not the session of the trace it was given. Cross-checked with the handoffs the SDK's hooks
    noted: the session each handoff ran in."""
    session_of_trace = {n["span"][0]: n["session"] for n in notes if n["side"] == "handler"}
    out = []
    for s in spans:
        trace_session = session_of_trace.get(s["traceId"])
        own = s["attrs"].get("session.id")
        if trace_session and own and own != trace_session:
            out.append({"span_id": s["spanId"], "span_name": s["name"], "trace_id": s["traceId"],
                        "session": own, "trace_session": trace_session,
                        "why": "started by session " + own + "'s run but parented under a span of session "
                               + trace_session + "'s trace by the instrumentation"})
    return out


def run_case(out, name, spec):
    case_dir = os.path.join(os.path.abspath(out), name)
    shutil.rmtree(case_dir, ignore_errors=True)
    record.case_dir(case_dir)
    proc = log = None
    try:
        with StandIn(make_policy(spec["llm_fault"])) as llm:
            sock = bound_socket()
            proc, log = launch(["agent_service.py", "--out", case_dir, "--fd", str(sock.fileno()), "--llm",
                                llm.base_url, "--instrumentation", spec["instrumentation"], "--api", spec["api"],
                                "--runner", spec["runner"], "--docs-fault", spec["docs_fault"],
                                "--handoff-fault", spec["handoff_fault"]],
                               case_dir, "support-agents", pass_fds=[sock.fileno()])
            port = sock.getsockname()[1]
            sock.close()
            tp = record.provider(case_dir, "chat-frontend", set_global=False)
            results = asyncio.run(frontend(tp, f"http://127.0.0.1:{port}", spec["sessions"]))
            tp.shutdown()
            calls = list(llm.calls)
    finally:
        if proc is not None:
            stop(proc, log)
    for path in os.listdir(os.path.join(case_dir, "parts")):
        if path.endswith(".log"):
            with open(os.path.join(case_dir, "parts", path)) as f:
                text = f.read().strip()
            if "Traceback" in text:
                print(f"--- {name} {path}:\n{text[-3000:]}", file=sys.stderr)
            os.remove(os.path.join(case_dir, "parts", path))
    statuses = [status for answers in results for status, _ in answers]
    fails = spec["llm_fault"] in ("llm-error", "rate-limit-exhausted") or spec["handoff_fault"] == "refused"
    expect_500 = 1 if fails else 0
    assert statuses.count(500) == expect_500 and statuses.count(200) == len(statuses) - expect_500, results
    notes = record.notes(case_dir)
    versions = record.versions("openai-agents", "openai", "opentelemetry-sdk", "opentelemetry-instrumentation-fastapi",
                               "opentelemetry-instrumentation-httpx", "opentelemetry-processor-baggage", "fastapi",
                               "uvicorn", "httpx")
    versions.update(record.versions("openinference-instrumentation-openai-agents" if spec["instrumentation"] ==
                                    "openinference" else "opentelemetry-instrumentation-openai-agents"))
    truth = {
        "case": name, "suite": "openai_agents", "description": spec["description"], "versions": versions,
        "healthy": spec["healthy"], "broken_hops": [],
        "agents": agents_truth(calls),
        "failure": None,
        "sessions": spec["sessions"],
        "requests": len(statuses),
        # False when the instrumentation records no token usage (the agents' tokens are not knowable)
        "tokens_in_spans": spec["tokens_in_spans"],
    }
    record.finish(case_dir, truth)
    spans = load_spans(case_dir)
    by_id = {s["spanId"]: s for s in spans}
    # Every model call the service made was noted with the span current at the call.
    llm_notes = [n for n in notes if n["side"] == "llm-call"]
    assert len(llm_notes) == len(calls), (len(llm_notes), len(calls))
    if spec["llm_fault"] == "rate-limit":
        assert [n["status"] for n in llm_notes].count(429) == 1
    if spec["failure"]:
        f = spec["failure"]
        hits = [n for n in notes if n["side"] == f["side"] and (f["side"] != "llm-call" or n["status"] >= 400)]
        # Retried attempts of one call are noted once each, under the same span.
        hits = list({tuple(n["span"]): n for n in hits}.values())
        assert len(hits) == 1, hits
        span = by_id[hits[0]["span"][1]]
        truth["failure"] = {"span_name": span["name"], "span_id": span["spanId"], "category": f["category"],
                            "why": f["why"], "visible_as": f["visible_as"]}
    if not spec["healthy"]:
        truth["broken_hops"] = executor_hops(case_dir, notes)
        assert len(truth["broken_hops"]) == len(statuses)
    else:
        # healthy: every turn's agents ran in the trace of its handler
        for h in (n for n in notes if n["side"] == "handler"):
            starts = [n for n in notes if n["side"] == "agent-start" and n["session"] == h["session"]
                      and n["text"] == h["text"]]
            assert starts and all(n["span"][0] == h["span"][0] for n in starts), "a healthy turn left its trace"
    truth["misparented_spans"] = misparented(spans, notes) if spec["runner"] == "async" else []
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
    with ForkServer(PRELOAD, cwd=HERE) as FORKS:
        record_cases()


if __name__ == "__main__":
    main()
