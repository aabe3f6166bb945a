"""The Python `mcp` 2.x SDK's own OAuth client through the gateway, for tests/oauth.rs.

Usage: oauth_client.py URL   (actions as a JSON list on stdin, as client2.py)
The SDK discovers the gateway's Protected Resource Metadata from the 401, then the
authorization server, registers dynamically and runs authorization code + PKCE. The
redirect handler plays the browser with plain HTTP requests (the test provider signs in and
consents by script) and hands the code to the callback handler. Prints
{"results": [...], "token_aud": ..., "prm_resource": ...}.
"""
import asyncio, json, sys
from urllib.parse import urlparse, parse_qs

import httpx2
from mcp import Client
from mcp.client.auth import OAuthClientProvider
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client
from mcp.shared.auth import AuthorizationCodeResult, OAuthClientMetadata

REDIRECT = "http://127.0.0.1:9/callback"


class Memory:
    def __init__(self):
        self.tokens = None
        self.client = None

    async def get_tokens(self):
        return self.tokens

    async def set_tokens(self, tokens):
        self.tokens = tokens

    async def get_client_info(self):
        return self.client

    async def set_client_info(self, info):
        self.client = info


def dump(x):
    return x.model_dump(mode="json", by_alias=True, exclude_none=True) if hasattr(x, "model_dump") else x


async def main():
    url = sys.argv[1]
    actions = json.loads(sys.stdin.read() or "[]")
    got = {}

    async def redirect_handler(authorization_url):
        # The browser: follow the provider's redirects (cookies kept) to our redirect URI.
        async with httpx2.AsyncClient(follow_redirects=False) as b:
            at = authorization_url
            for _ in range(10):
                if at.startswith(REDIRECT):
                    q = parse_qs(urlparse(at).query)
                    got.update({k: v[0] for k, v in q.items()})
                    return
                r = await b.get(at)
                if r.status_code not in (302, 303):
                    raise RuntimeError("authorization stopped at %s: %s %s" % (at, r.status_code, r.text[:300]))
                at = str(httpx2.URL(at).join(r.headers["location"]))
        raise RuntimeError("too many redirects")

    async def callback_handler():
        if "code" not in got:
            raise RuntimeError("no code: %s" % got)
        return AuthorizationCodeResult(code=got["code"], state=got.get("state"), iss=got.get("iss"))

    storage = Memory()
    auth = OAuthClientProvider(
        server_url=url,
        client_metadata=OAuthClientMetadata(client_name="portcullis-test", redirect_uris=[REDIRECT],
                                            grant_types=["authorization_code", "refresh_token"],
                                            response_types=["code"]),
        storage=storage,
        redirect_handler=redirect_handler,
        callback_handler=callback_handler,
    )
    out = {"results": []}
    params = streamable_http_client(url, http_client=create_mcp_http_client(auth=auth))
    async with Client(params, mode="auto", read_timeout_seconds=20) as c:
        for a in actions:
            try:
                if a["op"] == "list_tools":
                    r = {"tools": [dump(t) for t in (await c.list_tools()).tools]}
                else:
                    r = dump(await c.call_tool(a["name"], a.get("args", {})))
            except Exception as e:
                r = {"error": "%s: %s" % (type(e).__name__, e)}
            out["results"].append(r)
    prm = auth.context.protected_resource_metadata
    out["prm_resource"] = str(prm.resource) if prm else None
    out["client_id"] = storage.client.client_id if storage.client else None
    print(json.dumps(out))


asyncio.run(main())
