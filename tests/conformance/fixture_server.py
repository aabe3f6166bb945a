#!/usr/bin/env python3
"""Portcullis conformance fixture: one dual-era MCP server for the official conformance suite.

Implements the server "fixture contract" of `@modelcontextprotocol/conformance` (see
../shared/spec/test-peers.md, "Fixture contract") on the Python `mcp` 2.x lowlevel `Server`.
Written for this repository from that contract and the suite's check messages.

One process serves both protocol eras:

* 2025-11-25 (handshake era): `initialize`, sessions (`Mcp-Session-Id`), real server->client
  requests (sampling, elicitation, roots), `logging/setLevel`, `ping`,
  `resources/subscribe` / `resources/unsubscribe`.
* 2026-07-28 (stateless era): per-request `_meta`, `server/discover`, `InputRequiredResult`
  (multi round-trip requests) with an integrity-protected `requestState`,
  `subscriptions/listen`, `ttlMs` / `cacheScope` caching hints.

Every tool that needs input from the client is written once against `gather()`: on a legacy
connection it sends real server->client requests; on a modern one it answers with an
`InputRequiredResult` and completes on the client's retry. A gateway in front of this fixture can
therefore be exercised in both eras (and across an era bridge) with the same tool names.

Usage:
    python fixture_server.py --port PORT      # Streamable HTTP on http://127.0.0.1:PORT/mcp
    python fixture_server.py --stdio          # stdio (era chosen by the client's first request)
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import io
import json
import logging
import struct
import sys
import warnings
import wave
import zlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import mcp_types as types
from mcp_types.version import MODERN_PROTOCOL_VERSIONS

from mcp.server.caching import CacheHint
from mcp.server.context import ServerRequestContext
from mcp.server.lowlevel import NotificationOptions, Server
from mcp.server.request_state import RequestStateBoundary, RequestStateSecurity
from mcp.server.streamable_http import EventCallback, EventId, EventMessage, EventStore, StreamId
from mcp.server.subscriptions import (
    InMemorySubscriptionBus,
    ListenHandler,
    PromptsListChanged,
    ResourcesListChanged,
    ResourceUpdated,
    ToolsListChanged,
)
from mcp.shared.exceptions import MCPError
from mcp.shared.message import ServerMessageMetadata

# The logging, sampling and roots capabilities are deprecated as of 2026-07-28; this fixture
# deliberately serves them for the 2025-11-25 requirement set.
warnings.filterwarnings("ignore", message=r".*deprecated as of 2026-07-28.*")

SERVER_NAME = "portcullis-conformance-fixture"
SERVER_VERSION = "1.0.0"
LOGGER_NAME = "portcullis-fixture"

log = logging.getLogger(SERVER_NAME)

INVALID_PARAMS = -32602
RESOURCE_NOT_FOUND_LEGACY = -32002
MISSING_REQUIRED_CLIENT_CAPABILITY = -32021

LOG_LEVELS = ["debug", "info", "notice", "warning", "error", "critical", "alert", "emergency"]


# --------------------------------------------------------------------------------------------
# Binary test content, generated here rather than embedded.
# --------------------------------------------------------------------------------------------


def _png_1x1_red() -> bytes:
    """A valid 1x1 RGB PNG with one red pixel."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)  # 1x1, 8-bit, truecolour
    pixels = zlib.compress(b"\x00\xff\x00\x00")  # filter byte 0, then R G B
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")


def _wav_silence() -> bytes:
    """A valid mono 8 kHz 16-bit WAV holding 10 ms of silence."""
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(b"\x00\x00" * 80)
    return buf.getvalue()


PNG_B64 = base64.b64encode(_png_1x1_red()).decode("ascii")
WAV_B64 = base64.b64encode(_wav_silence()).decode("ascii")


# --------------------------------------------------------------------------------------------
# Era helpers
# --------------------------------------------------------------------------------------------


def is_modern(ctx: ServerRequestContext[Any, Any]) -> bool:
    return ctx.protocol_version in MODERN_PROTOCOL_VERSIONS


def connection_state(ctx: ServerRequestContext[Any, Any]) -> dict[str, Any]:
    """Per-connection scratch state (a legacy session; a single request on modern HTTP).

    `ServerSession` exposes no public accessor for its `Connection`, so reach for the private
    attribute; a fresh dict keeps the fixture working if that ever disappears.
    """
    conn = getattr(ctx.session, "_connection", None)
    return conn.state if conn is not None else {}


def client_capabilities(ctx: ServerRequestContext[Any, Any]) -> dict[str, Any]:
    caps = ctx.session.client_capabilities
    if caps is None:
        return {}
    return caps.model_dump(by_alias=True, mode="json", exclude_none=True)


def raw_params(ctx: ServerRequestContext[Any, Any]) -> dict[str, Any]:
    return dict(ctx.params or {})


def text(value: str) -> dict[str, Any]:
    return {"type": "text", "text": value}


def tool_result(*content: dict[str, Any], is_error: bool = False, structured: Any = None) -> dict[str, Any]:
    result: dict[str, Any] = {"content": list(content)}
    if is_error:
        result["isError"] = True
    if structured is not None:
        result["structuredContent"] = structured
    return result


async def send_log(ctx: ServerRequestContext[Any, Any], level: str, data: Any) -> None:
    """`notifications/message` on this request's stream.

    Legacy: filtered by the connection's `logging/setLevel` (everything until one is set).
    Modern: the SDK sends only when the request's `_meta` carried `io.modelcontextprotocol/logLevel`.
    """
    if not is_modern(ctx):
        minimum = connection_state(ctx).get("log_level")
        if minimum is not None and LOG_LEVELS.index(level) < LOG_LEVELS.index(minimum):
            return
    await ctx.session.send_log_message(level, data, logger=LOGGER_NAME, related_request_id=ctx.request_id)  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------
