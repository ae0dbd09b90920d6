"""The langgraph suite: a LangGraph supervisor graph (supervisor -> researcher / writer nodes, the
researcher calling a search_docs tool over a LangChain retriever) behind a FastAPI agent service,
traced with OpenInference's LangChain instrumentation; the stand-in LLM through langchain-openai's
ChatOpenAI; the retriever's backend is a separate HTTP service.

    make.py --out DIR [CASE...]   writes DIR/<case>/spans.jsonl and truth.json for every case

Processes per case: this driver (the chat frontend: instrumented httpx, `session.id` in W3C
baggage, the turns of each user session in order, the sessions at once; and the stand-in LLM, a
thread), docs_service.py (FastAPI) and agent_service.py (FastAPI + LangGraph). Truth comes from
what each process noted while it ran (record.note) and from the stand-in's record of every call.
"""

import argparse
import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid

from common import AGENTS, HARNESS, HERE, agent_of, bound_socket, record

from forkserver import ForkServer  # noqa: E402
from llm_standin import StandIn  # noqa: E402

QUESTIONS = {
    "billing": "How do I rotate the API keys of the billing service",
    "warehouse": "Why does the nightly export to the warehouse time out",
    "webhooks": "How many retries does a failed webhook delivery get",
    "regions": "Which regions offer the archive storage tier",
    "audit": "How do I export the audit logs to our SIEM",
    "password": "Print the admin password of the billing database",
}

# What the case's processes import, once for every case (harness/forkserver.py starts them).
PRELOAD = ["fastapi", "fastapi.responses", "httpx", "langchain_core.callbacks", "langchain_core.documents",
           "langchain_core.messages", "langchain_core.retrievers", "langchain_core.tools", "langchain_openai",
           "langgraph.checkpoint.memory", "langgraph.graph", "langgraph.types",
           "openinference.instrumentation.langchain", "opentelemetry.instrumentation.fastapi",
           "opentelemetry.instrumentation.httpx", "opentelemetry.processor.baggage",
           "opentelemetry.sdk.trace", "uvicorn"]
FORKS = None  # the suite's ForkServer, while main() runs

CASES = {
    "langgraph_supervisor_healthy": dict(
        mode="threadpool", sessions=[["billing", "webhooks", "warehouse"], ["warehouse", "billing", "webhooks"]],
        healthy=True, failure=None,
        description="LangGraph supervisor graph (supervisor routes with structured output to the researcher node, "
                    "which calls the search_docs tool over a LangChain retriever backed by docs-service, and to the "
                    "writer node) in a FastAPI agent service (sync handler run in FastAPI's thread pool), traced "
                    "with OpenInference's LangChainInstrumentor plus the FastAPI and httpx instrumentations; "
                    "2 concurrent user sessions of 3 turns each, thread_id = session id."),
    "langgraph_executor_context_lost": dict(
        mode="executor", sessions=[["billing", "warehouse"], ["webhooks", "billing"]],
        healthy=False, failure=None,
        description="as langgraph_supervisor_healthy, but the async FastAPI handler hands graph.invoke to a "
                    "concurrent.futures thread pool with loop.run_in_executor, which does not carry contextvars: "
                    "the graph's root LangGraph span starts a new trace (OpenInference parents it on the current "
                    "OpenTelemetry context, which is empty there), and so does every httpx call the retriever "
                    "makes to docs-service; 2 concurrent user sessions of 2 turns each."),
    "langgraph_tool_truncated_json": dict(
        mode="threadpool", sessions=[["billing", "audit"]], healthy=True, failure="tool",
        description="as langgraph_supervisor_healthy with 1 session of 2 turns; in the second turn the search_docs "
                    "tool's result (long audit-log runbooks) is cut to 1200 characters, so the tool returns "
                    "truncated JSON without raising; the researcher's model cannot parse it and reports so, the "
                    "writer answers without findings (HTTP 200)."),
    "langgraph_retriever_unavailable": dict(
        mode="threadpool", sessions=[["webhooks", "regions"]], rebuilding="regions", healthy=True,
        failure="retrieval",
        description="as langgraph_supervisor_healthy with 1 session of 2 turns; in the second turn docs-service "
                    "answers 503 (its 'regions' shard is being rebuilt), the DocsRetriever raises "
                    "httpx.HTTPStatusError, the error propagates through the search_docs tool, the researcher "
                    "node and the graph, and the agent service answers 500."),
    "langgraph_llm_rate_limited_retry": dict(
        mode="threadpool", sessions=[["billing", "warehouse"]], rate_limit="writer", healthy=True, failure=None,
        description="as langgraph_supervisor_healthy with 1 session of 2 turns; the writer's first model call is "
                    "answered 429 (retry-after 0) once, the openai client inside ChatOpenAI retries it and "
                    "succeeds; no failure."),
    "langgraph_supervisor_refusal": dict(
        mode="threadpool", sessions=[["webhooks", "password"]], healthy=True, failure="llm",
        description="as langgraph_supervisor_healthy with 1 session of 2 turns; in the second turn the user asks "
                    "for a password and the supervisor's model call returns a refusal; ChatOpenAI's structured "
                    "output raises OpenAIRefusalError, the graph fails, the agent service answers 500."),
}


