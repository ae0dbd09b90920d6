"""Records the mcp_instrumented suite: an agent service calling tools on an MCP server (the `mcp`
SDK 1.x, FastMCP) over stdio, streamable HTTP and SSE, with each of the two MCP
instrumentations that exist for Python (OpenLLMetry's `opentelemetry-instrumentation-mcp` and
OpenInference's `openinference-instrumentation-mcp`; one per process, never both).

    make.py --out DIR [CASE...]

Every case runs agent.py (its own process and TracerProvider), which starts tools_server.py
(another process, another TracerProvider). Breaks are the field's: a tool server whose author
never installed the MCP instrumentation, an agent that did not, and an agent using the
`mcp` SDK's recommended `streamable_http_client` that OpenLLMetry 0.62 does not wrap (it wraps
only the deprecated `streamablehttp_client`). The truth comes from the notes both processes
took while the case ran (see agent.py and tools_server.py).
"""

import argparse
import glob
import json
import os
import shutil
import subprocess
import sys
import time

import record
from forkserver import ForkServer

HERE = os.path.dirname(os.path.abspath(__file__))
SUITE = "mcp_instrumented"
# What the case's processes import, once for every case (harness/forkserver.py starts them).
PRELOAD = ["anyio", "mcp", "mcp.client.sse", "mcp.client.stdio", "mcp.client.streamable_http",
           "mcp.server.fastmcp", "mcp.types", "openai", "openinference.instrumentation.mcp",
           "openinference.instrumentation.openai", "opentelemetry.instrumentation.mcp",
           "opentelemetry.instrumentation.openai", "opentelemetry.processor.baggage",
           "opentelemetry.sdk.trace"]

# name: (description, agent.py arguments)
CASES = {
    "openllmetry_stdio_healthy": (
        "One request; the agent starts its MCP tool server over stdio inside the request; OpenLLMetry "
        "on both sides; three tools/call.",
        ["--lib", "openllmetry", "--transport", "stdio"]),
    "openllmetry_http_healthy": (
        "Streamable HTTP through the deprecated streamablehttp_client that OpenLLMetry wraps; the agent "
        "opens one MCP session at start-up (initialize.mcp, tools/list.mcp and the notifications/initialized "
        "ResponseStreamWriter are roots by design); one request with three tools/call.",
        ["--lib", "openllmetry", "--transport", "streamable-http", "--client-api", "legacy"]),
    "openllmetry_sse_healthy": (
        "SSE transport, OpenLLMetry on both sides; start-up session; one request with three tools/call.",
        ["--lib", "openllmetry", "--transport", "sse"]),
    "openllmetry_http_concurrent_healthy": (
        "Three users' requests at once over one shared streamable HTTP MCP session (legacy client API), "
        "OpenLLMetry on both sides; same three tools each.",
        ["--lib", "openllmetry", "--transport", "streamable-http", "--client-api", "legacy", "--users", "3"]),
    "openllmetry_stdio_uninstrumented_server": (
        "OpenLLMetry in the agent, the stdio tool server without any MCP instrumentation: the server's own "
        "spans start new traces.",
        ["--lib", "openllmetry", "--transport", "stdio", "--server-lib", "none"]),
    "openllmetry_stdio_uninstrumented_client": (
        "OpenLLMetry in the stdio tool server, none in the agent (only its own and the OpenAI spans): every "
        "ResponseStreamWriter and tool span of the server starts a new trace.",
        ["--lib", "openllmetry", "--transport", "stdio", "--no-client-mcp"]),
    "openllmetry_http_current_client_api": (
        "OpenLLMetry on both sides but the agent uses mcp's recommended streamable_http_client, which "
        "OpenLLMetry does not wrap: client spans exist, nothing is injected, the server's spans are roots.",
        ["--lib", "openllmetry", "--transport", "streamable-http", "--client-api", "current"]),
    "openllmetry_http_concurrent_current_client_api": (
        "As openllmetry_http_current_client_api with three users' requests at once over the shared session.",
        ["--lib", "openllmetry", "--transport", "streamable-http", "--client-api", "current", "--users", "3"]),
    "openinference_stdio_healthy": (
        "One request; stdio tool server started inside the request; OpenInference's MCP instrumentation "
        "(context only, no spans) on both sides, user spans and OpenInference OpenAI spans.",
        ["--lib", "openinference", "--transport", "stdio"]),
    "openinference_http_healthy": (
        "Streamable HTTP (streamable_http_client), start-up session, one request; OpenInference on both sides.",
        ["--lib", "openinference", "--transport", "streamable-http"]),
    "openinference_stdio_concurrent_healthy": (
        "Three users' requests at once, each with its own stdio tool server process; OpenInference on "
        "both sides.",
        ["--lib", "openinference", "--transport", "stdio", "--users", "3"]),
    "openinference_stdio_uninstrumented_server": (
        "OpenInference in the agent, none in the stdio tool server: the server's own spans are roots.",
        ["--lib", "openinference", "--transport", "stdio", "--server-lib", "none"]),
    "openinference_stdio_concurrent_uninstrumented_server": (
        "Three users' requests at once, each with its own uninstrumented stdio tool server: the servers' "
        "spans are roots, the same tools at the same time.",
        ["--lib", "openinference", "--transport", "stdio", "--server-lib", "none", "--users", "3"]),
    "openinference_http_concurrent_uninstrumented_client": (
        "Three users' requests at once over one shared streamable HTTP session; the tool server has "
        "OpenInference, the agent does not: the server's spans are roots.",
        ["--lib", "openinference", "--transport", "streamable-http", "--no-client-mcp", "--users", "3"]),
}


