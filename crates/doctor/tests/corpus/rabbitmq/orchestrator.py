"""The orchestrator service (pika): a threaded WSGI app (OpenTelemetry's WSGI middleware makes
the SERVER span) that plans with an LLM and hands each `research` tool call to the research
worker over RabbitMQ as an RPC (reply_to + correlation_id), waiting for the reply.

    ORCH_PIKA_OTEL=1|0       PikaInstrumentor in this process or not
    ORCH_REPLY=per_request|shared
        per_request: each call opens its own BlockingConnection, an exclusive reply queue and a
                     consumer on it, publishes, and pumps process_data_events until its reply
        shared:      the RabbitMQ RPC tutorial's client: one reply queue and one consumer thread
                     for the whole service, replies matched to waiting requests by correlation_id
    ORCH_MESSAGE_ID=1|0      set message_id (a job id of its own) on the request, or only
                             correlation_id (as the tutorial does)
    JOB_QUEUE                the queue it publishes to (the worker's, or a router's)
"""

import json
import signal
import threading
import os
import time
import uuid
from wsgiref.simple_server import make_server

import pika
from opentelemetry import baggage, context, trace
from opentelemetry.instrumentation.wsgi import OpenTelemetryMiddleware

import record
from common import AMQP_URL, CASE_DIR, JOB_QUEUE, dedupe, ready, sent_ids, telemetry
from research import TOOLS
from serving import QuietHandler, ThreadingWSGIServer

REPLY = os.environ.get("ORCH_REPLY", "per_request")
MESSAGE_ID = os.environ.get("ORCH_MESSAGE_ID", "1") == "1"
INSTRUMENTED = os.environ.get("ORCH_PIKA_OTEL", "1") == "1"
PARAMS = pika.URLParameters(AMQP_URL)

_chain = threading.local()  # the request's own spans, outermost first (for the ground truth)


def chain_now():
    """The spans current in this thread, innermost first."""
    return dedupe([record.current_ids()] + list(reversed(getattr(_chain, "ids", []))))


def _published(span, body, properties):
    """publish_hook: runs inside the PRODUCER span, after the context was injected."""
    record.note(CASE_DIR, event="publish", key=properties.correlation_id, message_id=properties.message_id,
                chain=chain_now(), traceparent=(properties.headers or {}).get("traceparent"))


tp = telemetry("orchestrator")
if INSTRUMENTED:
    from opentelemetry.instrumentation.pika import PikaInstrumentor

    PikaInstrumentor().instrument(tracer_provider=tp, publish_hook=_published)

tracer = trace.get_tracer("orchestrator_agent")
llm = None


def request_properties(corr, reply_to):
    return pika.BasicProperties(content_type="application/json", reply_to=reply_to, correlation_id=corr,
                                message_id=f"job-{uuid.uuid4().hex[:16]}" if MESSAGE_ID else None)


def publish(channel, topic, props):
    if not INSTRUMENTED:
        record.note(CASE_DIR, event="publish", key=props.correlation_id, message_id=props.message_id,
                    chain=chain_now(), traceparent=None)
    channel.basic_publish(exchange="", routing_key=JOB_QUEUE, body=json.dumps({"topic": topic}).encode(),
                          properties=props)


def note_reply(props):
    record.note(CASE_DIR, event="reply", key=props.correlation_id, consumer=record.current_ids(),
                headers=sorted((props.headers or {}).keys()), sent=sent_ids(props.headers))


def call_per_request(topic):
    conn = pika.BlockingConnection(PARAMS)
    try:
        ch = conn.channel()
        queue = ch.queue_declare(queue="", exclusive=True).method.queue
        corr = uuid.uuid4().hex
        box = {}

        def on_reply(_ch, _method, props, body):
            if props.correlation_id == corr:
                note_reply(props)
                box["body"] = body

        ch.basic_consume(queue=queue, on_message_callback=on_reply, auto_ack=True)
        publish(ch, topic, request_properties(corr, queue))
        deadline = time.monotonic() + 30
        while "body" not in box:
            if time.monotonic() > deadline:
                raise TimeoutError(f"no reply for {corr}")
            conn.process_data_events(time_limit=0.05)
        return json.loads(box["body"])["result"]
    finally:
        conn.close()


class SharedReplies:
    """The tutorial's RPC client: one exclusive reply queue, consumed on a thread of its own."""

    def __init__(self):
        self.pending = {}  # correlation_id -> [threading.Event, body]
        self.lock = threading.Lock()
        self.queue = None
        self.stopping = False
        self.started = threading.Event()
        self.thread = threading.Thread(target=self.run, name="replies", daemon=True)
        self.thread.start()
        if not self.started.wait(30):
            raise RuntimeError("the reply consumer did not start")

    def run(self):
        conn = pika.BlockingConnection(PARAMS)
        ch = conn.channel()
        self.queue = ch.queue_declare(queue="", exclusive=True).method.queue
        ch.basic_consume(queue=self.queue, on_message_callback=self.on_reply, auto_ack=True)
        self.started.set()
        while not self.stopping:
            conn.process_data_events(time_limit=0.05)
        conn.close()

    def on_reply(self, _ch, _method, props, body):
        note_reply(props)
        with self.lock:
            waiting = self.pending.get(props.correlation_id)
        if waiting:
            waiting[1] = body
            waiting[0].set()

    def call(self, topic):
        corr = uuid.uuid4().hex
        waiting = [threading.Event(), None]
        with self.lock:
            self.pending[corr] = waiting
        conn = pika.BlockingConnection(PARAMS)
        try:
            publish(conn.channel(), topic, request_properties(corr, self.queue))
        finally:
            conn.close()
        if not waiting[0].wait(30):
            raise TimeoutError(f"no reply for {corr}")
        with self.lock:
            del self.pending[corr]
        return json.loads(waiting[1])["result"]


replies = None


def chat(app_environ, start_response):
    body = json.loads(app_environ["wsgi.input"].read(int(app_environ.get("CONTENT_LENGTH") or 0)))
    session_id = body["session_id"]
    trace.get_current_span().set_attribute("session.id", session_id)  # at the edge, as the service does
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
                    result = replies.call(topic) if REPLY == "shared" else call_per_request(topic)
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
    global llm, replies
    import openai

    llm = openai.OpenAI(base_url=os.environ["LLM_BASE_URL"], api_key="stand-in", max_retries=0)
    if REPLY == "shared":
        replies = SharedReplies()
    httpd = make_server("127.0.0.1", 0, OpenTelemetryMiddleware(chat), server_class=ThreadingWSGIServer,
                        handler_class=QuietHandler)
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=httpd.shutdown).start())
    ready(os.environ["READY_FILE"], httpd.server_address[1])
    httpd.serve_forever()
    httpd.server_close()
    if replies:
        replies.stopping = True
        replies.thread.join(10)


if __name__ == "__main__":
    main()