def since_user(messages):
    last = max((i for i, m in enumerate(messages) if m.get("role") == "user"), default=-1)
    return messages[last + 1:]


def make_policy(spec):
    """The stand-in's answers, per agent (told apart by the system prompt)."""
    state = {"rate_limited": False}

    def policy(call):
        agent = agent_of(call["messages"])
        after = since_user(call["messages"])
        if agent == "supervisor":
            if "password" in call["last_user"]:
                return {"refusal": "I'm sorry, but I can't help with retrieving credentials."}
            said = {m.get("name") for m in after if m.get("role") == "assistant"}
            nxt = "researcher" if "researcher" not in said else "writer" if "writer" not in said else "FINISH"
            return {"text": json.dumps({"next": nxt})}
        if agent == "researcher":
            tools = [m for m in after if m.get("role") == "tool"]
            if not tools:
                return {"tool_calls": [{"name": "search_docs", "arguments": {"query": call["last_user"]}}]}
            try:
                docs = json.loads(tools[-1]["content"])
            except ValueError:
                return {"text": "I could not parse the search results: search_docs returned malformed JSON."}
            return {"text": "Findings: " + "; ".join(f"{d['title']}: {d['text'][:80]}" for d in docs)}
        if agent == "writer":
            if spec.get("rate_limit") == "writer" and not state["rate_limited"]:
                state["rate_limited"] = True
                return {"error": 429, "message": "Rate limit reached for requests per minute"}
            notes = next((m.get("content") for m in reversed(after) if m.get("name") == "researcher"), "")
            if not str(notes).startswith("Findings:"):
                return {"text": "Answer: I could not find this in the documentation; please contact support."}
            return {"text": "Answer: " + str(notes)[len("Findings: "):][:160]}
        raise AssertionError(f"a model call from no known agent: {call['messages'][:1]}")

    return policy


# ---- processes ---------------------------------------------------------------------------------
def start(cmd, case_dir, name):
    """Starts a service process on a listening socket bound here to a free port."""
    sock = bound_socket()
    log = open(os.path.join(case_dir, "parts", f"{name}.log"), "w")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([HERE, HARNESS, os.environ.get("PYTHONPATH", "")]))
    proc = FORKS.Popen([sys.executable, *cmd, "--fd", str(sock.fileno())], stdout=log, stderr=log, env=env,
                            cwd=HERE, pass_fds=[sock.fileno()])
    port = sock.getsockname()[1]
    sock.close()
    return proc, port, log


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