def load_spans(d):
    """The spans the case's processes wrote so far (read to describe the evidence, never changed)."""
    out = {}
    for path in glob.glob(os.path.join(d, "parts", "spans-*.jsonl")):
        with open(path) as f:
            for line in f:
                for rs in json.loads(line)["resourceSpans"]:
                    service = next(a["value"]["stringValue"] for a in rs["resource"]["attributes"]
                                   if a["key"] == "service.name")
                    for ss in rs["scopeSpans"]:
                        for sp in ss["spans"]:
                            out[sp["spanId"]] = {"name": sp["name"], "service": service, "trace": sp["traceId"],
                                                 "start": int(sp["startTimeUnixNano"]),
                                                 "end": int(sp["endTimeUnixNano"])}
    return out


def is_call_span(name):
    """A caller-side span that stands for one request: OpenLLMetry's `initialize.mcp` / `{tool}.tool`,
    or the agent's own `execute_tool {tool}`."""
    return name.endswith((".mcp", ".tool")) or name.startswith("execute_tool")


def truth_for(case, description, argv, notes, spans):
    lib = argv[argv.index("--lib") + 1]
    sends = {}
    for n in notes:
        if n["side"] == "client" and n["event"] == "send" and n["rpc_id"] is not None:
            sends[(n["label"], n["rpc_id"])] = n
    tools = [n for n in notes if n["side"] == "server" and n["event"] == "tool"]
    roots = [n for n in notes if n["side"] == "server" and n["event"] == "root"]
    if not tools:
        raise SystemExit(f"{case}: no tool ran on the server")

    carried = 0
    for t in tools:
        send = sends[(t["label"], t["rpc_id"])]
        if t["entry"] is not None and t["entry"][1] == send["chain"][0]:
            carried += 1
    broken = []
    for r in roots:
        send = sends.get((r["label"], r["rpc_id"]))
        if send is None or not send["chain"]:
            raise SystemExit(f"{case}: server root {r['name']} {r['ids']} has no client request to hang under")
        # Neither side of these hops carries an address (stdio has none; over HTTP neither MCP
        # instrumentation records the URL) nor an id that the other side also carries, so by the corpus
        # rule (a shared key, or one candidate by time AND address) no hop here must be repaired. The
        # why says whether time alone would single the parent out in this run.
        must = False
        orphan = spans[r["ids"][1]]
        # The innermost caller-side span that encloses the orphan in time (a ResponseStreamWriter
        # of OpenLLMetry's ends before the server starts work).
        parent = next((spans[p] for p in send["chain"]
                       if spans[p]["start"] <= orphan["start"] and orphan["end"] <= spans[p]["end"]),
                      spans[send["chain"][0]])
        open_then = [x for x in spans.values() if x["service"] == parent["service"] and x["trace"] != parent["trace"]
                     and x["start"] <= orphan["start"] <= x["end"]]
        rivals = [x for x in open_then if x["name"] == parent["name"]]
        others = len({x["trace"] for x in open_then})
        if not others:
            why = (f"unique by time only: `{parent['name']}` encloses it and no other trace of {parent['service']} had a "
                   "span open when it started; but no address and no id that both sides carry")
        else:
            why = (f"ambiguous: {others} other trace(s) of {parent['service']} were at work when it started"
                   + (f", {len(rivals)} of them in a `{parent['name']}` span too" if rivals else "")
                   + "; no address or id that both sides carry singles the parent out")
        hop = {
            "hop": f"mcp {send['method']}" + (f" {send['tool']}" if send["tool"] else "") + f" -> {r['name']}",
            "orphan_trace_id": r["ids"][0],
            "orphan_span_id": r["ids"][1],
            "parent_span_ids": send["chain"],
            "must_repair": must,
            "why": why,
            "kinds": ["orphan_root", "tool_root"],
        }
        if not is_call_span(parent["name"]):
            # The caller recorded no span for this request (an uninstrumented client's handshake):
            # only the agent's own step encloses it, as it encloses everything else it does.
            hop["detectable"] = False
            hop["why"] += ("; the caller recorded no span for this request (no MCP call span, no tool span), "
                           "so nothing in the spans says a call was made: undetectable")
        broken.append(hop)
    healthy = not broken and carried == len(tools)
    if not healthy and not broken:
        raise SystemExit(f"{case}: context lost on {len(tools) - carried} tool calls but no root seen")
    packages = ["mcp", "openai", "opentelemetry-sdk", "opentelemetry-processor-baggage"]
    packages += (["opentelemetry-instrumentation-mcp", "opentelemetry-instrumentation-openai"] if lib == "openllmetry"
                 else ["openinference-instrumentation-mcp", "openinference-instrumentation-openai"])
    return {
        "case": case,
        "suite": SUITE,
        "description": description,
        "versions": record.versions(*packages),
        "healthy": healthy,
        "broken_hops": broken,
    }


