"""The autogen suite: AutoGen 0.7 (autogen-core's SingleThreadedAgentRuntime and autogen-ext's
gRPC worker runtime, autogen-agentchat teams) answering concurrent users' turns behind an HTTP
service, the stand-in LLM reached through AutoGen's real OpenAIChatCompletionClient, a search tool
that calls a separate HTTP service.

    make.py --out DIR [CASE...]   writes DIR/<case>/spans.jsonl and truth.json for every case

Processes per case: this driver (the chat frontend: instrumented httpx client, one turn per user
session, `session.id` in W3C baggage; and the stand-in LLM, a thread), docs_service.py (FastAPI),
and agent_service.py (FastAPI + AutoGen; or a script; or, distributed, grpc_host.py plus a gateway
and a worker). Truth comes from what each process noted while it ran (record.note).
"""

import argparse
import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid

from common import HARNESS, bound_socket, record

from forkserver import ForkServer  # noqa: E402
from llm_standin import StandIn  # noqa: E402

# What the case's processes import, once for every case (harness/forkserver.py starts them).
PRELOAD = ["autogen_agentchat.agents", "autogen_agentchat.conditions", "autogen_agentchat.teams",
           "autogen_core", "autogen_core.models", "autogen_core.tools", "autogen_ext.models.openai",
           "autogen_ext.runtimes.grpc", "fastapi", "httpx", "opentelemetry.instrumentation.fastapi",
           "opentelemetry.instrumentation.httpx", "opentelemetry.instrumentation.openai",
           "opentelemetry.instrumentation.requests", "opentelemetry.processor.baggage",
           "opentelemetry.sdk.trace", "pydantic", "requests", "uvicorn"]
FORKS = None  # the suite's ForkServer, while main() runs

HERE = os.path.dirname(os.path.abspath(__file__))

CASES = {
    "autogen_core_runtime_healthy": dict(
        app="core", tool="async", sessions=2, healthy=True,
        description="autogen-core SingleThreadedAgentRuntime (tracer_provider given, started at service start-up) "
                    "behind a FastAPI service: per user turn the orchestrator RoutedAgent sends (RPC) a research task "
                    "to the researcher (stand-in LLM via OpenAIChatCompletionClient, then the async search_docs tool "
                    "calling docs-service with instrumented httpx), publishes a drafting task to the writer (LLM), which "
                    "publishes the answer to a ClosureAgent; 2 concurrent user sessions. The runtime starts a new trace "
                    "per delivered message and ties it to the sender's span with a span link."),
    "autogen_agentchat_team_healthy": dict(
        app="agentchat", tool="async", sessions=2, healthy=True,
        description="autogen-agentchat RoundRobinGroupChat of two AssistantAgents (researcher with the async "
                    "search_docs FunctionTool calling docs-service with instrumented httpx, reflect_on_tool_use; "
                    "writer) built and run by the FastAPI handler for each of 2 concurrent user sessions, on the "
                    "stand-in LLM through OpenAIChatCompletionClient."),
    "autogen_agentchat_script_healthy": dict(
        app="agentchat-script", tool="async", sessions=2, healthy=True,
        description="the autogen_agentchat_team_healthy team run the way AutoGen's examples run it: a script "
                    "process builds the two AssistantAgents and the RoundRobinGroupChat at start-up, outside any "
                    "span (create_agent spans are roots), then runs 2 tasks in turn (team.reset between); the "
                    "team's runtime, started with no span current, starts a new trace per delivered message, "
                    "tied to its sender with a span link."),
    "autogen_agentchat_sync_tool_broken": dict(
        app="agentchat", tool="sync", sessions=2, healthy=False,
        description="as autogen_agentchat_team_healthy, but search_docs is a plain (sync) function using instrumented "
                    "requests: AutoGen's FunctionTool runs it with loop.run_in_executor, which does not carry "
                    "contextvars, so the requests CLIENT span starts a new trace (and docs-service's server span "
                    "joins that orphan trace); 2 concurrent user sessions."),
    "autogen_grpc_runtime_publish_broken": dict(
        app="grpc", tool="async", sessions=2, healthy=False,
        description="the autogen_core_runtime_healthy agents distributed with autogen-ext's gRPC runtime: a "
                    "GrpcWorkerAgentRuntimeHost process, a gateway process (FastAPI + orchestrator + collector) and a "
                    "worker process (researcher + writer), each a GrpcWorkerAgentRuntime with tracer_provider given; "
                    "2 concurrent user sessions. RPCs (send_message) carry traceparent in the gRPC request metadata "
                    "and the receiving process's span links to the sender; publish_message computes the telemetry "
                    "metadata but never puts it into the CloudEvent (autogen-ext 0.7.5), so the receiving process "
                    "starts an unlinked root: orchestrator->writer (DraftTask) and writer->collector (FinalAnswer)."),
    "autogen_core_sync_tool_broken": dict(
        app="core", tool="sync", sessions=1, healthy=False,
        description="as autogen_core_runtime_healthy with one user session, but the researcher's search_docs tool is "
                    "a plain (sync) function using instrumented requests: FunctionTool runs it with "
                    "loop.run_in_executor without the context, so the requests CLIENT span is a root of its own "
                    "trace (docs-service's server span under it)."),
}