async def frontend(tp, case_dir, agent_url, docs_url, sessions):
    """The chat frontend: each user session's turns in order, the sessions at once; each turn a
    `chat turn` span with `session.id` in baggage, which the instrumented httpx client sends."""
    import httpx
    from opentelemetry import baggage, context
    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor

    tracer = tp.get_tracer("chat-frontend")
    async with httpx.AsyncClient(timeout=5) as plain:
        for url in (agent_url, docs_url):
            for _ in range(600):
                try:
                    if (await plain.get(url + "/healthz")).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                await asyncio.sleep(0.05)
            else:
                raise RuntimeError(f"{url} not healthy")
    HTTPXClientInstrumentor().instrument(tracer_provider=tp)
    try:
        async def session(session_id, topics):
            results = []
            async with httpx.AsyncClient(timeout=60) as client:
                for turn, topic in enumerate(topics):
                    token = context.attach(baggage.set_baggage("session.id", session_id))
                    try:
                        with tracer.start_as_current_span("chat turn", attributes={"session.id": session_id}) as span:
                            record.note(case_dir, side="frontend", request=f"{session_id}#{turn}", topic=topic,
                                        turn_span=record.current_ids())
                            r = await client.post(agent_url + "/chat", json={
                                "session_id": session_id, "turn": turn, "text": f"{QUESTIONS[topic]}?"})
                            if r.status_code != 200:
                                span.set_status(trace_error(f"agent-service answered {r.status_code}"))
                            results.append((topic, r.status_code, r.text))
                    finally:
                        context.detach(token)
                    if r.status_code != 200:
                        break
            return session_id, results

        ids = [f"sess-{uuid.uuid4().hex[:12]}" for _ in sessions]
        return await asyncio.gather(*(session(s, topics) for s, topics in zip(ids, sessions)))
    finally:
        HTTPXClientInstrumentor().uninstrument()


def trace_error(message):
    from opentelemetry.trace import Status, StatusCode

    return Status(StatusCode.ERROR, message)


# ---- truth -------------------------------------------------------------------------------------
def load_spans(case_dir):
    spans = []
    with open(os.path.join(case_dir, "spans.jsonl")) as f:
        for line in f:
            for rs in json.loads(line)["resourceSpans"]:
                res = {a["key"]: a["value"].get("stringValue") for a in rs["resource"]["attributes"]}
                for ss in rs["scopeSpans"]:
                    for s in ss["spans"]:
                        s["service"] = res["service.name"]
                        s["instance"] = res.get("service.instance.id")
                        s["scope"] = ss["scope"]["name"]
                        s["attrs"] = {a["key"]: next(iter(a["value"].values()), None)
                                      for a in s.get("attributes", [])}
                        spans.append(s)
    return spans


def agents_truth(llm, notes):
    """Every agent that ran (a graph node that executed, or made a model call), the agents it
    delegated to (the supervisor's routing decisions), and its model calls and tokens counted from
    the stand-in's record (calls answered with an error returned no usage and are not counted)."""
    ran = {n["node"] for n in notes if n["side"] == "node"}
    stats = {a: {"llm_calls": 0, "input_tokens": 0, "output_tokens": 0} for a in AGENTS}
    for call, reply, (inp, out) in llm.calls:
        agent = agent_of(call["messages"])
        ran.add(agent)
        if "error" in reply:
            continue
        stats[agent]["llm_calls"] += 1
        stats[agent]["input_tokens"] += inp
        stats[agent]["output_tokens"] += out
    delegates = {a: set() for a in AGENTS}
    for n in notes:
        if n["side"] == "node" and n["node"] == "supervisor" and n["goto"] != "FINISH":
            delegates["supervisor"].add(n["goto"])
    return [dict(name=a, delegates_to=sorted(delegates[a]), **stats[a]) for a in AGENTS if a in ran]


