"""RabbitMQ (pika and aio-pika) between an orchestrator agent service and a research worker, all
real processes on a real broker: `make.py --out DIR` writes DIR/<case>/{spans.jsonl,truth.json}.
The broker's address comes from AGENTRACE_AMQP_URL (`scripts/services.sh env`).

Processes of each case:
  this driver          the users (concurrent HTTP requests, one session each) and the LLM stand-in
  orchestrator.py      WSGI service (OpenTelemetry WSGI middleware) with pika, or
  orchestrator_aio.py  aiohttp.web service (aiohttp-server instrumentation) with aio-pika:
                       plans with the LLM, hands each `research` tool call to the worker as an
                       RPC over RabbitMQ (reply_to + correlation_id) and waits for the reply
  router.py            (one case) a router agent between them that re-publishes each job
  worker.py            pika BlockingConnection consumer, or
  worker_aio.py        aio-pika consumer: runs the research agent (an LLM call) and replies

Cases (see CASES): healthy with pika (a reply queue per call) and with aio-pika (one callback
queue per service, concurrent worker); an uninstrumented publisher; a router that re-publishes
without the headers; a worker whose LLM call runs on a thread pool without the context; the
RPC tutorial's shared reply queue, healthy and with replies sent on an uninstrumented channel;
and an aio-pika worker configured with B3 propagation while the orchestrator sends W3C.

Ground truth comes from the notes every side writes while running (the IDs current at each
hand-off, read from the live context; the PRODUCER span from the instrumentation's publish hook
or from the headers it injected), joined by the message's correlation_id.
"""

import argparse
import glob
import json
import os
import shutil
import signal
import subprocess
import sys
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
HARNESS = os.path.join(os.path.dirname(HERE), "harness")
sys.path.insert(0, HARNESS)

import record  # noqa: E402
from driver import InconsistentRun, ask_at_once, dump_logs, hop, record_cases, stop, wait_for_file  # noqa: E402
from forkserver import ForkServer  # noqa: E402
from llm_standin import StandIn  # noqa: E402
from research import SESSIONS, policy  # noqa: E402

AMQP_URL = os.environ.get("AGENTRACE_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2f")
SUITE = "rabbitmq"
# What the case's processes import, once for every case (harness/forkserver.py starts them);
# no OpenTelemetry: each process sets it up after the fork in its own environment (one worker
# runs with OTEL_PROPAGATORS=b3multi).
PRELOAD = ["aio_pika", "aiohttp.web", "aiormq", "openai", "pika", "pika.adapters.blocking_connection",
           "wsgiref.simple_server"]
FORKS = None  # the suite's ForkServer, while main() runs
VERSIONS = ("pika", "aio-pika", "aiormq", "opentelemetry-sdk", "opentelemetry-instrumentation-pika",
            "opentelemetry-instrumentation-aio-pika", "opentelemetry-instrumentation-wsgi",
            "opentelemetry-instrumentation-aiohttp-server", "opentelemetry-instrumentation-openai-v2",
            "opentelemetry-processor-baggage", "opentelemetry-propagator-b3", "openai", "aiohttp")


# ------------------------------------------------------------------------------- processes ---


def forget_queues(queues):
    """Deletes the case's queues from the shared broker (hygiene only)."""
    try:
        import pika

        conn = pika.BlockingConnection(pika.URLParameters(AMQP_URL))
        ch = conn.channel()
        for q in queues:
            ch.queue_delete(queue=q)
        conn.close()
    except Exception as e:  # noqa: BLE001
        sys.stderr.write(f"could not delete queues {queues}: {e!r}\n")


