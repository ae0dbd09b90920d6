"""Records every case of the mcp2 suite: the official Python MCP SDK 2.3.0 (its built-in
OpenTelemetry: a CLIENT span per outbound request that injects W3C context into `params._meta`,
a SERVER span per inbound message parented on what it extracts from there), stdio and
streamable HTTP, an agent service calling a tool server.

    make.py --out DIR      writes DIR/<case>/spans.jsonl and DIR/<case>/truth.json

Processes of a case (each with its own TracerProvider and service.name):
    make.py          the driver, and the LLM stand-in (no spans)
    agent.py         "support-agent": request -> agent.step -> openai chat + MCP tool calls
    tools_server.py  "shop-tools": MCPServer; stdio (spawned by the agent) or HTTP (uvicorn)
    meta_proxy.py    an untraced sanitizing gateway that drops non-spec `_meta` keys (one case)
    gateway.py       "mcp-gateway": an MCPServer forwarding with a hand-rolled JSON-RPC client (one case)

Ground truth comes from notes the processes write while they run (record.note): the span
current on each side of each hand-off, and a read-only tap of every span start (_suite.TruthTap)
used to walk a caller's parent chain. Nothing is hard-coded and no span is edited.
"""

import argparse
import glob
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

HERE = os.path.dirname(os.path.abspath(__file__))
HARNESS = os.path.join(os.path.dirname(HERE), "harness")
sys.path.insert(0, HARNESS)

import record  # noqa: E402
from forkserver import ForkServer  # noqa: E402
from llm_standin import StandIn  # noqa: E402
from serving import bound_socket  # noqa: E402

SUITE = "mcp2"
VERSIONS = ("mcp", "opentelemetry-sdk", "opentelemetry-processor-baggage", "openai",
            "opentelemetry-instrumentation-openai-v2", "httpx2", "uvicorn", "starlette")

# What each user asks, and the tool calls the LLM stand-in answers with, one list per LLM turn.
PLANS = {
    "Where is my order 1001, what is its total in EUR, and when will it arrive?": [
        [("lookup_order", {"order_id": "1001"})],
        [("convert_currency", {"amount": 129.9, "currency": "EUR"}), ("shipping_eta", {"order_id": "1001"})],
    ],
    "What is the total of order 1001 in EUR?": [
        [("lookup_order", {"order_id": "1001"})],
        [("convert_currency", {"amount": 129.9, "currency": "EUR"})],
    ],
    "What is the total of order 1002 in GBP?": [
        [("lookup_order", {"order_id": "1002"})],
        [("convert_currency", {"amount": 54.25, "currency": "GBP"})],
    ],
    "When will order 1003 arrive?": [
        [("lookup_order", {"order_id": "1003"})],
        [("shipping_eta", {"order_id": "1003"})],
    ],
}
ONE_USER = [("alice", "Where is my order 1001, what is its total in EUR, and when will it arrive?")]
THREE_USERS = [("alice", "What is the total of order 1001 in EUR?"),
               ("bob", "What is the total of order 1002 in GBP?"),
               ("carol", "When will order 1003 arrive?")]


def policy(call):
    plan = PLANS[call["last_user"]]
    turn = sum(1 for m in call["messages"] if m.get("role") == "assistant" and m.get("tool_calls"))
    if turn < len(plan):
        return {"tool_calls": [{"name": n, "arguments": a} for n, a in plan[turn]]}
    return {"text": f"Done: {call['last_tool']}"}


