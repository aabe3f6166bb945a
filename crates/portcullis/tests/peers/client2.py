"""Drives a real Python `mcp` 2.x client through a script of actions, for Portcullis's tests.

Usage: client2.py MODE -- COMMAND [ARGS...]   (MODE: auto | legacy | 2026-07-28)
       client2.py MODE --url URL [--token TOKEN]   (Streamable HTTP)
Actions come as a JSON list on stdin; results go to stdout as one JSON object:
  {"protocol_version": ..., "results": [...]}   each result a JSON dump of the SDK's model,
  or {"error": "..."} when the action raised.
Actions: {"op": "list_tools"} (all pages), {"op": "call", "name": N, "args": {...},
"progress": bool}, {"op": "sleep", "seconds": S}.
The sampling callback answers every sampling request with the text "sampled-by-test".
"""
import asyncio, json, os, sys, time

from mcp import Client
from mcp.client.stdio import StdioServerParameters
import mcp.types as types


async def sampling(context, params):
    return types.CreateMessageResult(role="assistant", content=types.TextContent(type="text", text="sampled-by-test"), model="test-model", stop_reason="endTurn")


def dump(x):
    if hasattr(x, "model_dump"):
        return x.model_dump(mode="json", by_alias=True, exclude_none=True)
    return x


async def main():
    mode = sys.argv[1]
    actions = json.loads(sys.stdin.read() or "[]")
    dashdash = sys.argv.index("--") if "--" in sys.argv else len(sys.argv)
    if "--url" in sys.argv[:dashdash]:
        from mcp.client.streamable_http import streamable_http_client
        from mcp.shared._httpx_utils import create_mcp_http_client
        url = sys.argv[sys.argv.index("--url") + 1]
        headers = {}
        if "--token" in sys.argv:
            headers["Authorization"] = "Bearer " + sys.argv[sys.argv.index("--token") + 1]
        params = streamable_http_client(url, http_client=create_mcp_http_client(headers=headers))
    else:
        cmd = sys.argv[sys.argv.index("--") + 1:]
        params = StdioServerParameters(command=cmd[0], args=cmd[1:], env=dict(os.environ))
    out = {"results": []}
    async with Client(params, mode=mode, sampling_callback=sampling, read_timeout_seconds=20) as c:
        out["protocol_version"] = c.protocol_version
        for a in actions:
            started = time.monotonic()
            try:
                if a["op"] == "list_tools":
                    tools, cursor = [], None
                    while True:
                        page = await c.list_tools(cursor=cursor, cache_mode="bypass")
                        tools.extend(dump(t) for t in page.tools)
                        cursor = page.next_cursor
                        if not cursor:
                            break
                    r = {"tools": tools}
                elif a["op"] == "call":
                    progress = []

                    async def on_progress(p, total, message):
                        progress.append(p)

                    res = await c.call_tool(a["name"], a.get("args") or {}, progress_callback=on_progress if a.get("progress") else None)
                    r = dump(res)
                    r["_progress"] = progress
                elif a["op"] == "sleep":
                    await asyncio.sleep(a["seconds"])
                    r = {}
                else:
                    r = {"error": "unknown op"}
            except Exception as e:  # reported, not raised: the test decides
                r = {"error": "%s: %s" % (type(e).__name__, e)}
            r["_seconds"] = time.monotonic() - started
            out["results"].append(r)
    print(json.dumps(out))


asyncio.run(main())