# Client input: real requests (legacy) or InputRequiredResult rounds (modern)
# --------------------------------------------------------------------------------------------

CAPABILITY_FOR_METHOD = {
    "elicitation/create": "elicitation",
    "sampling/createMessage": "sampling",
    "roots/list": "roots",
}


class NeedInput(Exception):
    """Raised (modern era only) to answer the current request with an `InputRequiredResult`."""

    def __init__(self, requests: dict[str, dict[str, Any]], state: dict[str, Any] | None) -> None:
        super().__init__("input required")
        self.requests = requests
        self.state = state

    def result(self) -> dict[str, Any]:
        out: dict[str, Any] = {"resultType": "input_required", "inputRequests": self.requests}
        if self.state is not None:
            # Plaintext here; RequestStateBoundary seals it (AES-256-GCM, bound to method, target
            # and arguments) on the way out and verifies it on the retry.
            out["requestState"] = json.dumps(self.state, separators=(",", ":"))
        return out


class MissingCapability(Exception):
    def __init__(self, capabilities: list[str]) -> None:
        super().__init__(", ".join(capabilities))
        self.capabilities = capabilities


def require_capabilities(ctx: ServerRequestContext[Any, Any], requests: dict[str, dict[str, Any]]) -> None:
    declared = client_capabilities(ctx)
    missing = sorted(
        {CAPABILITY_FOR_METHOD[r["method"]] for r in requests.values()} - set(declared)  # type: ignore[index]
    )
    if missing:
        raise MissingCapability(missing)


def request_state(ctx: ServerRequestContext[Any, Any]) -> dict[str, Any] | None:
    """The verified plaintext `requestState` of a modern retry, decoded (None if absent)."""
    state = raw_params(ctx).get("requestState")
    if not isinstance(state, str):
        return None
    try:
        decoded = json.loads(state)
    except ValueError:
        return None
    return decoded if isinstance(decoded, dict) else None


def _valid_response(method: str, response: Any) -> bool:
    if not isinstance(response, dict):
        return False
    if method == "elicitation/create":
        return response.get("action") in ("accept", "decline", "cancel")
    if method == "sampling/createMessage":
        return "content" in response and "role" in response
    if method == "roots/list":
        return isinstance(response.get("roots"), list)
    return False


def _legacy_request(method: str, params: dict[str, Any]) -> tuple[Any, type[Any]]:
    if method == "elicitation/create":
        return types.ElicitRequest(params=types.ElicitRequestFormParams.model_validate(params)), types.ElicitResult
    if method == "sampling/createMessage":
        return (
            types.CreateMessageRequest(params=types.CreateMessageRequestParams.model_validate(params)),
            types.CreateMessageResult,
        )
    if method == "roots/list":
        return types.ListRootsRequest(), types.ListRootsResult
    raise ValueError(method)


async def gather(
    ctx: ServerRequestContext[Any, Any],
    requests: dict[str, dict[str, Any]],
    state: dict[str, Any] | None = None,
) -> dict[str, dict[str, Any]]:
    """Obtain the client's answers to `requests` (key -> {method, params}).

    Legacy: sends each as a real server->client request on this request's stream, in order.
    Modern: returns the matching `inputResponses` of this retry; when any is missing or malformed,
    raises `NeedInput` so the request is answered with an `InputRequiredResult` asking for this
    round again (carrying `state` as `requestState`, if given).
    """
    require_capabilities(ctx, requests)
    if not is_modern(ctx):
        answers: dict[str, dict[str, Any]] = {}
        for key, req in requests.items():
            typed, result_type = _legacy_request(req["method"], req.get("params", {}))
            result = await ctx.session.send_request(
                typed, result_type, metadata=ServerMessageMetadata(related_request_id=ctx.request_id)
            )
            answers[key] = result.model_dump(by_alias=True, mode="json", exclude_none=True)
        return answers
    responses = raw_params(ctx).get("inputResponses")
    if not isinstance(responses, dict):
        responses = {}
    if all(_valid_response(req["method"], responses.get(key)) for key, req in requests.items()):
        # Unrecognised extra keys are ignored.
        return {key: responses[key] for key in requests}
    raise NeedInput(requests, state)


def elicitation(message: str, properties: dict[str, Any], required: list[str] | None = None) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "object", "properties": properties}
    if required:
        schema["required"] = required
    return {"method": "elicitation/create", "params": {"message": message, "requestedSchema": schema}}


def sampling(prompt: str, max_tokens: int = 100) -> dict[str, Any]:
    return {
        "method": "sampling/createMessage",
        "params": {"messages": [{"role": "user", "content": text(prompt)}], "maxTokens": max_tokens},
    }


ROOTS_REQUEST: dict[str, Any] = {"method": "roots/list", "params": {}}


def sampled_text(answer: dict[str, Any]) -> str:
    content = answer.get("content")
    if isinstance(content, list):
        content = content[0] if content else {}
    if isinstance(content, dict) and content.get("type") == "text":
        return str(content.get("text", ""))
    return json.dumps(content)


def elicited(answer: dict[str, Any], key: str, default: str = "") -> Any:
    content = answer.get("content") or {}
    return content.get(key, default) if isinstance(content, dict) else default


def describe_elicitation(answer: dict[str, Any]) -> str:
    return f"action={answer.get('action')}, content={json.dumps(answer.get('content'), separators=(',', ':'))}"


# --------------------------------------------------------------------------------------------
# Fixture state shared across connections
# --------------------------------------------------------------------------------------------

WATCHED_URI = "test://watched-resource"


@dataclass
class FixtureState:
    bus: InMemorySubscriptionBus = field(default_factory=InMemorySubscriptionBus)
    watched_version: int = 1
    background: set[asyncio.Task[Any]] = field(default_factory=set)


STATE = FixtureState()


