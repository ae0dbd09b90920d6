"""The inprocess suite: context lost (or kept) inside one Python agent service.

    python make.py --out DIR          (PYTHONPATH must hold ../harness; scripts/corpus.sh sets it)

Each case starts the LLM stand-in, starts service.py (the agent service: aiohttp, one
TracerProvider, service.name research-agent) as its own process, sends it 1-3 users' requests
(some at once, from an uninstrumented client, as browsers do), stops it, and writes
DIR/<case>/spans.jsonl and truth.json. The truth comes from the notes both sides of every
hand-off wrote while the case ran (service.py: hand_off / received); whether the pairing is
unique in the spans (must_repair) is judged from the recorded spans' times, see `judge`.
"""

import argparse
import glob
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
HARNESS = os.path.join(os.path.dirname(HERE), "harness")
sys.path.insert(0, HARNESS)

import record  # noqa: E402
from forkserver import ForkServer  # noqa: E402
from llm_standin import StandIn  # noqa: E402

SUITE = "inprocess"
PACKAGES = (
    "opentelemetry-sdk", "opentelemetry-instrumentation-threading", "opentelemetry-instrumentation-asyncio",
    "opentelemetry-instrumentation-aiohttp-server", "opentelemetry-instrumentation-sqlite3",
    "opentelemetry-processor-baggage", "opentelemetry-instrumentation-openai-v2", "openai", "aiohttp",
)
KINDS = ["lost_context", "orphan_root"]

# Model latency of the stand-in, per model name (seconds): what makes requests overlap.
LATENCY = {"planner": 0.15, "writer": 0.12, "summarizer": 0.25, "reranker": 0.12, "drafter": 1.0}


# What the case's processes import, once for every case (harness/forkserver.py starts them): not
# OpenTelemetry, which service.py configures with OTEL_* variables it sets before importing it.
PRELOAD = ["aiohttp", "aiohttp.web", "httpx", "httpx2", "openai"]
FORKS = None  # the suite's ForkServer, while main() runs


def policy(call):
    time.sleep(LATENCY.get(call["model"], 0.05))
    if call["tool_names"] and call["last_tool"] is None:
        # Two parallel calls of the same tool, as models issue them.
        return {"tool_calls": [
            {"name": "search_kb", "arguments": {"query": "thread pool context"}},
            {"name": "search_kb", "arguments": {"query": "done callback thread"}},
        ]}
    words = [w for w in call["last_user"].split() if len(w) > 3][:8]
    return {"text": f"[{call['model']}] " + " ".join(words)}


# (session, question, mode, seconds after the first request)
CASES = {
    "inprocess_healthy": dict(
        description="An aiohttp agent service (session.id in baggage + BaggageSpanProcessor) fans out with "
                    "asyncio.gather, asyncio.to_thread and loop.run_in_executor on a ThreadPoolExecutor with "
                    "opentelemetry-instrumentation-threading (and -asyncio) installed; three sessions at once.",
        healthy=True,
        requests=[("s-ada", "How do thread pools treat context?", None, 0.0),
                  ("s-bo", "Does asyncio.to_thread copy the context?", None, 0.04),
                  ("s-cy", "Which callbacks lose the baggage session?", None, 0.08)],
    ),
    "inprocess_thread_pool_loses_context": dict(
        description="The same agent service without opentelemetry-instrumentation-threading: the retrieval job "
                    "and the sync OpenAI call submitted with loop.run_in_executor(ThreadPoolExecutor) start new "
                    "traces (no parent, no baggage session); two sessions overlap, a third runs alone.",
        healthy=False,
        requests=[("s-ada", "How do thread pools treat context?", None, 0.0),
                  ("s-bo", "Does asyncio.to_thread copy the context?", None, 0.05),
                  ("s-cy", "Which callbacks lose the baggage session?", None, 1.5)],
    ),
    "inprocess_thread_and_callback": dict(
        description="One request whose agent opens spans from lost contexts: a SQLite query in a plain "
                    "threading.Thread, a callback that thread schedules with loop.call_soon_threadsafe (runs on "
                    "the loop thread, in the worker's empty context), a Future.add_done_callback that runs on the "
                    "pool thread after a copy_context().run job, and a fire-and-forget threading.Thread that "
                    "outlives the request.",
        healthy=False,
        requests=[("s-ada", "Where do callbacks run and with which context?", None, 0.0)],
    ),
    "inprocess_concurrent_same_name": dict(
        description="The model asks for two parallel calls of the same tool (search_kb); both execute_tool spans "
                    "hand their blocking implementation to the loop's default executor, which drops the context: "
                    "two overlapping root spans named search_kb under two concurrent execute_tool search_kb spans.",
        healthy=False,
        requests=[("s-ada", "Search the knowledge base about context in pools and callbacks.", None, 0.0)],
    ),
    "inprocess_cross_session": dict(
        description="A long request (session s-ada, all async, healthy) is running when a short one (s-bo) "
                    "loses context twice: an awaited run_in_executor retrieval, and a fire-and-forget "
                    "ThreadPoolExecutor.submit(save_memory) that outlives its own request but not s-ada's.",
        healthy=False,
        requests=[("s-ada", "Write a full report on context propagation in Python services.", "deep", 0.0),
                  ("s-bo", "Does asyncio.to_thread copy the context?", "quick", 0.3)],
    ),
}


