"""A router agent (pika) between the orchestrator and the research worker: it consumes ROUTER_QUEUE
and re-publishes each job to JOB_QUEUE, building new properties from the RPC fields it needs
(message_id, correlation_id, reply_to, content_type) and the body; the message's headers (its
traceparent and baggage) are not copied. Its team instrumented the channel it consumes on
(PikaInstrumentor.instrument_channel, the instrumentation's per-channel API) and publishes on a
second channel of the connection, which is not instrumented: nothing injects a new context.
"""

import os
import signal
import threading

import pika
from opentelemetry import trace
from opentelemetry.instrumentation.pika import PikaInstrumentor

import record
from common import AMQP_URL, CASE_DIR, JOB_QUEUE, ready, sent_ids, telemetry

ROUTER_QUEUE = os.environ["ROUTER_QUEUE"]

tp = telemetry("router")
tracer = trace.get_tracer("router_agent")


def main():
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    conn = pika.BlockingConnection(pika.URLParameters(AMQP_URL))
    inbound = conn.channel()
    outbound = conn.channel()
    PikaInstrumentor.instrument_channel(inbound, tracer_provider=tp)
    inbound.queue_declare(queue=ROUTER_QUEUE)
    outbound.queue_declare(queue=JOB_QUEUE)
    inbound.basic_qos(prefetch_count=1)

    def on_message(channel, method, props, body):
        consumer = record.current_ids()
        with tracer.start_as_current_span("route job") as span:
            span.set_attribute("router.target_queue", JOB_QUEUE)
            route = record.current_ids()
            record.note(CASE_DIR, event="relay", key=props.correlation_id, message_id=props.message_id,
                        chain=[ids for ids in (route, consumer) if ids], sent=sent_ids(props.headers))
            outbound.basic_publish(
                exchange="", routing_key=JOB_QUEUE, body=body,
                properties=pika.BasicProperties(content_type=props.content_type, message_id=props.message_id,
                                                correlation_id=props.correlation_id, reply_to=props.reply_to))
        channel.basic_ack(delivery_tag=method.delivery_tag)

    inbound.basic_consume(queue=ROUTER_QUEUE, on_message_callback=on_message)
    ready(os.environ["READY_FILE"], os.getpid())
    while not stop.is_set():
        conn.process_data_events(time_limit=0.05)
    conn.close()


if __name__ == "__main__":
    main()
