"""The research agent's Celery tasks: the module a team shares between its web service (which
enqueues) and its worker fleet (which runs them), as Celery projects usually do.

Only the OpenTelemetry API is used here; each entrypoint (worker_main.py, orchestrator.py)
configures its own TracerProvider and instrumentation, as a deployment does.
"""

import os
from concurrent.futures import ThreadPoolExecutor

import openai
from celery import Celery
from opentelemetry import trace

import record

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:16379/0")
CASE_DIR = os.environ["CORPUS_CASE_DIR"]

app = Celery("research", broker=REDIS_URL, backend=REDIS_URL)
app.conf.update(
    task_default_queue=os.environ["CELERY_QUEUE"],
    task_serializer="json",
    result_serializer="json",
    accept_content=["json"],
    result_expires=300,
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
    worker_prefetch_multiplier=1,
)

tracer = trace.get_tracer("research_agent")
_llm = None
# One pool for the whole worker: the usual way to fan out I/O inside a task.
_sources_pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="sources")


def llm():
    global _llm
    if _llm is None:
        _llm = openai.OpenAI(base_url=os.environ["LLM_BASE_URL"], api_key="stand-in", max_retries=0)
    return _llm


def _summarise(prompt):
    reply = llm().chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": prompt}]
    )
    return reply.choices[0].message.content


def fetch_source(task_id, index, topic, source):
    """Runs on a pool thread: a new thread starts with an empty context."""
    inherited = record.current_ids()
    with tracer.start_as_current_span("fetch_source") as span:
        span.set_attribute("research.source", source)
        record.note(CASE_DIR, event="thread", key=f"{task_id}:{index}", orphan=record.current_ids(),
                    inherited=inherited)
        return _summarise(f"Summarise what {source} says about {topic}.")


@app.task(name="research.run", bind=True)
def research(self, topic):
    consumer = record.current_ids()  # the CONSUMER span of the instrumentation, if any
    with tracer.start_as_current_span("invoke_agent researcher") as span:
        span.set_attribute("gen_ai.operation.name", "invoke_agent")
        span.set_attribute("gen_ai.agent.name", "researcher")
        span.set_attribute("research.topic", topic)
        agent = record.current_ids()
        record.note(CASE_DIR, event="task", task_id=self.request.id, consumer=consumer, agent=agent,
                    traceparent=getattr(self.request, "traceparent", None))
        if os.environ.get("RESEARCH_PARALLEL_SOURCES") == "1":
            sources = [f"{topic} survey", f"{topic} news"]
            futures = []
            for i, source in enumerate(sources):
                record.note(CASE_DIR, event="handoff", key=f"{self.request.id}:{i}",
                            chain=[ids for ids in (agent, consumer) if ids])
                futures.append(_sources_pool.submit(fetch_source, self.request.id, i, topic, source))
            return " / ".join(f.result(timeout=20) for f in futures)
        return _summarise(f"Research {topic} and report the key facts.")