QUESTIONS = [
    "How do I rotate the API keys of the billing service",
    "Why does the nightly export to the warehouse time out",
    "Which regions support the archive storage tier",
]


def policy(call):
    """The stand-in's answers: the researcher (its system message says so) asks for search_docs
    once, then summarises the tool's result; the writer writes the answer and ends the group chat."""
    system = next((m.get("content") for m in call["messages"] if m.get("role") in ("system", "developer")), "") or ""
    if "research" in str(system):
        if call["last_tool"] is None:
            return {"tool_calls": [{"name": "search_docs", "arguments": {"query": call["last_user"][:80]}}]}
        return {"text": "Findings: " + call["last_tool"][:120]}
    return {"text": "Here is what to do, based on the notes. TERMINATE"}


def launch(cmd, out_dir, name, pass_fds=()):
    log = open(os.path.join(out_dir, "parts", f"{name}.log"), "w")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([HERE, HARNESS, os.environ.get("PYTHONPATH", "")]))
    proc = FORKS.Popen([sys.executable, *cmd], stdout=log, stderr=log, env=env, cwd=HERE, pass_fds=pass_fds)
    return proc, log


def start(cmd, out_dir, name):
    """Starts an HTTP service process on a listening socket bound here to a free port; returns the
    process, the port and its log (readiness is checked by polling /healthz)."""
    sock = bound_socket()
    proc, log = launch([*cmd, "--fd", str(sock.fileno())], out_dir, name, pass_fds=[sock.fileno()])
    port = sock.getsockname()[1]
    sock.close()
    return proc, port, log