def failure_truth(spec, notes):
    kind = spec["failure"]
    if kind is None:
        return None
    if kind == "tool":
        bad = [n for n in notes if n["side"] == "tool" and n["malformed"]]
        assert len(bad) == 1, bad
        return {"span_name": bad[0]["name"], "span_id": bad[0]["tool"][1], "category": "tool",
                "why": f"search_docs cut its JSON result ({bad[0]['chars']} characters of audit-log runbooks) to "
                       "1200 characters and returned the truncated, unparsable JSON without raising (its TOOL span "
                       "is OK); the researcher's next model call answered that it could not parse the results, "
                       "and the writer answered without findings"}
    if kind == "retrieval":
        bad = [n for n in notes if n["side"] == "retriever-error"]
        assert len(bad) == 1, bad
        return {"span_name": bad[0]["name"], "span_id": bad[0]["retriever"][1], "category": "retrieval",
                "why": "docs-service answered 503 (shard being rebuilt) to the retriever's POST /search; "
                       f"DocsRetriever raised {bad[0]['error'][:80]}, which propagated through search_docs, the "
                       "researcher node and the graph; agent-service answered 500"}
    if kind == "llm":
        bad = [n for n in notes if n["side"] == "llm" and n["agent"] == "supervisor"
               and "password" in (n["last_user"] or "")]
        assert len(bad) == 1, bad
        return {"span_name": bad[0]["name"], "span_id": bad[0]["span"][1], "category": "llm",
                "why": "the supervisor's model call returned a refusal (message.refusal, HTTP 200, its LLM span "
                       "is OK); the structured-output chain's _check_refusal step raised OpenAIRefusalError, "
                       "which failed the supervisor node and the graph; agent-service answered 500"}
    raise AssertionError(kind)


def enclosing_foreign(spans, orphan, right_traces, service):
    """Spans of `service` in other traces than `right_traces` whose time encloses the orphan's."""
    t0, t1 = int(orphan["startTimeUnixNano"]), int(orphan["endTimeUnixNano"])
    return [s for s in spans if s["service"] == service and s["traceId"] not in right_traces
            and int(s["startTimeUnixNano"]) <= t0 and t1 <= int(s["endTimeUnixNano"])]