# --------------------------------------------------------------------------------------------
# Resumability (2025-11-25 Streamable HTTP): priming events, retry, Last-Event-ID replay
# --------------------------------------------------------------------------------------------


class MemoryEventStore(EventStore):
    """Keeps the last `limit` SSE events of all sessions in memory for Last-Event-ID replay.

    Event ids are `<n>` from one process-wide counter; each maps back to its stream, and replay
    only ever sends later events of the same stream. Priming events (message None) are stored
    as cursors but never replayed.
    """

    def __init__(self, limit: int = 10_000) -> None:
        self._limit = limit
        self._counter = 0
        self._events: dict[EventId, tuple[StreamId, Any]] = {}

    async def store_event(self, stream_id: StreamId, message: Any) -> EventId:
        self._counter += 1
        event_id = str(self._counter)
        self._events[event_id] = (stream_id, message)
        while len(self._events) > self._limit:
            del self._events[next(iter(self._events))]
        return event_id

    async def replay_events_after(self, last_event_id: EventId, send_callback: EventCallback) -> StreamId | None:
        entry = self._events.get(last_event_id)
        if entry is None:
            return None
        stream_id = entry[0]
        after = int(last_event_id)
        for event_id, (sid, message) in list(self._events.items()):
            if sid == stream_id and int(event_id) > after and message is not None:
                await send_callback(EventMessage(message, event_id))
        return stream_id


RETRY_INTERVAL_MS = 250


# --------------------------------------------------------------------------------------------
# Tools
# --------------------------------------------------------------------------------------------

ToolFn = Callable[[ServerRequestContext[Any, Any], dict[str, Any]], Awaitable[dict[str, Any]]]


@dataclass
class ToolDef:
    name: str
    description: str
    fn: ToolFn
    input_schema: dict[str, Any] = field(default_factory=lambda: {"type": "object", "properties": {}})
    annotations: dict[str, Any] | None = None

    def wire(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "description": self.description, "inputSchema": self.input_schema}
        if self.annotations:
            out["annotations"] = self.annotations
        return out


READ_ONLY = {"readOnlyHint": True, "openWorldHint": False}


async def t_simple_text(ctx, args):
    return tool_result(text("This is a simple text response for testing."))


async def t_image(ctx, args):
    return tool_result({"type": "image", "data": PNG_B64, "mimeType": "image/png"})


async def t_audio(ctx, args):
    return tool_result({"type": "audio", "data": WAV_B64, "mimeType": "audio/wav"})


async def t_embedded_resource(ctx, args):
    return tool_result(
        {
            "type": "resource",
            "resource": {
                "uri": "test://embedded-resource",
                "mimeType": "text/plain",
                "text": "This is an embedded resource content.",
            },
        }
    )


async def t_mixed(ctx, args):
    return tool_result(
        text("Multiple content types test:"),
        {"type": "image", "data": PNG_B64, "mimeType": "image/png"},
        {
            "type": "resource",
            "resource": {
                "uri": "test://mixed-content-resource",
                "mimeType": "application/json",
                "text": json.dumps({"test": "data", "value": 123}, separators=(",", ":")),
            },
        },
    )


async def t_progress(ctx, args):
    # report_progress is a no-op when the caller sent no progressToken.
    for step, value in enumerate((0, 50, 100)):
        if step:
            await asyncio.sleep(0.05)
        await ctx.session.report_progress(value, 100, f"step {step + 1} of 3")
    return tool_result(text("Progress tool completed: reported 0, 50 and 100 of 100."))


async def t_error(ctx, args):
    return tool_result(text("This tool intentionally returns an error for testing"), is_error=True)


async def t_logging(ctx, args):
    await send_log(ctx, "info", "Tool execution started")
    await asyncio.sleep(0.05)
    await send_log(ctx, "info", "Tool processing data")
    await asyncio.sleep(0.05)
    await send_log(ctx, "info", "Tool execution completed")
    return tool_result(text("Logging tool completed: sent 3 info log messages."))


async def t_sampling(ctx, args):
    prompt = str(args.get("prompt", ""))
    answer = (await gather(ctx, {"sampling": sampling(prompt)}))["sampling"]
    return tool_result(text(f"LLM response: {sampled_text(answer)}"))


async def t_elicitation(ctx, args):
    message = str(args.get("message", "Please provide your information"))
    req = elicitation(
        message,
        {
            "username": {"type": "string", "description": "User's response"},
            "email": {"type": "string", "description": "User's email address"},
        },
        ["username", "email"],
    )
    answer = (await gather(ctx, {"user_info": req}))["user_info"]
    return tool_result(text(f"User response: {describe_elicitation(answer)}"))


async def t_sep1034(ctx, args):
    req = elicitation(
        "Please review and update the form fields with defaults",
        {
            "name": {"type": "string", "description": "User name", "default": "John Doe"},
            "age": {"type": "integer", "description": "User age", "default": 30},
            "score": {"type": "number", "description": "User score", "default": 95.5},
            "status": {
                "type": "string",
                "description": "User status",
                "enum": ["active", "inactive", "pending"],
                "default": "active",
            },
            "verified": {"type": "boolean", "description": "Verification status", "default": True},
        },
    )
    answer = (await gather(ctx, {"defaults": req}))["defaults"]
    return tool_result(text(f"Elicitation completed: {describe_elicitation(answer)}"))


