"""The agent services of the http suite, each run as its own process by make.py.

    python services.py --zygote          what make.py runs: starts services on request (see zygote())
    python services.py ROLE CONFIG_JSON  one service on its own (prints READY <port>)

ROLE is one of
    orchestrator  the edge: POST /chat from a user starts a session; its agent plans with the
                  LLM, asks downstream agent services over HTTP (httpx or aiohttp client,
                  instrumented), and summarizes. Served by FastAPI/uvicorn or aiohttp.web.
    researcher    a downstream agent service: POST /research does an agent step with an LLM
                  call and, optionally, a call to the search service. Served by
                  aiohttp.web or FastAPI/uvicorn, traced in one of these ways (config "tracing"):
                    instrumented  the server instrumentation (extracts traceparent)
                    handwritten   no server instrumentation: a hand-written aiohttp middleware
                                  opens the SERVER span and never extracts traceparent
                    excluded      FastAPI instrumentation with the route in excluded_urls
                    native        FastAPI's own telemetry (FastAPI >= 0.16x traces by itself
                                  once a TracerProvider is set, unless the contrib
                                  instrumentation's middleware is in its stack)
    search        a plain tool service (FastAPI/uvicorn, instrumented): GET /search.

Each process has its own TracerProvider (record.provider) with its own service.name, the
W3C propagators of the SDK (unless OTEL_PROPAGATORS says otherwise), the baggage span
processor for session.id, and writes what it saw at each hand-off with record.note.
It serves on a listening socket bound before it started (127.0.0.1, a free port), and says
when it serves.
"""

import asyncio
import json
import os
import signal
import socket
import sys
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "harness"))

# Set by setup() in the service's own process, after its environment is final (the
# OpenTelemetry packages read OTEL_PROPAGATORS and OTEL_SEMCONV_STABILITY_OPT_IN then).
ROLE = CFG = OUT = SERVICE = TP = tracer = LLM = None
record = trace = context = baggage = SpanKind = None


def setup(role, cfg):
    global ROLE, CFG, OUT, SERVICE, TP, tracer, LLM, record, trace, context, baggage, SpanKind
    import record as _record
    from opentelemetry import baggage as _baggage, context as _context, trace as _trace
    from opentelemetry.processor.baggage import BaggageSpanProcessor
    from opentelemetry.trace import SpanKind as _SpanKind

    record, trace, context, baggage, SpanKind = _record, _trace, _context, _baggage, _SpanKind
    ROLE, CFG, OUT = role, cfg, cfg["out"]
    SERVICE = cfg.get("service", role)
    TP = record.provider(OUT, SERVICE, instance=cfg.get("instance"))
    TP.add_span_processor(BaggageSpanProcessor(lambda key: key == "session.id"))
    tracer = trace.get_tracer(f"agents.{role}")
    if cfg.get("llm"):
        from opentelemetry.instrumentation.openai_v2 import OpenAIInstrumentor

        OpenAIInstrumentor().instrument()
        import openai

        LLM = openai.AsyncOpenAI(base_url=cfg["llm"], api_key="stand-in", max_retries=0)


def span_ids(span):
    return record.current_ids(span)


def parent_of(span):
    """The parent the SDK gave this live span (None for a root)."""
    p = getattr(span, "parent", None)
    if p is None or not p.is_valid:
        return None
    return format(p.span_id, "016x")


async def ask_llm(system, question):
    resp = await LLM.chat.completions.create(
        model="stand-in-small",
        messages=[{"role": "system", "content": system}, {"role": "user", "content": question}],
    )
    return resp.choices[0].message.content


def bind():
    """The listening socket bound for this service on 127.0.0.1 (a free port) before it
    started (by the zygote), or, run on its own, one it binds now."""
    if "fd" in CFG:
        sock = socket.socket(fileno=CFG["fd"])
    else:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        sock.listen(128)
    sock.setblocking(False)
    return sock