CASES = [
    dict(name="mcp2_stdio_healthy", transport="stdio", mode="legacy", sessions="startup", users=ONE_USER,
         description="An agent service spawns the MCP tool server as a stdio subprocess at start-up (legacy initialize "
                     "handshake and tools/list outside any request), then serves one user request: request span, "
                     "agent steps with chat completions, three tools/call on the server (convert_currency opens a "
                     "child span in asyncio.to_thread); W3C context flows through params._meta."),
    dict(name="mcp2_http_healthy", transport="http", mode="auto", sessions="startup", users=ONE_USER,
         description="The same agent over streamable HTTP (the server a separate uvicorn process on a free port, "
                     "protocol 2026-07-28: server/discover instead of initialize, one POST per request), one user "
                     "request, three tool calls; context flows."),
    dict(name="mcp2_http_concurrent_sessions_healthy", transport="http", mode="auto", sessions="per-request",
         users=THREE_USERS,
         description="Three user requests at once, each opening its own MCP session (separate ClientSessions, so "
                     "the JSON-RPC request ids 1,2,3,4 repeat in every session) over streamable HTTP, calling the "
                     "same tools at the same time; session.id in baggage; context flows."),
    dict(name="mcp2_stdio_tool_executor_broken", transport="stdio", mode="legacy", sessions="startup", users=ONE_USER,
         server_args=["--fx-executor"],
         description="As mcp2_stdio_healthy, but the server's convert_currency runs its blocking work with "
                     "loop.run_in_executor (no contextvars copy, unlike asyncio.to_thread): the fx.convert span it "
                     "opens there is a root of a new trace in the server process."),
    dict(name="mcp2_stdio_server_otel_off_broken", transport="stdio", mode="legacy", sessions="startup", users=ONE_USER,
         server_args=["--no-sdk-otel"],
         description="As mcp2_stdio_healthy, but the tool server opted out of the SDK's telemetry (its "
                     "OpenTelemetryMiddleware dropped from mcp.middleware, as the SDK documents): no SERVER spans, "
                     "nothing reads the traceparent the client put in params._meta, and the one span a tool opens "
                     "(fx.convert) is a root; the agent side is unchanged."),
    dict(name="mcp2_http_client_thread_broken", transport="http", mode="auto", sessions="startup", users=ONE_USER,
         client_thread=True,
         description="As mcp2_http_healthy, but the agent runs tools through a synchronous tool adapter in a worker "
                     "thread (loop.run_in_executor) that bridges to the async MCP session with "
                     "asyncio.run_coroutine_threadsafe: each 'MCP send tools/call' CLIENT span is a root (the "
                     "server spans still hang under it, via _meta)."),
    dict(name="mcp2_http_concurrent_sessions_broken", transport="http", mode="auto", sessions="per-request",
         users=THREE_USERS, proxy=True,
         description="As mcp2_http_concurrent_sessions_healthy, but the sessions go through an untraced sanitizing "
                     "gateway that rebuilds params._meta from the spec's io.modelcontextprotocol/* keys only: "
                     "traceparent and baggage are dropped, every SERVER span on the tool server is a root, and the "
                     "request ids collide across the three sessions."),
    dict(name="mcp2_http_gateway_raw_client_broken", transport="http", mode="auto", sessions="startup", users=ONE_USER,
         gateway=True,
         description="The agent calls an MCP gateway (MCPServer with the SDK's OpenTelemetry, service mcp-gateway) "
                     "that forwards each tools/call to the backend tool server with a hand-rolled JSON-RPC client "
                     "(httpx2, protocol 2025-11-25, initialize at gateway start-up) that sends no params._meta: "
                     "the backend's 'tools/call X' SERVER spans are roots, and their JSON-RPC ids are the gateway's "
                     "own counter, not the agent's."),
]


# ------------------------------------------------------------------ processes ---

def env():
    e = dict(os.environ)
    e["PYTHONPATH"] = os.pathsep.join([HARNESS, HERE] + ([e["PYTHONPATH"]] if e.get("PYTHONPATH") else []))
    e["PYTHONUNBUFFERED"] = "1"
    return e


# What the case's processes import, once for every case (harness/forkserver.py starts them).
PRELOAD = ["anyio", "httpx2", "mcp", "mcp.client.stdio", "mcp.server", "openai",
           "opentelemetry.instrumentation.openai_v2", "opentelemetry.processor.baggage",
           "opentelemetry.sdk.trace", "pydantic", "starlette.applications", "starlette.requests",
           "starlette.responses", "starlette.routing", "uvicorn"]
FORKS = None  # the suite's ForkServer, while main() runs

AGENT_TIMEOUT = 120  # seconds; a case takes 10-40 s, on a machine busy building


class AgentTimedOut(RuntimeError):
    """The agent did not finish in time: a hang in the libraries under a starved machine
    (seen once in CI, all three first cases at once). The case is recorded again, once."""


