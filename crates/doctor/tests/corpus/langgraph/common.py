"""Shared plumbing of the langgraph suite's processes: the agents' instructions (the stand-in's
policy and the ground truth tell the agents apart by them), telemetry set up as each service does
it, and serving an ASGI app on a socket the driver bound to a free port."""

import asyncio
import os
import socket
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
HARNESS = os.path.join(os.path.dirname(HERE), "harness")
if HARNESS not in sys.path:
    sys.path.insert(0, HARNESS)

import record  # noqa: E402
from serving import bound_socket, serve  # noqa: E402

AGENTS = ("supervisor", "researcher", "writer")

# Every agent (graph node) has its own system prompt; the first words name it.
PROMPTS = {
    "supervisor": "You are the supervisor of a support team with two workers: researcher and writer. "
                  "Given the conversation, answer with the worker to act next, or FINISH when the user's "
                  "question has been answered.",
    "researcher": "You are the researcher. Search the product documentation with the search_docs tool and "
                  "report the relevant findings; do not write the final answer.",
    "writer": "You are the writer. Write the final answer to the user's question from the researcher's "
              "findings, in two or three sentences.",
}


def agent_of(messages):
    """Which agent sent this chat request, from its system message."""
    for m in messages:
        if m.get("role") in ("system", "developer"):
            text = m.get("content") if isinstance(m.get("content"), str) else str(m.get("content"))
            for name, prompt in PROMPTS.items():
                if text.startswith(prompt[:40]):
                    return name
    return None


def telemetry(out_dir, service):
    """One TracerProvider for this process (service.name = service), as a service sets it up at
    start: spans to the case's parts, and `session.id` copied from W3C baggage onto every span
    started where that baggage is in context (opentelemetry-processor-baggage)."""
    from opentelemetry.processor.baggage import BaggageSpanProcessor

    tp = record.provider(out_dir, service)
    tp.add_span_processor(BaggageSpanProcessor(lambda key: key == "session.id"))
    return tp