def reserved_port():
    """A free port for a server that binds its own socket (the gRPC host), and the socket that keeps
    it: bound with SO_REUSEPORT and never listening, it keeps every other process off the port
    until it is closed (a port chosen, released and bound later can be taken in between by anything
    on the machine), while the gRPC host, which binds with SO_REUSEPORT by default, binds beside it
    and alone receives the connections. Close it once the host listens."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind(("127.0.0.1", 0))
    return sock, sock.getsockname()[1]


def wait_port(address, timeout=60):
    host, port = address.rsplit(":", 1)
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            socket.create_connection((host, int(port)), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {address}")


def wait_http(url, timeout=60):
    deadline = time.time() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except OSError:
            if time.time() > deadline:
                raise RuntimeError(f"{url} not healthy")
            time.sleep(0.05)


def wait_file(path, timeout=60):
    deadline = time.time() + timeout
    while not os.path.exists(path):
        if time.time() > deadline:
            raise RuntimeError(f"{path} never appeared")
        time.sleep(0.05)


def stop_all(procs):
    """SIGINT (uvicorn's and AutoGen's graceful shutdown) to every service at once, the gRPC host
    last; whatever has not exited in 15 s is killed."""
    host = [p for p in procs if "grpc_host.py" in p[0].args[1]]
    for group in ([p for p in procs if p not in host], host):
        for proc, _ in group:
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
        for proc, log in group:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            log.close()


async def wait_healthy(client, url):
    for _ in range(600):
        try:
            if (await client.get(url + "/healthz")).status_code == 200:
                return
        except Exception:
            pass
        await asyncio.sleep(0.05)
    raise RuntimeError(f"{url} not healthy")


async def frontend(tp, agent_url, sessions, service_urls):
    """The chat frontend: one turn per user session, all in flight at once; each turn a span with
    `session.id` in baggage, so the instrumented httpx client sends it (`baggage` header)."""
    import httpx
    from opentelemetry import baggage, context
    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor

    tracer = tp.get_tracer("chat-frontend")
    async with httpx.AsyncClient(timeout=30) as plain:
        for url in service_urls:
            await wait_healthy(plain, url)
    HTTPXClientInstrumentor().instrument(tracer_provider=tp)
    try:
        async def turn(session_id, question):
            token = context.attach(baggage.set_baggage("session.id", session_id))
            try:
                with tracer.start_as_current_span("chat turn", attributes={"session.id": session_id}):
                    async with httpx.AsyncClient(timeout=30) as client:
                        r = await client.post(agent_url + "/chat", json={"session_id": session_id,
                                                                         "text": f"{question} ({session_id[-4:]})?"})
                        r.raise_for_status()
                        return r.json()
            finally:
                context.detach(token)

        ids = [f"sess-{uuid.uuid4().hex[:12]}" for _ in range(sessions)]
        return await asyncio.gather(*(turn(s, QUESTIONS[k]) for k, s in enumerate(ids)))
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
                        spans.append(s)
    return spans


def broken_hops(case_dir, notes):
    """One broken hop per tool call: the caller's side (the spans current where FunctionTool handed
    the call to the function) joined by the tool's query to what docs-service was sent."""
    callers = {n["query"]: n for n in notes if n["side"] == "tool-caller"}
    threads = {n["query"]: n for n in notes if n["side"] == "tool-thread"}
    hops = []
    for n in notes:
        if n["side"] != "docs-service":
            continue
        caller = callers[n["query"]]
        assert threads[n["query"]]["context"] is None, "the tool thread had a context: no break happened"
        _, trace_id, span_id, _ = n["traceparent"].split("-")
        assert trace_id != caller["trace_id"], "docs-service got the caller's trace: no break happened"
        hops.append({
            "hop": "autogen FunctionTool search_docs -> run_in_executor -> requests GET docs-service",
            "orphan_trace_id": trace_id,
            "orphan_span_id": span_id,
            "parent_span_ids": caller["caller_span_ids"],
            "kinds": ["lost_context", "orphan_root"],
        })
    # must_repair: only when the spans single the parent out. Nothing carries a key both sides
    # share (the requests span has url.full with the query; execute_tool has the tool's name and
    # gen_ai.tool.call.id, not its arguments), so it holds only when one and only one execute_tool
    # span of this service was in flight at any time during the orphan (and encloses it).
    spans = load_spans(case_dir)
    by_id = {s["spanId"]: s for s in spans}
    tools = [s for s in spans if s["name"].startswith("execute_tool ") and s["service"] == "agent-service"]
    for hop in hops:
        orphan = by_id[hop["orphan_span_id"]]
        assert not orphan.get("parentSpanId"), "the orphan is not a root"
        t0, t1 = int(orphan["startTimeUnixNano"]), int(orphan["endTimeUnixNano"])
        overlapping = [s["spanId"] for s in tools
                       if int(s["startTimeUnixNano"]) < t1 and t0 < int(s["endTimeUnixNano"])]
        enclosing = [s["spanId"] for s in tools
                     if int(s["startTimeUnixNano"]) <= t0 and t1 <= int(s["endTimeUnixNano"])]
        hop["must_repair"] = overlapping == enclosing == [hop["parent_span_ids"][0]]
        if hop["must_repair"]:
            hop["why"] = ("one and only one execute_tool span was in flight in agent-service during the orphan "
                          "requests CLIENT span, and it encloses it (same service.instance.id); no key both sides carry")
        else:
            hop["why"] = (f"{len(overlapping)} execute_tool search_docs spans of concurrent sessions overlap the orphan "
                          f"in time ({len(enclosing)} enclose it), and no attribute both sides carry singles one out "
                          "(the orphan has url.full with the query; execute_tool has gen_ai.tool.name and "
                          "gen_ai.tool.call.id, not the arguments)")
    return hops


