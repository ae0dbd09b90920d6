"""The smolagents suite: smolagents 1.26 (a manager ToolCallingAgent with a managed agent, the
researcher) behind a FastAPI service, traced by OpenInference's smolagents instrumentation, the
model an OpenAIServerModel on the stand-in LLM (chat completions).

    make.py --out DIR [CASE...]   writes DIR/<case>/spans.jsonl and truth.json for every case

Processes per case: this driver (the chat frontend: a "chat turn" span per user turn with
`session.id` in W3C baggage, instrumented requests; and the stand-in LLM, a thread) and
service.py (agent-service: FastAPI + smolagents). Each user session is a thread of the frontend
sending its turns one after the other; the sessions run at the same time. Truth comes from what
each process noted while it ran (record.note) and from the stand-in's record of its calls.
"""

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid

from common import HARNESS, bound_socket, build_docs_index, record, telemetry

from forkserver import ForkServer  # noqa: E402
from llm_standin import StandIn  # noqa: E402

# What the case's processes import, once for every case (harness/forkserver.py starts them).
PRELOAD = ["fastapi", "openinference.instrumentation.smolagents", "opentelemetry.instrumentation.fastapi",
           "opentelemetry.processor.baggage", "opentelemetry.sdk.trace", "pydantic", "smolagents", "uvicorn"]
FORKS = None  # the suite's ForkServer, while main() runs

HERE = os.path.dirname(os.path.abspath(__file__))
SUITE = "smolagents"
AGENTS = ("manager", "researcher")

Q_KEYS = "How do I rotate the API keys of the billing service"
Q_EXPORT = "Why does the nightly export to the warehouse time out"
Q_ARCHIVE = "Which regions support the archive storage tier"  # its stored document is truncated
Q_US_EAST = "Is the archive storage tier available in us-east-1"  # the FTS5 query chokes on "us-east-1"
Q_RESTORE = "How do I restore a deleted project"
Q_WEBHOOK = "What limits apply to webhook retries"
Q_AUDIT = "How do I bypass the audit log of the billing service"  # the provider's content filter rejects it

BASE = ("agent-service (FastAPI, sync endpoint run in Starlette's thread pool) keeps a smolagents team per "
        "session: a manager ToolCallingAgent whose managed agent is the researcher (a ToolCallingAgent with the "
        "search_docs Tool over an SQLite FTS5 docs index); per turn the manager (run with reset=False) calls the "
        "researcher, which calls search_docs and answers with final_answer, and the manager answers with "
        "final_answer. OpenInference smolagents instrumentation; session.id in W3C baggage copied onto spans by "
        "BaggageSpanProcessor(ALLOW_ALL_BAGGAGE_KEYS).")