class Proc:
    def __init__(self, case_dir, name, argv, sock=None):
        """Starts `argv`; with `sock`, the process inherits it (`--fd N` is added) and serves on it."""
        self.log = os.path.join(case_dir, "parts", f"log-{name}.txt")
        self.f = open(self.log, "w")
        fds = ()
        if sock is not None:
            argv = [*argv, "--fd", str(sock.fileno())]
            fds = (sock.fileno(),)
        self.p = FORKS.Popen([sys.executable, *argv], stdout=self.f, stderr=subprocess.STDOUT,
                                  stdin=subprocess.DEVNULL, env=env(), cwd=HERE, pass_fds=fds)
        if sock is not None:
            sock.close()  # the process holds the port now

    def wait_port(self, port, timeout=20):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.p.poll() is not None:
                raise RuntimeError(f"process exited early:\n{self.tail()}")
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"port {port} never opened:\n{self.tail()}")

    def stop(self):
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGINT)
            try:
                self.p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait(timeout=5)
        self.f.close()

    def dump_stacks(self):
        # The agent prints its threads' stacks on SIGUSR1 and its tasks' on SIGUSR2.
        for sig in (signal.SIGUSR1, signal.SIGUSR2):
            if self.p.poll() is None:
                self.p.send_signal(sig)
                time.sleep(1)
        self.f.flush()

    def tail(self):
        with open(self.log) as f:  # the process writes the log; it may be closed here already
            return f.read()[-4000:]


# ---------------------------------------------------------------------- truth ---

class Facts:
    """The notes of a case, and the start/end times of its spans (read from the recorded parts, only
    to check that the uniqueness a `must_repair` claims really holds in this run)."""

    def __init__(self, case_dir):
        self.notes = record.notes(case_dir)
        self.spans = {n["span"]: n for n in self.notes if n["kind"] == "span"}
        self.times = {}
        for path in glob.glob(os.path.join(case_dir, "parts", "spans-*.jsonl")):
            with open(path) as f:
                for line in f:
                    for rs in json.loads(line)["resourceSpans"]:
                        for ss in rs["scopeSpans"]:
                            for sp in ss["spans"]:
                                self.times[sp["spanId"]] = (int(sp["startTimeUnixNano"]), int(sp["endTimeUnixNano"]))

    def of(self, kind):
        return [n for n in self.notes if n["kind"] == kind]

    def chain(self, span_id):
        """span_id, then its ancestors as they were at run time (innermost first)."""
        out = []
        while span_id is not None and span_id not in out:
            out.append(span_id)
            span_id = self.spans.get(span_id, {}).get("parent")
        return out

    def orphan(self, span_id):
        s = self.spans[span_id]
        if s["parent"] is not None:
            raise RuntimeError(f"expected a root at {span_id}, it has a parent: {s}")
        return s

    def enclosing(self, span_id, pred):
        """Spans (other than span_id) satisfying pred whose interval holds span_id's whole interval."""
        a, b = self.times[span_id]
        return [sid for sid, s in self.spans.items()
                if sid != span_id and sid in self.times and pred(s)
                and self.times[sid][0] <= a and b <= self.times[sid][1]]


def hop(facts, name, orphan_id, caller_id, must_repair, why):
    s = facts.orphan(orphan_id)
    return {"hop": name, "orphan_trace_id": s["trace"], "orphan_span_id": orphan_id,
            "parent_span_ids": facts.chain(caller_id), "must_repair": must_repair, "why": why,
            "kinds": ["orphan_root"]}


def same_instance(facts, span_id):
    me = facts.spans[span_id]
    return lambda s: s["service"] == me["service"] and s["pid"] == me["pid"]


def truth_executor(facts):
    out = []
    for n in facts.of("executor_handoff"):
        orphan_id, caller_id = n["orphan"][1], n["caller"][1]
        open_there = facts.enclosing(orphan_id, same_instance(facts, orphan_id))
        unique = bool(open_there) and set(open_there) <= set(facts.chain(caller_id))
        names = sorted(facts.spans[i]["name"] for i in open_there)
        why = (f"by time and address: the spans of the orphan's own process (same service.instance.id, shop-tools) "
               f"open over its whole interval are {names}, one chain, the caller's (the stdio server has one client, "
               "which calls its tools one after the other); no attribute ties them")
        if not unique:
            why = f"not unique in this run: open in the same process over the orphan: {names}"
        out.append(hop(facts, "loop.run_in_executor in MCP tool convert_currency (shop-tools)", orphan_id, caller_id,
                       unique, why))
    return out