def grpc_publish_hops(case_dir, notes):
    """The publishes of the gRPC runtime: each receiving handler's `autogen process` span (noted live
    in the handler) is a root; its parents are the sender's spans for the same topic and session
    (noted live as they ended): the `autogen publish <topic>` PRODUCER span, the `autogen create
    <topic>` span it hangs under, and the handler span that published."""
    topic = {"DraftTask": "drafting", "FinalAnswer": "answers"}
    producers = [n for n in notes if n["side"] == "producer"]
    spans = {s["spanId"]: s for s in load_spans(case_dir)}
    hops = []
    for n in notes:
        if n["side"] != "consumer":
            continue
        dest = f"{topic[n['message_type']]}.({n['session_id']})-T"
        create = [p for p in producers if p["name"] == f"autogen create {dest}"]
        publish = [p for p in producers if p["name"] == f"autogen publish {dest}"]
        assert len(create) == 1 and len(publish) == 1, (dest, create, publish)
        assert publish[0]["parent_span_id"] == create[0]["span"][1]
        orphan_trace, orphan_span = n["span"]
        assert n["parent_span_id"] is None, "the receiving span has a parent: no break happened"
        assert not spans[orphan_span].get("links"), "the receiving span is linked: no break happened"
        hops.append({
            "hop": f"autogen gRPC runtime publish {topic[n['message_type']]} ({n['message_type']}) "
                   f"-> {n['service']}",
            "orphan_trace_id": orphan_trace,
            "orphan_span_id": orphan_span,
            "parent_span_ids": [publish[0]["span"][1], create[0]["span"][1], create[0]["parent_span_id"]],
            "must_repair": False,
            "why": "no span link and no id both sides carry: the receiving `autogen process <agent>.(<key>)-A` "
                   "CONSUMER span has messaging.destination and messaging.message.type only; the sender's "
                   "`autogen publish <topic>.(<key>)-T` has messaging.destination; the CloudEvent id (message id) "
                   "is on neither. The only tie is the topic source = agent key (the session id here) inside the "
                   "two messaging.destination strings, with the message type, in other processes of concurrent "
                   "sessions",
            "kinds": ["orphan_root", "trace_discontinuity"],
        })
    # The RPC responses: the responder sends its response with the telemetry metadata of the
    # context current after its `autogen process` span ended (none), so the requester's `autogen
    # ack` CONSUMER span is an unlinked root. The right parent is the responder's process span
    # (same request_id), or the requester's `autogen create <agent>` span that process links to,
    # or the `autogen send <agent>` span under that create span.
    sends = {n["parent_span_id"]: n["span"][1] for n in notes if n["side"] == "rpc-send"}
    processes = {}
    for n in notes:
        if n["side"] == "rpc-process":
            assert n["request_id"] not in processes, "request_id is not unique in this run"
            processes[n["request_id"]] = n
    for n in notes:
        if n["side"] != "rpc-ack":
            continue
        assert n["parent_span_id"] is None and not n["links"], "the ack has a parent or a link: no break happened"
        proc = processes[n["request_id"]]
        hops.append({
            "hop": f"autogen gRPC runtime RPC response (request_id {n['request_id']}) {proc['name'].split(' ')[2]} "
                   f"({proc['service']}) -> autogen ack ({n['service']})",
            "orphan_trace_id": n["span"][0],
            "orphan_span_id": n["span"][1],
            "parent_span_ids": [proc["span"][1], *(sends[c] for c in proc["links"]), *proc["links"]],
            "must_repair": False,
            "why": "the only key both sides carry is the attribute request_id on the `autogen ack` CONSUMER root "
                   "and on the responder's `autogen process` CONSUMER span: a bare, un-namespaced counter of the "
                   "requesting runtime (1, 2, 3 ... in every runtime), no convention's join key, so the doctor "
                   "does not trust it; detection is what the spans allow",
            "kinds": ["orphan_root", "trace_discontinuity"],
        })
    return hops


