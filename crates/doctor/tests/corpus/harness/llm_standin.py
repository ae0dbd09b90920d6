"""A STAND-IN for an LLM provider: a local, deterministic server speaking the OpenAI
chat-completions and Responses HTTP APIs. Not a model. It exists because no real
LLM can run on the machines this corpus is recorded on; everything else in a case
is the real library.

    from llm_standin import StandIn
    with StandIn(policy) as llm:          # llm.base_url == "http://127.0.0.1:PORT/v1"
        ...point the framework's OpenAI client at llm.base_url, api_key "stand-in"...

`policy(call)` decides each answer. `call` is a dict:
    api        "chat" or "responses"
    model      the requested model name
    messages   the request's messages (chat) or input items (responses), as sent
    tools      the tool definitions sent (names in call["tool_names"])
    last_user  text of the last user message; last_tool: text of the last tool result, or None
    n          how many calls this server has answered before (0-based)
It returns one of:
    {"text": "..."}                                   a final answer
    {"tool_calls": [{"name": "...", "arguments": {...}, "id": "call_x"}]}   (id optional)
    {"error": 429, "message": "..."}                  an HTTP error the client sees (rate limit, ...)
    {"refusal": "..."}                                a refusal (chat: message.refusal)
Usage tokens are counted deterministically (words of the prompt / the answer), and
reported in the response's `usage`, as the real API does; `usage_for(call, reply)`
is exposed so a case can record the same numbers in its ground truth.
Streaming requests (`"stream": true`) are answered as server-sent events.
"""

import itertools
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def _text_of(content):
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for p in content:
            if isinstance(p, dict):
                parts.append(p.get("text") or p.get("content") or "")
            else:
                parts.append(str(p))
        return " ".join(x if isinstance(x, str) else json.dumps(x) for x in parts)
    return json.dumps(content)


def _words(text):
    return len(text.split())


def usage_for(call, reply):
    """(input_tokens, output_tokens) the stand-in reports for this call and reply."""
    prompt = json.dumps(call["messages"], sort_keys=True)
    input_tokens = 10 + _words(prompt) // 2
    if "text" in reply:
        out = reply["text"]
    elif "tool_calls" in reply:
        out = json.dumps(reply["tool_calls"], sort_keys=True)
    else:
        out = reply.get("refusal", "")
    return input_tokens, 1 + _words(out)