# ------------------------------------------------------------------ running a case -----------


def run_service(case, case_dir, llm_url, requests):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (HARNESS, os.environ.get("PYTHONPATH")) if p))
    env.pop("OTEL_SEMCONV_STABILITY_OPT_IN", None)
    proc = FORKS.Popen(
        [sys.executable, os.path.join(HERE, "service.py"), "--case", case, "--out", case_dir, "--llm", llm_url],
        stdout=subprocess.PIPE, text=True, env=env)
    try:
        ready = {}

        def read_ready():
            for line in proc.stdout:
                if line.startswith("READY "):
                    ready["port"] = int(line.split()[1])
                    return

        reader = threading.Thread(target=read_ready, daemon=True)
        reader.start()
        reader.join(60)
        if "port" not in ready:
            raise RuntimeError(f"{case}: the service did not start (exit code {proc.poll()})")
        url = f"http://127.0.0.1:{ready['port']}/agent/run"
        answers, errors = {}, []

        def send(session, question, mode, delay):
            time.sleep(delay)
            body = json.dumps({"session_id": session, "question": question, "mode": mode}).encode()
            req = urllib.request.Request(url, data=body, headers={"content-type": "application/json"})
            try:
                with urllib.request.urlopen(req, timeout=30) as resp:
                    answers[session] = json.load(resp)["answer"]
            except Exception as exc:  # noqa: BLE001
                errors.append(f"{session}: {exc}")

        senders = [threading.Thread(target=send, args=r) for r in requests]
        t0 = time.monotonic()
        for s in senders:
            s.start()
        for s in senders:
            s.join(max(1.0, 40 - (time.monotonic() - t0)))
        if errors or len(answers) != len(requests):
            raise RuntimeError(f"{case}: requests failed: {errors or 'timeout'}")
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(40)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    if proc.returncode != 0:
        raise RuntimeError(f"{case}: the service exited with {proc.returncode}")


# ------------------------------------------------------------------ reading what was recorded --


def load_spans(case_dir):
    """The spans the service exported (its parts), flattened, before `finish` merges them."""
    spans = {}
    for path in glob.glob(os.path.join(case_dir, "parts", "spans-*.jsonl")):
        with open(path) as f:
            for line in f:
                req = json.loads(line)
                for rs in req.get("resourceSpans", []):
                    res = {a["key"]: next(iter(a["value"].values())) for a in rs["resource"].get("attributes", [])}
                    for ss in rs.get("scopeSpans", []):
                        for s in ss.get("spans", []):
                            attrs = {a["key"]: next(iter(a["value"].values()), None) for a in s.get("attributes", [])}
                            spans[s["spanId"]] = dict(
                                trace=s["traceId"], id=s["spanId"], parent=s.get("parentSpanId") or None,
                                name=s["name"], kind=s.get("kind", "SPAN_KIND_INTERNAL"),
                                start=int(s["startTimeUnixNano"]), end=int(s["endTimeUnixNano"]),
                                instance=res.get("service.instance.id"), session=attrs.get("session.id"),
                                scope=ss.get("scope", {}).get("name"))
    return spans


