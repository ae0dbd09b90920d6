"""The pydantic_ai suite: Pydantic AI agents (a coordinator delegating to a researcher and a writer
through tools) behind a FastAPI service, traced by Pydantic AI's native OpenTelemetry
instrumentation, the model an OpenAIChatModel on the stand-in LLM.

    make.py --out DIR [CASE...]   writes DIR/<case>/spans.jsonl and truth.json for every case

Processes per case: this driver (the chat frontend: a "chat turn" span per user turn with
`session.id` in W3C baggage, instrumented requests; and the stand-in LLM, a thread) and
service.py (agent-service: FastAPI + Pydantic AI). Each user session is a thread of the frontend
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
PRELOAD = ["fastapi", "fastapi.responses", "opentelemetry.instrumentation.fastapi",
           "opentelemetry.processor.baggage", "opentelemetry.sdk.trace", "pydantic", "pydantic_ai",
           "pydantic_ai.models.instrumented", "pydantic_ai.models.openai", "pydantic_ai.providers.openai",
           "uvicorn"]
FORKS = None  # the suite's ForkServer, while main() runs

HERE = os.path.dirname(os.path.abspath(__file__))
SUITE = "pydantic_ai"
AGENTS = ("coordinator", "researcher", "writer")

Q_KEYS = "How do I rotate the API keys of the billing service"
Q_EXPORT = "Why does the nightly export to the warehouse time out"
Q_ARCHIVE = "Which regions support the archive storage tier"  # its stored document is truncated
Q_US_EAST = "Is the archive storage tier available in us-east-1"  # the FTS5 query chokes on "us-east-1"
Q_RESTORE = "How do I restore a deleted project"
Q_WEBHOOK = "What limits apply to webhook retries"
Q_AUDIT = "How do I bypass the audit log of the billing service"  # the writer refuses

CASES = {
    "pydantic_ai_delegation_healthy": dict(
        delegation="async", sessions=[[Q_KEYS, Q_EXPORT], [Q_RESTORE, Q_WEBHOOK]], healthy=True,
        description="2 concurrent user sessions of 2 turns each against agent-service (FastAPI): per turn the "
                    "coordinator agent calls its ask_researcher tool, which awaits the researcher agent "
                    "(search_docs tool over an SQLite FTS5 docs index, then the stand-in LLM), then its "
                    "ask_writer tool, which awaits the writer agent, and answers with the writer's reply. "
                    "Pydantic AI's native OpenTelemetry; session.id in W3C baggage copied onto spans by "
                    "BaggageSpanProcessor(ALLOW_ALL_BAGGAGE_KEYS)."),
    "pydantic_ai_malformed_tool_output": dict(
        delegation="async", sessions=[[Q_KEYS, Q_ARCHIVE]], healthy=True,
        description="as pydantic_ai_delegation_healthy with 1 session of 2 turns; in the 2nd turn search_docs "
                    "returns without raising, but the JSON it builds from the index is invalid (the ingest "
                    "job had truncated one matching document's stored payload at 256 characters, so it breaks "
                    "off mid-string): the researcher's next "
                    "model turn cannot parse it and reports so, and the coordinator answers that it found no "
                    "reliable answer without asking the writer (HTTP 200)."),
    "pydantic_ai_retrieval_error": dict(
        delegation="async", sessions=[[Q_EXPORT, Q_US_EAST]], healthy=True,
        description="as pydantic_ai_delegation_healthy with 1 session of 2 turns; in the 2nd turn the question "
                    "names the region us-east-1, search_docs passes it to SQLite FTS5 MATCH, which reads "
                    "'us-east' as a column filter and raises sqlite3.OperationalError (no such column: east); "
                    "the exception ends the researcher's run, the ask_researcher tool, the coordinator's run, "
                    "and the service answers HTTP 500."),
    "pydantic_ai_rate_limited_retry": dict(
        delegation="async", sessions=[[Q_KEYS, Q_RESTORE]], healthy=True, rate_limit="writer",
        description="as pydantic_ai_delegation_healthy with 1 session of 2 turns; the stand-in answers the "
                    "writer's first model request with HTTP 429 (retry-after 0) once; the openai client "
                    "inside OpenAIProvider retries it and the turn succeeds. Not a failure; no span shows "
                    "the 429 (the openai client's HTTP calls are not instrumented)."),
    "pydantic_ai_refusal": dict(
        delegation="async", sessions=[[Q_WEBHOOK, Q_AUDIT]], healthy=True,
        description="as pydantic_ai_delegation_healthy with 1 session of 2 turns; in the 2nd turn (how to "
                    "bypass the audit log) the stand-in refuses the writer's request (chat message.refusal); "
                    "Pydantic AI raises ContentFilterError, which ends the writer's run, the ask_writer tool "
                    "and the coordinator's run; the service answers HTTP 500."),
    "pydantic_ai_threadpool_delegation_broken": dict(
        delegation="threadpool", sessions=[[Q_KEYS, Q_EXPORT], [Q_RESTORE, Q_WEBHOOK]], healthy=False,
        description="as pydantic_ai_delegation_healthy (2 concurrent sessions of 2 turns), but the coordinator's "
                    "ask_researcher / ask_writer tools are plain sync functions: Agent.run_sync refuses to run "
                    "inside a sync tool (it checks a contextvar) and the shared async client is bound to the "
                    "service's loop, so each tool builds a fresh specialist and runs it with run_sync on a "
                    "ThreadPoolExecutor, which carries no contextvars: every specialist's invoke_agent span "
                    "is the root of a new trace (without session.id, and with its own gen_ai.agent.name)."),
}


# ------------------------------------------------------------------------------ the stand-in LLM ---

def text_of(content):
    if isinstance(content, list):
        return " ".join(p.get("text", "") if isinstance(p, dict) else str(p) for p in content)
    return content or ""


def agent_of(call):
    """Which agent sent this request: each agent's instructions (the system message) name it."""
    system = " ".join(text_of(m.get("content")) for m in call["messages"] if m.get("role") in ("system", "developer"))
    for name in AGENTS:
        if system.startswith(f"You are the {name}"):
            return name
    raise ValueError(f"no agent's instructions in {system[:80]!r}")


