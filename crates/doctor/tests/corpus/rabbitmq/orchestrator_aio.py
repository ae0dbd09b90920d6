"""The orchestrator service (aio-pika): an aiohttp.web app (the aiohttp-server instrumentation
makes the SERVER span) that plans with an LLM (AsyncOpenAI) and hands each `research` tool call
to the research worker over RabbitMQ as an RPC, as aio-pika's RPC tutorial does: one exclusive
callback queue for the service, one future per request, matched by correlation_id. Each request
also carries a message_id of its own (a job id). AioPikaInstrumentor instruments Exchange.publish
and Queue.consume.
"""

import asyncio
import json
import os
import signal
import socket
import uuid

import aio_pika
import openai
from aiohttp import web
from opentelemetry import baggage, context, trace
from opentelemetry.instrumentation.aio_pika import AioPikaInstrumentor
from opentelemetry.instrumentation.aiohttp_server import AioHttpServerInstrumentor

import record
from common import AMQP_URL, CASE_DIR, JOB_QUEUE, dedupe, ready, sent_ids, telemetry
from research import TOOLS

tp = telemetry("orchestrator")
AioPikaInstrumentor().instrument(tracer_provider=tp)
AioHttpServerInstrumentor().instrument()
tracer = trace.get_tracer("orchestrator_agent")
llm = openai.AsyncOpenAI(base_url=os.environ["LLM_BASE_URL"], api_key="stand-in", max_retries=0)


class Rpc:
    def __init__(self):
        self.pending = {}

    async def start(self):
        self.connection = await aio_pika.connect(AMQP_URL)
        self.channel = await self.connection.channel()
        self.callback_queue = await self.channel.declare_queue(exclusive=True)
        await self.callback_queue.consume(self.on_response, no_ack=True)

    async def on_response(self, message):
        record.note(CASE_DIR, event="reply", key=message.correlation_id, consumer=record.current_ids(),
                    headers=sorted((message.headers or {}).keys()), sent=sent_ids(message.headers))
        future = self.pending.pop(message.correlation_id, None)
        if future is not None and not future.done():
            future.set_result(json.loads(message.body)["result"])

    async def call(self, topic, chain):
        corr = uuid.uuid4().hex
        future = asyncio.get_running_loop().create_future()
        self.pending[corr] = future
        message = aio_pika.Message(json.dumps({"topic": topic}).encode(), content_type="application/json",
                                   correlation_id=corr, message_id=f"job-{uuid.uuid4().hex[:16]}",
                                   reply_to=self.callback_queue.name)
        await self.channel.default_exchange.publish(message, routing_key=JOB_QUEUE)
        # The instrumentation injected its PRODUCER span's context into the message's headers.
        producer = sent_ids(message.headers)
        record.note(CASE_DIR, event="publish", key=corr, message_id=message.message_id,
                    chain=dedupe([producer] + list(reversed(chain))), traceparent=message.headers.get("traceparent"))
        return await asyncio.wait_for(future, 30)


rpc = Rpc()


async def chat(request):
    body = await request.json()
    session_id = body["session_id"]
    trace.get_current_span().set_attribute("session.id", session_id)
    token = context.attach(baggage.set_baggage("session.id", session_id))
    chain = [record.current_ids()]
    try:
        with tracer.start_as_current_span("invoke_agent orchestrator") as agent:
            agent.set_attribute("gen_ai.operation.name", "invoke_agent")
            agent.set_attribute("gen_ai.agent.name", "orchestrator")
            chain.append(record.current_ids())
            messages = [{"role": "user", "content": body["question"]}]
            plan = await llm.chat.completions.create(model="gpt-4o", messages=messages, tools=TOOLS)
            msg = plan.choices[0].message
            messages.append(msg.model_dump(exclude_none=True))
            for call in msg.tool_calls or []:
                topic = json.loads(call.function.arguments)["topic"]
                with tracer.start_as_current_span("execute_tool research") as step:
                    step.set_attribute("gen_ai.operation.name", "execute_tool")
                    step.set_attribute("gen_ai.tool.name", "research")
                    step.set_attribute("gen_ai.tool.call.id", call.id)
                    result = await rpc.call(topic, chain + [record.current_ids()])
                messages.append({"role": "tool", "tool_call_id": call.id, "content": result})
            final = await llm.chat.completions.create(model="gpt-4o", messages=messages, tools=TOOLS)
            answer = final.choices[0].message.content
    finally:
        context.detach(token)
    return web.json_response({"session_id": session_id, "answer": answer})


async def main():
    await rpc.start()
    app = web.Application()
    app.router.add_post("/chat", chat)
    runner = web.AppRunner(app, handle_signals=False)
    await runner.setup()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    site = web.SockSite(runner, sock, shutdown_timeout=2)
    await site.start()
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    ready(os.environ["READY_FILE"], sock.getsockname()[1])
    await stop.wait()
    await runner.cleanup()
    await rpc.connection.close()


if __name__ == "__main__":
    asyncio.run(main())
