"""Celery (Redis broker and result backend) between an orchestrator service and a research
worker, both real processes: `make.py --out DIR` writes DIR/<case>/{spans.jsonl,truth.json}.

Processes of each case:
  this driver        the users (3 concurrent HTTP requests, one session each) and the LLM stand-in
  orchestrator.py    WSGI service (OpenTelemetry WSGI middleware), plans with the LLM, delegates
                     each `research` tool call to Celery and waits for the result
  celery worker      `celery -A worker_main worker --pool threads`, runs `research.run`, which
                     calls the LLM (OpenAI instrumentation)

Cases (see CASES): healthy with 3 concurrent sessions; an uninstrumented worker (3 concurrent
sessions, then a single session); a task that loses its context in a ThreadPoolExecutor inside
the worker; an uninstrumented producer; and a healthy send_task-by-name variant whose PRODUCER
spans end before the message is sent; and a healthy variant whose
wait for the result is a span beside the one that sent the task (the time it waits is the
worker's).

Ground truth comes from the notes both sides write while running (the IDs current at each
hand-off, read from the live context), joined by the Celery task id.
"""

import argparse
import glob
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
HARNESS = os.path.join(os.path.dirname(HERE), "harness")
sys.path.insert(0, HARNESS)

import record  # noqa: E402
from driver import InconsistentRun, ask_at_once, dump_logs, hop, record_cases, stop, wait_for_file  # noqa: E402
from forkserver import ForkServer  # noqa: E402
from llm_standin import StandIn  # noqa: E402
from research import SESSIONS, policy  # noqa: E402

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:16379/0")
SUITE = "celery"
# What the case's processes import, once for every case (harness/forkserver.py starts them).
PRELOAD = ["celery", "celery.app.trace", "celery.apps.worker", "celery.backends.redis", "celery.bin.celery",
           "celery.concurrency.thread", "celery.signals", "celery.worker.consumer", "kombu.transport.redis",
           "openai", "opentelemetry.instrumentation.celery", "opentelemetry.instrumentation.openai_v2",
           "opentelemetry.instrumentation.wsgi", "opentelemetry.processor.baggage", "opentelemetry.sdk.trace",
           "wsgiref.simple_server"]
FORKS = None  # the suite's ForkServer, while main() runs
VERSIONS = ("celery", "kombu", "redis", "opentelemetry-sdk", "opentelemetry-instrumentation-celery",
            "opentelemetry-instrumentation-wsgi", "opentelemetry-instrumentation-openai-v2",
            "opentelemetry-processor-baggage", "openai")


def slow_research_policy(call):
    """As `policy`, but the research model takes 0.4 s to answer (a slow model, so the worker's
    call is what holds each request up while the orchestrator waits)."""
    if not call["tool_names"]:
        time.sleep(0.4)
    return policy(call)


# ------------------------------------------------------------------------------- processes ---

def env_for(case_dir, queue, llm, **extra):
    env = dict(os.environ)
    env.update({
        "PYTHONPATH": os.pathsep.join([HERE, HARNESS]),
        "CORPUS_CASE_DIR": case_dir,
        "CELERY_QUEUE": queue,
        "REDIS_URL": REDIS_URL,
        "LLM_BASE_URL": llm.base_url,
    })
    env.update({k: str(v) for k, v in extra.items()})
    return env


def forget_queue(queue):
    """Removes what kombu left in the shared Redis for this case's queue (results expire)."""
    try:
        import redis

        client = redis.Redis.from_url(REDIS_URL)
        client.delete(queue, f"_kombu.binding.{queue}", f"_kombu.binding_permanent.{queue}")
        client.close()
    except Exception as e:  # noqa: BLE001  (hygiene only)
        sys.stderr.write(f"could not clean queue {queue}: {e!r}\n")