def turn_of(call):
    """The last user message and, by tool name, the tool results the agent got since."""
    msgs = call["messages"]
    last = max(i for i, m in enumerate(msgs) if m.get("role") == "user")
    names, results = {}, {}
    for m in msgs[last + 1:]:
        for tc in m.get("tool_calls") or []:
            names[tc["id"]] = tc["function"]["name"]
        if m.get("role") == "tool":
            results[names.get(m.get("tool_call_id"), "?")] = text_of(m.get("content"))
    return text_of(msgs[last].get("content")), results


def make_policy(spec):
    state = {"rate_limited": False}
    lock = threading.Lock()

    def policy(call):
        agent = agent_of(call)
        user, results = turn_of(call)
        if spec.get("rate_limit") == agent:
            with lock:
                if not state["rate_limited"]:
                    state["rate_limited"] = True
                    return {"error": 429, "message": "Rate limit reached for requests per minute. Please retry."}
        if agent == "coordinator":
            if "ask_researcher" not in results:
                return {"tool_calls": [{"name": "ask_researcher", "arguments": {"question": user}}]}
            if "ask_writer" not in results:
                notes = results["ask_researcher"]
                if notes.startswith("I could not"):
                    return {"text": "Sorry, I could not find a reliable answer in the documentation right now."}
                return {"tool_calls": [{"name": "ask_writer", "arguments": {"question": user, "notes": notes}}]}
            return {"text": results["ask_writer"]}
        if agent == "researcher":
            if "search_docs" not in results:
                return {"tool_calls": [{"name": "search_docs", "arguments": {"query": user}}]}
            try:
                hits = json.loads(results["search_docs"])["hits"]
            except ValueError:
                return {"text": "I could not parse the search results: the search tool returned malformed JSON."}
            return {"text": "Facts: " + " ".join(h["body"] for h in hits[:1])}
        if "bypass" in user:
            return {"refusal": "I can't help with getting around the audit log."}
        notes = user.split("Notes:", 1)[-1].replace("Facts:", "").strip()
        return {"text": f"Hi! {notes} Let us know if there is anything else we can do."}

    return policy


# ------------------------------------------------------------------------------------ processes ---