def describe(s):
    return f"{s['name']} ({s['kind'].replace('SPAN_KIND_', '').lower()}, session {s['session'] or 'none'})"


def rival_text(rivals, parent_trace, spans):
    """The spans a wrong join could pick, grouped by whose work they are."""
    roots = {s["trace"]: s for s in spans.values() if s["parent"] is None}
    groups = {}
    for r in rivals:
        root = roots.get(r["trace"])
        if r["trace"] == parent_trace:
            key = "in its own request but not current at the hand-off"
        elif root is not None and root["kind"] == "SPAN_KIND_SERVER":
            key = f"of another request (session {root['session']})"
        else:
            key = f"of another trace whose root is {root['name'] if root else '?'} (itself a lost-context root)"
        groups.setdefault(key, set()).add(describe(r))
    return "; ".join(", ".join(sorted(v)) + " " + k for k, v in sorted(groups.items()))


def judge(orphan, chain_ids, spans):
    """must_repair and why: is the parent singled out by time in the orphan's own instance?

    Candidates are the spans of the same service.instance.id, in other traces than the orphan's,
    that are running when the orphan starts; CLIENT/PRODUCER spans are left out (no in-process
    work starts under an outbound call; their own parents are running too). The pairing is unique
    when every candidate is one of the spans current at the hand-off (any of them is a right
    parent) and one of those also encloses the orphan; otherwise a wrong join is possible.
    """
    o = orphan
    cands = [s for s in spans.values()
             if s["instance"] == o["instance"] and s["trace"] != o["trace"]
             and s["kind"] not in ("SPAN_KIND_CLIENT", "SPAN_KIND_PRODUCER")
             and s["start"] <= o["start"] <= s["end"]]
    rivals = [s for s in cands if s["id"] not in chain_ids]
    parents = [spans[i] for i in chain_ids if i in spans]
    enclosing = [p for p in parents if p["end"] >= o["end"]]
    if not enclosing:
        latest = max(parents, key=lambda p: p["end"])
        why = (f"not unique: the orphan outlives every span that was current at the hand-off (the latest, "
               f"{describe(latest)}, ends {(o['end'] - latest['end']) / 1e6:.0f} ms before it), so only its "
               f"start time ties it to its parent")
        if rivals:
            why += "; when it started its instance was also running " + rival_text(rivals, parents[0]["trace"], spans)
        return False, why, rivals
    if rivals:
        return False, ("not unique by time: when it started its instance was also running "
                       + rival_text(rivals, parents[0]["trace"], spans)
                       + "; the orphan carries no session.id (its baggage was lost with the context) and no key "
                         "ties it to its caller"), rivals
    return True, ("unique by time and address: every span of its service instance running when it started "
                  "is one of the spans current at the hand-off (" + ", ".join(describe(p) for p in parents)
                  + f"), and {describe(enclosing[0])} encloses it; no other request was in flight"), rivals