def run_processes(case_dir, spec, llm, sessions):
    """Starts the case's services (callees first), sends the users' requests, stops them all."""
    tag = f"{os.path.basename(case_dir)}.{uuid.uuid4().hex[:8]}"
    queues = {"JOB_QUEUE": f"research.{tag}", "ROUTER_QUEUE": f"router.{tag}"}
    tmp = os.path.join(case_dir, "parts")
    os.makedirs(tmp, exist_ok=True)
    logs, procs = {}, []
    try:
        port = None
        for name, script, extra in spec["services"]:
            ready = os.path.join(tmp, f"{name}.ready")
            env = dict(os.environ)
            env.update({
                "PYTHONPATH": os.pathsep.join([HERE, HARNESS]),
                "CORPUS_CASE_DIR": case_dir,
                "AGENTRACE_AMQP_URL": AMQP_URL,
                "LLM_BASE_URL": llm.base_url,
                "READY_FILE": ready,
                "JOB_QUEUE": queues["JOB_QUEUE"],
                "ROUTER_QUEUE": queues["ROUTER_QUEUE"],
            })
            env.update({k: str(v) for k, v in extra.items()})
            if name == "orchestrator" and spec.get("via_router"):
                env["JOB_QUEUE"] = queues["ROUTER_QUEUE"]
            logs[name] = open(os.path.join(tmp, f"{name}.log"), "w")
            proc = FORKS.Popen([sys.executable, os.path.join(HERE, script)], cwd=HERE, env=env,
                               stdout=logs[name], stderr=subprocess.STDOUT, start_new_session=True)
            procs.append(proc)
            value = wait_for_file(ready, proc, name)
            if name == "orchestrator":
                port = int(value)

        return ask_at_once(port, sessions)
    except Exception:
        dump_logs(logs)
        raise
    finally:
        # The orchestrator first (it joins its request threads, so its SERVER spans end), then
        # the router and the worker, which finish the message they handle (a CONSUMER span ends
        # when its callback returns, after the reply was sent).
        for p in reversed(procs):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
            stop(p)
        for f in logs.values():
            f.close()
        forget_queues(list(queues.values()))
        for path in glob.glob(os.path.join(tmp, "*.ready")) + glob.glob(os.path.join(tmp, "*.log")):
            os.remove(path)


# ----------------------------------------------------------------------------------- truth ---

def attr_value(v):
    for k in ("stringValue", "intValue", "boolValue", "doubleValue"):
        if k in v:
            return v[k]
    return None


def parts_spans(case_dir):
    """The spans exported, flattened (for checks and for counting candidates)."""
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
                                "attrs": {a["key"]: attr_value(a["value"]) for a in s.get("attributes", [])},
                            }
    return out


def by_event(notes, event, key="key"):
    out = {}
    for n in notes:
        if n["event"] == event:
            if n[key] in out:
                raise RuntimeError(f"two {event} notes for {n[key]}")
            out[n[key]] = n
    return out


def events(notes, event):
    return [n for n in notes if n["event"] == event]


SKEW_NS = 100_000_000  # allow 100 ms when comparing times


def check_healthy(spans, notes):
    """Every span's parent arrived, every root is an orchestrator SERVER span, and every CONSUMER
    span is the child of the span whose context its message carried."""
    for s in spans.values():
        if s["parent"] and s["parent"] not in spans:
            raise InconsistentRun(f"healthy case: {s['name']} names a parent that did not arrive")
        if not s["parent"] and not (s["service"] == "orchestrator" and s["kind"] == "SPAN_KIND_SERVER"):
            raise RuntimeError(f"healthy case: {s['service']} span {s['name']} is a root")
    for n in events(notes, "task") + events(notes, "reply"):
        consumer, sent = n["consumer"], n["sent"]
        if consumer is None or sent is None:
            raise RuntimeError(f"healthy case: {n['event']} {n['key']} has no CONSUMER span or no context")
        c = spans[consumer[1]]
        if (c["trace"], c["parent"]) != tuple(sent):
            raise RuntimeError(f"healthy case: {n['event']} {n['key']}: the CONSUMER is not the child of the "
                               f"context its message carried")


def truth_healthy(spans, notes):
    check_healthy(spans, notes)
    return []


def is_root(spans, ids, what):
    s = spans.get(ids[1]) if ids else None
    if s is None:
        raise RuntimeError(f"{what}: no span")
    if s["parent"]:
        raise RuntimeError(f"{what}: {s['name']} is not a root")
    return s


def carriers(spans, value, orphan):
    """Spans of other traces that carry `value` as a message key (messaging.message.id or
    messaging.conversation_id, which the pika and aio-pika instrumentations fill from the
    AMQP message_id and correlation_id properties)."""
    o = spans[orphan[1]]
    return [s for s in spans.values() if s["trace"] != o["trace"]
            and value in (s["attrs"].get("messaging.message.id"), s["attrs"].get("messaging.conversation_id"))]