def run_processes(case_dir, worker_env, orch_env, llm, sessions):
    """Starts the worker and the orchestrator, sends the users' requests, stops both."""
    queue = f"research.{os.path.basename(case_dir)}.{uuid.uuid4().hex[:8]}"
    tmp = os.path.join(case_dir, "parts")
    os.makedirs(tmp, exist_ok=True)
    ready = os.path.join(tmp, "worker.ready")
    port_file = os.path.join(tmp, "orchestrator.port")
    logs = {}
    procs = []
    try:
        logs["worker"] = open(os.path.join(tmp, "worker.log"), "w")
        worker = FORKS.Popen(
            [sys.executable, "-m", "celery", "-A", "worker_main", "worker", "--pool", "threads",
             "--concurrency", "4", "--loglevel", "WARNING", "--without-gossip", "--without-mingle",
             "--without-heartbeat", "-n", f"research-{uuid.uuid4().hex[:6]}@%h"],
            cwd=HERE, env=env_for(case_dir, queue, llm, WORKER_READY_FILE=ready, **worker_env),
            stdout=logs["worker"], stderr=subprocess.STDOUT, start_new_session=True)
        procs.append(worker)
        logs["orchestrator"] = open(os.path.join(tmp, "orchestrator.log"), "w")
        orch = FORKS.Popen(
            [sys.executable, os.path.join(HERE, "orchestrator.py")],
            cwd=HERE, env=env_for(case_dir, queue, llm, ORCH_PORT_FILE=port_file, **orch_env),
            stdout=logs["orchestrator"], stderr=subprocess.STDOUT, start_new_session=True)
        procs.append(orch)
        wait_for_file(ready, worker, "celery worker")
        port = int(wait_for_file(port_file, orch, "orchestrator"))

        return ask_at_once(port, sessions)
    except Exception:
        dump_logs(logs)
        raise
    finally:
        # Warm shutdowns, both at once: the worker finishes what it runs (a task's CONSUMER span
        # ends in task_postrun, after its result is already in the backend), the orchestrator
        # joins its request threads (a SERVER span ends after the response is sent).
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in procs:
            stop(p)
        for f in logs.values():
            f.close()
        forget_queue(queue)
        for name in ("worker.ready", "orchestrator.port", "worker.log", "orchestrator.log"):
            path = os.path.join(tmp, name)
            if os.path.exists(path):
                os.remove(path)


# ----------------------------------------------------------------------------------- truth ---

def parts_spans(case_dir):
    """The spans exported so far, flattened (for checks and for counting candidates)."""
    out = {}
    for path in glob.glob(os.path.join(case_dir, "parts", "spans-*.jsonl")):
        with open(path) as f:
            for line in f:
                req = json.loads(line)
                for rs in req["resourceSpans"]:
                    service = next(a["value"]["stringValue"] for a in rs["resource"]["attributes"]
                                   if a["key"] == "service.name")
                    for ss in rs["scopeSpans"]:
                        for s in ss["spans"]:
                            out[s["spanId"]] = {
                                "trace": s["traceId"], "span": s["spanId"], "parent": s.get("parentSpanId"),
                                "name": s["name"], "kind": s.get("kind"), "service": service,
                                "start": int(s["startTimeUnixNano"]), "end": int(s["endTimeUnixNano"]),
                            }
    return out


def by_event(notes, event, key):
    return {n[key]: n for n in notes if n["event"] == event}


def roots_by_trace(spans):
    return {s["trace"]: s for s in spans.values() if not s["parent"]}


SKEW_NS = 100_000_000  # across processes, allow 100 ms of clock skew when comparing times


def callers_in_flight(spans, orphan, service, name):
    """Traces of `service` (other than the orphan's) that had started a span named `name` (the
    hand-off) before the orphan started and whose root was still open then: every request that
    could have sent it, for all the spans tell (no key, no address). Within one such request the
    latest hand-off before the orphan is the one that sent it (the earlier ones were answered)."""
    o = spans[orphan]
    roots = roots_by_trace(spans)
    return sorted({s["trace"] for s in spans.values()
                   if s["service"] == service and s["name"] == name and s["trace"] != o["trace"]
                   and s["start"] <= o["start"] + SKEW_NS and s["trace"] in roots
                   and roots[s["trace"]]["start"] <= o["start"] + SKEW_NS
                   and roots[s["trace"]]["end"] + SKEW_NS >= o["start"]})


def enclosing_in_instance(spans, orphan, orphan_traces):
    """Other traces with in-process work (not CLIENT, not PRODUCER) of the orphan's own service
    instance that was open when it started and still open at its end, give or take 100 ms (a
    span that ended a few ms before the orphan is no proof of a different parent: the task may
    not wait for every future); traces rooted at another orphan of the case are left out (they
    are no parent to join to)."""
    o = spans[orphan]
    return sorted({s["trace"] for s in spans.values()
                   if s["service"] == o["service"] and s["trace"] != o["trace"]
                   and s["trace"] not in orphan_traces
                   and s["kind"] not in ("SPAN_KIND_CLIENT", "SPAN_KIND_PRODUCER")
                   and s["start"] <= o["start"] <= s["end"] and s["end"] + SKEW_NS >= o["end"]})