async def t_sep1330(ctx, args):
    req = elicitation(
        "Please choose from the enum fields",
        {
            "untitledSingle": {
                "type": "string",
                "description": "Untitled single-select",
                "enum": ["option1", "option2", "option3"],
            },
            "titledSingle": {
                "type": "string",
                "description": "Titled single-select",
                "oneOf": [
                    {"const": "value1", "title": "First Option"},
                    {"const": "value2", "title": "Second Option"},
                    {"const": "value3", "title": "Third Option"},
                ],
            },
            "legacyEnum": {
                "type": "string",
                "description": "Legacy titled enum (enumNames, deprecated)",
                "enum": ["opt1", "opt2", "opt3"],
                "enumNames": ["Option One", "Option Two", "Option Three"],
            },
            "untitledMulti": {
                "type": "array",
                "description": "Untitled multi-select",
                "items": {"type": "string", "enum": ["option1", "option2", "option3"]},
            },
            "titledMulti": {
                "type": "array",
                "description": "Titled multi-select",
                "items": {
                    "anyOf": [
                        {"const": "value1", "title": "First Choice"},
                        {"const": "value2", "title": "Second Choice"},
                        {"const": "value3", "title": "Third Choice"},
                    ]
                },
            },
        },
    )
    answer = (await gather(ctx, {"enums": req}))["enums"]
    return tool_result(text(f"Elicitation completed: {describe_elicitation(answer)}"))


async def t_missing_capability(ctx, args):
    # Needs sampling: without the capability, -32021 (modern) / an isError result (legacy).
    answer = (await gather(ctx, {"probe": sampling("Reply with OK.", 10)}))["probe"]
    return tool_result(text(f"Sampling capability present; model said: {sampled_text(answer)}"))


async def t_irr_elicitation(ctx, args):
    req = elicitation("What is your name?", {"name": {"type": "string"}}, ["name"])
    answer = (await gather(ctx, {"user_name": req}))["user_name"]
    return tool_result(text(f"Hello, {elicited(answer, 'name', 'stranger')}!"))


async def t_irr_sampling(ctx, args):
    answer = (await gather(ctx, {"capital_question": sampling("What is the capital of France?")}))[
        "capital_question"
    ]
    return tool_result(text(f"Sampling answered: {sampled_text(answer)}"))


async def t_irr_roots(ctx, args):
    answer = (await gather(ctx, {"client_roots": ROOTS_REQUEST}))["client_roots"]
    uris = [r.get("uri") for r in answer.get("roots", []) if isinstance(r, dict)]
    return tool_result(text(f"Client roots ({len(uris)}): {', '.join(map(str, uris)) or 'none'}"))


async def t_irr_request_state(ctx, args):
    req = elicitation("Please confirm", {"ok": {"type": "boolean"}}, ["ok"])
    state = request_state(ctx)
    answer = (await gather(ctx, {"confirm": req}, state={"tool": "request_state", "round": 1}))["confirm"]
    if is_modern(ctx) and (state is None or state.get("tool") != "request_state"):
        # A retry must echo the state minted in round 1; ask again with a fresh one.
        raise NeedInput({"confirm": req}, {"tool": "request_state", "round": 1})
    ok = json.dumps(elicited(answer, "ok", False))
    if not is_modern(ctx):
        return tool_result(text(f"Confirmed={ok} (handshake era: a real elicitation, no requestState)."))
    return tool_result(text(f"state-ok: requestState verified; confirmed={ok}"))


async def t_irr_multiple(ctx, args):
    requests = {
        "user_name": elicitation("What is your name?", {"name": {"type": "string"}}, ["name"]),
        "greeting": sampling("Generate a greeting", 50),
        "client_roots": ROOTS_REQUEST,
    }
    answers = await gather(ctx, requests, state={"tool": "multiple_inputs", "round": 1})
    roots = answers["client_roots"].get("roots", [])
    return tool_result(
        text(
            f"name={elicited(answers['user_name'], 'name')}; greeting={sampled_text(answers['greeting'])}; "
            f"roots={len(roots)}"
        )
    )


async def t_irr_multi_round(ctx, args):
    state = request_state(ctx) or {}
    if state.get("round") != 2:
        step1 = elicitation("Step 1: What is your name?", {"name": {"type": "string"}}, ["name"])
        answer = (await gather(ctx, {"step1": step1}, state={"tool": "multi_round", "round": 1}))["step1"]
        state = {"tool": "multi_round", "round": 2, "name": elicited(answer, "name")}
    step2 = elicitation("Step 2: What is your favorite color?", {"color": {"type": "string"}}, ["color"])
    answer = (await gather(ctx, {"step2": step2}, state=state))["step2"]
    return tool_result(text(f"{state.get('name')} likes {elicited(answer, 'color')} (completed in 3 rounds)"))


async def t_irr_tampered(ctx, args):
    # The SDK's RequestStateBoundary rejects an altered requestState with -32602 before this runs.
    req = elicitation("Please confirm", {"ok": {"type": "boolean"}}, ["ok"])
    answer = (await gather(ctx, {"confirm": req}, state={"tool": "tampered_state", "round": 1}))["confirm"]
    return tool_result(text(f"state-ok: untampered requestState accepted; {describe_elicitation(answer)}"))


async def t_irr_capabilities(ctx, args):
    declared = client_capabilities(ctx)
    candidates = {
        "elicitation": ("user_name", elicitation("What is your name?", {"name": {"type": "string"}}, ["name"])),
        "sampling": ("capital_question", sampling("What is the capital of France?")),
        "roots": ("client_roots", ROOTS_REQUEST),
    }
    requests = {key: req for cap, (key, req) in candidates.items() if cap in declared}
    if not requests:
        return tool_result(text("Client declared none of elicitation, sampling, roots: nothing requested."))
    answers = await gather(ctx, requests, state={"tool": "capabilities", "round": 1})
    return tool_result(text(f"Received input for: {', '.join(sorted(answers))}"))


async def t_streaming_elicitation(ctx, args):
    await ctx.session.report_progress(0, 1, "about to ask the user")
    req = elicitation("Streaming elicitation: what is your name?", {"name": {"type": "string"}}, ["name"])
    answer = (await gather(ctx, {"user_name": req}))["user_name"]
    return tool_result(text(f"Hello, {elicited(answer, 'name', 'stranger')}!"))