def truth_uninstrumented_publisher(spans, notes):
    publishes = by_event(notes, "publish")
    hops = []
    for t in sorted(events(notes, "task"), key=lambda n: spans[n["consumer"][1]]["start"]):
        c = is_root(spans, t["consumer"], "uninstrumented publisher: the task's CONSUMER")
        if t["sent"] is not None:
            raise RuntimeError("uninstrumented publisher: the message carried a context")
        others = carriers(spans, t["message_id"], t["consumer"])
        if others:
            raise RuntimeError(f"uninstrumented publisher: other spans carry the message id: {others}")
        why = (f"the orchestrator has no pika instrumentation: no PRODUCER span, no traceparent, and none of its "
               f"spans carries the message_id {t['message_id']} or the correlation_id the CONSUMER "
               f"`{c['name']}` records (messaging.message.id, messaging.conversation_id); no baggage arrived, so "
               f"no session.id either; net.peer.name on the CONSUMER is the broker's. A CONSUMER root with an "
               f"unmatched message id and no other evidence looks exactly like a message published from outside "
               f"the data (a script, another system): undetectable from the spans, no pairing")
        hops.append(hop(f"rabbitmq job {t['key']}", t["consumer"], publishes[t["key"]]["chain"], False, why,
                        ["orphan_root"], detectable=False, message_id=t["message_id"]))
    return hops


def truth_router(spans, notes):
    relays = by_event(notes, "relay")
    hops = []
    for t in sorted(events(notes, "task"), key=lambda n: spans[n["consumer"][1]]["start"]):
        c = is_root(spans, t["consumer"], "router: the worker's CONSUMER")
        relay = relays[t["key"]]
        if t["sent"] is not None or relay["sent"] is None:
            raise RuntimeError("router: the worker's message carried a context, or the router's did not")
        router_consumer = relay["chain"][-1]
        if spans[router_consumer[1]]["kind"] != "SPAN_KIND_CONSUMER":
            raise RuntimeError("router: the relay's outer span is not its CONSUMER span")
        others = carriers(spans, t["message_id"], t["consumer"])
        consumers = [s for s in others if s["kind"] == "SPAN_KIND_CONSUMER"]
        traces = {s["trace"] for s in others}
        unique = len(consumers) == 1 and consumers[0]["span"] == router_consumer[1] and len(traces) == 1
        if not unique:
            raise RuntimeError(f"router: unexpected carriers of {t['message_id']}: {[s['name'] for s in others]}")
        why = (f"the router re-published the job without its headers on an uninstrumented channel, so the "
               f"worker's CONSUMER `{c['name']}` is a root; it carries messaging.message.id={t['message_id']} "
               f"(the router copied the AMQP message_id), which exactly one trace also carries: on the "
               f"orchestrator's PRODUCER `{next(s['name'] for s in others if s['kind'] == 'SPAN_KIND_PRODUCER')}` "
               f"(destination the router's queue, not the worker's) and on the router's CONSUMER "
               f"`{spans[router_consumer[1]]['name']}`, the one span that received that message before the "
               f"worker did: a key both sides carry, so the pairing is unique (the router's `route job` span "
               f"was current at the re-publish, its CONSUMER span encloses it)")
        hops.append(hop(f"rabbitmq job {t['key']} via router", t["consumer"], relay["chain"], True, why,
                        ["orphan_root"], message_id=t["message_id"]))
    return hops


def enclosing_in_instance(spans, orphan, orphan_traces):
    """Other traces with in-process work (not CLIENT, not PRODUCER) of the orphan's own service
    that was open when it started and still open at its end, give or take 100 ms."""
    o = spans[orphan]
    return sorted({s["trace"] for s in spans.values()
                   if s["service"] == o["service"] and s["trace"] != o["trace"]
                   and s["trace"] not in orphan_traces
                   and s["kind"] not in ("SPAN_KIND_CLIENT", "SPAN_KIND_PRODUCER")
                   and s["start"] <= o["start"] <= s["end"] and s["end"] + SKEW_NS >= o["end"]})


