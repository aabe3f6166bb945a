#!/usr/bin/env bash
# Sets up and launches the peer MCP gateways that target/release/bench compares Portcullis with,
# each in front of the same stdio upstream. See scripts/bench-peers.md.
#
#   scripts/bench-peers.sh install
#       venv at .bench-peers/venv with pinned mcp-contextforge-gateway and mcp-proxy (idempotent).
#   scripts/bench-peers.sh start mcp-proxy    -- CMD ARGS...
#   scripts/bench-peers.sh start contextforge -- CMD ARGS...
#       Starts the peer in front of the stdio MCP server CMD ARGS..., waits until it answers an
#       MCP initialize, then prints exactly one line on stdout:
#           READY <url>[\tHEADER <Name>: <value>]...[\tTOOL <name-to-call-for-echo>]
#       or `FAILED <reason>` (exit 1). Everything else goes to stderr or to log files in a temp
#       dir (its path is printed on stderr). Then stays in the foreground until SIGTERM/SIGINT
#       (or SIGKILL of the process group: the children share it), and on SIGTERM stops its
#       children and removes the temp dir.
#
# Environment knobs (all optional):
#   BENCH_PEERS_KEEP_TMP=1   keep the temp dir (logs, SQLite DB) after exit.
#   CF_STATEFUL=0|1          ContextForge USE_STATEFUL_SESSIONS (default 1, see below).
#   CF_BRIDGE=mcp-proxy|translate
#                            what exposes the stdio server over HTTP for ContextForge (default
#                            mcp-proxy, see below).
#   PEER_START_TIMEOUT=60    seconds to wait for readiness.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
VENV="$ROOT/.bench-peers/venv"
PY="$VENV/bin/python"
# Pinned versions (the ones verified; see scripts/bench-peers.md).
CF_VERSION="1.0.7.post20260921"
MCP_PROXY_VERSION="0.13.0"
PINS="mcp-contextforge-gateway==$CF_VERSION mcp-proxy==$MCP_PROXY_VERSION"

usage() {
  echo "usage: $0 install | start {mcp-proxy|contextforge} -- CMD [ARGS...]" >&2
  exit 2
}

cmd_install() {
  if [ -f "$VENV/.done" ] && [ "$(cat "$VENV/.done")" = "$PINS" ]; then
    echo "bench peers already installed in $VENV ($PINS)"
    return 0
  fi
  mkdir -p "$ROOT/.bench-peers"
  [ -x "$PY" ] || python3 -m venv "$VENV"
  # shellcheck disable=SC2086
  "$VENV/bin/pip" install -q --disable-pip-version-check $PINS
  echo "$PINS" > "$VENV/.done"
  echo "bench peers installed in $VENV ($PINS)"
}

# ---------------------------------------------------------------------------------------------
# start
# ---------------------------------------------------------------------------------------------

# fd 3 = the real stdout, used only for the single READY/FAILED line; everything else -> stderr.
exec 3>&1 1>&2

PIDS=()
TMP=""
REPORTED=0

log() { echo "[bench-peers] $*" >&2; }

