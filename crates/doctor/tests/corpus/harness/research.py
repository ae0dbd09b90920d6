"""The research scenario of the broker suites (Celery, RabbitMQ): three users at once ask an
orchestrator agent questions that need one or two `research` calls each, which it hands to a
research worker over the broker. The questions and the stand-in LLM's policy (the driver's
side) and the `research` tool the orchestrator offers the model (the service's side)."""

# Three users at once, each asking a question that needs one or two research jobs.
SESSIONS = [
    "Compare these topics: solid-state batteries; sodium-ion batteries",
    "Look into this topic: perovskite solar cells",
    "Compare these topics: green hydrogen; ammonia shipping",
]

TOOLS = [{
    "type": "function",
    "function": {
        "name": "research",
        "description": "Delegate research on one topic to the research worker.",
        "parameters": {"type": "object", "properties": {"topic": {"type": "string"}}, "required": ["topic"]},
    },
}]


def policy(call):
    """The stand-in LLM: the orchestrator's plan asks for one research call per topic; every
    other call gets a short text."""
    if call["tool_names"] and call["last_tool"] is None:
        topics = call["last_user"].split(":", 1)[1].split(";")
        return {"tool_calls": [{"name": "research", "arguments": {"topic": t.strip()}} for t in topics]}
    if call["tool_names"]:
        return {"text": "Here is what the research found, topic by topic."}
    return {"text": "Key facts: costs are falling, scale-up is the bottleneck, two pilots ship next year."}