def truth_pool(spans, notes):
    handoffs = by_event(notes, "handoff")
    roots = [n for n in events(notes, "pool_span") if n["parent"] is None]
    if len(roots) != len(handoffs):
        raise RuntimeError(f"pool: {len(handoffs)} hand-offs, {len(roots)} pool roots")
    orphan_traces = {n["span"][0] for n in roots}
    hops = []
    for n in sorted(roots, key=lambda n: spans[n["span"][1]]["start"]):
        o = is_root(spans, n["span"], "pool: the pool thread's first span")
        busy = enclosing_in_instance(spans, n["span"][1], orphan_traces)
        unique = len(busy) == 1
        why = (f"the pool thread starts with an empty context, so the OpenAI instrumentation's `{o['name']}` "
               f"span is a root of the worker; it carries nothing of its caller (no session.id: the baggage "
               f"stayed in the consumer callback's context); {len(busy)} other trace(s) had in-process spans "
               f"of the same worker instance open at its start and still open at its end (within 100 ms; the "
               f"worker handles one message at a time)"
               + (", so time and instance single out the parent" if unique
                  else ", so time and instance do not single out the parent"))
        hops.append(hop(f"ThreadPoolExecutor.submit(summarise) for job {n['key']}", n["span"],
                        handoffs[n["key"]]["chain"], unique, why, ["orphan_root", "lost_context"],
                        candidates_by_time=len(busy)))
    return hops


def truth_reply_without_context(spans, notes):
    sent = by_event(notes, "reply_publish")
    tasks = by_event(notes, "task")
    hops = []
    for r in sorted(events(notes, "reply"), key=lambda n: spans[n["consumer"][1]]["start"]):
        c = is_root(spans, r["consumer"], "reply without context: the reply's CONSUMER")
        if r["sent"] is not None or c["attrs"].get("messaging.conversation_id") != r["key"]:
            raise RuntimeError("reply without context: the reply carried a context, or no correlation id")
        chain = sent[r["key"]]["chain"]
        worker_consumer = tasks[r["key"]]["consumer"]
        others = carriers(spans, r["key"], r["consumer"])
        traces = {s["trace"] for s in others}
        if len(traces) != 1 or worker_consumer[1] not in {s["span"] for s in others} or chain != [worker_consumer]:
            raise RuntimeError(f"reply without context: unexpected carriers of {r['key']}: "
                               f"{[(s['service'], s['name']) for s in others]}")
        why = (f"the worker replied on a channel its pika instrumentation does not cover (it instrumented only "
               f"the channel it consumes on), so the orchestrator's reply CONSUMER `{c['name']}` is a root of "
               f"the shared reply queue's consumer thread; it carries messaging.conversation_id={r['key']} (the "
               f"AMQP correlation_id, no message_id), which exactly one other trace carries: the request's "
               f"PRODUCER in the orchestrator (destination the worker's queue) and the worker's CONSUMER that "
               f"received it and was current when the reply was sent: a key both sides carry, one trace, so "
               f"the pairing is unique (the RPC tutorial's reply: the correlation_id is the request's)")
        hops.append(hop(f"rabbitmq reply {r['key']}", r["consumer"], chain, True, why, ["orphan_root"]))
    return hops