def ready(sock):
    """Tells make.py this service serves (a file it polls for), and starts a watchdog that
    stops the service if the process that started it is gone."""
    port = sock.getsockname()[1]
    if CFG.get("ready_file"):
        with open(CFG["ready_file"] + ".tmp", "w") as f:
            f.write(str(port))
        os.rename(CFG["ready_file"] + ".tmp", CFG["ready_file"])
    else:
        print(f"READY {port}", flush=True)
    parent = os.getppid()

    async def watchdog():
        while os.getppid() == parent:
            await asyncio.sleep(0.5)
        os.kill(os.getpid(), signal.SIGTERM)

    WATCHDOG.append(asyncio.get_running_loop().create_task(watchdog()))


WATCHDOG = []


async def serve_uvicorn(app, sock):
    import uvicorn

    config = uvicorn.Config(app, log_level="warning", lifespan="off", access_log=False)
    server = uvicorn.Server(config)
    ready(sock)
    await server.serve(sockets=[sock])


async def serve_aiohttp(app, sock):
    from aiohttp import web

    runner = web.AppRunner(app, handle_signals=False)
    await runner.setup()
    site = web.SockSite(runner, sock, shutdown_timeout=0.5)
    await site.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    ready(sock)
    await stop.wait()
    await runner.cleanup()


# --------------------------------------------------------------------------- orchestrator ---

def orchestrator_main():
    client_lib = CFG["client"]
    targets = CFG["targets"]  # name -> base url

    def note_client(span, headers):
        hop = headers.get("x-hop-id")
        if hop:
            # the CLIENT span the instrumentation just started, and what encloses it
            record.note(OUT, side="client", hop=hop, client=span_ids(span),
                        step=HOP_STEPS.get(hop), library=client_lib)

    HOP_STEPS = {}

    if client_lib == "httpx":
        from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor

        async def async_request_hook(span, request):
            note_client(span, request.headers)

        HTTPXClientInstrumentor().instrument(async_request_hook=async_request_hook)
        import httpx

        http = httpx.AsyncClient(timeout=15.0)

        async def post(url, body, headers):
            r = await http.post(url, json=body, headers=headers)
            r.raise_for_status()
            return r.json()
    else:
        from opentelemetry.instrumentation.aiohttp_client import AioHttpClientInstrumentor

        def request_hook(span, params):
            note_client(span, params.headers)

        AioHttpClientInstrumentor().instrument(request_hook=request_hook)
        import aiohttp

        session_box = {}

        async def post(url, body, headers):
            if "s" not in session_box:
                session_box["s"] = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15))
            async with session_box["s"].post(url, json=body, headers=headers) as r:
                r.raise_for_status()
                return await r.json()

    async def ask_agent(target, question, hop):
        """One step of the orchestrator agent: a tool call that asks a downstream agent."""
        with tracer.start_as_current_span(
            f"execute_tool ask_{target}",
            attributes={"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": f"ask_{target}",
                        "gen_ai.tool.type": "function"},
        ) as step:
            HOP_STEPS[hop] = span_ids(step)
            url = targets[target].rstrip("/") + "/research"
            result = await post(url, {"question": question}, {"x-hop-id": hop})
            return result["answer"]

    GATES = {}

    async def chat(session_id, question, plan, gate=None):
        """The edge: a user's request starts a session; the agent runs its plan."""
        edge = trace.get_current_span()
        edge.set_attribute("session.id", session_id)
        token = context.attach(baggage.set_baggage("session.id", session_id))
        try:
            with tracer.start_as_current_span(
                "invoke_agent orchestrator",
                attributes={"gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": "orchestrator"},
            ) as agent:
                record.note(OUT, side="session", session=session_id, edge=span_ids(edge),
                            agent=span_ids(agent))
                await ask_llm("You plan research.", f"plan: {question}")
                phases = {}
                for k, step in enumerate(plan):
                    phases.setdefault(step["phase"], []).append((k, step))
                answers = []
                for phase in range(gate["phases"] if gate else max(phases, default=-1) + 1):
                    if gate:
                        # the case's choreography: the sessions in flight together start each
                        # phase of their plans together (a phase's calls run at once)
                        barrier = GATES.setdefault(gate["name"], asyncio.Barrier(gate["parties"]))
                        await barrier.wait()
                    answers += await asyncio.gather(*[
                        ask_agent(step["target"], f"{question} (part {k + 1})", f"{session_id}/{k}")
                        for k, step in phases.get(phase, [])
                    ])
                summary = await ask_llm("You summarize.", "summarize: " + " | ".join(answers))
                return {"session": session_id, "answer": summary}
        finally:
            context.detach(token)

    sock = bind()
    if CFG["server"] == "fastapi":
        from fastapi import FastAPI, Request
        from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

        app = FastAPI()

        @app.post("/chat")
        async def chat_route(request: Request):
            body = await request.json()
            return await chat(body["session"], body["question"], body["plan"], body.get("gate"))

        if not CFG.get("native"):
            FastAPIInstrumentor.instrument_app(app)
        asyncio.run(serve_uvicorn(app, sock))
    else:
        from opentelemetry.instrumentation.aiohttp_server import AioHttpServerInstrumentor

        AioHttpServerInstrumentor().instrument()
        from aiohttp import web

        async def chat_route(request):
            body = await request.json()
            return web.json_response(await chat(body["session"], body["question"], body["plan"], body.get("gate")))

        app = web.Application()
        app.router.add_post("/chat", chat_route)
        asyncio.run(serve_aiohttp(app, sock))


