"""A conformance-suite client made of a real MCP client and Portcullis: the suite's test server
is Portcullis's upstream, so what the suite judges is Portcullis acting as an MCP client.

Usage (the suite appends the server URL):
    client_driver.py PORTCULLIS POLICY URL

Runs `PORTCULLIS stdio --policy POLICY --url URL` under the Python `mcp` ClientSession, then:
initialize, list every tool (all pages), call each with arguments made from its input schema
(numbers 1, 2, …; strings "x"; booleans true). Exits non-zero if any step fails.
"""
import asyncio, os, sys

from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client


def arguments(schema):
    args, n = {}, 0
    for name, prop in (schema or {}).get("properties", {}).items():
        kind = prop.get("type")
        if kind in ("number", "integer"):
            n += 1
            args[name] = n
        elif kind == "string":
            args[name] = "x"
        elif kind == "boolean":
            args[name] = True
    return args


async def main():
    portcullis, policy, url = sys.argv[1], sys.argv[2], sys.argv[-1]
    params = StdioServerParameters(
        command=portcullis,
        args=["stdio", "--policy", policy, "--url", url, "--log", "info"],
        env=dict(os.environ),
    )
    async with stdio_client(params) as (r, w):
        async with ClientSession(r, w) as s:
            await s.initialize()
            tools, cursor = [], None
            while True:
                page = await s.list_tools(cursor=cursor)
                tools.extend(page.tools)
                cursor = page.nextCursor
                if not cursor:
                    break
            for t in tools:
                result = await asyncio.wait_for(s.call_tool(t.name, arguments(t.inputSchema)), 20)
                text = " ".join(c.text for c in result.content if getattr(c, "text", None))
                print(f"{t.name}: isError={result.isError} {text}", file=sys.stderr)
                if result.isError:
                    sys.exit(f"{t.name} failed: {text}")


asyncio.run(main())