def truth_b3_worker(spans, notes):
    publishes = by_event(notes, "publish")
    sent = by_event(notes, "reply_publish")
    hops = []
    for t in sorted(events(notes, "task"), key=lambda n: spans[n["consumer"][1]]["start"]):
        c = is_root(spans, t["consumer"], "b3 worker: the task's CONSUMER")
        chain = publishes[t["key"]]["chain"]
        producer = spans[chain[0][1]]
        if producer["kind"] != "SPAN_KIND_PRODUCER" or t["sent"] != chain[0]:
            raise RuntimeError("b3 worker: the span current at publish is not the PRODUCER whose context was sent")
        others = carriers(spans, t["message_id"], t["consumer"])
        if [s["span"] for s in others] != [producer["span"]]:
            raise RuntimeError(f"b3 worker: unexpected carriers of {t['message_id']}: {[s['name'] for s in others]}")
        why = (f"the worker's propagator is B3 (OTEL_PROPAGATORS=b3multi) and the orchestrator sent W3C "
               f"traceparent/baggage headers, so the worker's CONSUMER `{c['name']}` is a root; it carries "
               f"messaging.message.id={t['message_id']}, and so does exactly one span of the data, the "
               f"orchestrator's PRODUCER `{producer['name']}`: a key both sides carry (note aio-pika names the "
               f"PRODUCER's messaging.destination '{producer['attrs'].get('messaging.destination')}', "
               f"'<exchange>,<routing key>' with the default exchange '', and the CONSUMER's "
               f"'{c['attrs'].get('messaging.destination')}', the routing key)")
        hops.append(hop(f"rabbitmq job {t['key']}", t["consumer"], chain, True, why, ["orphan_root"],
                        message_id=t["message_id"]))
    for r in sorted(events(notes, "reply"), key=lambda n: spans[n["consumer"][1]]["start"]):
        c = is_root(spans, r["consumer"], "b3 worker: the reply's CONSUMER")
        chain = sent[r["key"]]["chain"]
        producer = spans[chain[0][1]]
        if producer["kind"] != "SPAN_KIND_PRODUCER" or r["sent"] is None:
            raise RuntimeError("b3 worker: the span current at the reply is not a PRODUCER, or no B3 headers")
        others = carriers(spans, r["key"], r["consumer"])
        producers = [s for s in others if s["kind"] == "SPAN_KIND_PRODUCER"]
        # The request's PRODUCER carries the correlation id too (with its own message id, which
        # outranks it), in another trace and to another destination: the worker's queue.
        to_reply_queue = [s for s in producers
                          if s["attrs"].get("messaging.destination", "").split(",")[-1]
                          == c["attrs"].get("messaging.destination")]
        if [s["span"] for s in to_reply_queue] != [producer["span"]]:
            raise RuntimeError(f"b3 worker: unexpected carriers of {r['key']}: {[s['name'] for s in others]}")
        why = (f"the worker's reply carries B3 headers and the orchestrator reads W3C only, so the orchestrator's "
               f"reply CONSUMER `{c['name']}` is a root; it carries messaging.conversation_id={r['key']} (the "
               f"correlation_id), as does the worker's reply PRODUCER `{producer['name']}` (and the request's "
               f"PRODUCER, which also carries its own messaging.message.id and was sent to the worker's queue, not "
               f"to this reply queue): the key and the queue single out the reply's PRODUCER. Its "
               f"messaging.message.id={c['attrs'].get('messaging.message.id')} matches no span: the reply was "
               f"published without a message_id and aiormq's basic_publish generated one after the "
               f"instrumentation had built the PRODUCER span from the message's properties")
        hops.append(hop(f"rabbitmq reply {r['key']}", r["consumer"], chain, True, why, ["orphan_root"]))
    return hops


PIKA = [("worker", "worker.py", {"WORKER_PIKA_OTEL": "all"}),
        ("orchestrator", "orchestrator.py", {"ORCH_PIKA_OTEL": 1, "ORCH_REPLY": "per_request", "ORCH_MESSAGE_ID": 1})]
AIO = [("worker", "worker_aio.py", {}), ("orchestrator", "orchestrator_aio.py", {})]


def with_env(services, name, **env):
    return [(n, s, dict(e, **env) if n == name else e) for n, s, e in services]