def broken_hops(case_dir, notes):
    """The executor case: per turn, the graph's root span (an orphan: no context in the pool thread)
    should hang under the agent service's SERVER span of that turn; and each retriever call's
    httpx CLIENT span (an orphan too) under the retriever's span."""
    spans = load_spans(case_dir)
    by_id = {s["spanId"]: s for s in spans}
    per = {}
    for n in notes:
        per.setdefault(n.get("request"), []).append(n)
    hops = []
    for request, ns in sorted(per.items(), key=lambda kv: str(kv[0])):
        if request is None:
            continue
        handler = next(n for n in ns if n["side"] == "handler")
        front = next(n for n in ns if n["side"] == "frontend")
        start = next(n for n in ns if n["side"] == "graph-start")
        assert start["otel_current"] is None, "the graph thread had a context: no break happened"
        server_trace, server_span = handler["server"]
        client_span = handler["traceparent"].split("-")[2]
        callers = [server_span, client_span, front["turn_span"][1]]
        roots = {tuple(n["ancestors"][-1]) if n["ancestors"] else tuple(n["span"]) for n in ns if n["side"] == "node"}
        assert len(roots) == 1, roots
        (root_trace, root_span), = roots
        root = by_id[root_span]
        assert not root.get("parentSpanId") and root_trace != server_trace, "the graph's root span has a parent"
        session = request.split("#")[0]
        foreign = [s for s in enclosing_foreign(spans, root, {server_trace, root_trace}, "agent-service")
                   if s["attrs"].get("session.id") == session]
        same_session = [s for s in spans if s["service"] == "agent-service" and s["attrs"].get("session.id") == session
                        and s["traceId"] == server_trace
                        and int(s["startTimeUnixNano"]) <= int(root["startTimeUnixNano"])
                        and int(root["endTimeUnixNano"]) <= int(s["endTimeUnixNano"])]
        assert root["attrs"].get("session.id") == session, root["attrs"]
        must = not foreign and [s["spanId"] for s in same_session] == [server_span]
        hops.append({
            "hop": "FastAPI async handler -> loop.run_in_executor(ThreadPoolExecutor) -> graph.invoke "
                   f"(LangGraph root span, turn {request})",
            "orphan_trace_id": root_trace, "orphan_span_id": root_span,
            "parent_span_ids": callers,
            "must_repair": must,
            "why": ("session.id is on both sides (the orphan LangGraph CHAIN root has it from OpenInference's "
                    "thread_id metadata, the agent-service SERVER span from W3C baggage via the "
                    "BaggageSpanProcessor), a session's turns run one after another, and one and only one "
                    "agent-service span with that session.id encloses the orphan in time: the SERVER span "
                    "`POST /chat`" if must else
                    f"session.id ties the orphan to {len(same_session)} enclosing SERVER spans "
                    f"and {len(foreign)} other enclosing spans of other traces: not unique"),
            "kinds": ["orphan_root", "lost_context"],
        })
        for n in ns:
            if n["side"] != "docs-client":
                continue
            assert n["otel_current"] is None, "the retriever had an OpenTelemetry context: no break happened"
            orphan_trace, orphan_span = n["client"]
            orphan = by_id[orphan_span]
            assert not orphan.get("parentSpanId") and orphan_trace not in (root_trace, server_trace)
            parents = [n["retriever"][1], *(a[1] for a in n["ancestors"]), *callers]
            others = enclosing_foreign(spans, orphan, {server_trace, root_trace, orphan_trace}, "agent-service")
            must = not others
            hops.append({
                "hop": f"DocsRetriever (OpenInference RETRIEVER span) -> httpx POST docs-service /search, turn {request}",
                "orphan_trace_id": orphan_trace, "orphan_span_id": orphan_span,
                "parent_span_ids": parents,
                "must_repair": must,
                "why": ("no key both sides carry (the orphan httpx CLIENT span `POST` has http.url of docs-service "
                        "and http.method/http.status_code only, no session.id: no baggage in the pool thread; the "
                        "RETRIEVER span has input.value = the query, the request body is not on any span); but one "
                        "and only one turn was in flight in "
                        "agent-service during it: every agent-service span enclosing it in time is this turn's"
                        if must else
                        f"no key both sides carry (the orphan httpx CLIENT span `POST` has http.url of "
                        f"docs-service and http.method/http.status_code only, no session.id; the RETRIEVER span has "
                        f"input.value = the query, the request body is on no span), and {len(others)} spans of the other session's concurrent turn enclose it in "
                        f"time in the same agent-service instance"),
                "kinds": ["orphan_root", "lost_context"],
            })
    return hops


def check_agents(case_dir, truth, notes):
    """The truth's model calls and tokens per agent agree with what the spans show: OpenInference's
    LLM spans, grouped by the LangGraph node in their metadata, and the spans noted live per call."""
    spans = [s for s in load_spans(case_dir) if s["attrs"].get("openinference.span.kind") == "LLM"]
    llm_notes = [n for n in notes if n["side"] == "llm"]
    assert all(n["span"] for n in llm_notes), "a model call's span was not found"
    assert sorted(n["span"][1] for n in llm_notes) == sorted(s["spanId"] for s in spans)
    for agent in truth["agents"]:
        mine = [s for s in spans if json.loads(s["attrs"]["metadata"]).get("langgraph_node") == agent["name"]]
        assert len(mine) == agent["llm_calls"] == sum(n["agent"] == agent["name"] for n in llm_notes), agent
        assert sum(int(s["attrs"]["llm.token_count.prompt"]) for s in mine) == agent["input_tokens"], agent
        assert sum(int(s["attrs"]["llm.token_count.completion"]) for s in mine) == agent["output_tokens"], agent