def start_service(case_out, spec, llm_url, docs):
    sock = bound_socket()
    log = open(os.path.join(case_out, "parts", "agent-service.log"), "w")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([HERE, HARNESS, os.environ.get("PYTHONPATH", "")]))
    proc = FORKS.Popen(
        [sys.executable, os.path.join(HERE, "service.py"), "--out", case_out, "--fd", str(sock.fileno()),
         "--llm", llm_url, "--docs", docs, "--delegation", spec["delegation"]],
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
    for n in notes:
        if n["side"] == "delegate-caller" and n["agent"] not in stats["coordinator"]["delegates_to"]:
            stats["coordinator"]["delegates_to"].append(n["agent"])
    ran = {n["agent"] for n in notes if n["side"] == "agent-span"}
    return [stats[a] for a in AGENTS if a in ran]


def failure_truth(name, llm, notes):
    bad_tools = [n for n in notes if n["side"] == "tool" and n["outcome"] != "ok"]
    refusals = [call["n"] for call, reply, _ in llm.calls if "refusal" in reply]
    assert len(bad_tools) + len(refusals) <= 1, (bad_tools, refusals)
    if bad_tools:
        t = bad_tools[0]
        if t["outcome"] == "malformed":
            return {"span_name": "execute_tool search_docs", "span_id": t["ids"][1], "category": "tool",
                    "why": "search_docs returned (did not raise) invalid JSON: the ingest job had truncated the "
                           "stored payload of kb-103, which breaks off mid-string inside the result; the "
                           "researcher's next model turn could not "
                           "parse it and said so, and the coordinator gave up without asking the writer"}
        return {"span_name": "execute_tool search_docs", "span_id": t["ids"][1], "category": "retrieval",
                "why": f"search_docs raised {t['error']} (the query 'us-east-1' is read by FTS5 MATCH as a "
                       "column filter); the exception ended the researcher, ask_researcher, the coordinator, "
                       "and the request (HTTP 500)"}
    if refusals:
        rid = f"chatcmpl-standin-{refusals[0]}"
        spans = [n for n in notes if n["side"] == "llm-span" and n["response_id"] == rid]
        assert len(spans) == 1, spans
        return {"span_name": "chat stand-in", "span_id": spans[0]["span_id"], "category": "llm",
                "why": "the model refused the writer's request (message.refusal, finish_reason content_filter); "
                       "Pydantic AI raised ContentFilterError, which ended the writer, ask_writer, the "
                       "coordinator, and the request (HTTP 500)"}
    return None


def broken_hops_truth(case_out, notes):
    threads = {n["handoff"]: n for n in notes if n["side"] == "delegate-thread"}
    orphans = {n["handoff"]: n for n in notes if n["side"] == "agent-span" and n["handoff"]}
    spans = load_spans(case_out)
    by_id = {s["spanId"]: s for s in spans}
    request_traces = {s["traceId"] for s in spans if s.get("kind") == "SPAN_KIND_SERVER"}
    hops = []
    for caller in (n for n in notes if n["side"] == "delegate-caller"):
        key = caller["handoff"]
        if key is None:
            # awaited in the same task: the specialist's run span must be the tool span's child
            kids = [n for n in notes
                    if n["side"] == "agent-span" and n["parent_span_id"] == caller["parent_span_ids"][0]]
            assert len(kids) == 1 and kids[0]["agent"] == caller["agent"], ("no break expected", caller, kids)
            continue
        assert threads[key]["context"] is None, "the specialists thread had a context: no break happened"
        orphan = orphans[key]
        assert orphan["parent_span_id"] is None and orphan["trace_id"] != caller["trace_id"], orphan
        span = by_id[orphan["span_id"]]
        assert not span.get("parentSpanId")
        t0 = int(span["startTimeUnixNano"])
        active = [s for s in spans if s["service"] == "agent-service" and s["traceId"] in request_traces
                  and int(s["startTimeUnixNano"]) <= t0 <= int(s["endTimeUnixNano"])]
        traces = {s["traceId"] for s in active}
        innermost = [s["spanId"] for s in active if s["traceId"] == caller["trace_id"]
                     and not any(o.get("parentSpanId") == s["spanId"] for o in active)]
        unique = len(traces) == 1 and innermost == [caller["parent_span_ids"][0]]
        hops.append({
            "hop": f"pydantic-ai sync tool ask_{caller['agent']} -> ThreadPoolExecutor -> {caller['agent']}.run_sync",
            "orphan_trace_id": orphan["trace_id"],
            "orphan_span_id": orphan["span_id"],
            "parent_span_ids": caller["parent_span_ids"],
            "must_repair": unique,
            "kinds": ["orphan_root", "lost_context"],
            "why": (f"{len(traces)} request trace(s) of agent-service had a span in flight when the orphan "
                    "started" + (" (only the caller's: one candidate by time in the one service instance)"
                                 if unique else ", so time does not single the caller out")
                    + "; no ID is shared (the orphan's gen_ai.conversation.id / gen_ai.agent.call.id are its "
                      "own, session.id is gone with the baggage). Content does match: the caller's "
                      "execute_tool gen_ai.tool.call.result equals the orphan's final_result, and its "
                      "gen_ai.tool.call.arguments hold the orphan's user prompt (pydantic_ai.all_messages)"),
        })
    return hops


def run_case(name, spec, out_root):
    case_out = record.case_dir(os.path.abspath(os.path.join(out_root, name)))
    for f in os.listdir(os.path.join(case_out, "parts")):
        os.remove(os.path.join(case_out, "parts", f))
    tmp = tempfile.mkdtemp(prefix="pydantic-ai-docs-")
    docs = os.path.join(tmp, "docs.sqlite")
    build_docs_index(docs)
    with StandIn(make_policy(spec)) as llm:
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
        ok = r["status"] == 200
        assert ok or name in ("pydantic_ai_retrieval_error", "pydantic_ai_refusal"), (name, r)
    truth = {
        "case": name, "suite": SUITE, "description": spec["description"],
        "versions": record.versions("pydantic-ai-slim", "openai", "opentelemetry-sdk", "fastapi",
                                    "opentelemetry-instrumentation-fastapi", "opentelemetry-instrumentation-requests",
                                    "opentelemetry-processor-baggage"),
        "healthy": spec["healthy"],
        "agents": agents_truth(llm, notes),
        "failure": failure_truth(name, llm, notes),
        "sessions": len(spec["sessions"]),
        "requests": expected,
    }
    log_text = open(os.path.join(case_out, "parts", "agent-service.log")).read()
    if "Traceback" in log_text:  # the service logs nothing else unless something unexpected broke
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