async def _announce(ctx, event: Any, legacy_method: str | None, legacy_params: dict[str, Any] | None = None) -> None:
    """Publish a change: on listen streams (modern) and on this request's stream (legacy)."""
    await STATE.bus.publish(event)
    if legacy_method is not None and not is_modern(ctx):
        await ctx.session.send_notification(
            _legacy_notification(legacy_method, legacy_params), related_request_id=ctx.request_id
        )


def _legacy_notification(method: str, params: dict[str, Any] | None) -> Any:
    if method == "notifications/tools/list_changed":
        return types.ToolListChangedNotification()
    if method == "notifications/prompts/list_changed":
        return types.PromptListChangedNotification()
    if method == "notifications/resources/list_changed":
        return types.ResourceListChangedNotification()
    return types.ResourceUpdatedNotification(params=types.ResourceUpdatedNotificationParams(uri=params["uri"]))


async def t_trigger_tool_change(ctx, args):
    await _announce(ctx, ToolsListChanged(), "notifications/tools/list_changed")
    return tool_result(text("Announced notifications/tools/list_changed (the tool list itself is static)."))


async def t_trigger_prompt_change(ctx, args):
    await _announce(ctx, PromptsListChanged(), "notifications/prompts/list_changed")
    return tool_result(text("Announced notifications/prompts/list_changed (the prompt list itself is static)."))


async def t_trigger_resource_change(ctx, args):
    await _announce(ctx, ResourcesListChanged(), "notifications/resources/list_changed")
    return tool_result(text("Announced notifications/resources/list_changed (the resource list is static)."))


async def t_trigger_resource_update(ctx, args):
    STATE.watched_version += 1
    subscribed = WATCHED_URI in connection_state(ctx).get("subscriptions", set())
    await _announce(
        ctx,
        ResourceUpdated(uri=WATCHED_URI),
        "notifications/resources/updated" if subscribed else None,
        {"uri": WATCHED_URI},
    )
    return tool_result(text(f"{WATCHED_URI} is now at version {STATE.watched_version}."))


async def t_reconnection(ctx, args):
    # 2025-11-25 with resumability: close this call's SSE stream mid-call; the client reconnects
    # (GET with Last-Event-ID after the `retry` interval) and gets the result replayed.
    closed = False
    if ctx.close_sse_stream is not None:
        await asyncio.sleep(0.05)
        await ctx.close_sse_stream()
        closed = True
        await asyncio.sleep(0.3)
    note = "stream closed mid-call and resumed" if closed else "no stream to close (modern era or no resumability)"
    return tool_result(text(f"Reconnection test completed: {note}."))


async def t_custom_headers(ctx, args):
    headers = {}
    if ctx.request is not None and hasattr(ctx.request, "headers"):
        headers = {k: v for k, v in ctx.request.headers.items() if k.lower().startswith("mcp-")}
    echo = {"arguments": args, "mcpHeaders": headers}
    return tool_result(text(json.dumps(echo, sort_keys=True)), structured=echo)


async def t_json_schema(ctx, args):
    return tool_result(text(json.dumps({"received": args}, sort_keys=True)))


CUSTOM_HEADERS_SCHEMA = {
    "type": "object",
    "properties": {
        "region": {"type": "string", "description": "Mirrored as Mcp-Param-Region", "x-mcp-header": "Region"},
        "priority": {"type": "integer", "description": "Mirrored as Mcp-Param-Priority", "x-mcp-header": "Priority"},
        "verbose": {"type": "boolean", "description": "Mirrored as Mcp-Param-Verbose", "x-mcp-header": "Verbose"},
        "query": {"type": "string", "description": "Not mirrored into a header"},
    },
    "required": ["region", "query"],
}

JSON_SCHEMA_2020_12 = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "$defs": {
        "address": {
            "$anchor": "address",
            "type": "object",
            "properties": {"street": {"type": "string"}, "city": {"type": "string"}},
            "required": ["city"],
        }
    },
    "properties": {
        "name": {"type": "string"},
        "kind": {"type": "string", "enum": ["person", "company"]},
        "vatId": {"type": "string"},
        "address": {"$ref": "#/$defs/address"},
    },
    "allOf": [{"anyOf": [{"required": ["name"]}, {"required": ["address"]}]}],
    "if": {"properties": {"kind": {"const": "company"}}, "required": ["kind"]},
    "then": {"required": ["vatId"]},
    "else": {"not": {"required": ["vatId"]}},
    "additionalProperties": False,
}