def agent_of_call(call):
    """Which agent made a model call: the policy tells them apart by the system message."""
    system = next((m.get("content") for m in call["messages"] if m.get("role") in ("system", "developer")), "") or ""
    return "researcher" if "research" in str(system) else "writer"


def agents_truth(spec, calls):
    """Every agent the case ran, whom it delegated to, and the model calls and tokens the stand-in
    answered for it (its log: what was really sent and billed).

    autogen-core (core, grpc): the orchestrator sends the research task to the researcher (RPC) and
    publishes the drafting task to the writer, which publishes the answer to the collector closure;
    the orchestrator and the collector make no model calls. An agentchat team: the researcher and
    the writer take turns that the team's group chat manager routes, so neither delegates to the
    other (the manager is the team, not an agent of the app)."""
    stats = {}
    for call, reply, (inp, out) in calls:
        a = stats.setdefault(agent_of_call(call), {"llm_calls": 0, "input_tokens": 0, "output_tokens": 0})
        if "error" in reply:
            continue
        a["llm_calls"] += 1
        a["input_tokens"] += inp
        a["output_tokens"] += out
    if spec["app"] in ("core", "grpc"):
        graph = {"orchestrator": ["researcher", "writer"], "researcher": [], "writer": ["collector"], "collector": []}
    else:
        graph = {"researcher": [], "writer": []}
    zero = {"llm_calls": 0, "input_tokens": 0, "output_tokens": 0}
    unknown = set(stats) - set(graph)
    assert not unknown, f"model calls by agents the case does not run: {unknown}"
    return [dict(name=name, delegates_to=to, **stats.get(name, zero)) for name, to in graph.items()]


def check_healthy(notes):
    """In a healthy case every docs-service request must have come in the caller's trace."""
    callers = {n["query"]: n for n in notes if n["side"] == "tool-caller"}
    for n in notes:
        if n["side"] == "docs-service":
            assert n["traceparent"].split("-")[1] == callers[n["query"]]["trace_id"], "a healthy hop broke"