def truth_otel_off(facts):
    out = []
    for n in facts.of("tool_span"):
        calls = [r for r in facts.of("server_request") if r["method"] == "tools/call" and r["tool"] == n["tool"]]
        if len(calls) != 1 or not calls[0]["wire_traceparent"]:
            raise RuntimeError(f"expected one {n['tool']} call with a traceparent on the wire: {calls}")
        caller_id = calls[0]["wire_traceparent"].split("-")[2]
        orphan_id = n["ids"][1]
        open_there = facts.enclosing(orphan_id, lambda s: True)
        names = sorted(facts.spans[i]["name"] for i in open_there)
        out.append(hop(facts, f"MCP server without the SDK's OpenTelemetryMiddleware: tools/call {n['tool']} (shop-tools)",
                       orphan_id, caller_id, False,
                       "no key and no address: the orphan carries only fx.* attributes, its process records no "
                       "SERVER span and nothing with an MCP or RPC attribute; only time places it inside other "
                       f"processes' spans ({names}, in this run), which the spans do not tie to this server"))
    return out


def truth_client_thread(facts):
    calls = sorted(facts.of("tool_call"), key=lambda n: n["k"])
    served = sorted((n for n in facts.of("server_request") if n["method"] == "tools/call"), key=lambda n: int(n["rid"]))
    if len(calls) != len(served):
        raise RuntimeError(f"{len(calls)} tool calls, {len(served)} served")
    out = []
    for c, s in zip(calls, served):
        assert c["tool"] == s["tool"], (c, s)
        # The CLIENT span is the parent the server extracted from params._meta.
        orphan_id = s["extracted_parent"]
        open_there = facts.enclosing(orphan_id, same_instance(facts, orphan_id))
        unique = bool(open_there) and set(open_there) <= set(facts.chain(c["caller"][1]))
        names = sorted(facts.spans[i]["name"] for i in open_there)
        why = (f"by time and address: the spans of the orphan's own process (same service.instance.id, support-agent) "
               f"open over its whole interval are {names}, one chain, the caller's (one request at a time; the step's "
               "chat span has ended before its tools run); the orphan lost the baggage too (no session.id)")
        if not unique:
            why = f"not unique in this run: open in the same process over the orphan: {names}"
        out.append(hop(facts, f"run_coroutine_threadsafe from a worker thread: MCP send tools/call {c['tool']} (support-agent)",
                       orphan_id, c["caller"][1], unique, why))
    return out


def truth_proxy(facts):
    forwards = {n["xrid"]: n for n in facts.of("proxy_forward")}
    served = [n for n in facts.of("server_request") if n.get("xrid")]

    def key_client(s):
        return (s["attrs"].get("jsonrpc.request.id"), s["name"][len("MCP send "):])

    def key_server(n):
        return (n["rid"], n["method"] + (f" {n['tool']}" if n.get("tool") else ""))

    out = []
    for n in served:
        fwd = forwards[n["xrid"]]
        tp = fwd["dropped_traceparent"]
        if not tp:
            raise RuntimeError(f"no traceparent reached the gateway for {n}")
        caller_id = tp.split("-")[2]
        orphan_id = n["ids"][1]
        k = key_server(n)
        is_client = lambda s: s["service"] == "support-agent" and s["name"].startswith("MCP send ")  # noqa: E731
        n_clients = sum(1 for s in facts.spans.values() if is_client(s) and key_client(s) == k)
        n_orphans = sum(1 for m in served if key_server(m) == k)
        by_time = facts.enclosing(orphan_id, lambda s: is_client(s) and key_client(s) == k)
        by_key = n_clients == 1 and n_orphans == 1 and by_time == [caller_id]
        unique = by_time == [caller_id]
        shared = (f"(jsonrpc.request.id={k[0]}, '{k[1]}') is on {n_clients} CLIENT spans and {n_orphans} orphan SERVER "
                  "spans, one per concurrent session (each session counts its ids from 1; the gateway dropped the "
                  "baggage too, so no session.id on the server side)")
        if by_key:
            why = (f"by key: (jsonrpc.request.id={k[0]}, '{k[1]}') is on exactly one CLIENT span "
                   f"('MCP send {k[1]}', support-agent; the tool only in its span name) and exactly one orphan SERVER "
                   f"span ('{k[1]}', shop-tools, gen_ai.tool.name), and the CLIENT span's interval encloses the orphan's")
        elif unique:
            why = (f"by key and time: {shared}, but in this run only one of those CLIENT spans encloses the orphan's "
                   "interval (it may be more in another run: the sessions overlap as the scheduler lets them)")
        else:
            why = (f"ambiguous: {shared}, and in this run {len(by_time)} of those CLIENT spans enclose the orphan's "
                   "interval: the spans do not single out the parent")
        out.append(hop(facts, f"sanitizing gateway dropped _meta.traceparent: {k[1]} (jsonrpc id {k[0]})",
                       orphan_id, caller_id, unique, why))
    return out