TOOLS: list[ToolDef] = [
    ToolDef("test_simple_text", "Returns one text content item.", t_simple_text, annotations=READ_ONLY),
    ToolDef("test_image_content", "Returns one image content item (base64 PNG).", t_image, annotations=READ_ONLY),
    ToolDef("test_audio_content", "Returns one audio content item (base64 WAV).", t_audio, annotations=READ_ONLY),
    ToolDef(
        "test_embedded_resource",
        "Returns one embedded text resource (test://embedded-resource).",
        t_embedded_resource,
        annotations=READ_ONLY,
    ),
    ToolDef(
        "test_multiple_content_types",
        "Returns text, an image and an embedded JSON resource.",
        t_mixed,
        annotations=READ_ONLY,
    ),
    ToolDef(
        "test_tool_with_progress",
        "Reports progress 0, 50 and 100 of 100 on the caller's progressToken, then returns.",
        t_progress,
    ),
    ToolDef("test_error_handling", "Always fails with an isError result.", t_error),
    ToolDef("test_tool_with_logging", "Sends three info log messages during execution.", t_logging),
    ToolDef(
        "test_logging_tool",
        "Same as test_tool_with_logging (name used by the stateless-era checks).",
        t_logging,
    ),
    ToolDef(
        "test_sampling",
        "Asks the client for an LLM completion of `prompt` and returns it.",
        t_sampling,
        {
            "type": "object",
            "properties": {"prompt": {"type": "string", "description": "The prompt to send to the LLM"}},
            "required": ["prompt"],
        },
    ),
    ToolDef(
        "test_elicitation",
        "Asks the user (elicitation) for a username and email and returns the answer.",
        t_elicitation,
        {
            "type": "object",
            "properties": {"message": {"type": "string", "description": "The message to show the user"}},
            "required": ["message"],
        },
    ),
    ToolDef(
        "test_elicitation_sep1034_defaults",
        "Elicitation whose schema has defaults for every primitive type (SEP-1034).",
        t_sep1034,
    ),
    ToolDef(
        "test_elicitation_sep1330_enums",
        "Elicitation whose schema uses all five enum shapes (SEP-1330).",
        t_sep1330,
    ),
    ToolDef(
        "test_missing_capability",
        "Requires the client's sampling capability (-32021 on 2026-07-28 without it).",
        t_missing_capability,
    ),
    ToolDef(
        "test_input_required_result_elicitation",
        "InputRequiredResult with one elicitation (key user_name).",
        t_irr_elicitation,
    ),
    ToolDef(
        "test_input_required_result_sampling",
        "InputRequiredResult with one sampling request (key capital_question).",
        t_irr_sampling,
    ),
    ToolDef(
        "test_input_required_result_list_roots",
        "InputRequiredResult with one roots/list request (key client_roots).",
        t_irr_roots,
    ),
    ToolDef(
        "test_input_required_result_request_state",
        "InputRequiredResult with an elicitation and a signed requestState; completes with state-ok.",
        t_irr_request_state,
    ),
    ToolDef(
        "test_input_required_result_multiple_inputs",
        "InputRequiredResult with elicitation, sampling and roots/list at once, plus requestState.",
        t_irr_multiple,
    ),
    ToolDef(
        "test_input_required_result_multi_round",
        "Two InputRequiredResult rounds with evolving requestState, then a complete result.",
        t_irr_multi_round,
    ),
    ToolDef(
        "test_input_required_result_tampered_state",
        "InputRequiredResult with an integrity-protected requestState; altered state is rejected.",
        t_irr_tampered,
    ),
    ToolDef(
        "test_input_required_result_capabilities",
        "Requests only the input kinds the client declared (elicitation, sampling, roots).",
        t_irr_capabilities,
    ),
    ToolDef(
        "test_streaming_elicitation",
        "Reports progress, then asks for a name by elicitation (InputRequiredResult on 2026-07-28).",
        t_streaming_elicitation,
    ),
    ToolDef(
        "test_trigger_tool_change",
        "Announces notifications/tools/list_changed.",
        t_trigger_tool_change,
        annotations={"readOnlyHint": False, "destructiveHint": False},
    ),
    ToolDef(
        "test_trigger_prompt_change",
        "Announces notifications/prompts/list_changed.",
        t_trigger_prompt_change,
        annotations={"readOnlyHint": False, "destructiveHint": False},
    ),
    ToolDef(
        "test_trigger_resource_change",
        "Announces notifications/resources/list_changed.",
        t_trigger_resource_change,
        annotations={"readOnlyHint": False, "destructiveHint": False},
    ),
    ToolDef(
        "test_trigger_resource_update",
        "Bumps test://watched-resource and sends notifications/resources/updated to subscribers.",
        t_trigger_resource_update,
        annotations={"readOnlyHint": False, "destructiveHint": False},
    ),
    ToolDef(
        "test_reconnection",
        "Closes its own SSE stream mid-call (2025-11-25 resumability), then completes.",
        t_reconnection,
    ),
    ToolDef(
        "test_custom_headers",
        "Echoes its arguments and the Mcp-* request headers it received (x-mcp-header mirroring).",
        t_custom_headers,
        CUSTOM_HEADERS_SCHEMA,
        annotations=READ_ONLY,
    ),
    ToolDef(
        "json_schema_2020_12_tool",
        "Has an inputSchema using JSON Schema 2020-12 keywords ($defs, $anchor, allOf/anyOf, if/then/else).",
        t_json_schema,
        JSON_SCHEMA_2020_12,
        annotations=READ_ONLY,
    ),
]
TOOLS_BY_NAME = {t.name: t for t in TOOLS}


# --------------------------------------------------------------------------------------------
# Prompts
# --------------------------------------------------------------------------------------------

PROMPTS: list[dict[str, Any]] = [
    {"name": "test_simple_prompt", "description": "A simple prompt without arguments."},
    {
        "name": "test_prompt_with_arguments",
        "description": "A prompt with two required arguments.",
        "arguments": [
            {"name": "arg1", "description": "First test argument", "required": True},
            {"name": "arg2", "description": "Second test argument", "required": True},
        ],
    },
    {
        "name": "test_prompt_with_embedded_resource",
        "description": "A prompt embedding the resource named by resourceUri.",
        "arguments": [{"name": "resourceUri", "description": "URI of the resource to embed", "required": True}],
    },
    {"name": "test_prompt_with_image", "description": "A prompt with an image."},
    {
        "name": "test_input_required_result_prompt",
        "description": "Asks the user for context (InputRequiredResult on 2026-07-28) before building the prompt.",
    },
]
PROMPTS_BY_NAME = {p["name"]: p for p in PROMPTS}


def user_message(content: dict[str, Any]) -> dict[str, Any]:
    return {"role": "user", "content": content}