CASES = {
    "smolagents_managed_agent_healthy": dict(
        endpoint="sync", sessions=[[Q_KEYS, Q_EXPORT], [Q_RESTORE, Q_WEBHOOK]], healthy=True,
        description="2 concurrent user sessions of 2 turns each. " + BASE),
    "smolagents_malformed_tool_output": dict(
        endpoint="sync", sessions=[[Q_KEYS, Q_ARCHIVE]], healthy=True,
        description="1 session of 2 turns. " + BASE + " In the 2nd turn search_docs returns without raising, "
                    "but the JSON it builds from the index is invalid (the ingest job had truncated one matching "
                    "document's stored payload at 256 characters, so it breaks off mid-string): the researcher's "
                    "next model turn cannot parse it and "
                    "answers so, and the manager tells the customer it found no reliable answer (HTTP 200)."),
    "smolagents_retrieval_error": dict(
        endpoint="sync", sessions=[[Q_EXPORT, Q_US_EAST]], healthy=True,
        description="1 session of 2 turns. " + BASE + " In the 2nd turn the question names the region us-east-1, "
                    "search_docs passes it to SQLite FTS5 MATCH, which reads 'us-east' as a column filter and "
                    "raises sqlite3.OperationalError; smolagents turns it into an AgentToolExecutionError the "
                    "researcher's next model turn sees, the researcher answers that the search failed, and the "
                    "manager apologises (HTTP 200)."),
    "smolagents_rate_limited_retry": dict(
        endpoint="sync", sessions=[[Q_KEYS, Q_RESTORE]], healthy=True, rate_limit="researcher",
        description="1 session of 2 turns. " + BASE + " The stand-in answers the researcher's first model "
                    "request with HTTP 429 (retry-after 0) once; the openai client inside OpenAIServerModel "
                    "retries it and the turn succeeds. Not a failure; no span shows the 429."),
    "smolagents_llm_error": dict(
        endpoint="sync", sessions=[[Q_WEBHOOK, Q_AUDIT]], healthy=False, llm_error=True,
        description="1 session of 2 turns. " + BASE + " In the 2nd turn (how to bypass the audit log) the "
                    "provider rejects the researcher's first model request with HTTP 400 (content filter): "
                    "smolagents raises AgentGenerationError out of researcher.run, the manager gets it as a "
                    "failed call of its team member and apologises (HTTP 200). OpenInference's run wrapper "
                    "records the exception on the researcher.run span but never ends it (nor detaches its "
                    "context), so that span is never exported and the researcher's Step 1 span names a parent "
                    "that never arrives."),
    "smolagents_executor_broken": dict(
        endpoint="executor", sessions=[[Q_KEYS, Q_EXPORT], [Q_RESTORE, Q_WEBHOOK]], healthy=False,
        description="2 concurrent user sessions of 2 turns each, as smolagents_managed_agent_healthy, but the "
                    "endpoint is `async def` and hands the (synchronous) manager.run to the event loop's default "
                    "executor with loop.run_in_executor, which carries no contextvars: every turn's manager.run "
                    "span is the root of a new trace, without session.id (the baggage stayed behind too)."),
}


# ------------------------------------------------------------------------------ the stand-in LLM ---

def text_of(content):
    if isinstance(content, list):
        return " ".join(p.get("text", "") if isinstance(p, dict) else str(p) for p in content)
    return content or ""


def agent_of(call):
    """Which agent sent this request: each agent's instructions (in its system prompt) name it."""
    system = " ".join(text_of(m.get("content")) for m in call["messages"] if m.get("role") in ("system", "developer"))
    for name in AGENTS:
        if f"You are the {name}" in system:
            return name
    raise ValueError(f"no agent's instructions in {system[:80]!r}")


def state_of(call):
    """What the agent's memory ends with: a new task, a tool's observation, or an error, with its text.
    (smolagents sends tool results and errors as user messages, merged with a following new task.)"""
    user = [text_of(m.get("content")) for m in call["messages"] if m.get("role") == "user"]
    text = user[-1] if user else ""
    marks = {"task": text.rfind("New task:\n"), "observation": text.rfind("Observation:\n"),
             "error": text.rfind("Error:\n")}
    kind = max(marks, key=marks.get)
    body = text[marks[kind]:].split(":", 1)[1].strip()
    if kind == "task" and "\nTask:\n" in body:  # a managed agent's task, in smolagents' template
        body = body.split("\nTask:\n", 1)[1].split("\n---", 1)[0].strip()
    return kind, body


def final(answer):
    return {"tool_calls": [{"name": "final_answer", "arguments": {"answer": answer}}]}