def check_healthy(spans):
    """Every span's parent arrived and every worker span is in an orchestrator request's trace."""
    orch_traces = {s["trace"] for s in spans.values() if s["service"] == "orchestrator"}
    for s in spans.values():
        if s["parent"] and s["parent"] not in spans:
            raise InconsistentRun(f"healthy case: {s['name']} names a parent that did not arrive")
        if s["service"] == "research-worker" and (not s["parent"] or s["trace"] not in orch_traces):
            raise RuntimeError(f"healthy case: worker span {s['name']} is a root or in its own trace")


def truth_healthy(case_dir, spans, notes):
    check_healthy(spans)
    publishes = by_event(notes, "publish", "task_id")
    for t in (n for n in notes if n["event"] == "task"):
        sent = publishes[t["task_id"]]["traceparent"].split("-")
        consumer = spans[t["consumer"][1]]
        if consumer["trace"] != sent[1] or consumer["parent"] != sent[2]:
            raise RuntimeError("healthy case: the CONSUMER is not the child of the traceparent sent")
    return []


def truth_uninstrumented_worker(case_dir, spans, notes):
    publishes = by_event(notes, "publish", "task_id")
    hops = []
    for t in sorted((n for n in notes if n["event"] == "task"), key=lambda n: spans[n["agent"][1]]["start"]):
        if t["consumer"] is not None or t["traceparent"] is None:
            raise RuntimeError("uninstrumented worker: expected no consumer span and a traceparent header")
        orphan = t["agent"]
        if spans[orphan[1]]["parent"]:
            raise RuntimeError("uninstrumented worker: the task's span is not a root")
        chain = publishes[t["task_id"]]["chain"]  # PRODUCER, execute_tool, invoke_agent, SERVER
        if spans[chain[0][1]]["kind"] != "SPAN_KIND_PRODUCER" or chain[0][1] not in t["traceparent"]:
            raise RuntimeError("uninstrumented worker: the span current at publish is not the PRODUCER sent")
        senders = callers_in_flight(spans, orphan[1], "orchestrator", "apply_async/research.run")
        unique = len(senders) == 1
        why = (f"no key and no address: the worker has no Celery instrumentation, so no span of it carries "
               f"the task id (messaging.message.id is only on the PRODUCER), nor session.id (no baggage "
               f"extracted), nor a peer address; by time, {len(senders)} orchestrator request(s) still open "
               f"had sent a PRODUCER apply_async/research.run before it started (within 100 ms of clock skew; "
               f"in each, the latest one before it)"
               + (", so time alone singles out the parent" if unique else ", so time does not single out the parent"))
        hops.append(hop(f"celery task research.run {t['task_id']}", orphan, chain, unique, why,
                        ["orphan_root"], task_id=t["task_id"], candidates_by_time=len(senders)))
    return hops


def truth_thread(case_dir, spans, notes):
    handoffs = by_event(notes, "handoff", "key")
    orphan_traces = {n["orphan"][0] for n in notes if n["event"] == "thread"}
    hops = []
    for n in sorted((n for n in notes if n["event"] == "thread"), key=lambda n: spans[n["orphan"][1]]["start"]):
        if n["inherited"] is not None or spans[n["orphan"][1]]["parent"]:
            raise RuntimeError("thread case: the pool thread inherited a context")
        orphan = n["orphan"]
        chain = handoffs[n["key"]]["chain"]  # invoke_agent researcher, run/research.run
        busy = enclosing_in_instance(spans, orphan[1], orphan_traces)
        unique = len(busy) == 1
        why = (f"no key: the pool thread's span carries nothing of its caller (no session.id either: the "
               f"baggage stayed in the task's context); {len(busy)} other trace(s) had in-process spans of the "
               f"same worker instance open at its start and still open at its end (within 100 ms)"
               + (", so time and instance single out the parent" if unique
                  else ", so time and instance do not single out the parent"))
        hops.append(hop(f"ThreadPoolExecutor.submit(fetch_source) in task {n['key']}", orphan, chain, unique, why,
                        ["orphan_root", "lost_context"], candidates_by_time=len(busy)))
    return hops