class StandIn:
    def __init__(self, policy, host="127.0.0.1", port=0):
        self.policy = policy
        self.calls = []  # (call, reply, (input_tokens, output_tokens))
        self._n = itertools.count()
        self._lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_GET(self):
                if self.path.rstrip("/").endswith("/models"):
                    return self._json(200, {"object": "list", "data": [{"id": "stand-in", "object": "model"}]})
                self._json(404, {"error": {"message": "not found"}})

            def do_POST(self):
                length = int(self.headers.get("content-length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                path = self.path.split("?")[0].rstrip("/")
                if path.endswith("/chat/completions"):
                    return outer._chat(self, body)
                if path.endswith("/responses"):
                    return outer._responses(self, body)
                self._json(404, {"error": {"message": f"no such endpoint {path}"}})

            def _json(self, status, obj, headers=()):
                data = json.dumps(obj).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                for k, v in headers:
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

            def _sse(self, events):
                data = "".join(f"data: {json.dumps(e)}\n\n" for e in events) + "data: [DONE]\n\n"
                data = data.encode()
                self.send_response(200)
                self.send_header("content-type", "text/event-stream")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer((host, port), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.base_url = f"http://{host}:{self.port}/v1"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()

    # ---------------------------------------------------------------- decide ---

    def _decide(self, api, body, messages):
        last_user, last_tool = "", None
        for m in messages:
            role = m.get("role") or m.get("type")
            if role == "user":
                last_user = _text_of(m.get("content"))
            elif role in ("tool", "function_call_output"):
                last_tool = _text_of(m.get("content") if role == "tool" else m.get("output"))
        tools = body.get("tools") or []
        names = []
        for t in tools:
            if "function" in t:
                names.append(t["function"].get("name"))
            else:
                names.append(t.get("name"))
        with self._lock:
            n = next(self._n)
        call = {
            "api": api,
            "model": body.get("model", "stand-in"),
            "messages": messages,
            "tools": tools,
            "tool_names": names,
            "last_user": last_user,
            "last_tool": last_tool,
            "n": n,
        }
        reply = self.policy(call)
        usage = usage_for(call, reply)
        with self._lock:
            self.calls.append((call, reply, usage))
        return call, reply, usage

    def _chat(self, h, body):
        call, reply, (inp, out) = self._decide("chat", body, body.get("messages") or [])
        if "error" in reply:
            return h._json(reply["error"], {"error": {"message": reply.get("message", "error"), "type": "stand_in_error",
                                                      "code": str(reply["error"])}}, headers=[("retry-after", "0")])
        cid = f"chatcmpl-standin-{call['n']}"
        message = {"role": "assistant", "content": None}
        finish = "stop"
        if "tool_calls" in reply:
            message["tool_calls"] = [
                {"id": tc.get("id") or f"call_{call['n']}_{k}", "type": "function",
                 "function": {"name": tc["name"], "arguments": json.dumps(tc.get("arguments", {}))}}
                for k, tc in enumerate(reply["tool_calls"])
            ]
            finish = "tool_calls"
        elif "refusal" in reply:
            message["refusal"] = reply["refusal"]
            message["content"] = None
        else:
            message["content"] = reply["text"]
        usage = {"prompt_tokens": inp, "completion_tokens": out, "total_tokens": inp + out}
        model = call["model"]
        if body.get("stream"):
            delta = dict(message)
            if "tool_calls" in delta:
                delta["tool_calls"] = [dict(tc, index=k) for k, tc in enumerate(delta["tool_calls"])]
            events = [
                {"id": cid, "object": "chat.completion.chunk", "created": 0, "model": model,
                 "choices": [{"index": 0, "delta": delta, "finish_reason": None}]},
                {"id": cid, "object": "chat.completion.chunk", "created": 0, "model": model,
                 "choices": [{"index": 0, "delta": {}, "finish_reason": finish}]},
            ]
            if (body.get("stream_options") or {}).get("include_usage"):
                events.append({"id": cid, "object": "chat.completion.chunk", "created": 0, "model": model,
                               "choices": [], "usage": usage})
            return h._sse(events)
        h._json(200, {
            "id": cid, "object": "chat.completion", "created": 0, "model": model,
            "choices": [{"index": 0, "message": message, "finish_reason": finish, "logprobs": None}],
            "usage": usage,
        })

    def _responses(self, h, body):
        items = body.get("input")
        if isinstance(items, str):
            items = [{"role": "user", "content": items}]
        call, reply, (inp, out) = self._decide("responses", body, items or [])
        if "error" in reply:
            return h._json(reply["error"], {"error": {"message": reply.get("message", "error"), "type": "stand_in_error",
                                                      "code": str(reply["error"])}}, headers=[("retry-after", "0")])
        rid = f"resp_standin_{call['n']}"
        output = []
        if "tool_calls" in reply:
            for k, tc in enumerate(reply["tool_calls"]):
                cid = tc.get("id") or f"call_{call['n']}_{k}"
                output.append({"type": "function_call", "id": f"fc_{call['n']}_{k}", "call_id": cid,
                               "name": tc["name"], "arguments": json.dumps(tc.get("arguments", {})),
                               "status": "completed"})
        else:
            content = ({"type": "refusal", "refusal": reply["refusal"]} if "refusal" in reply
                       else {"type": "output_text", "text": reply["text"], "annotations": []})
            output.append({"type": "message", "id": f"msg_{call['n']}", "role": "assistant",
                           "status": "completed", "content": [content]})
        resp = {
            "id": rid, "object": "response", "created_at": 0, "status": "completed", "model": call["model"],
            "output": output, "parallel_tool_calls": True, "tool_choice": "auto", "tools": body.get("tools") or [],
            "usage": {"input_tokens": inp, "output_tokens": out, "total_tokens": inp + out,
                      "input_tokens_details": {"cached_tokens": 0},
                      "output_tokens_details": {"reasoning_tokens": 0}},
            "error": None, "incomplete_details": None, "instructions": body.get("instructions"),
            "metadata": {}, "temperature": None, "top_p": None, "text": {"format": {"type": "text"}},
            "truncation": "disabled",
        }
        if body.get("stream"):
            events = [{"type": "response.created", "response": dict(resp, status="in_progress", output=[])}]
            for k, item in enumerate(output):
                events.append({"type": "response.output_item.added", "output_index": k, "item": item})
                events.append({"type": "response.output_item.done", "output_index": k, "item": item})
            events.append({"type": "response.completed", "response": resp})
            for seq, e in enumerate(events):
                e["sequence_number"] = seq
            return h._sse(events)
        h._json(200, resp)