# ----------------------------------------------------------------------------- researcher ---

def researcher_main():
    tracing = CFG["tracing"]
    work_s = CFG.get("work_s", 0.2)
    search_url = CFG.get("search")
    agent_name = CFG.get("agent", SERVICE)

    if search_url:
        from opentelemetry.instrumentation.aiohttp_client import AioHttpClientInstrumentor

        AioHttpClientInstrumentor().instrument()
    import aiohttp

    box = {}

    async def do_research(question, hop):
        """The researcher agent's work for one request; notes what the request's span is."""
        server_span = trace.get_current_span()
        with tracer.start_as_current_span(
            f"invoke_agent {agent_name}",
            attributes={"gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": agent_name},
        ) as agent:
            if server_span.get_span_context().is_valid:
                first = server_span  # the SERVER span of this request
            else:
                first = agent  # no SERVER span (excluded route): the agent span is the request's first
            record.note(OUT, side="server", hop=hop, service=SERVICE, first=span_ids(first),
                        first_parent=parent_of(first), first_kind=str(getattr(first, "kind", "")),
                        agent=span_ids(agent))
            notes = []
            if search_url:
                if "s" not in box:
                    box["s"] = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))
                async with box["s"].get(search_url.rstrip("/") + "/search", params={"q": question}) as r:
                    notes = (await r.json())["results"]
            await asyncio.sleep(work_s)
            answer = await ask_llm(f"You are the {agent_name}.", f"{question} notes: {', '.join(notes)}")
            return {"answer": answer}

    sock = bind()
    if CFG["server"] == "aiohttp":
        from aiohttp import web

        middlewares = []
        if tracing == "instrumented":
            from opentelemetry.instrumentation.aiohttp_server import AioHttpServerInstrumentor

            AioHttpServerInstrumentor().instrument()
        elif tracing == "handwritten":
            http_tracer = trace.get_tracer("researcher.http.middleware", "1.0")

            @web.middleware
            async def tracing_middleware(request, handler):
                # A team's own middleware: a SERVER span per request, attributes after the
                # HTTP semantic conventions -- and no propagate.extract(request.headers).
                route = request.match_info.route.resource.canonical if request.match_info.route.resource else request.path
                attrs = {
                    "http.request.method": request.method,
                    "url.scheme": request.scheme,
                    "url.path": request.path,
                    "http.route": route,
                    "server.address": request.url.host,
                    "server.port": request.url.port,
                    "network.protocol.version": f"{request.version.major}.{request.version.minor}",
                }
                if request.remote:
                    attrs["client.address"] = request.remote
                if request.headers.get("user-agent"):
                    attrs["user_agent.original"] = request.headers["user-agent"]
                with http_tracer.start_as_current_span(f"{request.method} {route}", kind=SpanKind.SERVER,
                                                       attributes=attrs) as span:
                    resp = await handler(request)
                    span.set_attribute("http.response.status_code", resp.status)
                    return resp

            middlewares.append(tracing_middleware)

        async def research_route(request):
            body = await request.json()
            return web.json_response(await do_research(body["question"], request.headers.get("x-hop-id")))

        app = web.Application(middlewares=middlewares)
        app.router.add_post("/research", research_route)
        asyncio.run(serve_aiohttp(app, sock))
    else:
        from fastapi import FastAPI, Request
        from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

        app = FastAPI()

        @app.post("/research")
        async def research_route(request: Request):
            body = await request.json()
            return await do_research(body["question"], request.headers.get("x-hop-id"))

        if tracing != "native":  # "native": FastAPI's own telemetry, on when a TracerProvider is set
            FastAPIInstrumentor.instrument_app(app, excluded_urls="/research" if tracing == "excluded" else None)
        asyncio.run(serve_uvicorn(app, sock))