def truth_gateway(facts):
    served = {n["rid"]: n for n in facts.of("server_request")
              if n.get("service") == "shop-tools" and n["method"] == "tools/call"}
    out = []
    for f in facts.of("gateway_forward"):
        s = served[f["rid"]]
        assert s["tool"] == f["tool"], (s, f)
        orphan_id = s["ids"][1]
        same_tool = facts.enclosing(orphan_id, lambda x: x["service"] != "shop-tools"
                                    and x["attrs"].get("gen_ai.tool.name") == f["tool"])
        unique = same_tool == [f["caller"][1]]
        why = (f"by tool name and time: gen_ai.tool.name={f['tool']} is on exactly one span outside shop-tools whose "
               f"interval encloses the orphan's, the gateway's SERVER span 'tools/call {f['tool']}' (each tool is "
               "called once, one request at a time). jsonrpc.request.id does NOT tie them: the orphan's "
               f"({f['rid']}) is the gateway client's own counter, after its initialize")
        if not unique:
            why = f"not unique in this run: spans with gen_ai.tool.name={f['tool']} enclosing the orphan: {same_tool}"
        out.append(hop(facts, f"gateway's hand-rolled JSON-RPC client, no _meta: tools/call {f['tool']} (mcp-gateway -> shop-tools)",
                       orphan_id, f["caller"][1], unique, why))
    return out


def check_roots(case, facts, broken):
    """Every root span of the case is either a root by design or an orphan named in the truth."""
    by_design = {("support-agent", "agent.request"), ("shop-tools", "notifications/initialized")}
    if case["sessions"] == "startup":  # the MCP session opened at service start-up, outside any request
        by_design |= {("support-agent", "MCP send initialize"), ("support-agent", "MCP send server/discover"),
                      ("support-agent", "MCP send tools/list")}
    if case.get("gateway"):  # the gateway's own handshake with the backend, at its start-up
        by_design |= {("shop-tools", "initialize")}
    orphans = {h["orphan_span_id"] for h in broken}
    for sid, s in facts.spans.items():
        if s["parent"] is None and sid not in orphans and (s["service"], s["name"]) not in by_design:
            raise RuntimeError(f"an unexplained root span: {s}")


TRUTH = {
    "mcp2_stdio_tool_executor_broken": truth_executor,
    "mcp2_stdio_server_otel_off_broken": truth_otel_off,
    "mcp2_http_client_thread_broken": truth_client_thread,
    "mcp2_http_concurrent_sessions_broken": truth_proxy,
    "mcp2_http_gateway_raw_client_broken": truth_gateway,
}


# ----------------------------------------------------------------------- cases ---

