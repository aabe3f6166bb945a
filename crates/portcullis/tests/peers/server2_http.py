"""A Python `mcp` 2.x server (dual-era) over Streamable HTTP, for Portcullis's HTTP-upstream tests.

Usage: server2_http.py PORT. Tools: add(a, b); drop_table(name); slow_count(n) reports
progress n times. Every tools/call is appended to $RECORD (one JSON line) when set.
"""
import json, os, sys

from mcp.server.mcpserver import MCPServer, Context

server = MCPServer("py2-fixture")


def record(name, args):
    path = os.environ.get("RECORD")
    if path:
        with open(path, "a") as f:
            f.write(json.dumps({"tool": name, "args": args}) + "\n")


@server.tool()
def add(a: int, b: int) -> int:
    """Add two integers."""
    record("add", {"a": a, "b": b})
    return a + b


@server.tool()
def drop_table(name: str) -> str:
    """Drop a database table."""
    record("drop_table", {"name": name})
    return "dropped " + name


@server.tool()
async def slow_count(n: int, ctx: Context) -> str:
    """Count to n, reporting progress."""
    record("slow_count", {"n": n})
    for i in range(1, n + 1):
        await ctx.report_progress(i, n)
    return "counted to %d" % n


server.run("streamable-http", host="127.0.0.1", port=int(sys.argv[1]))