# --------------------------------------------------------------------------------- search ---

def search_main():
    from fastapi import FastAPI
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

    app = FastAPI()

    @app.get("/search")
    async def search(q: str):
        with tracer.start_as_current_span("search.query", attributes={"search.query.length": len(q)}):
            await asyncio.sleep(0.02)
            words = [w for w in q.split() if len(w) > 4][:3]
            return {"results": [f"doc about {w}" for w in words]}

    FastAPIInstrumentor.instrument_app(app)
    asyncio.run(serve_uvicorn(app, bind()))


def run(role, cfg):
    setup(role, cfg)
    try:
        {"orchestrator": orchestrator_main, "researcher": researcher_main, "search": search_main}[role]()
    finally:
        TP.shutdown()


def zygote():
    """Serves make.py's requests to start services: one JSON line each on stdin
    ({role, cfg, env, log}), answered with {pid, port} on stdout. It imports the heavy web and
    LLM client libraries once, binds each service's listening socket (127.0.0.1, a free
    port) and forks the service, which sets its environment and only then imports and sets
    up OpenTelemetry, as a pre-forking server's workers do (gunicorn --preload, whose
    documented OpenTelemetry set-up is in the post-fork hook)."""
    # Not fastapi: since 0.16x it imports the OpenTelemetry API (its native telemetry), and
    # opentelemetry.propagate reads OTEL_PROPAGATORS when first imported.
    import aiohttp  # noqa: F401
    import aiohttp.web  # noqa: F401
    import httpx  # noqa: F401
    import openai  # noqa: F401
    import pydantic  # noqa: F401
    import starlette.applications  # noqa: F401
    import starlette.routing  # noqa: F401
    import uvicorn  # noqa: F401

    assert not any(m.startswith("opentelemetry") for m in sys.modules), "OpenTelemetry must load after the fork"
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # the kernel reaps the services
    children = []
    while True:
        line = sys.stdin.readline()
        if not line:
            break
        cmd = json.loads(line)
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        sock.listen(128)
        port = sock.getsockname()[1]
        cfg = dict(cmd["cfg"], fd=sock.fileno())
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                signal.signal(signal.SIGCHLD, signal.SIG_DFL)
                os.environ.update(cmd["env"])
                log = os.open(cmd["log"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
                os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
                os.dup2(log, 1)
                os.dup2(log, 2)
                run(cmd["role"], cfg)
                code = 0
            except BaseException:
                traceback.print_exc()
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        sock.close()
        children.append(pid)
        print(json.dumps({"pid": pid, "port": port}), flush=True)
    for pid in children:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass


if __name__ == "__main__":
    if sys.argv[1] == "--zygote":
        zygote()
    else:
        run(sys.argv[1], json.loads(sys.argv[2]))