def truth_uninstrumented_producer(case_dir, spans, notes):
    publishes = by_event(notes, "publish", "task_id")
    hops = []
    for t in sorted((n for n in notes if n["event"] == "task"), key=lambda n: spans[n["consumer"][1]]["start"]):
        if t["traceparent"] is not None or spans[t["consumer"][1]]["parent"]:
            raise RuntimeError("uninstrumented producer: the CONSUMER span has a parent")
        orphan = t["consumer"]
        chain = publishes[t["task_id"]]["chain"]  # execute_tool, invoke_agent, SERVER (no PRODUCER span)
        senders = callers_in_flight(spans, orphan[1], "orchestrator", "execute_tool research")
        unique = len(senders) == 1
        why = (f"no key on the caller's side: the orchestrator has no Celery instrumentation, so it has no "
               f"PRODUCER span and none of its spans carries the task id the CONSUMER has as "
               f"messaging.message.id; no session.id on the worker (no baggage arrived), no peer address; "
               f"by time, {len(senders)} orchestrator request(s) still open had started an execute_tool "
               f"research span before it started (within 100 ms of clock skew)"
               + (", so time alone singles out the parent" if unique else ", so time does not single out the parent"))
        # A CONSUMER root whose message id no span of the data carries, with no session and no
        # address, looks exactly like a task started by beat, cron or a system outside the data:
        # nothing in the spans says a caller existed, so it is neither joinable nor detectable.
        why += ("; a CONSUMER root with an unmatched message id and no other evidence looks exactly like "
                "a task sent from outside the data (beat, cron): undetectable from the spans")
        hops.append(hop(f"celery task research.run {t['task_id']}", orphan, chain, False, why,
                        ["orphan_root"], task_id=t["task_id"], candidates_by_time=len(senders),
                        detectable=False))
    return hops


def truth_waits(spans, notes):
    """Each `wait result` span of the orchestrator (noted live, with its task id) and the work it
    waited for on the other side of the queue: the task's `invoke_agent researcher` span and its
    model call, from the worker's note of the same task id. The wait is a sibling of the PRODUCER
    span, so the work is no descendant of it. `overlap_ms`: how long the work ran while the wait
    was open (what "where the time went" owes the researcher rather than the waiting orchestrator)."""
    tasks = by_event(notes, "task", "task_id")
    children = {}
    for s in spans.values():
        children.setdefault(s["parent"], []).append(s)
    waits = []
    for w in (n for n in notes if n["event"] == "wait"):
        wait = spans[w["span"][1]]
        task = tasks[w["task_id"]]
        agent = spans[task["agent"][1]]
        consumer = spans[task["consumer"][1]]
        producer = spans[consumer["parent"]]
        if producer["kind"] != "SPAN_KIND_PRODUCER":
            raise RuntimeError("the task's consumer span has no PRODUCER parent")
        if producer["parent"] != wait["parent"]:
            # The instrumentation left the PRODUCER span's context current after publishing (see
            # `main`), so the wait opened under it: not the case's "beside" topology.
            raise InconsistentRun("the wait is not a sibling of the PRODUCER span that sent its task")
        calls = [c for c in children.get(agent["span"], []) if c["name"].startswith("chat")]
        if len(calls) != 1:
            raise RuntimeError(f"expected the researcher's one model call, got {calls}")
        overlap = min(wait["end"], agent["end"]) - max(wait["start"], agent["start"])
        waits.append({"waiter_span_id": wait["span"], "task_id": w["task_id"], "work_agent": "researcher",
                      "work_span_ids": [agent["span"], calls[0]["span"]],
                      "overlap_ms": round(max(overlap, 0) / 1e6, 3)})
    if not waits:
        raise RuntimeError("no wait was noted")
    return waits