def run_case(case, out_root, llm):
    case_dir = os.path.join(out_root, case["name"])
    shutil.rmtree(case_dir, ignore_errors=True)
    record.case_dir(case_dir)
    procs = []
    try:
        waits = []
        if case["transport"] == "http":
            sock = bound_socket()
            port = sock.getsockname()[1]
            server = Proc(case_dir, "server", [os.path.join(HERE, "tools_server.py"), "--out", case_dir,
                                               "--transport", "http", *case.get("server_args", [])], sock)
            procs.append(server)
            waits.append((server, port))
            target = f"http://127.0.0.1:{port}/mcp"
            if case.get("gateway"):
                sock = bound_socket()
                gport = sock.getsockname()[1]
                gateway = Proc(case_dir, "gateway", [os.path.join(HERE, "gateway.py"), "--out", case_dir,
                                                     "--backend", target, "--backend-port", str(port)], sock)
                procs.append(gateway)
                waits.append((gateway, gport))
                target = f"http://127.0.0.1:{gport}/mcp"
            if case.get("proxy"):
                sock = bound_socket()
                pport = sock.getsockname()[1]
                proxy = Proc(case_dir, "proxy", [os.path.join(HERE, "meta_proxy.py"), "--out", case_dir,
                                                 "--upstream", target], sock)
                procs.append(proxy)
                waits.append((proxy, pport))
                target = f"http://127.0.0.1:{pport}/mcp"
        else:
            target = "stdio"
        users = [{"user": u, "session": f"sess-{uuid.uuid4().hex[:12]}", "question": q} for u, q in case["users"]]
        argv = [os.path.join(HERE, "agent.py"), "--out", case_dir, "--llm", llm.base_url, "--server", target,
                "--server-args", json.dumps(case.get("server_args", [])), "--mode", case["mode"],
                "--sessions", case["sessions"], "--users", json.dumps(users)]
        for _, port in waits:
            argv += ["--wait-port", str(port)]
        if case.get("client_thread"):
            argv.append("--client-thread")
        # All processes start at once (the agent waits for its dependencies' ports, as a service does).
        agent = Proc(case_dir, "agent", argv)
        procs.append(agent)
        for p, port in waits:
            p.wait_port(port, timeout=60)
        try:
            rc = agent.p.wait(timeout=AGENT_TIMEOUT)
        except subprocess.TimeoutExpired:
            agent.dump_stacks()
            raise AgentTimedOut(f"agent timed out after {AGENT_TIMEOUT} s", agent.tail())
        if rc != 0:
            raise RuntimeError(f"agent failed ({rc}):\n{agent.tail()}")
    except BaseException:
        for p in reversed(procs):
            p.stop()
            sys.stderr.write(f"--- {p.log}\n{p.tail()}\n")
        raise
    for p in reversed(procs):
        p.stop()
    facts = Facts(case_dir)
    answers = facts.of("answer")
    if len(answers) != len(users) or not all(a["answer"] for a in answers):
        raise RuntimeError(f"not every request was answered: {answers}")
    broken = TRUTH[case["name"]](facts) if case["name"] in TRUTH else []
    healthy = case["name"] not in TRUTH
    if not healthy and not broken:
        raise RuntimeError("a broken case that broke nothing")
    check_roots(case, facts, broken)
    truth = {"case": case["name"], "suite": SUITE, "description": case["description"],
             "versions": record.versions(*VERSIONS), "healthy": healthy, "broken_hops": broken}
    record.finish(case_dir, truth)
    return truth


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--only", nargs="*")
    ap.add_argument("--jobs", type=int, default=3)
    a = ap.parse_args()
    a.out = os.path.abspath(a.out)  # the case's processes run in this folder
    os.makedirs(a.out, exist_ok=True)
    cases = [c for c in CASES if not a.only or c["name"] in a.only]

    def one(case):
        t0 = time.time()
        try:
            truth = run_case(case, a.out, llm)
        except AgentTimedOut as e:
            # Said in the log with where the agent waited, which the test script prints: a retry is
            # never silent.
            what, log = e.args
            lines = [f"corpus retry: {case['name']}: {what}; recording it again; the end of its log:"]
            lines += [f"corpus retry:   {line}" for line in log.splitlines()[-40:]]
            print("\n".join(lines), flush=True)
            truth = run_case(case, a.out, llm)
        print(f"{case['name']}: {len(truth['broken_hops'])} broken hops "
              f"({sum(h['must_repair'] for h in truth['broken_hops'])} must_repair), {time.time() - t0:.1f}s", flush=True)

    # Cases are independent (their own processes, ports and files): a few run at once.
    global FORKS
    with ForkServer(PRELOAD, env=env(), cwd=HERE) as FORKS, StandIn(policy) as llm, \
            ThreadPoolExecutor(max_workers=a.jobs) as pool:
        for f in [pool.submit(one, c) for c in cases]:
            f.result()


if __name__ == "__main__":
    main()