def build_truth(case, spec, case_dir):
    spans = load_spans(case_dir)
    notes = record.notes(case_dir)
    callers = {n["hop"]: n for n in notes if n["side"] == "caller"}
    callees = {n["hop"]: n for n in notes if n["side"] == "callee"}
    if set(callers) != set(callees):
        raise RuntimeError(f"{case}: hand-offs noted on one side only: {set(callers) ^ set(callees)}")
    hops, healthy_hops = [], 0
    for hop in sorted(callers):
        caller, callee = callers[hop], callees[hop]
        chain_ids = [sid for _, sid in caller["chain"]]
        orphan_id = callee["span"][1]
        orphan = spans.get(orphan_id)
        if orphan is None:
            raise RuntimeError(f"{case}: span {orphan_id} of hop {hop} was not exported")
        if orphan_id in chain_ids or orphan["name"] != callee["name"]:
            raise RuntimeError(f"{case}: hop {hop}: the receiving side noted no span of its own")
        if callee["parent"] is not None:
            # The context crossed: the receiving span is in the caller's trace.
            if callee["span"][0] != caller["chain"][0][0]:
                raise RuntimeError(f"{case}: hop {hop} has a parent in another trace")
            healthy_hops += 1
            continue
        if orphan["parent"] is not None or callee["before"] is not None:
            raise RuntimeError(f"{case}: hop {hop}: notes and spans disagree")
        must, why, rivals = judge(orphan, chain_ids, spans)
        hop = {
            "hop": f"{caller['what']} (session {caller['session']})",
            "orphan_trace_id": callee["span"][0], "orphan_span_id": orphan_id,
            "orphan_name": orphan["name"], "orphan_kind": orphan["kind"],
            "orphan_thread": callee["thread"], "caller_thread": caller["thread"],
            "parent_span_ids": chain_ids,
            "parent_names": [spans[i]["name"] for i in chain_ids if i in spans],
            "must_repair": must, "why": why,
            "rivals": [{"span_id": r["id"], "name": r["name"], "session": r["session"]} for r in rivals],
            "kinds": KINDS,
        }
        if not any(spans[i]["start"] <= orphan["start"] <= spans[i]["end"] for i in chain_ids if i in spans):
            # Fire-and-forget work whose thread started only after its whole request had ended (a
            # busy pool, a loaded machine): no span of its caller was running when it began, so it
            # looks exactly like work the instance schedules itself during another request, which
            # is healthy (redteam/inproc_oneoff_job_during_request_healthy). A finding is welcome,
            # not required.
            hop["detectable"] = False
            hop["why"] += ("; it started after every span of its request had ended, so nothing in the spans "
                           "says it had a caller: undetectable")
        hops.append(hop)
    if spec["healthy"] and hops:
        raise RuntimeError(f"{case}: context was lost in the healthy case: {[h['hop'] for h in hops]}")
    if not spec["healthy"] and not hops:
        raise RuntimeError(f"{case}: no hop lost its context")
    roots = [s for s in spans.values() if s["parent"] is None]
    requests = [s for s in roots if s["kind"] == "SPAN_KIND_SERVER"]
    if len(requests) != len(spec["requests"]) or len(roots) != len(requests) + len(hops):
        raise RuntimeError(f"{case}: unexpected roots: {[describe(r) for r in roots]}")
    return {
        "case": case, "suite": SUITE, "description": spec["description"],
        "versions": record.versions(*PACKAGES),
        "healthy": spec["healthy"], "broken_hops": hops,
        "hand_offs_kept": healthy_hops,
        "sessions": [r[0] for r in spec["requests"]],
    }


def run_case(case, spec, out):
    case_dir = os.path.join(out, case)
    shutil.rmtree(case_dir, ignore_errors=True)
    record.case_dir(case_dir)
    with StandIn(policy) as llm:
        run_service(case, case_dir, llm.base_url, [r for r in spec["requests"]])
    truth = build_truth(case, spec, case_dir)
    record.finish(case_dir, truth)
    print(f"{case}: {len(truth['broken_hops'])} broken hop(s) "
          f"({sum(h['must_repair'] for h in truth['broken_hops'])} must_repair), "
          f"{truth['hand_offs_kept']} kept", flush=True)


def record_cases():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("cases", nargs="*")
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    for case in a.cases or CASES:
        run_case(case, CASES[case], os.path.abspath(a.out))


def main():
    global FORKS
    with ForkServer(PRELOAD, cwd=HERE) as FORKS:
        record_cases()


if __name__ == "__main__":
    main()