fail() {
  log "FAILED: $*"
  if [ -n "$TMP" ]; then
    for f in "$TMP"/*.log; do
      [ -f "$f" ] || continue
      log "--- last lines of $f ---"
      tail -n 25 "$f" >&2 || true
    done
  fi
  if [ "$REPORTED" = 0 ]; then
    REPORTED=1
    # One line, no tabs/newlines inside the reason.
    printf 'FAILED %s\n' "$(printf '%s' "$*" | tr '\t\n' '  ')" >&3
  fi
  exit 1
}

# All descendants of a pid (children first found, then theirs), by walking /proc via ps.
descendants() {
  local p c
  for p in "$@"; do
    for c in $(ps -o pid= --ppid "$p" 2>/dev/null); do
      echo "$c"
      descendants "$c"
    done
  done
}

cleanup() {
  local rc=$?
  trap - EXIT INT TERM HUP
  if [ "${#PIDS[@]}" -gt 0 ]; then
    local all
    all="$(descendants "${PIDS[@]}") ${PIDS[*]}"
    # shellcheck disable=SC2086
    kill -TERM $all 2>/dev/null || true
    for _ in $(seq 1 30); do
      local alive=0
      for p in $all; do kill -0 "$p" 2>/dev/null && alive=1; done
      [ "$alive" = 0 ] && break
      sleep 0.1
    done
    # shellcheck disable=SC2086
    kill -KILL $all 2>/dev/null || true
  fi
  if [ -n "$TMP" ] && [ -d "$TMP" ] && [ "${BENCH_PEERS_KEEP_TMP:-0}" != 1 ]; then
    rm -rf "$TMP"
  fi
  exit "$rc"
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Quote CMD ARGS... as one shell-style string (for tools that take the command as one string).
shell_join() {
  python3 -c 'import shlex, sys; print(shlex.join(sys.argv[1:]))' "$@"
}

# mcp_probe URL [HEADER-LINE...]: one Streamable HTTP initialize; exit 0 iff it returns a result.
# Handles both JSON and SSE (text/event-stream) answers.
mcp_probe() {
  "$PY" - "$@" <<'EOF'
import json, sys, urllib.request
url, hdr_lines = sys.argv[1], sys.argv[2:]
h = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json",
     "MCP-Protocol-Version": "2025-06-18"}
for l in hdr_lines:
    k, v = l.split(": ", 1); h[k] = v
body = {"jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": {"protocolVersion": "2025-06-18", "capabilities": {},
                   "clientInfo": {"name": "bench-peers-probe", "version": "0"}}}
req = urllib.request.Request(url, data=json.dumps(body).encode(), headers=h, method="POST")
try:
    with urllib.request.urlopen(req, timeout=10) as r:
        text = r.read().decode()
        ct = r.headers.get("Content-Type", "")
        sid = r.headers.get("Mcp-Session-Id")
except Exception as e:
    print(f"probe: {e}", file=sys.stderr); sys.exit(1)
msg = None
if ct.startswith("text/event-stream"):
    for line in text.splitlines():
        if line.startswith("data:") and line[5:].strip():
            msg = json.loads(line[5:]); break
else:
    msg = json.loads(text)
if not msg or "result" not in msg:
    print(f"probe: no result: {text[:300]}", file=sys.stderr); sys.exit(1)
print(f"probe ok: content-type={ct} session-id={'yes' if sid else 'no'} "
      f"server={msg['result'].get('serverInfo')}", file=sys.stderr)
# Be a polite client: close the probe session if there is one.
if sid:
    try:
        h["Mcp-Session-Id"] = sid
        urllib.request.urlopen(urllib.request.Request(url, headers=h, method="DELETE"), timeout=5).read()
    except Exception:
        pass
EOF
}

# wait_until DESC CHECK-CMD...: retry CHECK-CMD until it succeeds; fail if a child died or timeout.
wait_until() {
  local desc=$1; shift
  local deadline=$((SECONDS + ${PEER_START_TIMEOUT:-60}))
  while :; do
    if "$@" 2>>"$TMP/probe.log"; then return 0; fi
    for p in "${PIDS[@]}"; do
      kill -0 "$p" 2>/dev/null || fail "$desc: a child process (pid $p) exited during startup"
    done
    [ "$SECONDS" -lt "$deadline" ] || fail "$desc: not ready after ${PEER_START_TIMEOUT:-60}s"
    sleep 0.3
  done
}

# start_mcp_proxy PORT LOGFILE CMD ARGS...: mcp-proxy serving the stdio server on 127.0.0.1:PORT
# (Streamable HTTP at /mcp, legacy SSE at /sse). Defaults kept (stateful sessions, JSON answers);
# only --log-level WARNING, which turns off uvicorn's per-request access log line.
start_mcp_proxy() {
  local port=$1 logf=$2; shift 2
  "$VENV/bin/mcp-proxy" --host 127.0.0.1 --port "$port" --log-level WARNING -- "$@" \
    >"$logf" 2>&1 </dev/null &
  PIDS+=($!)
}

start_peer_mcp_proxy() {
  local port url
  port=$(free_port)
  url="http://127.0.0.1:$port/mcp"
  start_mcp_proxy "$port" "$TMP/mcp-proxy.log" "$@"
  wait_until "mcp-proxy" mcp_probe "$url"
  REPORTED=1
  printf 'READY %s\n' "$url" >&3
}

# ContextForge: stdio server -> bridge (mcp-proxy by default) -> mcpgateway -> client.
start_peer_contextforge() {
  local bport gport bridge_url gw_url token
  bport=$(free_port)
  gport=$(free_port)
  gw_url="http://127.0.0.1:$gport"

  # ---- 1. gateway settings (exported before the bridge: translate reads them too) -----------
  # Settings come from the environment only: we run in the temp dir so that no .env file is
  # picked up (pydantic-settings reads ./.env). What is set and why:
  #   DATABASE_URL            throwaway SQLite file in the temp dir (the default backend is
  #                           SQLite too; PostgreSQL would need a server we do not have).
  #   JWT_SECRET_KEY, AUTH_ENCRYPTION_SECRET, PLATFORM_ADMIN_PASSWORD
  #                           fresh random secrets; 1.0.7 refuses to start with placeholders.
  #   PLATFORM_ADMIN_EMAIL    the bootstrap admin the JWT is issued for (REQUIRE_USER_IN_DB
  #                           stays true: the admin is created in the DB at startup).
  #   AUTH_REQUIRED=true, MCP_CLIENT_AUTH_ENABLED=true
  #                           kept (defaults): every MCP request is JWT-authenticated, as a user
  #                           would run it. Portcullis also sits in the request path, so this
  #                           is the fair setting.
  #   MCPGATEWAY_UI_ENABLED=false, MCPGATEWAY_ADMIN_API_ENABLED=false
  #                           admin UI/API off (already the 1.0.7 defaults; set explicitly).
  #   PLUGINS_ENABLED=false   plugin framework off (default; explicit).
  #   OBSERVABILITY_ENABLED=false, OTEL_ENABLE_OBSERVABILITY=false, ENABLE_METRICS=false
  #                           tracing/Prometheus off (defaults; explicit).
  #   DB_METRICS_RECORDING_ENABLED=false, PERFORMANCE_TRACKING_ENABLED=false,
  #   TOKEN_USAGE_LOGGING_ENABLED=false, STRUCTURED_LOGGING_DATABASE_ENABLED=false,
  #   METRICS_AGGREGATION_ENABLED=false
  #                           per-call metrics/usage rows written to the DB: observability, off.
  #   RATE_LIMITING_ENABLED=false
  #                           the default limiter allows 100 req/min (+20 burst) per client IP on
  #                           /servers/*/mcp and locks out after repeated violations: a load test
  #                           from one loopback client would only measure HTTP 429s.
  #   SSRF_ALLOW_LOCALHOST=true
  #                           needed to register the loopback bridge as a gateway (blocked by
  #                           default).
  #   LOG_LEVEL=ERROR         (default) and uvicorn --no-access-log: no per-request log line.
  #   USE_STATEFUL_SESSIONS   CF_STATEFUL=1 (default here) sets it true: the downstream
  #                           Mcp-Session-Id is honoured and ContextForge keeps ONE upstream
  #                           session per downstream session (its upstream session registry).
  #                           With the shipped default (false, stateless) initialize returns no
  #                           Mcp-Session-Id and every tools/call opens a fresh upstream MCP
  #                           session (initialize + initialized + call + close over the bridge),
  #                           which a session-holding benchmark client would pay for on every
  #                           call. CF_STATEFUL=0 measures the shipped default.
  #   JSON_RESPONSE_ENABLED   kept (default true: answers are application/json, not SSE).
  #   Kept as shipped: CACHE_TYPE=database, compression, security headers, CORS, validation,
  #   health checks of the registered gateway (every 60 s), single uvicorn worker (the
  #   `mcpgateway` CLI; its container uses gunicorn with several workers, which on this 2-core
  #   box and with stateful sessions would need Redis for session affinity).
  local jwt_secret enc_secret admin_pw admin_email="admin@example.com"
  jwt_secret=$(python3 -c 'import secrets; print(secrets.token_urlsafe(48))')
  enc_secret=$(python3 -c 'import secrets; print(secrets.token_urlsafe(48))')
  admin_pw="Bp-$(python3 -c 'import secrets; print(secrets.token_urlsafe(18))')-9x"
  local stateful=true
  [ "${CF_STATEFUL:-1}" = 0 ] && stateful=false
  export DATABASE_URL="sqlite:///$TMP/contextforge.db" \
    JWT_SECRET_KEY="$jwt_secret" AUTH_ENCRYPTION_SECRET="$enc_secret" \
    PLATFORM_ADMIN_EMAIL="$admin_email" PLATFORM_ADMIN_PASSWORD="$admin_pw" \
    AUTH_REQUIRED=true MCP_CLIENT_AUTH_ENABLED=true \
    MCPGATEWAY_UI_ENABLED=false MCPGATEWAY_ADMIN_API_ENABLED=false \
    PLUGINS_ENABLED=false OBSERVABILITY_ENABLED=false OTEL_ENABLE_OBSERVABILITY=false \
    ENABLE_METRICS=false DB_METRICS_RECORDING_ENABLED=false PERFORMANCE_TRACKING_ENABLED=false \
    TOKEN_USAGE_LOGGING_ENABLED=false STRUCTURED_LOGGING_DATABASE_ENABLED=false \
    METRICS_AGGREGATION_ENABLED=false RATE_LIMITING_ENABLED=false \
    SSRF_ALLOW_LOCALHOST=true LOG_LEVEL=ERROR \
    USE_STATEFUL_SESSIONS="$stateful" JSON_RESPONSE_ENABLED=true \
    APP_DOMAIN="$gw_url"
  # ---- 2. the bridge: expose the stdio server over Streamable HTTP on loopback -------------
  # ContextForge's gateway does not spawn stdio servers; its docs put one behind an HTTP
  # bridge. Default: mcp-proxy (a real MCP client/server pair: one stdio session, JSON-RPC ids
  # re-mapped per HTTP session). CF_BRIDGE=translate uses ContextForge's own
  # `python -m mcpgateway.translate --stdio ... --expose-streamable-http`. In 1.0.7 its
  # streamable-HTTP mode writes every POST raw to the one shared stdio process (every upstream
  # session's initialize included) and hands back the first stdout line whose JSON-RPC id
  # matches, broadcast to all waiting requests: concurrent upstream sessions reuse ids (each
  # starts at 0), so under load a request can be answered with another session's result
  # (invisible with a fixed-text echo, wrong in general). It worked in our runs (480 calls at
  # concurrency 16, all answered) and is ~1.5x faster than the mcp-proxy bridge, but it is not
  # a real MCP hop, hence not the default.
  case "${CF_BRIDGE:-mcp-proxy}" in
    mcp-proxy)
      start_mcp_proxy "$bport" "$TMP/bridge.log" "$@"
      ;;
    translate)
      (cd "$TMP" && exec "$PY" -m mcpgateway.translate --stdio "$(shell_join "$@")" --expose-streamable-http \
        --host 127.0.0.1 --port "$bport" --logLevel warning >"$TMP/bridge.log" 2>&1 </dev/null) &
      PIDS+=($!)
      ;;
    *) fail "unknown CF_BRIDGE=${CF_BRIDGE}" ;;
  esac
  bridge_url="http://127.0.0.1:$bport/mcp"

  # ---- 3. the gateway ------------------------------------------------------------------------
  (cd "$TMP" && exec "$VENV/bin/mcpgateway" --host 127.0.0.1 --port "$gport" --no-access-log \
      >"$TMP/contextforge.log" 2>&1 </dev/null) &
  PIDS+=($!)

  wait_until "mcp bridge" mcp_probe "$bridge_url"
  wait_until "contextforge /health" curl -fsS -o /dev/null "$gw_url/health"

  # ---- 4. token, gateway registration, virtual server -----------------------------------------
  # The JWT comes from ContextForge's own utility, for the bootstrap admin, valid 7 days.
  token=$(cd "$TMP" && "$PY" -m mcpgateway.utils.create_jwt_token -u "$admin_email" --admin \
            -e 10080 2>>"$TMP/token.log") || fail "create_jwt_token failed"
  [ -n "$token" ] || fail "create_jwt_token printed no token"

  local out
  out=$(GW_URL="$gw_url" TOKEN="$token" BRIDGE_URL="$bridge_url" "$PY" - 2>"$TMP/setup.log" <<'EOF'
import json, os, sys, time, urllib.request, urllib.error
gw, token, bridge = os.environ["GW_URL"], os.environ["TOKEN"], os.environ["BRIDGE_URL"]
H = {"Authorization": f"Bearer {token}", "Content-Type": "application/json", "Accept": "application/json"}
def call(method, path, body=None):
    req = urllib.request.Request(gw + path, method=method, headers=H,
                                 data=json.dumps(body).encode() if body is not None else None)
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return json.loads(r.read().decode() or "null")
    except urllib.error.HTTPError as e:
        sys.exit(f"{method} {path} -> HTTP {e.code}: {e.read().decode()[:500]}")
# Register the bridge as a gateway (peer). ContextForge connects, lists the tools and stores them.
g = call("POST", "/gateways", {"name": "fast", "url": bridge, "transport": "STREAMABLEHTTP",
                               "description": "bench upstream via bridge"})
gid, slug = g["id"], g.get("slug")
print(f"gateway registered: id={gid} slug={slug} url={g.get('url')}", file=sys.stderr)
tools = []
for _ in range(50):
    tools = [t for t in call("GET", "/tools?limit=0") if t.get("gatewayId") == gid or t.get("gatewaySlug") == slug]
    if tools: break
    time.sleep(0.2)
if not tools:
    sys.exit("no tools were discovered on the registered gateway")
for t in tools:
    print(f"tool: {t.get('originalName')} -> {t['name']}", file=sys.stderr)
# A virtual server exposing all of this gateway's tools (public, so the admin token sees it).
s = call("POST", "/servers", {"server": {"name": "bench", "description": "bench virtual server",
                                         "associated_tools": [t["id"] for t in tools]},
                              "visibility": "public"})
echo = [t["name"] for t in tools if t.get("originalName") == "echo"]
print(s["id"])
print(echo[0] if echo else "")
EOF
) || fail "contextforge setup: $(tail -n 1 "$TMP/setup.log")"
  cat "$TMP/setup.log" >&2
  local server_id echo_name
  server_id=$(sed -n 1p <<<"$out")
  echo_name=$(sed -n 2p <<<"$out")
  [ -n "$server_id" ] || fail "contextforge setup: no virtual server id"

  local url="$gw_url/servers/$server_id/mcp"
  wait_until "contextforge virtual server" mcp_probe "$url" "Authorization: Bearer $token"
  local line
  line=$(printf 'READY %s\tHEADER Authorization: Bearer %s' "$url" "$token")
  if [ -n "$echo_name" ] && [ "$echo_name" != echo ]; then
    line=$(printf '%s\tTOOL %s' "$line" "$echo_name")
  fi
  REPORTED=1
  printf '%s\n' "$line" >&3
}

