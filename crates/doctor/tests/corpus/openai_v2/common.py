"""Shared plumbing of the openai_v2 suite's processes: telemetry as each service sets it up,
serving an ASGI app on a socket bound to a free port chosen at run time, and the stand-in's
policy (each agent has its own system prompt, which says which agent made a call)."""

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

SYSTEM = {
    "triage": "You are the triage agent of the support desk. Ask the researcher, have the writer draft, answer.",
    "researcher": "You are the researcher. Search the product docs and report findings.",
    "writer": "You are the writer. Turn research notes into a short, friendly answer.",
}


def agent_of(messages):
    system = next((m.get("content") for m in messages if m.get("role") in ("system", "developer")), None)
    for agent, prompt in SYSTEM.items():
        if system == prompt:
            return agent
    raise ValueError(f"no agent has the system prompt {system!r}")


def telemetry(out_dir, service):
    """One TracerProvider for this process (service.name = service): spans to the case's parts,
    and `session.id` copied from W3C baggage onto every span started where it is in context."""
    tp = record.provider(out_dir, service)
    tp.add_span_processor(BaggageSpanProcessor(lambda key: key == "session.id"))
    return tp


# ------------------------------------------------------------------------ the stand-in's policy ---

def tool_results(call):
    """{tool name: output text} of the tool calls answered in this conversation (chat API)."""
    names, out = {}, {}
    for m in call["messages"]:
        if m.get("role") == "assistant" and m.get("tool_calls"):
            for tc in m["tool_calls"]:
                names[tc.get("id")] = tc["function"]["name"]
        elif m.get("role") == "tool":
            c = m.get("content")
            out[names.get(m.get("tool_call_id"))] = c if isinstance(c, str) else json.dumps(c)
    return out


SORRY = ("I could not", "The document search failed")


def make_policy(fault):
    """The stand-in's answers. triage calls ask_researcher, then write_answer, then answers;
    researcher calls search_docs, then reports; writer drafts. `fault`:
      rate-limit   the researcher's first call of the case is answered 429 once (the client retries)
      refusal      the writer refuses the turn about the nightly export
    A search result that is not valid JSON, or a tool error, is answered with an apology, which
    triage passes on without the writer."""
    state = {"rate_limited": False}

    def policy(call):
        agent = agent_of(call["messages"])
        results = tool_results(call)
        if agent == "writer":
            if fault == "refusal" and "nightly export" in call["last_user"]:
                return {"refusal": "I can't help with instructions about bypassing the export safeguards."}
            return {"text": "Draft: " + call["last_user"][:90]}
        if agent == "researcher":
            if "search_docs" not in results:
                if fault == "rate-limit" and not state["rate_limited"]:
                    state["rate_limited"] = True
                    return {"error": 429, "message": "Rate limit reached for requests per min. Please try again."}
                return {"tool_calls": [{"name": "search_docs", "arguments": {"query": call["last_user"][:60]}}]}
            found = results["search_docs"]
            if found.startswith("error:"):
                return {"text": "The document search failed, so I cannot answer this right now."}
            try:
                hits = json.loads(found)["hits"]
            except (ValueError, KeyError, TypeError):
                return {"text": "I could not parse the search results, so I cannot answer this."}
            return {"text": "Findings: " + "; ".join(h["text"] for h in hits)}
        if "ask_researcher" not in results:
            return {"tool_calls": [{"name": "ask_researcher", "arguments": {"question": call["last_user"][:80]}}]}
        research = results["ask_researcher"]
        if research.startswith(SORRY):
            return {"text": "Sorry, I could not find an answer: " + research[:80]}
        if "write_answer" not in results:
            return {"tool_calls": [{"name": "write_answer", "arguments": {"notes": research[:120]}}]}
        return {"text": "Answer: " + results["write_answer"][:100]}

    return policy