def harness_env():
    return dict(os.environ, PYTHONPATH=os.pathsep.join(
        [os.path.join(HERE, "..", "harness"), os.environ.get("PYTHONPATH", "")]))


def run_case(server, out, case):
    description, argv = CASES[case]
    d = os.path.join(out, case)
    shutil.rmtree(d, ignore_errors=True)
    record.case_dir(d)
    env = harness_env()
    t0 = time.monotonic()
    with open(os.path.join(d, "parts", "agent.log"), "w") as log:
        proc = server.run([sys.executable, os.path.join(HERE, "agent.py"), "--out", d] + argv,
                              stdout=log, stderr=subprocess.STDOUT, env=env, timeout=90)
    if proc.returncode != 0:
        with open(os.path.join(d, "parts", "agent.log")) as f:
            sys.stderr.write(f.read())
        raise SystemExit(f"{case}: agent exited {proc.returncode}")
    truth = truth_for(case, description, argv, record.notes(d), load_spans(d))
    record.finish(d, truth)
    print(f"{case}: {'healthy' if truth['healthy'] else len(truth['broken_hops'])} "
          f"{'' if truth['healthy'] else 'broken hops '}({time.monotonic() - t0:.1f} s)", flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("cases", nargs="*")
    a = ap.parse_args()
    with ForkServer(PRELOAD, env=harness_env()) as server:
        for case in a.cases or CASES:
            run_case(server, a.out, case)


if __name__ == "__main__":
    main()
