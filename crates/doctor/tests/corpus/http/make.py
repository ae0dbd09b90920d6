"""Records the http suite: agent services talking HTTP, each its own process.

    python make.py --out DIR [--only CASE ...]

Every case starts its services (services.py) as processes of their own, forked by a
zygote process that has imported the heavy libraries once (as a pre-forking server does;
each service sets up OpenTelemetry after the fork), each on a free port; it sends its
users' requests to the orchestrator's POST /chat (as a user's plain HTTP client would:
no trace context), stops every process and writes
DIR/<case>/spans.jsonl and truth.json through record.py. The ground truth is what the
services noted at run time: on the client side the CLIENT span the httpx/aiohttp
instrumentation had just started for the hop (read in its request hook) and the spans
enclosing it; on the server side the span that was current in the handler and the parent
the SDK gave it. Whether a broken hop can be repaired is judged from the recorded spans
(how many CLIENT spans addressed to the orphan's server were open when it started).
"""

import argparse
import concurrent.futures
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import time
import urllib.parse
import urllib.request
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "harness"))

import record  # noqa: E402
from llm_standin import StandIn  # noqa: E402

SUITE = "http"
SERVICES = os.path.join(HERE, "services.py")
PACKAGES = (
    "opentelemetry-sdk", "opentelemetry-instrumentation-httpx", "opentelemetry-instrumentation-aiohttp-client",
    "opentelemetry-instrumentation-aiohttp-server", "opentelemetry-instrumentation-fastapi",
    "opentelemetry-instrumentation-asgi", "opentelemetry-instrumentation-openai-v2",
    "opentelemetry-processor-baggage", "opentelemetry-propagator-b3", "httpx", "aiohttp", "fastapi",
    "starlette", "uvicorn", "openai",
)
KINDS = ["orphan_root", "trace_discontinuity"]


def policy(call):
    return {"text": "noted: " + " ".join(call["last_user"].split()[:12])}


# ------------------------------------------------------------------------------ processes ---

class Zygote:
    """services.py --zygote: it imports the heavy libraries once and forks each service of
    each case on request (as a pre-forking server does); the services are its children."""

    def __init__(self):
        self.proc = subprocess.Popen([sys.executable, SERVICES, "--zygote"], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True)

    def spawn(self, request, timeout=120.0):
        self.proc.stdin.write(json.dumps(request) + "\n")
        self.proc.stdin.flush()
        r, _, _ = select.select([self.proc.stdout], [], [], timeout)
        line = self.proc.stdout.readline() if r else ""
        if not line:
            raise RuntimeError(f"the zygote did not answer (exit code {self.proc.poll()})")
        return json.loads(line)

    def close(self):
        self.proc.stdin.close()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def alive(pid):
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False