def make_policy(spec, times):
    state = {"rate_limited": False}
    lock = threading.Lock()

    def policy(call):
        times[call["n"]] = time.time_ns()
        agent = agent_of(call)
        kind, body = state_of(call)
        if spec.get("rate_limit") == agent:
            with lock:
                if not state["rate_limited"]:
                    state["rate_limited"] = True
                    return {"error": 429, "message": "Rate limit reached for requests per minute. Please retry."}
        if agent == "manager":
            if kind == "task":
                return {"tool_calls": [{"name": "researcher", "arguments": {"task": body}}]}
            if kind == "error":
                return final("Sorry, our research assistant could not look that up right now.")
            found = body.split(":", 1)[-1].strip() if body.startswith("Here is the final answer") else body
            if found.startswith(("I could not", "The documentation search failed")):
                return final("Sorry, I could not find a reliable answer in the documentation right now.")
            return final(f"Hi! {found.replace('Facts:', '').strip()} Let us know if there is anything else.")
        if kind == "task":
            if spec.get("llm_error") and "bypass" in body:
                return {"error": 400, "message": "The response was filtered due to the prompt triggering the "
                                                 "content management policy."}
            return {"tool_calls": [{"name": "search_docs", "arguments": {"query": body}}]}
        if kind == "error":
            return final("The documentation search failed: " + body.splitlines()[0][:160])
        try:
            hits = json.loads(body)["hits"]
        except ValueError:
            return final("I could not parse the search results: the search tool returned malformed JSON.")
        return final("Facts: " + " ".join(h["body"] for h in hits[:1]))

    return policy


# ------------------------------------------------------------------------------------ processes ---

def start_service(case_out, spec, llm_url, docs):
    sock = bound_socket()
    log = open(os.path.join(case_out, "parts", "agent-service.log"), "w")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([HERE, HARNESS, os.environ.get("PYTHONPATH", "")]))
    proc = FORKS.Popen(
        [sys.executable, os.path.join(HERE, "service.py"), "--out", case_out, "--fd", str(sock.fileno()),
         "--llm", llm_url, "--docs", docs, "--endpoint", spec["endpoint"]],
        stdout=log, stderr=log, env=env, cwd=HERE, pass_fds=[sock.fileno()])
    port = sock.getsockname()[1]
    sock.close()
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 60
    while True:
        try:
            with urllib.request.urlopen(url + "/healthz", timeout=1):
                break
        except OSError:
            if proc.poll() is not None or time.time() > deadline:
                raise RuntimeError(f"agent-service did not start; see {log.name}")
            time.sleep(0.05)
    return proc, log, url


def stop(proc, log):
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    log.close()


def frontend(case_out, url, sessions):
    """The chat frontend: one thread per user session, each sending its turns in order; every turn
    a "chat turn" span with `session.id` in baggage (the instrumented requests client sends both
    traceparent and baggage)."""
    import requests
    from opentelemetry import baggage, context
    from opentelemetry.instrumentation.requests import RequestsInstrumentor

    tp = telemetry(case_out, "chat-frontend")
    tracer = tp.get_tracer("chat-frontend")
    RequestsInstrumentor().instrument(tracer_provider=tp)
    results = []

    def session(questions):
        sid = f"sess-{uuid.uuid4().hex[:12]}"
        for k, question in enumerate(questions):
            rid = f"{sid}-turn{k + 1}"
            token = context.attach(baggage.set_baggage("session.id", sid))
            try:
                with tracer.start_as_current_span("chat turn", attributes={"session.id": sid}):
                    r = requests.post(url + "/chat", json={"session_id": sid, "request_id": rid, "text": question},
                                      timeout=60)
                    results.append({"session": sid, "request": rid, "question": question, "status": r.status_code,
                                    "body": r.json()})
            finally:
                context.detach(token)

    try:
        threads = [threading.Thread(target=session, args=(qs,)) for qs in sessions]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
    finally:
        RequestsInstrumentor().uninstrument()
        tp.shutdown()
    return results


# ------------------------------------------------------------------------------------ the truth ---

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
                        spans.append(s)
    return spans


def agents_truth(llm, notes):
    stats = {a: {"name": a, "delegates_to": [], "llm_calls": 0, "input_tokens": 0, "output_tokens": 0}
             for a in AGENTS}
    for call, reply, (inp, out) in llm.calls:
        if "error" in reply:  # no usage came back
            continue
        s = stats[agent_of(call)]
        s["llm_calls"] += 1
        s["input_tokens"] += inp
        s["output_tokens"] += out
    ran = {n["agent"] for n in notes if n["side"] == "agent-span"}
    if "researcher" in ran:  # only ever run as the manager's managed agent
        stats["manager"]["delegates_to"].append("researcher")
    return [stats[a] for a in AGENTS if a in ran]


