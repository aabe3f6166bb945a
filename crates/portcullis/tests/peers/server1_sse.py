"""A Python `mcp` 1.x FastMCP server over legacy HTTP+SSE (or Streamable HTTP), for
Portcullis's tests. Usage: server1_sse.py PORT [sse|streamable-http]. Tools: add, drop_table."""
import sys

from mcp.server.fastmcp import FastMCP

port = int(sys.argv[1])
transport = sys.argv[2] if len(sys.argv) > 2 else "sse"
server = FastMCP("py1-fixture", host="127.0.0.1", port=port)


@server.tool()
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


@server.tool()
def drop_table(name: str) -> str:
    """Drop a database table."""
    return "dropped " + name


server.run(transport=transport)
