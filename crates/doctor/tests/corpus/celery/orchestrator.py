"""The orchestrator service: a threaded WSGI app (OpenTelemetry's WSGI middleware makes the
SERVER span) that plans with an LLM and delegates each research tool call to the Celery
worker, waiting for the result.

    ORCH_CELERY_OTEL=1|0   CeleryInstrumentor in this process or not
    ORCH_SEND=import|send_task
        import:    `from tasks import research; research.apply_async(...)` (shared tasks module)
        send_task: `app.send_task("research.run", ...)` by name, without the worker's code
    ORCH_WAIT=inline|beside
        inline:    `enqueue(topic).get()`: the wait is inside the span that sent the task
        beside:    the task is sent, then a `wait result` span (a sibling of the PRODUCER span)
                   waits for it, as an agent that polls its job does
"""

import json
import os
import signal
import threading
import uuid
from wsgiref.simple_server import make_server

from celery.signals import before_task_publish
from opentelemetry import baggage, context, trace
from opentelemetry.instrumentation.openai_v2 import OpenAIInstrumentor
from opentelemetry.instrumentation.wsgi import OpenTelemetryMiddleware
from opentelemetry.processor.baggage import ALLOW_ALL_BAGGAGE_KEYS, BaggageSpanProcessor

import record
from research import TOOLS
from serving import QuietHandler, ThreadingWSGIServer

CASE_DIR = os.environ["CORPUS_CASE_DIR"]
SEND = os.environ.get("ORCH_SEND", "import")
WAIT = os.environ.get("ORCH_WAIT", "inline")

tp = record.provider(CASE_DIR, "orchestrator")
tp.add_span_processor(BaggageSpanProcessor(ALLOW_ALL_BAGGAGE_KEYS))
OpenAIInstrumentor().instrument(tracer_provider=tp)
if os.environ.get("ORCH_CELERY_OTEL", "1") == "1":
    from opentelemetry.instrumentation.celery import CeleryInstrumentor

    CeleryInstrumentor().instrument(tracer_provider=tp)

if SEND == "import":
    import tasks

    celery_app = tasks.app

    def enqueue(topic):
        return tasks.research.apply_async(args=(topic,))

else:
    from celery import Celery

    url = os.environ.get("REDIS_URL", "redis://127.0.0.1:16379/0")
    celery_app = Celery("orchestrator", broker=url, backend=url)
    celery_app.conf.update(task_default_queue=os.environ["CELERY_QUEUE"], broker_connection_retry_on_startup=True)

    def enqueue(topic):
        return celery_app.send_task("research.run", args=(topic,))


tracer = trace.get_tracer("orchestrator_agent")
llm = None
_chain = threading.local()  # the request's own spans, outermost first (for the ground truth)


@before_task_publish.connect(weak=False)
def _seen_at_publish(headers=None, **_):
    """Connected after the instrumentation's own receiver: the current span is its PRODUCER span."""
    chain = [record.current_ids()] + list(reversed(getattr(_chain, "ids", [])))
    seen, ordered = set(), []
    for ids in chain:
        if ids and tuple(ids) not in seen:
            seen.add(tuple(ids))
            ordered.append(ids)
    record.note(CASE_DIR, event="publish", task_id=(headers or {}).get("id"), chain=ordered,
                traceparent=(headers or {}).get("traceparent"))


def chat(app_environ, start_response):
    body = json.loads(app_environ["wsgi.input"].read(int(app_environ.get("CONTENT_LENGTH") or 0)))
    session_id = body["session_id"]
    server_span = trace.get_current_span()
    server_span.set_attribute("session.id", session_id)  # at the edge, as the service does
    token = context.attach(baggage.set_baggage("session.id", session_id))
    _chain.ids = [record.current_ids()]
    try:
        with tracer.start_as_current_span("invoke_agent orchestrator") as agent:
            agent.set_attribute("gen_ai.operation.name", "invoke_agent")
            agent.set_attribute("gen_ai.agent.name", "orchestrator")
            _chain.ids.append(record.current_ids())
            messages = [{"role": "user", "content": body["question"]}]
            plan = llm.chat.completions.create(model="gpt-4o", messages=messages, tools=TOOLS)
            msg = plan.choices[0].message
            messages.append(msg.model_dump(exclude_none=True))
            for call in msg.tool_calls or []:
                topic = json.loads(call.function.arguments)["topic"]
                with tracer.start_as_current_span("execute_tool research") as step:
                    step.set_attribute("gen_ai.operation.name", "execute_tool")
                    step.set_attribute("gen_ai.tool.name", "research")
                    step.set_attribute("gen_ai.tool.call.id", call.id)
                    _chain.ids.append(record.current_ids())
                    if WAIT == "beside":
                        sent = enqueue(topic)
                        with tracer.start_as_current_span("wait result"):
                            record.note(CASE_DIR, event="wait", task_id=sent.id, span=record.current_ids())
                            result = sent.get(timeout=30)
                    else:
                        result = enqueue(topic).get(timeout=30)
                    _chain.ids.pop()
                messages.append({"role": "tool", "tool_call_id": call.id, "content": result})
            final = llm.chat.completions.create(model="gpt-4o", messages=messages, tools=TOOLS)
            answer = final.choices[0].message.content
    finally:
        _chain.ids = []
        context.detach(token)
    data = json.dumps({"session_id": session_id, "answer": answer}).encode()
    start_response("200 OK", [("content-type", "application/json"), ("content-length", str(len(data)))])
    return [data]


def main():
    global llm
    import openai

    llm = openai.OpenAI(base_url=os.environ["LLM_BASE_URL"], api_key="stand-in", max_retries=0)
    httpd = make_server("127.0.0.1", 0, OpenTelemetryMiddleware(chat), server_class=ThreadingWSGIServer,
                        handler_class=QuietHandler)
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=httpd.shutdown).start())
    tmp = os.environ["ORCH_PORT_FILE"] + f".{uuid.uuid4().hex}"
    with open(tmp, "w") as f:
        f.write(str(httpd.server_address[1]))
    os.replace(tmp, os.environ["ORCH_PORT_FILE"])
    httpd.serve_forever()
    httpd.server_close()


if __name__ == "__main__":
    main()