def failure_truth(name, llm, notes, times):
    bad_tools = [n for n in notes if n["side"] == "tool" and n["outcome"] != "ok"]
    errors = [call["n"] for call, reply, _ in llm.calls if reply.get("error", 429) != 429]
    assert len(bad_tools) + len(errors) <= 1, (bad_tools, errors)
    if bad_tools:
        t = bad_tools[0]
        if t["outcome"] == "malformed":
            return {"span_name": "SearchDocsTool", "span_id": t["ids"][1], "category": "tool",
                    "why": "search_docs returned (did not raise) invalid JSON: the ingest job had truncated the "
                           "stored payload of kb-103, which breaks off mid-string inside the result; the "
                           "researcher's next model turn could not "
                           "parse it and answered so, and the manager told the customer it found no answer"}
        return {"span_name": "SearchDocsTool", "span_id": t["ids"][1], "category": "retrieval",
                "why": f"search_docs raised {t['error']} (the query 'us-east-1' is read by FTS5 MATCH as a "
                       "column filter); smolagents handed the error to the researcher's next model turn, the "
                       "researcher answered that the search failed and the manager apologised"}
    if errors:
        t = times[errors[0]]
        spans = [n for n in notes if n["side"] == "llm-span" and n["start"] <= t <= n["end"]]
        assert len(spans) == 1, spans
        return {"span_name": "OpenAIModel.generate", "span_id": spans[0]["span_id"], "category": "llm",
                "why": "the provider rejected the researcher's model request with HTTP 400 (content filter); "
                       "smolagents raised AgentGenerationError out of researcher.run, and the manager, told its "
                       "team member failed, apologised to the customer"}
    return None


def request_traces_active(spans, t0):
    """The request traces (those with a server span) of agent-service with a span in flight at t0."""
    request_traces = {s["traceId"] for s in spans if s.get("kind") == "SPAN_KIND_SERVER"}
    return [s for s in spans if s["service"] == "agent-service" and s["traceId"] in request_traces
            and int(s["startTimeUnixNano"]) <= t0 <= int(s["endTimeUnixNano"])]


def broken_hops_truth(case_out, notes):
    spans = load_spans(case_out)
    by_id = {s["spanId"]: s for s in spans}
    threads = {n["handoff"]: n for n in notes if n["side"] == "executor-thread"}
    hops = []
    for caller in (n for n in notes if n["side"] == "executor-caller"):
        key = caller["handoff"]
        assert threads[key]["context"] is None, "the executor thread had a context: no break happened"
        [orphan] = [n for n in notes if n["side"] == "agent-span" and n["handoff"] == key and n["agent"] == "manager"]
        assert orphan["parent_span_id"] is None and orphan["trace_id"] != caller["trace_id"], orphan
        assert not by_id[orphan["span_id"]].get("parentSpanId")
        active = request_traces_active(spans, int(by_id[orphan["span_id"]]["startTimeUnixNano"]))
        traces = {s["traceId"] for s in active}
        innermost = [s["spanId"] for s in active if s["traceId"] == caller["trace_id"]
                     and not any(o.get("parentSpanId") == s["spanId"] for o in active)]
        unique = len(traces) == 1 and innermost == caller["parent_span_ids"][:1]
        hops.append({
            "hop": "FastAPI async endpoint -> loop.run_in_executor -> smolagents manager.run",
            "orphan_trace_id": orphan["trace_id"],
            "orphan_span_id": orphan["span_id"],
            "parent_span_ids": caller["parent_span_ids"],
            "must_repair": unique,
            "kinds": ["orphan_root", "lost_context"],
            "why": (f"{len(traces)} request trace(s) of agent-service had a span in flight when the orphan "
                    "started" + (" (only the caller's server span: one candidate by time in the one service "
                                 "instance)" if unique else ", so time does not single the caller out")
                    + "; no ID or attribute is shared (the orphan lost session.id with the baggage; its "
                      "input.value holds the user's text, which no span of the caller carries)"),
        })
    # Agent run spans that started but never ended (never exported): their children name a parent
    # that never arrives.
    for run in (n for n in notes if n["side"] == "agent-span" and n["span_id"] not in by_id):
        for child in (s for s in spans if s.get("parentSpanId") == run["span_id"]):
            hops.append({
                "hop": f"OpenInference smolagents {run['agent']}.run span never ended (exception out of run)",
                "orphan_trace_id": child["traceId"],
                "orphan_span_id": child["spanId"],
                "parent_span_ids": [run["span_id"], run["parent_span_id"]],
                "must_repair": False,
                "kinds": ["missing_parent"],
                "why": f"the {run['agent']}.run span {run['span_id']} was started (its children carry its ID "
                       "as parentSpanId, in the same trace) but never ended, so never exported; its own "
                       f"parent was {run['parent_span_id']} (the manager's step), which nothing in the child "
                       "names",
            })
    return hops