class Service:
    """One service process of a case. Its listening socket is bound before it starts, so
    its address is known at once and every process of a case can start together; it
    writes a ready file once it serves."""

    def __init__(self, zygote, case_dir, name, role, cfg, env):
        self.name = name
        tag = f"{name}-{cfg.get('instance', '0')}"
        self.log_path = os.path.join(case_dir, "parts", f"log-{tag}.txt")
        self.ready_file = os.path.join(case_dir, "parts", f"ready-{tag}")
        cfg = dict(cfg, out=case_dir, ready_file=self.ready_file)
        reply = zygote.spawn({"role": role, "cfg": cfg, "env": env, "log": self.log_path})
        self.pid, self.port = reply["pid"], reply["port"]
        self.signalled = False

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    def wait_ready(self, timeout=60.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if os.path.exists(self.ready_file):
                return self
            if not alive(self.pid):
                break
            time.sleep(0.02)
        self.stop()
        log = open(self.log_path).read() if os.path.exists(self.log_path) else ""
        raise RuntimeError(f"{self.name} did not start:\n{log}")

    def terminate(self):
        if not self.signalled and alive(self.pid):
            self.signalled = True
            os.kill(self.pid, signal.SIGTERM)

    def stop(self, timeout=10.0):
        self.terminate()
        deadline = time.monotonic() + timeout
        while alive(self.pid):
            if time.monotonic() > deadline:
                os.kill(self.pid, signal.SIGKILL)
                deadline = float("inf")
            time.sleep(0.02)


T0 = time.monotonic()


def debug(msg):
    if os.environ.get("HTTP_SUITE_DEBUG"):
        print(f"[{time.monotonic() - T0:6.2f}] {msg}", file=sys.stderr, flush=True)


def post_json(url, body, timeout=30):
    req = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        return json.loads(resp.read())


# ------------------------------------------------------------------------ spans and truth ---

def load_spans(case_dir):
    """Every span the case's processes exported, flattened, with its resource's service."""
    out = []
    parts = os.path.join(case_dir, "parts")
    for name in sorted(os.listdir(parts)):
        if not name.startswith("spans-"):
            continue
        with open(os.path.join(parts, name)) as f:
            for line in f:
                if not line.strip():
                    continue
                for rs in json.loads(line).get("resourceSpans", []):
                    res = {a["key"]: a["value"] for a in rs.get("resource", {}).get("attributes", [])}
                    service = res.get("service.name", {}).get("stringValue")
                    instance = res.get("service.instance.id", {}).get("stringValue")
                    for ss in rs.get("scopeSpans", []):
                        for sp in ss.get("spans", []):
                            attrs = {}
                            for a in sp.get("attributes", []):
                                v = a["value"]
                                attrs[a["key"]] = next(iter(v.values())) if v else None
                            out.append({
                                "trace": sp["traceId"], "span": sp["spanId"], "parent": sp.get("parentSpanId") or None,
                                "name": sp["name"], "kind": sp.get("kind"), "service": service, "instance": instance,
                                "start": int(sp["startTimeUnixNano"]), "end": int(sp["endTimeUnixNano"]),
                                "attrs": attrs,
                            })
    return out


def _hostport(url):
    u = urllib.parse.urlsplit(url)
    if not u.hostname:
        return None
    return (u.hostname, str(u.port or {"http": 80, "https": 443}.get(u.scheme, "")))


def _said(a, *keys):
    return " + ".join(f"{k}={a[k]!r}" for k in keys)


def client_address(sp):
    """(host, port) a CLIENT span was addressed to, and the attributes it was read from."""
    a = sp["attrs"]
    if a.get("server.address") and a.get("server.port"):
        return (a["server.address"], str(a["server.port"])), _said(a, "server.address", "server.port")
    for key in ("url.full", "http.url"):
        if a.get(key):
            return _hostport(a[key]), _said(a, key)
    return None, None


def server_address(sp):
    """(host, port) a SERVER span says it was reached at, and the attributes it was read from.
    (The ASGI instrumentation in http/dup mode writes server.address as "host:port", from
    the Host header.)"""
    a = sp["attrs"]
    if a.get("server.address") and a.get("server.port"):
        return (str(a["server.address"]).split(":")[0], str(a["server.port"])), _said(a, "server.address", "server.port")
    if a.get("http.url"):
        return _hostport(a["http.url"]), _said(a, "http.url")
    if a.get("http.host") and a.get("net.host.port"):
        host = a["http.host"].split(":")[0]
        return (host, str(a["net.host.port"])), _said(a, "http.host", "net.host.port")
    if a.get("http.server_name") and ":" in str(a["http.server_name"]):
        h, p = str(a["http.server_name"]).rsplit(":", 1)
        return (h, p), _said(a, "http.server_name")
    return None, None


def judge(spans, orphan_id, true_client_id):
    """Whether the recorded spans single out the orphan's parent by time and address."""
    by_id = {s["span"]: s for s in spans}
    orphan = by_id[orphan_id]
    addr, addr_key = server_address(orphan) if orphan["kind"] == "SPAN_KIND_SERVER" else (None, None)
    open_clients = [s for s in spans
                    if s["kind"] == "SPAN_KIND_CLIENT" and s["trace"] != orphan["trace"]
                    and s["start"] <= orphan["start"] <= s["end"]]
    kind = orphan["kind"].replace("SPAN_KIND_", "")
    if addr is None:
        why = (f"no address: the orphan is an {kind} root with no HTTP attribute (the route was excluded, "
               f"so no SERVER span says it was served over HTTP); {len(open_clients)} CLIENT span(s) of other "
               f"traces were open when it started, so time alone "
               f"{'points at one caller' if len(open_clients) == 1 else 'does not single out a caller'}, "
               f"but nothing both sides carry ties them: detection (or a suggestion) only")
        return False, why, len(open_clients), 0
    same = [s for s in open_clients if client_address(s)[0] == addr]
    no_addr = sum(1 for s in open_clients if client_address(s)[0] is None)
    others = len(open_clients) - len(same) - no_addr
    where = f"{addr[0]}:{addr[1]}"
    if len(same) == 1:
        assert same[0]["span"] == true_client_id, "a unique candidate must be the true parent"
        ckey = client_address(same[0])[1]
        why = (f"time and address: exactly one CLIENT span addressed to {where} ({ckey}) was open when the "
               f"orphan SERVER span ({addr_key}) started")
        if others:
            why += f"; {others} other CLIENT span(s) addressed elsewhere were open then"
        if no_addr:
            why += f"; {no_addr} CLIENT span(s) with no address (openai-v2 chat spans) were open then"
        return True, why, len(open_clients), len(same)
    why = (f"ambiguous: {len(same)} CLIENT spans addressed to {where} were open when the orphan SERVER span "
           f"({addr_key}) started; time and address do not single out the parent, and the orphan "
           f"carries no session.id (the baggage was not extracted either)")
    return False, why, len(open_clients), len(same)


def build_truth(case, case_dir, spans):
    notes = record.notes(case_dir)
    sessions = {n["session"]: n for n in notes if n["side"] == "session"}
    clients = {n["hop"]: n for n in notes if n["side"] == "client"}
    servers = {n["hop"]: n for n in notes if n["side"] == "server"}
    if set(clients) != set(servers) or len(clients) != sum(len(s["plan"]) for s in case["sessions"]):
        raise RuntimeError(f"{case['name']}: hops seen by clients {sorted(clients)} and servers {sorted(servers)}")
    by_id = {sp["span"]: sp for sp in spans}
    broken = []
    for hop in sorted(clients):
        c, s = clients[hop], servers[hop]
        sess = sessions[hop.rsplit("/", 1)[0]]
        client_trace, client_span = c["client"]
        # The span current in the handler, or (FastAPI's native telemetry: its endpoint span)
        # the outermost span of the request in that process, which the hop's SERVER span is.
        first = by_id[s["first"][1]]
        assert first["parent"] == s["first_parent"]
        while first["parent"] in by_id and by_id[first["parent"]]["instance"] == first["instance"]:
            first = by_id[first["parent"]]
        orphan_trace, orphan_span = first["trace"], first["span"]
        joined = first["parent"] == client_span and orphan_trace == client_trace
        if case["healthy"]:
            if not joined:
                raise RuntimeError(f"{case['name']}: hop {hop} lost its context in a healthy case: {c} {s}")
            continue
        if first["parent"] is not None or orphan_trace == client_trace:
            raise RuntimeError(f"{case['name']}: hop {hop} kept its context in a broken case: {c} {s}")
        must, why, n_open, n_same = judge(spans, orphan_span, client_span)
        broken.append({
            "hop": f"{c['library']} POST {s['service']}/research (session {hop.rsplit('/', 1)[0]}, call {hop.rsplit('/', 1)[1]})",
            "orphan_trace_id": orphan_trace,
            "orphan_span_id": orphan_span,
            "parent_span_ids": [client_span, c["step"][1], sess["agent"][1], sess["edge"][1]],
            "must_repair": must,
            "why": why,
            "kinds": KINDS,
        })
    return {
        "case": case["name"],
        "suite": SUITE,
        "description": case["description"],
        "versions": record.versions(*PACKAGES),
        "healthy": case["healthy"],
        "broken_hops": broken,
    }


# ---------------------------------------------------------------------------------- cases ---

def session_id():
    return "sess-" + uuid.uuid4().hex[:12]


def seq(target, n):
    """n calls to one target, one after the other (a phase each)."""
    return [{"phase": k, "target": target} for k in range(n)]


CASES = [
    {
        "name": "http_httpx_healthy",
        "description": "A FastAPI orchestrator agent (uvicorn, FastAPI instrumentation) asks a FastAPI researcher "
                       "agent three times, one after the other, with an instrumented httpx AsyncClient; the "
                       "researcher calls a FastAPI search service (instrumented aiohttp client) and the LLM "
                       "stand-in (openai client, openai-v2 instrumentation). Every hop carries traceparent and "
                       "baggage (session.id).",
        "healthy": True,
        "orchestrator": {"server": "fastapi", "client": "httpx"},
        "downstreams": {"researcher": {"server": "fastapi", "tracing": "instrumented", "search": True}},
        "sessions": [{"question": "compare tidal and wave energy costs", "plan": seq("researcher", 3)}],
    },
    {
        "name": "http_aiohttp_healthy",
        "description": "An aiohttp.web orchestrator agent (aiohttp-server instrumentation) asks an aiohttp.web "
                       "researcher agent twice with an instrumented aiohttp ClientSession; the researcher calls "
                       "a FastAPI search service and the LLM stand-in. Every hop carries its context.",
        "healthy": True,
        "orchestrator": {"server": "aiohttp", "client": "aiohttp"},
        "downstreams": {"researcher": {"server": "aiohttp", "tracing": "instrumented", "search": True}},
        "sessions": [{"question": "history of the lithium battery patents", "plan": seq("researcher", 2)}],
    },
    {
        "name": "http_concurrent_sessions_healthy",
        "description": "Three users' sessions at once: a FastAPI orchestrator (httpx client) asks one aiohttp.web "
                       "researcher (aiohttp-server instrumentation) twice per session, the sessions' calls "
                       "overlapping in time; session.id travels as baggage. Every hop carries its context.",
        "healthy": True,
        "orchestrator": {"server": "fastapi", "client": "httpx"},
        "downstreams": {"researcher": {"server": "aiohttp", "tracing": "instrumented", "work_s": 0.3}},
        "sessions": [{"question": q, "plan": seq("researcher", 2)} for q in (
            "grid storage options for small islands", "desalination energy demand per cubic metre",
            "heat pump efficiency in cold climates")],
    },
    {
        "name": "http_semconv_dup_healthy",
        "description": "Like the healthy cases, with OTEL_SEMCONV_STABILITY_OPT_IN=http/dup in every process: an "
                       "aiohttp.web orchestrator (aiohttp client) asks a FastAPI researcher, two sessions at once; "
                       "the HTTP spans carry both the old and the stable attribute names. Every hop carries its "
                       "context.",
        "healthy": True,
        "env": {"OTEL_SEMCONV_STABILITY_OPT_IN": "http/dup"},
        "orchestrator": {"server": "aiohttp", "client": "aiohttp"},
        "downstreams": {"researcher": {"server": "fastapi", "tracing": "instrumented", "work_s": 0.3}},
        "sessions": [{"question": q, "plan": seq("researcher", 2)} for q in (
            "offshore wind maintenance costs", "hydrogen storage in salt caverns")],
    },
    {
        "name": "http_fastapi_native_healthy",
        "description": "FastAPI's own (native) OpenTelemetry tracing, no instrumentation package on the server "
                       "side: a FastAPI orchestrator (httpx client, instrumented) asks a FastAPI researcher twice "
                       "per session, two sessions at once. FastAPI extracts traceparent and baggage itself. Every "
                       "hop carries its context.",
        "healthy": True,
        "orchestrator": {"server": "fastapi", "native": True, "client": "httpx"},
        "downstreams": {"researcher": {"server": "fastapi", "tracing": "native", "work_s": 0.3}},
        "sessions": [{"question": q, "plan": seq("researcher", 2)} for q in (
            "rooftop solar payback periods", "electric ferry battery sizing")],
    },
    {
        "name": "http_server_does_not_extract",
        "description": "A FastAPI orchestrator (httpx client, instrumented) asks an aiohttp.web researcher three "
                       "times, one after the other; the researcher has no server instrumentation but a "
                       "hand-written middleware that opens a SERVER span per request without extracting "
                       "traceparent, so each request's SERVER span is a root of its own trace.",
        "healthy": False,
        "orchestrator": {"server": "fastapi", "client": "httpx"},
        "downstreams": {"researcher": {"server": "aiohttp", "tracing": "handwritten"}},
        "sessions": [{"question": "solar panel recycling rates in europe", "plan": seq("researcher", 3)}],
    },
    {
        "name": "http_server_does_not_extract_concurrent",
        "description": "Three sessions at once: an aiohttp.web orchestrator (aiohttp client, instrumented) asks "
                       "two instances of the researcher service (same service.name, two ports), whose "
                       "hand-written middleware never extracts traceparent. The sessions' calls run in phases: "
                       "all three to instance A at once (ambiguous by time and address), one alone to B, twice "
                       "two at once to different instances (unique by address only), and two at once to B "
                       "(ambiguous).",
        "healthy": False,
        "orchestrator": {"server": "aiohttp", "client": "aiohttp"},
        "downstreams": {
            "A": {"service": "researcher", "instance": "researcher-a", "server": "aiohttp", "tracing": "handwritten",
                  "work_s": 0.3},
            "B": {"service": "researcher", "instance": "researcher-b", "server": "aiohttp", "tracing": "handwritten",
                  "work_s": 0.3},
        },
        # phase 0: all three to A at once (ambiguous); 1: one call, to B (unique); 2 and 3: two at
        # once, to different instances (unique by address only); 4: two at once to B (ambiguous)
        "sessions": [
            {"question": "carbon capture costs per tonne", "plan": [
                {"phase": 0, "target": "A"}, {"phase": 1, "target": "B"}, {"phase": 3, "target": "A"}]},
            {"question": "nuclear fusion timelines and funding", "plan": [
                {"phase": 0, "target": "A"}, {"phase": 2, "target": "A"}, {"phase": 3, "target": "B"},
                {"phase": 4, "target": "B"}]},
            {"question": "geothermal drilling depth limits", "plan": [
                {"phase": 0, "target": "A"}, {"phase": 2, "target": "B"}, {"phase": 4, "target": "B"}]},
        ],
    },
    {
        "name": "http_two_downstreams_concurrent",
        "description": "One session: a FastAPI orchestrator (httpx client) asks a researcher and a critic at the "
                       "same time, twice. Neither carries the context on: the researcher (aiohttp.web) has a "
                       "hand-written middleware that never extracts; the critic (FastAPI, instrumented) is "
                       "configured with OTEL_PROPAGATORS=b3multi and ignores traceparent. Each orphan SERVER "
                       "span starts while both CLIENT spans are open: only the address pairs them.",
        "healthy": False,
        "orchestrator": {"server": "fastapi", "client": "httpx"},
        "downstreams": {
            "researcher": {"server": "aiohttp", "tracing": "handwritten", "work_s": 0.3},
            "critic": {"service": "critic", "server": "fastapi", "tracing": "instrumented", "work_s": 0.3,
                       "env": {"OTEL_PROPAGATORS": "b3multi"}},
        },
        "sessions": [{"question": "tidal lagoon environmental impact", "plan": [
            {"phase": 0, "target": "researcher"}, {"phase": 0, "target": "critic"},
            {"phase": 1, "target": "researcher"}, {"phase": 1, "target": "critic"}]}],
    },
    {
        "name": "http_propagator_mismatch_semconv_dup",
        "description": "A FastAPI orchestrator (httpx client) asks an aiohttp.web researcher and a FastAPI critic, "
                       "one call after the other, with OTEL_SEMCONV_STABILITY_OPT_IN=http/dup everywhere. Both "
                       "downstreams use their server instrumentation (aiohttp-server; FastAPI) but are configured "
                       "with OTEL_PROPAGATORS=b3multi, so they ignore traceparent and baggage: their SERVER spans "
                       "are roots. (The FastAPI/ASGI instrumentation writes server.address as host:port here.)",
        "healthy": False,
        "env": {"OTEL_SEMCONV_STABILITY_OPT_IN": "http/dup"},
        "orchestrator": {"server": "fastapi", "client": "httpx"},
        "downstreams": {
            "researcher": {"server": "aiohttp", "tracing": "instrumented", "env": {"OTEL_PROPAGATORS": "b3multi"}},
            "critic": {"service": "critic", "server": "fastapi", "tracing": "instrumented",
                       "env": {"OTEL_PROPAGATORS": "b3multi"}},
        },
        "sessions": [{"question": "battery degradation in hot climates", "plan": [
            {"phase": 0, "target": "researcher"}, {"phase": 1, "target": "critic"},
            {"phase": 2, "target": "researcher"}, {"phase": 3, "target": "critic"}]}],
    },
    {
        "name": "http_server_route_excluded",
        "description": "An aiohttp.web orchestrator (aiohttp client) asks a FastAPI researcher twice; the "
                       "researcher's FastAPI instrumentation has /research in excluded_urls, so no SERVER span "
                       "is made and nothing is extracted: the handler's own agent span (INTERNAL) is a root.",
        "healthy": False,
        "orchestrator": {"server": "aiohttp", "client": "aiohttp"},
        "downstreams": {"researcher": {"server": "fastapi", "tracing": "excluded"}},
        "sessions": [{"question": "smart grid demand response programs", "plan": seq("researcher", 2)}],
    },
]


def run_case(case, out_root, llm, zygote):
    case_dir = os.path.join(out_root, case["name"])
    shutil.rmtree(case_dir, ignore_errors=True)
    record.case_dir(case_dir)
    env = dict(case.get("env", {}))
    started = []
    try:
        search = None
        if any(d.get("search") for d in case["downstreams"].values()):
            search = Service(zygote, case_dir, "search", "search", {}, env)
            started.append(search)
        downs = {}
        for target, d in case["downstreams"].items():
            cfg = {k: v for k, v in d.items() if k not in ("search", "env")}
            cfg.update(llm=llm.base_url, agent=d.get("service", "researcher"))
            if d.get("search"):
                cfg["search"] = search.url
            downs[target] = Service(zygote, case_dir, d.get("service", "researcher"), "researcher", cfg,
                                    dict(env, **d.get("env", {})))
            started.append(downs[target])
        orch = Service(zygote, case_dir, "orchestrator", "orchestrator",
                       dict(case["orchestrator"], llm=llm.base_url, targets={t: s.url for t, s in downs.items()}),
                       env)
        started.append(orch)
        for s in started:
            s.wait_ready()
        debug(f"{case['name']}: services ready")
        sessions = [dict(s, session=session_id()) for s in case["sessions"]]
        if len(sessions) > 1:
            gate = {"name": uuid.uuid4().hex, "parties": len(sessions),
                    "phases": 1 + max(step["phase"] for s in sessions for step in s["plan"])}
            sessions = [dict(s, gate=gate) for s in sessions]
        with concurrent.futures.ThreadPoolExecutor(len(sessions)) as pool:
            answers = list(pool.map(lambda s: post_json(orch.url + "/chat", s), sessions))
        assert all(a["answer"] for a in answers)
        debug(f"{case['name']}: sessions answered")
        time.sleep(0.3)  # let every server finish its span after the last response
    finally:
        for s in reversed(started):
            s.terminate()
        for s in reversed(started):
            s.stop()
        debug(f"{case['name']}: stopped")
    spans = load_spans(case_dir)
    truth = build_truth(dict(case, sessions=sessions), case_dir, spans)
    for name in os.listdir(os.path.join(case_dir, "parts")):
        if name.startswith(("log-", "ready-")):
            os.remove(os.path.join(case_dir, "parts", name))
    record.finish(case_dir, truth)
    return truth, len(spans)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--only", nargs="*")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    t_all = time.monotonic()
    zygote = Zygote()
    try:
        with StandIn(policy) as llm:
            for case in CASES:
                if args.only and case["name"] not in args.only:
                    continue
                t0 = time.monotonic()
                truth, n = run_case(case, args.out, llm, zygote)
                repair = sum(h["must_repair"] for h in truth["broken_hops"])
                print(f"{case['name']}: {n} spans, {len(truth['broken_hops'])} broken hops ({repair} must_repair), "
                      f"{time.monotonic() - t0:.1f}s", flush=True)
    finally:
        zygote.close()
    print(f"http suite: {time.monotonic() - t_all:.1f}s", flush=True)


if __name__ == "__main__":
    main()