async def build_prompt(ctx, name: str, arguments: dict[str, str]) -> dict[str, Any]:
    spec = PROMPTS_BY_NAME.get(name)
    if spec is None:
        raise MCPError(INVALID_PARAMS, f"Unknown prompt: {name}", data={"name": name})
    missing = [a["name"] for a in spec.get("arguments", []) if a.get("required") and a["name"] not in arguments]
    if missing:
        raise MCPError(INVALID_PARAMS, f"Missing required arguments: {', '.join(missing)}", data={"missing": missing})
    if name == "test_simple_prompt":
        messages = [user_message(text("This is a simple prompt for testing."))]
    elif name == "test_prompt_with_arguments":
        messages = [
            user_message(text(f"Prompt with arguments: arg1='{arguments['arg1']}', arg2='{arguments['arg2']}'"))
        ]
    elif name == "test_prompt_with_embedded_resource":
        messages = [
            user_message(
                {
                    "type": "resource",
                    "resource": {
                        "uri": arguments["resourceUri"],
                        "mimeType": "text/plain",
                        "text": "Embedded resource content for testing.",
                    },
                }
            ),
            user_message(text("Please process the embedded resource above.")),
        ]
    elif name == "test_prompt_with_image":
        messages = [
            user_message({"type": "image", "data": PNG_B64, "mimeType": "image/png"}),
            user_message(text("Please analyze the image above.")),
        ]
    else:  # test_input_required_result_prompt
        req = elicitation("What context should the prompt use?", {"context": {"type": "string"}}, ["context"])
        answer = (await gather(ctx, {"user_context": req}))["user_context"]
        messages = [user_message(text(f"Answer using this context: {elicited(answer, 'context')}"))]
    return {"description": spec["description"], "messages": messages}


# --------------------------------------------------------------------------------------------
# Resources
# --------------------------------------------------------------------------------------------

RESOURCES: list[dict[str, Any]] = [
    {
        "uri": "test://static-text",
        "name": "static-text",
        "description": "A static text resource.",
        "mimeType": "text/plain",
    },
    {
        "uri": "test://static-binary",
        "name": "static-binary",
        "description": "A static binary resource (1x1 PNG).",
        "mimeType": "image/png",
    },
    {
        "uri": WATCHED_URI,
        "name": "watched-resource",
        "description": "A resource that can be subscribed to; test_trigger_resource_update changes it.",
        "mimeType": "text/plain",
    },
]
TEMPLATES: list[dict[str, Any]] = [
    {
        "uriTemplate": "test://template/{id}/data",
        "name": "template-data",
        "description": "JSON data for the given id.",
        "mimeType": "application/json",
    }
]
TEMPLATE_PREFIX, TEMPLATE_SUFFIX = "test://template/", "/data"


def read_resource(ctx, uri: str) -> list[dict[str, Any]]:
    if uri == "test://static-text":
        return [{"uri": uri, "mimeType": "text/plain", "text": "This is the content of the static text resource."}]
    if uri == "test://static-binary":
        return [{"uri": uri, "mimeType": "image/png", "blob": PNG_B64}]
    if uri == WATCHED_URI:
        return [{"uri": uri, "mimeType": "text/plain", "text": f"Watched resource, version {STATE.watched_version}."}]
    if uri.startswith(TEMPLATE_PREFIX) and uri.endswith(TEMPLATE_SUFFIX):
        ident = uri[len(TEMPLATE_PREFIX) : -len(TEMPLATE_SUFFIX)]
        if ident and "/" not in ident:
            body = {"id": ident, "templateTest": True, "data": f"Data for ID: {ident}"}
            return [{"uri": uri, "mimeType": "application/json", "text": json.dumps(body, separators=(",", ":"))}]
    # 2026-07-28 (SEP-2164): -32602 with the uri in data; up to 2025-11-25 the code was -32002.
    code = INVALID_PARAMS if is_modern(ctx) else RESOURCE_NOT_FOUND_LEGACY
    raise MCPError(code, "Resource not found", data={"uri": uri})


# --------------------------------------------------------------------------------------------
# Completion
# --------------------------------------------------------------------------------------------

COMPLETIONS: dict[tuple[str, str, str], list[str]] = {
    ("ref/prompt", "test_prompt_with_arguments", "arg1"): ["paris", "park", "party", "test", "testing"],
    ("ref/prompt", "test_prompt_with_arguments", "arg2"): ["red", "green", "blue"],
    ("ref/prompt", "test_prompt_with_embedded_resource", "resourceUri"): [
        "test://static-text",
        "test://static-binary",
        WATCHED_URI,
    ],
    ("ref/resource", "test://template/{id}/data", "id"): ["123", "456", "789"],
}


# --------------------------------------------------------------------------------------------
# Handlers
# --------------------------------------------------------------------------------------------


def complete(result: dict[str, Any]) -> dict[str, Any]:
    """Mark a wire-dict result `resultType: complete`.

    Required on every 2026-07-28 result (the SDK's result validation rejects a plain dict
    without it); the 2025-11-25 result surface does not know the field and drops it.
    """
    return result if "resultType" in result else {"resultType": "complete", **result}


async def on_list_tools(ctx, params):
    return complete({"tools": [t.wire() for t in TOOLS]})


async def on_call_tool(ctx, params: types.CallToolRequestParams):
    tool = TOOLS_BY_NAME.get(params.name)
    if tool is None:
        raise MCPError(INVALID_PARAMS, f"Unknown tool: {params.name}", data={"name": params.name})
    args = raw_params(ctx).get("arguments") or {}
    try:
        return complete(await tool.fn(ctx, args))
    except NeedInput as need:
        return need.result()
    except MissingCapability as missing:
        if is_modern(ctx):
            raise MCPError(
                MISSING_REQUIRED_CLIENT_CAPABILITY,
                f"Missing required client capability: {missing}",
                data={"requiredCapabilities": {cap: {} for cap in missing.capabilities}},
            ) from None
        return complete(tool_result(
            text(f"{params.name} needs the client capability: {missing} (not declared at initialize)."),
            is_error=True,
        ))


async def on_list_prompts(ctx, params):
    return complete({"prompts": PROMPTS})