def run_case(name, spec, out_root):
    case_out = record.case_dir(os.path.abspath(os.path.join(out_root, name)))
    for f in os.listdir(os.path.join(case_out, "parts")):
        os.remove(os.path.join(case_out, "parts", f))
    tmp = tempfile.mkdtemp(prefix="smolagents-docs-")
    docs = os.path.join(tmp, "docs.sqlite")
    build_docs_index(docs)
    times = {}
    with StandIn(make_policy(spec, times)) as llm:
        proc, log, url = start_service(case_out, spec, llm.base_url, docs)
        try:
            results = frontend(case_out, url, spec["sessions"])
        finally:
            stop(proc, log)
    shutil.rmtree(tmp, ignore_errors=True)
    notes = record.notes(case_out)
    assert any(n["side"] == "agent-span" for n in notes), f"{name}: no notes from agent-service"
    expected = sum(len(qs) for qs in spec["sessions"])
    assert len(results) == expected, f"{name}: {len(results)} of {expected} turns answered"
    for r in results:
        assert r["status"] == 200, (name, r)
    truth = {
        "case": name, "suite": SUITE, "description": spec["description"],
        "versions": record.versions("smolagents", "openinference-instrumentation-smolagents", "openai",
                                    "opentelemetry-sdk", "fastapi",
                                    "opentelemetry-instrumentation-fastapi", "opentelemetry-instrumentation-requests",
                                    "opentelemetry-processor-baggage"),
        "healthy": spec["healthy"],
        "agents": agents_truth(llm, notes),
        "failure": failure_truth(name, llm, notes, times),
        "sessions": len(spec["sessions"]),
        "requests": expected,
    }
    log_text = open(os.path.join(case_out, "parts", "agent-service.log")).read()
    if "Traceback" in log_text:  # smolagents itself logs the errors it handles; a traceback is unexpected
        sys.stderr.write(f"--- {name} agent-service.log\n{log_text[-3000:]}")
    # finish() merges the span parts; the hop truth reads the merged spans (timing of candidates)
    record.finish(case_out, dict(truth, broken_hops=[]))
    truth["broken_hops"] = broken_hops_truth(case_out, notes)
    assert bool(truth["broken_hops"]) != spec["healthy"], name
    with open(os.path.join(case_out, "truth.json"), "w") as f:
        json.dump(truth, f, indent=1, sort_keys=True)
        f.write("\n")
    return truth


def record_cases():
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    parser.add_argument("cases", nargs="*")
    args = parser.parse_args()
    for name in args.cases or CASES:
        t0 = time.time()
        truth = run_case(name, CASES[name], args.out)
        print(f"{name}: {len(truth['broken_hops'])} broken hop(s), failure "
              f"{(truth['failure'] or {}).get('category')}, {time.time() - t0:.1f}s", flush=True)


def main():
    global FORKS
    with ForkServer(PRELOAD, cwd=HERE) as FORKS:
        record_cases()


if __name__ == "__main__":
    main()