CASES = [
    {
        "case": "celery_healthy_concurrent_sessions",
        "description": ("3 concurrent user sessions on an orchestrator WSGI service each delegate 1-2 "
                        "research.run tasks over Celery/Redis to a threads-pool worker process and wait for "
                        "the results; Celery instrumentation on both sides, context and baggage flow"),
        "worker": {"WORKER_CELERY_OTEL": 1}, "orch": {"ORCH_CELERY_OTEL": 1, "ORCH_SEND": "import"},
        "truth": truth_healthy,
    },
    {
        "case": "celery_uninstrumented_worker",
        "description": ("as the healthy case, but the worker process has no Celery instrumentation (it keeps "
                        "its TracerProvider and the OpenAI instrumentation): each task's invoke_agent "
                        "researcher span is a root of the worker, started just after a PRODUCER span"),
        "worker": {"WORKER_CELERY_OTEL": 0}, "orch": {"ORCH_CELERY_OTEL": 1, "ORCH_SEND": "import"},
        "truth": truth_uninstrumented_worker,
    },
    {
        "case": "celery_uninstrumented_worker_single_session",
        "description": ("the uninstrumented worker of the previous case, with one user session delegating two "
                        "research.run tasks one after the other: each worker root has exactly one PRODUCER "
                        "that could have sent it"),
        "worker": {"WORKER_CELERY_OTEL": 0}, "orch": {"ORCH_CELERY_OTEL": 1, "ORCH_SEND": "import"},
        "sessions": SESSIONS[:1],
        "truth": truth_uninstrumented_worker,
    },
    {
        "case": "celery_worker_loses_context_in_task_thread",
        "description": ("instrumented on both sides, but the task fans out to a ThreadPoolExecutor inside the "
                        "worker; the pool threads start with an empty context, so each fetch_source span is "
                        "a root of the worker while its task's spans are open"),
        "worker": {"WORKER_CELERY_OTEL": 1, "RESEARCH_PARALLEL_SOURCES": 1},
        "orch": {"ORCH_CELERY_OTEL": 1, "ORCH_SEND": "import"},
        "truth": truth_thread,
    },
    {
        "case": "celery_uninstrumented_producer",
        "description": ("the orchestrator has no Celery instrumentation, the worker has: no traceparent in "
                        "the task headers, so each CONSUMER run/research.run span is a root with "
                        "messaging.message.id and no PRODUCER span to match it"),
        "worker": {"WORKER_CELERY_OTEL": 1}, "orch": {"ORCH_CELERY_OTEL": 0, "ORCH_SEND": "import"},
        "truth": truth_uninstrumented_producer,
    },
    {
        "case": "celery_send_task_by_name",
        "description": ("healthy, instrumented on both sides, but the orchestrator enqueues with "
                        "app.send_task('research.run') without importing the worker's tasks: the task is not "
                        "in its registry, so the instrumentation keeps no handle on its PRODUCER span, which "
                        "ends (garbage-collected) inside before_task_publish, ~0.1 ms long and before the "
                        "message is sent; the CONSUMER is still its child"),
        "worker": {"WORKER_CELERY_OTEL": 1}, "orch": {"ORCH_CELERY_OTEL": 1, "ORCH_SEND": "send_task"},
        "truth": truth_healthy,
    },
    {
        "case": "celery_wait_result_beside_send",
        "description": ("healthy, instrumented on both sides, 3 concurrent sessions; the orchestrator sends each "
                        "research task, then waits for its result in a `wait result` span beside the PRODUCER "
                        "span (so the worker's spans are no descendants of the wait), and the research model "
                        "takes 0.4 s: the time the orchestrator waits belongs to the researcher's model call"),
        "worker": {"WORKER_CELERY_OTEL": 1},
        "orch": {"ORCH_CELERY_OTEL": 1, "ORCH_SEND": "import", "ORCH_WAIT": "beside"},
        "policy": slow_research_policy,
        "truth": truth_healthy,
        "waits": True,
    },
]


def run_case(out, spec):
    case_dir = os.path.join(out, spec["case"])
    shutil.rmtree(case_dir, ignore_errors=True)
    record.case_dir(case_dir)
    with StandIn(spec.get("policy", policy)) as llm:
        run_processes(case_dir, spec["worker"], spec["orch"], llm, spec.get("sessions", SESSIONS))
    spans = parts_spans(case_dir)
    notes = record.notes(case_dir)
    hops = spec["truth"](case_dir, spans, notes)
    truth = {
        "case": spec["case"], "suite": SUITE, "description": spec["description"],
        "versions": record.versions(*VERSIONS),
        "healthy": not hops, "broken_hops": hops,
    }
    if spec.get("waits"):
        truth["waits"] = truth_waits(spans, notes)
    record.finish(case_dir, truth)
    return len(spans), hops


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--case", action="append", help="only these cases")
    args = ap.parse_args()
    args.out = os.path.abspath(args.out)  # the processes of a case run in this folder
    os.makedirs(args.out, exist_ok=True)
    global FORKS
    with ForkServer(PRELOAD, env=dict(os.environ, PYTHONPATH=os.pathsep.join([HERE, HARNESS])), cwd=HERE) as FORKS:
        # opentelemetry-instrumentation-celery now and then leaves a PRODUCER span unended, or its
        # context current after the publish, when concurrent requests publish the same task: that
        # run is not the case it claims to be (a healthy case with a span that never arrived, a
        # wait opened under the PRODUCER span instead of beside it), so it is recorded again,
        # never scored. Three failed runs in a row are a real failure.
        record_cases(CASES, run_case, args.out, args.case)


if __name__ == "__main__":
    main()