cmd_start() {
  local u="usage: $0 start {mcp-proxy|contextforge} -- CMD [ARGS...]"
  [ $# -ge 1 ] || fail "$u"
  local peer=$1; shift
  [ "${1:-}" = "--" ] || fail "$u"
  shift
  [ $# -ge 1 ] || fail "$u"
  trap cleanup EXIT
  trap 'exit 143' TERM
  trap 'exit 130' INT
  trap 'exit 129' HUP
  [ -x "$PY" ] || fail "peers not installed: run $0 install"
  TMP=$(mktemp -d /tmp/bench-peers.XXXXXX)
  log "peer=$peer upstream=$* logs in $TMP"
  case "$peer" in
    mcp-proxy) start_peer_mcp_proxy "$@" ;;
    contextforge) start_peer_contextforge "$@" ;;
    *) fail "unknown peer '$peer' (mcp-proxy or contextforge)" ;;
  esac
  log "ready; staying in the foreground until SIGTERM"
  # Stay up while the children run; if one dies, exit (cleanup stops the rest).
  while :; do
    for p in "${PIDS[@]}"; do
      if ! kill -0 "$p" 2>/dev/null; then
        log "child $p exited; shutting down"
        for f in "$TMP"/*.log; do [ -f "$f" ] && { log "--- $f ---"; tail -n 15 "$f" >&2; }; done
        exit 1
      fi
    done
    # `wait -n` returns when any child exits, and lets the TERM trap run at once.
    wait -n "${PIDS[@]}" 2>/dev/null || true
  done
}

case "${1:-}" in
  install) exec 1>&3 3>&-; cmd_install ;;
  start) shift; cmd_start "$@" ;;
  *) usage ;;
esac
