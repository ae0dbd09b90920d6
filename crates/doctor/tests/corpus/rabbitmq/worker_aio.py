"""The research worker (aio-pika): an asyncio consumer of JOB_QUEUE (prefetch 4, so messages are
handled concurrently, each in a task of its own) that runs the research agent (AsyncOpenAI) and
replies to the message's reply_to with its correlation_id, as aio-pika's RPC tutorial does.
AioPikaInstrumentor instruments Queue.consume and Exchange.publish.

Its propagators are OpenTelemetry's, from OTEL_PROPAGATORS (default tracecontext,baggage); a
case may start it with b3multi, as a team whose other services use Zipkin's B3 headers does.
"""

import asyncio
import json
import os
import signal

import aio_pika
import openai
from opentelemetry import trace
from opentelemetry.instrumentation.aio_pika import AioPikaInstrumentor

import record
from common import AMQP_URL, CASE_DIR, JOB_QUEUE, ready, sent_ids, telemetry

tp = telemetry("research-worker")
AioPikaInstrumentor().instrument(tracer_provider=tp)
tracer = trace.get_tracer("research_agent")
llm = openai.AsyncOpenAI(base_url=os.environ["LLM_BASE_URL"], api_key="stand-in", max_retries=0)


async def main():
    connection = await aio_pika.connect(AMQP_URL)
    channel = await connection.channel()
    await channel.set_qos(prefetch_count=4)
    queue = await channel.declare_queue(JOB_QUEUE)

    async def on_request(message):
        async with message.process():
            consumer = record.current_ids()
            key = message.correlation_id
            topic = json.loads(message.body)["topic"]
            with tracer.start_as_current_span("invoke_agent researcher") as span:
                span.set_attribute("gen_ai.operation.name", "invoke_agent")
                span.set_attribute("gen_ai.agent.name", "researcher")
                span.set_attribute("research.topic", topic)
                record.note(CASE_DIR, event="task", key=key, message_id=message.message_id, consumer=consumer,
                            agent=record.current_ids(), sent=sent_ids(message.headers),
                            headers=sorted((message.headers or {}).keys()))
                reply = await llm.chat.completions.create(
                    model="gpt-4o-mini", messages=[{"role": "user", "content": f"Research {topic} and report the key facts."}])
                result = reply.choices[0].message.content
            answer = aio_pika.Message(json.dumps({"result": result}).encode(), content_type="application/json",
                                      correlation_id=key)
            await channel.default_exchange.publish(answer, routing_key=message.reply_to)
            # The instrumentation injected its PRODUCER span's context into the reply's headers.
            record.note(CASE_DIR, event="reply_publish", key=key,
                        chain=[ids for ids in (sent_ids(answer.headers), consumer) if ids])

    await queue.consume(on_request)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    ready(os.environ["READY_FILE"], os.getpid())
    await stop.wait()
    await asyncio.sleep(0.2)  # (every request was answered before the driver stops the worker)
    await connection.close()


if __name__ == "__main__":
    asyncio.run(main())
