"""Shared plumbing of the openai_agents suite's processes: telemetry as each service sets it up,
serving an ASGI app on a socket bound to a free port chosen at run time, and the stand-in's
policy (which agent made a call is read from the tools it was offered)."""

import asyncio
import json
import os
import socket
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
HARNESS = os.path.join(os.path.dirname(HERE), "harness")
if HARNESS not in sys.path:
    sys.path.insert(0, HARNESS)

import record  # noqa: E402
from serving import bound_socket, serve  # noqa: E402
from opentelemetry.processor.baggage import BaggageSpanProcessor  # noqa: E402

# Each agent is offered its own tools, so a model call says which agent made it.
AGENT_TOOLS = {
    "triage": {"transfer_to_researcher"},
    "researcher": {"search_docs", "draft_answer"},
    "writer": set(),
}


def agent_of(tool_names):
    names = set(n for n in tool_names if n)
    for agent, tools in AGENT_TOOLS.items():
        if names == tools:
            return agent
    raise ValueError(f"no agent is offered the tools {sorted(names)}")


def telemetry(out_dir, service):
    """One TracerProvider for this process (service.name = service): spans to the case's parts,
    and `session.id` copied from W3C baggage onto every span started where it is in context."""
    tp = record.provider(out_dir, service)
    tp.add_span_processor(BaggageSpanProcessor(lambda key: key == "session.id"))
    return tp


# ------------------------------------------------------------------------ the stand-in's policy ---

def _tail(call):
    """The items of this call after the last user message (the current turn), in both APIs."""
    msgs = call["messages"]
    last = max((i for i, m in enumerate(msgs) if m.get("role") == "user"), default=0)
    return msgs[last:]


def tool_results(call):
    """{tool name: output text} of the tool calls answered in the current turn (chat or responses)."""
    names, out = {}, {}
    for m in _tail(call):
        if m.get("type") == "function_call":
            names[m.get("call_id")] = m.get("name")
        elif m.get("role") == "assistant" and m.get("tool_calls"):
            for tc in m["tool_calls"]:
                names[tc.get("id")] = tc["function"]["name"]
        elif m.get("type") == "function_call_output":
            out[names.get(m.get("call_id"))] = m.get("output") if isinstance(m.get("output"), str) \
                else json.dumps(m.get("output"))
        elif m.get("role") == "tool":
            c = m.get("content")
            out[names.get(m.get("tool_call_id"))] = c if isinstance(c, str) else json.dumps(c)
    return out


TOOL_ERROR_PREFIX = "An error occurred while running the tool"


def make_policy(fault):
    """The stand-in's answers. triage hands off to researcher; researcher calls search_docs, then
    the writer agent as its tool draft_answer, then answers; writer drafts. `fault`:
      rate-limit   the researcher's first call of the case is answered 429 once (then retried)
      llm-error    the researcher's first call of the 2nd request is answered 400 (the request fails)
      rate-limit-exhausted  the researcher's first call of the 2nd request is answered 429 every
                   time: the OpenAI client's retries run out and the request fails
    A search result that is not valid JSON, or a tool error, is answered with an apology."""
    state = {"rate_limited": False}

    def policy(call):
        agent = agent_of(call["tool_names"])
        if agent == "triage":
            return {"tool_calls": [{"name": "transfer_to_researcher", "arguments": {}}]}
        if agent == "writer":
            return {"text": "Draft: " + call["last_user"][:90]}
        results = tool_results(call)
        if not results.get("search_docs"):
            if fault == "rate-limit" and not state["rate_limited"]:
                state["rate_limited"] = True
                return {"error": 429, "message": "Rate limit reached for requests per min. Please try again."}
            if fault == "rate-limit-exhausted" and "nightly export" in call["last_user"]:
                return {"error": 429, "message": "Rate limit reached for requests per min. Please try again."}
            if fault == "llm-error" and "nightly export" in call["last_user"]:
                return {"error": 400, "message": "This model's maximum context length is 8192 tokens; "
                                                 "your messages resulted in 9310 tokens."}
            return {"tool_calls": [{"name": "search_docs", "arguments": {"query": call["last_user"][:60]}}]}
        found = results["search_docs"]
        if found.startswith(TOOL_ERROR_PREFIX):
            return {"text": "The document search failed, so I cannot answer this right now."}
        try:
            hits = json.loads(found)["hits"]
        except (ValueError, KeyError, TypeError):
            return {"text": "I could not parse the search results, so I cannot answer this."}
        if "draft_answer" not in results:
            return {"tool_calls": [{"name": "draft_answer",
                                    "arguments": {"input": "Notes: " + "; ".join(h["text"] for h in hits)}}]}
        return {"text": "Answer: " + results["draft_answer"][:100]}

    return policy