def run_case(out, name, spec):
    case_dir = os.path.join(os.path.abspath(out), name)
    shutil.rmtree(case_dir, ignore_errors=True)
    record.case_dir(case_dir)
    procs = []
    try:
        with StandIn(policy) as llm:
            docs, docs_port, log = start(["docs_service.py", "--out", case_dir], case_dir, "docs-service")
            procs.append((docs, log))
            common = ["--out", case_dir, "--tool", spec["tool"], "--llm", llm.base_url,
                      "--docs", f"http://127.0.0.1:{docs_port}"]
            if spec["app"] == "agentchat-script":
                wait_http(f"http://127.0.0.1:{docs_port}/healthz")
                tasks = [f"{q} (task {k})?" for k, q in enumerate(QUESTIONS[:spec["sessions"]])]
                script, log = launch(["agent_service.py", "--app", "agentchat-script", *common,
                                      *(a for t in tasks for a in ("--task", t))], case_dir, "agent-script")
                procs.append((script, log))
                assert script.wait(timeout=120) == 0, "the script failed; see its log"
            elif spec["app"] == "grpc":
                reservation, port = reserved_port()
                address = f"127.0.0.1:{port}"
                procs.append(launch(["grpc_host.py", "--address", address], case_dir, "grpc-host"))
                wait_port(address)
                reservation.close()
                ready = os.path.join(case_dir, "parts", "worker.ready")
                procs.append(launch(["agent_service.py", "--app", "grpc-worker", "--host", address,
                                     "--ready", ready, *common], case_dir, "agent-worker"))
                agent, agent_port, log = start(["agent_service.py", "--app", "grpc-gateway", "--host", address,
                                                *common], case_dir, "agent-gateway")
                procs.append((agent, log))
                wait_file(ready)
            else:
                agent, agent_port, log = start(["agent_service.py", "--app", spec["app"], *common], case_dir,
                                               "agent-service")
                procs.append((agent, log))
            if spec["app"] != "agentchat-script":
                tp = record.provider(case_dir, "chat-frontend", set_global=False)
                urls = [f"http://127.0.0.1:{docs_port}", f"http://127.0.0.1:{agent_port}"]
                answers = asyncio.run(frontend(tp, urls[1], spec["sessions"], urls))
                tp.shutdown()
                assert all(a["answer"].endswith("TERMINATE") for a in answers), answers
            calls = list(llm.calls)
    finally:
        stop_all(procs)
    for path in os.listdir(os.path.join(case_dir, "parts")):
        if path.endswith((".log", ".ready")):
            with open(os.path.join(case_dir, "parts", path)) as f:
                text = f.read().strip()
            if text and "Traceback" in text:
                print(f"--- {name} {path}:\n{text[-3000:]}", file=sys.stderr)
            os.remove(os.path.join(case_dir, "parts", path))
    notes = record.notes(case_dir)
    truth = {
        "case": name, "suite": "autogen", "description": spec["description"],
        "versions": record.versions("autogen-core", "autogen-agentchat", "autogen-ext", "openai",
                                    "opentelemetry-sdk", "opentelemetry-instrumentation-openai",
                                    "opentelemetry-instrumentation-fastapi", "opentelemetry-instrumentation-httpx",
                                    "opentelemetry-instrumentation-requests", "opentelemetry-processor-baggage",
                                    "fastapi", "uvicorn", "httpx", "requests"),
        "healthy": spec["healthy"],
        "broken_hops": [],
        "agents": agents_truth(spec, calls),
        "failure": None,
        "sessions": spec["sessions"],
        # OpenLLMetry's openai instrumentation records gen_ai.usage.* on every chat span.
        "tokens_in_spans": True,
    }
    record.finish(case_dir, truth)  # merges the parts into spans.jsonl (the hops below read it)
    if spec["healthy"]:
        check_healthy(notes)
    elif spec["app"] == "grpc":
        check_healthy(notes)
        truth["broken_hops"] = grpc_publish_hops(case_dir, notes)
        assert len(truth["broken_hops"]) == 4 * spec["sessions"], truth["broken_hops"]
        with open(os.path.join(case_dir, "truth.json"), "w") as f:
            json.dump(truth, f, indent=1, sort_keys=True)
            f.write("\n")
    else:
        truth["broken_hops"] = broken_hops(case_dir, notes)
        assert len(truth["broken_hops"]) == spec["sessions"], truth["broken_hops"]
        with open(os.path.join(case_dir, "truth.json"), "w") as f:
            json.dump(truth, f, indent=1, sort_keys=True)
            f.write("\n")
    print(f"{name}: {sum(1 for _ in load_spans(case_dir))} spans, {len(truth['broken_hops'])} broken hops")


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
