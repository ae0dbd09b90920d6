"""The research worker (pika): a BlockingConnection consumer of JOB_QUEUE, one message at a
time (prefetch 1), that runs the research agent (an LLM call) and replies to the message's
reply_to with its correlation_id, as the RabbitMQ RPC tutorial's server does.

    WORKER_PIKA_OTEL=all|consume_channel|none
        all:             PikaInstrumentor().instrument(): every channel, consumer and publish
        consume_channel: PikaInstrumentor.instrument_channel(channel) on the channel it consumes
                         on only (the instrumentation's per-channel API); it replies on a second,
                         uninstrumented channel of the same connection
        none:            no pika instrumentation (its own spans and the OpenAI ones remain)
    WORKER_POOL=1            the agent hands its LLM call to a ThreadPoolExecutor and waits for
                             it; the pool thread starts with an empty context
"""

import json
import os
import signal
import threading
from concurrent.futures import ThreadPoolExecutor

import openai
import pika
from opentelemetry import trace
from opentelemetry.sdk.trace import SpanProcessor

import record
from common import AMQP_URL, CASE_DIR, JOB_QUEUE, ready, sent_ids, telemetry

MODE = os.environ.get("WORKER_PIKA_OTEL", "all")
POOL = os.environ.get("WORKER_POOL") == "1"
_task = {}  # the message being handled (one at a time): its CONSUMER span and agent span


def _reply_published(span, body, properties):
    """publish_hook: runs inside the reply's PRODUCER span."""
    record.note(CASE_DIR, event="reply_publish", key=properties.correlation_id,
                chain=[ids for ids in (record.current_ids(), _task.get("consumer")) if ids])


_job = threading.local()  # the job a pool thread is running (for the ground truth)


class PoolNotes(SpanProcessor):
    """Notes every span a pool thread starts, with the parent it got: the ground truth of the
    context the pool thread had, read from the live span as it starts."""

    def on_start(self, span, parent_context=None):
        key = getattr(_job, "key", None)
        if key:
            ctx = span.get_span_context()
            parent = span.parent
            record.note(CASE_DIR, event="pool_span", key=key, name=span.name,
                        span=[format(ctx.trace_id, "032x"), format(ctx.span_id, "016x")],
                        parent=format(parent.span_id, "016x") if parent else None)


tp = telemetry("research-worker")
tp.add_span_processor(PoolNotes())
if MODE == "all":
    from opentelemetry.instrumentation.pika import PikaInstrumentor

    PikaInstrumentor().instrument(tracer_provider=tp, publish_hook=_reply_published)

tracer = trace.get_tracer("research_agent")
llm = openai.OpenAI(base_url=os.environ["LLM_BASE_URL"], api_key="stand-in", max_retries=0)
pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="llm")  # the worker's one pool


def summarise(prompt):
    reply = llm.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": prompt}])
    return reply.choices[0].message.content


def summarise_in_pool(key, prompt):
    _job.key = key
    try:
        return summarise(prompt)
    finally:
        _job.key = None


def main():
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    conn = pika.BlockingConnection(pika.URLParameters(AMQP_URL))
    ch = conn.channel()
    ch.queue_declare(queue=JOB_QUEUE)
    ch.basic_qos(prefetch_count=1)
    reply_ch = ch
    if MODE == "consume_channel":
        from opentelemetry.instrumentation.pika import PikaInstrumentor

        PikaInstrumentor.instrument_channel(ch, tracer_provider=tp)
        reply_ch = conn.channel()

    def on_request(channel, method, props, body):
        consumer = record.current_ids()  # the instrumentation's CONSUMER span, if any
        key = props.correlation_id
        _task["consumer"] = consumer
        topic = json.loads(body)["topic"]
        with tracer.start_as_current_span("invoke_agent researcher") as span:
            span.set_attribute("gen_ai.operation.name", "invoke_agent")
            span.set_attribute("gen_ai.agent.name", "researcher")
            span.set_attribute("research.topic", topic)
            agent = record.current_ids()
            record.note(CASE_DIR, event="task", key=key, message_id=props.message_id, consumer=consumer,
                        agent=agent, sent=sent_ids(props.headers), headers=sorted((props.headers or {}).keys()))
            prompt = f"Research {topic} and report the key facts."
            if POOL:
                record.note(CASE_DIR, event="handoff", key=key, chain=[ids for ids in (agent, consumer) if ids])
                result = pool.submit(summarise_in_pool, key, prompt).result(timeout=30)
            else:
                result = summarise(prompt)
        if MODE != "all":
            record.note(CASE_DIR, event="reply_publish", key=key,
                        chain=[ids for ids in (record.current_ids(),) if ids])
        reply_ch.basic_publish(exchange="", routing_key=props.reply_to, body=json.dumps({"result": result}).encode(),
                               properties=pika.BasicProperties(content_type="application/json", correlation_id=key))
        channel.basic_ack(delivery_tag=method.delivery_tag)
        _task.clear()

    ch.basic_consume(queue=JOB_QUEUE, on_message_callback=on_request)
    ready(os.environ["READY_FILE"], os.getpid())
    while not stop.is_set():
        conn.process_data_events(time_limit=0.05)
    conn.close()
    pool.shutdown(wait=True)


if __name__ == "__main__":
    main()