async def on_get_prompt(ctx, params: types.GetPromptRequestParams):
    try:
        return complete(await build_prompt(ctx, params.name, dict(params.arguments or {})))
    except NeedInput as need:
        return need.result()
    except MissingCapability as missing:
        code = MISSING_REQUIRED_CLIENT_CAPABILITY if is_modern(ctx) else INVALID_PARAMS
        raise MCPError(
            code,
            f"Missing required client capability: {missing}",
            data={"requiredCapabilities": {cap: {} for cap in missing.capabilities}},
        ) from None


async def on_list_resources(ctx, params):
    return complete({"resources": RESOURCES})


async def on_list_resource_templates(ctx, params):
    return complete({"resourceTemplates": TEMPLATES})


async def on_read_resource(ctx, params: types.ReadResourceRequestParams):
    return complete({"contents": read_resource(ctx, str(params.uri))})


async def on_subscribe(ctx, params: types.SubscribeRequestParams):
    uri = str(params.uri)
    subs: set[str] = connection_state(ctx).setdefault("subscriptions", set())
    subs.add(uri)
    if uri == WATCHED_URI:
        # Demonstrate notifications/resources/updated shortly after subscribing, on the
        # standalone channel (the GET stream on HTTP, the pipe on stdio), unless unsubscribed.
        session = ctx.session

        async def notify_later() -> None:
            await asyncio.sleep(0.2)
            if uri in subs:
                await session.send_resource_updated(uri)

        task = asyncio.get_running_loop().create_task(notify_later())
        STATE.background.add(task)
        task.add_done_callback(STATE.background.discard)
    return {}


async def on_unsubscribe(ctx, params: types.UnsubscribeRequestParams):
    connection_state(ctx).setdefault("subscriptions", set()).discard(str(params.uri))
    return {}


async def on_completion(ctx, params: types.CompleteRequestParams):
    ref = params.ref
    ref_type = getattr(ref, "type", "")
    ref_key = getattr(ref, "name", None) if ref_type == "ref/prompt" else getattr(ref, "uri", None)
    candidates = COMPLETIONS.get((ref_type, str(ref_key), params.argument.name), [])
    prefix = params.argument.value or ""
    values = [v for v in candidates if v.startswith(prefix)]
    return complete({"completion": {"values": values[:100], "total": len(values), "hasMore": False}})


async def on_set_logging_level(ctx, params: types.SetLevelRequestParams):
    connection_state(ctx)["log_level"] = params.level
    return {}


class FixtureServer(Server[Any]):
    """Lowlevel `Server` that also advertises `listChanged` on the handshake era."""

    def create_initialization_options(self, notification_options=None, experimental_capabilities=None, extensions=None):
        return super().create_initialization_options(
            notification_options or NotificationOptions(prompts_changed=True, resources_changed=True, tools_changed=True),
            experimental_capabilities,
            extensions,
        )


def build_server() -> FixtureServer:
    hint_public = CacheHint(ttl_ms=60_000, scope="public")
    server = FixtureServer(
        SERVER_NAME,
        version=SERVER_VERSION,
        title="Portcullis conformance fixture",
        instructions="Test fixture for the MCP conformance suite; not for real use.",
        cache_hints={
            "tools/list": hint_public,
            "prompts/list": hint_public,
            "resources/list": hint_public,
            "resources/templates/list": hint_public,
            "resources/read": CacheHint(ttl_ms=5_000, scope="private"),
        },
        on_list_tools=on_list_tools,
        on_call_tool=on_call_tool,
        on_list_prompts=on_list_prompts,
        on_get_prompt=on_get_prompt,
        on_list_resources=on_list_resources,
        on_list_resource_templates=on_list_resource_templates,
        on_read_resource=on_read_resource,
        on_subscribe_resource=on_subscribe,
        on_unsubscribe_resource=on_unsubscribe,
        on_subscriptions_listen=ListenHandler(STATE.bus),
        on_completion=on_completion,
        on_set_logging_level=on_set_logging_level,
    )
    # Seal/verify requestState (AES-256-GCM under a per-process key; 10 minute expiry).
    server.middleware.append(
        RequestStateBoundary(RequestStateSecurity.ephemeral(ttl=600.0), default_audience=SERVER_NAME)
    )
    return server


async def serve_stdio() -> None:
    from mcp.server.stdio import stdio_server

    server = build_server()
    async with stdio_server() as (read_stream, write_stream):
        await server.run(read_stream, write_stream, server.create_initialization_options())


def serve_http(port: int, resumable: bool = True) -> None:
    import uvicorn

    server = build_server()
    # host="127.0.0.1" turns on the SDK's DNS-rebinding protection: Host must be 127.0.0.1,
    # localhost or [::1] (any port) and a present Origin must be http://one-of-those.
    app = server.streamable_http_app(
        streamable_http_path="/mcp",
        host="127.0.0.1",
        event_store=MemoryEventStore() if resumable else None,
        retry_interval=RETRY_INTERVAL_MS if resumable else None,
    )
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--port", type=int, help="serve Streamable HTTP on 127.0.0.1:PORT at /mcp")
    mode.add_argument("--stdio", action="store_true", help="serve over stdin/stdout")
    parser.add_argument(
        "--no-resumability",
        action="store_true",
        help="HTTP: no event store, so no priming events, retry field or Last-Event-ID replay (2025-11-25)",
    )
    parser.add_argument("--log-level", default="WARNING", help="Python logging level for stderr")
    opts = parser.parse_args()
    logging.basicConfig(stream=sys.stderr, level=opts.log_level.upper(), format="%(levelname)s %(name)s: %(message)s")
    if opts.stdio:
        import anyio

        anyio.run(serve_stdio)
    else:
        serve_http(opts.port, resumable=not opts.no_resumability)


if __name__ == "__main__":
    main()
