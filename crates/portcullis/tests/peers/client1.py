"""Drives a real Python `mcp` 1.x ClientSession (legacy era) over stdio, for Portcullis's tests.

Usage: client1.py -- COMMAND [ARGS...]   (stdio)
       client1.py --sse URL [--token T]    (legacy HTTP+SSE)
       client1.py --http URL [--token T]   (Streamable HTTP)
Actions on stdin as for client2.py (list_tools, call).
"""
import asyncio, json, os, sys

from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.client.sse import sse_client
from mcp.client.streamable_http import streamablehttp_client


def dump(x):
    return x.model_dump(mode="json", by_alias=True, exclude_none=True)


async def main():
    actions = json.loads(sys.stdin.read() or "[]")
    out = {"results": []}
    headers = {}
    if "--token" in sys.argv:
        headers["Authorization"] = "Bearer " + sys.argv[sys.argv.index("--token") + 1]
    if "--sse" in sys.argv:
        transport = sse_client(sys.argv[sys.argv.index("--sse") + 1], headers=headers)
    elif "--http" in sys.argv:
        transport = streamablehttp_client(sys.argv[sys.argv.index("--http") + 1], headers=headers)
    else:
        cmd = sys.argv[sys.argv.index("--") + 1:]
        transport = stdio_client(StdioServerParameters(command=cmd[0], args=cmd[1:], env=dict(os.environ)))
    async with transport as streams:
        r, w = streams[0], streams[1]
        async with ClientSession(r, w) as s:
            init = await s.initialize()
            out["protocol_version"] = init.protocolVersion
            for a in actions:
                try:
                    if a["op"] == "list_tools":
                        tools, cursor = [], None
                        while True:
                            page = await s.list_tools(cursor=cursor)
                            tools.extend(dump(t) for t in page.tools)
                            cursor = page.nextCursor
                            if not cursor:
                                break
                        out["results"].append({"tools": tools})
                    elif a["op"] == "call":
                        out["results"].append(dump(await s.call_tool(a["name"], a.get("args") or {})))
                except Exception as e:
                    out["results"].append({"error": "%s: %s" % (type(e).__name__, e)})
    print(json.dumps(out))


asyncio.run(main())
