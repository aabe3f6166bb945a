"""Drives a real Python `mcp` 2.x client against Portcullis's aggregated endpoint.

Usage: aggregate_client.py MODE -- COMMAND [ARGS...]      (stdio: `portcullis stdio --all`)
       aggregate_client.py MODE --url URL [--token TOKEN]  (Streamable HTTP: `/mcp`)
Actions come as a JSON list on stdin; the output is one JSON object:
  {"protocol_version", "capabilities", "instructions", "notifications": [methods], "results": [...]}
Actions: {"op": "pages", "list": "tools"|"prompts"|"resources"|"templates"} (every page, each
recorded with its names or URIs), {"op": "page", "list", "cursor"}, {"op": "call", "name", "args"}, {"op": "prompt", "name",
"args"}, {"op": "read", "uri"}, {"op": "write", "path", "text"}, {"op": "sleep", "seconds"}.
A failing action gives {"error": "..."} in its place.
"""
import asyncio, json, os, sys, time

from mcp import Client
from mcp.client.stdio import StdioServerParameters
import mcp.types as types


def dump(x):
    if hasattr(x, "model_dump"):
        return x.model_dump(mode="json", by_alias=True, exclude_none=True)
    return x


async def sampling(context, params):
    return types.CreateMessageResult(role="assistant", content=types.TextContent(type="text", text="sampled-by-test"), model="test-model", stop_reason="endTurn")


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
        cmd = sys.argv[dashdash + 1:]
        params = StdioServerParameters(command=cmd[0], args=cmd[1:], env=dict(os.environ))
    notes = []

    async def on_message(m):
        if isinstance(m, types.ServerNotification):
            notes.append(m.root.method if hasattr(m, "root") else getattr(m, "method", str(type(m))))
        elif hasattr(m, "method"):
            notes.append(m.method)

    out = {"results": [], "notifications": notes}
    async with Client(params, mode=mode, sampling_callback=sampling, message_handler=on_message, read_timeout_seconds=30) as c:
        out["protocol_version"] = c.protocol_version
        out["capabilities"] = dump(c.server_capabilities)
        out["instructions"] = c.instructions
        for a in actions:
            started = time.monotonic()
            try:
                op = a["op"]
                if op == "pages":
                    fetch = {"tools": c.list_tools, "prompts": c.list_prompts, "resources": c.list_resources, "templates": c.list_resource_templates}[a["list"]]
                    field = {"tools": "tools", "prompts": "prompts", "resources": "resources", "templates": "resource_templates"}[a["list"]]
                    key = {"tools": "name", "prompts": "name", "resources": "uri", "templates": "uri_template"}[a["list"]]
                    pages, items, cursor = [], [], None
                    for _ in range(200):
                        page = await fetch(cursor=cursor, cache_mode="bypass")
                        entries = getattr(page, field)
                        pages.append([str(getattr(e, key)) for e in entries])
                        items.extend(dump(e) for e in entries)
                        cursor = page.next_cursor
                        if not cursor:
                            break
                    r = {"pages": pages, "items": items}
                elif op == "page":
                    fetch = {"tools": c.list_tools, "prompts": c.list_prompts}[a["list"]]
                    r = dump(await fetch(cursor=a["cursor"], cache_mode="bypass"))
                elif op == "call":
                    r = dump(await c.call_tool(a["name"], a.get("args") or {}))
                elif op == "prompt":
                    r = dump(await c.get_prompt(a["name"], a.get("args") or {}))
                elif op == "read":
                    r = dump(await c.read_resource(a["uri"]))
                elif op == "write":
                    with open(a["path"], "w") as f:
                        f.write(a["text"])
                    r = {}
                elif op == "sleep":
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