CASES = [
    {
        "case": "rabbitmq_pika_healthy_concurrent_sessions",
        "description": ("3 concurrent user sessions on an orchestrator WSGI service each hand 1-2 research jobs to a "
                        "pika worker over RabbitMQ as RPCs (a BlockingConnection, an exclusive reply queue and a "
                        "consumer per call; message_id and correlation_id set); pika instrumentation on both "
                        "sides, context and baggage flow both ways"),
        "services": PIKA,
        "truth": truth_healthy,
    },
    {
        "case": "rabbitmq_aio_pika_healthy_async_agents",
        "description": ("3 concurrent user sessions on an aiohttp.web orchestrator each hand 1-2 research jobs to an "
                        "aio-pika worker (prefetch 4, jobs handled concurrently) as RPCs over one callback queue "
                        "(aio-pika's RPC tutorial); aio-pika instrumentation on both sides"),
        "services": AIO,
        "truth": truth_healthy,
    },
    {
        "case": "rabbitmq_pika_uninstrumented_publisher",
        "description": ("as the pika healthy case, but the orchestrator has no pika instrumentation: the jobs carry "
                        "no traceparent, so each worker CONSUMER span is a root that carries a message_id no other "
                        "span carries"),
        "services": with_env(PIKA, "orchestrator", ORCH_PIKA_OTEL=0),
        "truth": truth_uninstrumented_publisher,
    },
    {
        "case": "rabbitmq_pika_router_drops_headers",
        "description": ("the orchestrator (pika, instrumented) sends each job to a router agent, which re-publishes "
                        "it to the worker's queue with new properties (message_id, correlation_id, reply_to; no "
                        "headers) on a channel its per-channel instrumentation does not cover; the worker's "
                        "CONSUMER spans are roots that share the message id with the router's CONSUMER spans"),
        "services": [PIKA[0], ("router", "router.py", {}), PIKA[1]],
        "via_router": True,
        "truth": truth_router,
    },
    {
        "case": "rabbitmq_pika_worker_loses_context_in_thread_pool",
        "description": ("instrumented on both sides, but the worker's agent hands its LLM call to a "
                        "ThreadPoolExecutor and waits for it; the pool thread starts with an empty context, so each "
                        "OpenAI chat span is a root of the worker while its job's CONSUMER and agent spans are open"),
        "services": with_env(PIKA, "worker", WORKER_POOL=1),
        "truth": truth_pool,
    },
    {
        "case": "rabbitmq_pika_rpc_shared_reply_queue_healthy",
        "description": ("the RabbitMQ RPC tutorial's client in the orchestrator: one exclusive reply queue consumed "
                        "on a thread of its own, 3 sessions' 5 requests (up to 3 in flight at once), replies matched by "
                        "correlation_id (no message_id); pika instrumentation on both sides, every reply CONSUMER "
                        "span is the child of the worker's reply PRODUCER"),
        "services": with_env(PIKA, "orchestrator", ORCH_REPLY="shared", ORCH_MESSAGE_ID=0),
        "truth": truth_healthy,
    },
    {
        "case": "rabbitmq_pika_rpc_reply_without_context",
        "description": ("the shared reply queue of the previous case, but the worker instrumented only the channel "
                        "it consumes on (PikaInstrumentor.instrument_channel) and replies on a second channel: the "
                        "replies carry no traceparent, so each reply CONSUMER span of the orchestrator's reply "
                        "thread is a root carrying the correlation_id as messaging.conversation_id"),
        "services": [("worker", "worker.py", {"WORKER_PIKA_OTEL": "consume_channel"}),
                     ("orchestrator", "orchestrator.py",
                      {"ORCH_PIKA_OTEL": 1, "ORCH_REPLY": "shared", "ORCH_MESSAGE_ID": 0})],
        "truth": truth_reply_without_context,
    },
    {
        "case": "rabbitmq_aio_pika_b3_worker",
        "description": ("the aio-pika case, but the worker runs with OTEL_PROPAGATORS=b3multi while the orchestrator "
                        "sends and reads W3C traceparent: each job's worker CONSUMER span is a root carrying the "
                        "job's message_id, which the orchestrator's PRODUCER carries too; each reply's CONSUMER "
                        "span is a root carrying the correlation_id the worker's reply PRODUCER carries"),
        "services": with_env(AIO, "worker", OTEL_PROPAGATORS="b3multi"),
        "truth": truth_b3_worker,
    },
]


def run_case(out, spec):
    case_dir = os.path.join(out, spec["case"])
    shutil.rmtree(case_dir, ignore_errors=True)
    record.case_dir(case_dir)
    with StandIn(spec.get("policy", policy)) as llm:
        run_processes(case_dir, spec, llm, spec.get("sessions", SESSIONS))
    spans = parts_spans(case_dir)
    notes = record.notes(case_dir)
    hops = spec["truth"](spans, notes)
    truth = {
        "case": spec["case"], "suite": SUITE, "description": spec["description"],
        "versions": record.versions(*VERSIONS),
        "healthy": not hops, "broken_hops": hops,
    }
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
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    with ForkServer(PRELOAD, env=dict(env, PYTHONPATH=os.pathsep.join([HERE, HARNESS])), cwd=HERE) as FORKS:
        record_cases(CASES, run_case, args.out, args.case)


if __name__ == "__main__":
    main()