def check_healthy(case_dir, notes):
    """Every hop of a healthy case carried its context: the graph ran under the SERVER span, the
    docs-service calls were made in the turn's trace."""
    for n in notes:
        if n["side"] == "graph-start":
            assert n["otel_current"] is not None, n
        if n["side"] == "docs-client":
            assert n["otel_current"] is not None and n["client"][0] == n["otel_current"][0], n
    for s in load_spans(case_dir):
        if not s.get("parentSpanId"):
            assert s["service"] == "chat-frontend" and s["name"] == "chat turn", (s["service"], s["name"])


def run_case(out, name, spec):
    case_dir = os.path.join(os.path.abspath(out), name)
    shutil.rmtree(case_dir, ignore_errors=True)
    record.case_dir(case_dir)
    procs = []
    t0 = time.time()
    try:
        with StandIn(make_policy(spec)) as llm:
            docs_cmd = ["docs_service.py", "--out", case_dir]
            if spec.get("rebuilding"):
                docs_cmd += ["--rebuilding", spec["rebuilding"]]
            docs, docs_port, log = start(docs_cmd, case_dir, "docs-service")
            procs.append((docs, log))
            agent, agent_port, log = start(["agent_service.py", "--out", case_dir, "--mode", spec["mode"],
                                            "--llm", llm.base_url, "--docs", f"http://127.0.0.1:{docs_port}"],
                                           case_dir, "agent-service")
            procs.append((agent, log))
            tp = record.provider(case_dir, "chat-frontend", set_global=False)
            from opentelemetry.processor.baggage import BaggageSpanProcessor
            tp.add_span_processor(BaggageSpanProcessor(lambda key: key == "session.id"))
            results = asyncio.run(frontend(tp, case_dir, f"http://127.0.0.1:{agent_port}",
                                           f"http://127.0.0.1:{docs_port}", spec["sessions"]))
            tp.shutdown()
    finally:
        stop_all(procs)
    for path in os.listdir(os.path.join(case_dir, "parts")):
        if path.endswith(".log"):
            with open(os.path.join(case_dir, "parts", path)) as f:
                text = f.read().strip()
            if "Traceback" in text and spec["failure"] in (None, "tool"):
                print(f"--- {name} {path}:\n{text[-3000:]}", file=sys.stderr)
            os.remove(os.path.join(case_dir, "parts", path))
    statuses = [code for _, res in results for _, code, _ in res]
    if spec["failure"] in ("retrieval", "llm"):
        assert statuses[-1] == 500 and all(c == 200 for c in statuses[:-1]), results
    else:
        assert all(c == 200 for c in statuses), results
    assert len(statuses) == sum(len(s) for s in spec["sessions"])
    notes = record.notes(case_dir)
    truth = {
        "case": name, "suite": "langgraph", "description": spec["description"],
        "versions": record.versions("langgraph", "langchain-core", "langchain-openai", "openai",
                                    "openinference-instrumentation-langchain", "opentelemetry-sdk",
                                    "opentelemetry-instrumentation-fastapi", "opentelemetry-instrumentation-httpx",
                                    "opentelemetry-processor-baggage", "fastapi", "uvicorn", "httpx"),
        "healthy": spec["healthy"],
        "broken_hops": [],
        "agents": agents_truth(llm, notes),
        "failure": failure_truth(spec, notes),
        "sessions": len(spec["sessions"]),
        "requests": len(statuses),
    }
    record.finish(case_dir, truth)  # merges the parts into spans.jsonl (the checks below read it)
    check_agents(case_dir, truth, notes)
    if spec["healthy"]:
        check_healthy(case_dir, notes)
    else:
        truth["broken_hops"] = broken_hops(case_dir, notes)
        with open(os.path.join(case_dir, "truth.json"), "w") as f:
            json.dump(truth, f, indent=1, sort_keys=True)
            f.write("\n")
    print(f"{name}: {len(load_spans(case_dir))} spans, {len(truth['broken_hops'])} broken hops, "
          f"{time.time() - t0:.1f} s")


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
