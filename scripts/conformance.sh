#!/usr/bin/env bash
# Runs the official MCP conformance suite (server side) against our dual-era fixture, or against
# any other MCP endpoint given with --target (e.g. Portcullis in front of the fixture).
#
# Usage:
#   scripts/conformance.sh                      # start tests/conformance/fixture_server.py, test it
#   scripts/conformance.sh --target URL         # test an already running endpoint instead
#   scripts/conformance.sh --set 2026-07-28     # only one requirement set (default: both)
#
# Both requirement sets (2025-11-25: handshake era, 2026-07-28: stateless era) run with
# --expected-failures tests/conformance/baseline.yml. Results (checks.json per scenario) go under
# target/conformance/<set>/, the suite's console output to target/conformance/<set>.log and the
# fixture's stderr to target/conformance/fixture.log. Exits non-zero if any set fails, i.e. a
# scored scenario fails that the baseline does not list, or a baselined one now passes.
#
# Installs (idempotently, stamp files) Node 22 under .peers/node22 and the suite under
# .peers/conformance, pinned as in ../shared/spec/test-peers.md; the fixture needs the
# .peers/venv created by scripts/install-peers.sh (run if missing).
set -euo pipefail
cd "$(dirname "$0")/.."

CONFORMANCE_VERSION="0.2.0-alpha.12"
NODE22_VERSION="22.23.3"
BASELINE="tests/conformance/baseline.yml"
OUT="target/conformance"
ALL_SETS=(2025-11-25 2026-07-28)

target=""
sets=()
while [ $# -gt 0 ]; do
  case "$1" in
    --target) target="${2:?--target needs a URL}"; shift 2 ;;
    --target=*) target="${1#--target=}"; shift ;;
    --set) sets+=("${2:?--set needs a requirement set}"); shift 2 ;;
    --set=*) sets+=("${1#--set=}"); shift ;;
    -h|--help) sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "conformance.sh: unknown argument: $1 (see --help)" >&2; exit 2 ;;
  esac
done
[ ${#sets[@]} -gt 0 ] || sets=("${ALL_SETS[@]}")
for s in "${sets[@]}"; do
  case "$s" in 2025-11-25|2026-07-28) ;; *) echo "conformance.sh: unknown set: $s" >&2; exit 2 ;; esac
done

# --- installs ------------------------------------------------------------------------------
mkdir -p .peers
if [ ! -f .peers/node22/.done ]; then
  echo "installing node@$NODE22_VERSION under .peers/node22" >&2
  mkdir -p .peers/node22
  (cd .peers/node22 && { [ -f package.json ] || npm init -y >/dev/null; } \
    && npm install --silent --no-audit --no-fund "node@$NODE22_VERSION")
  .peers/node22/node_modules/.bin/node --version >/dev/null
  touch .peers/node22/.done
fi
if [ ! -f .peers/conformance/.done ]; then
  echo "installing @modelcontextprotocol/conformance@$CONFORMANCE_VERSION under .peers/conformance" >&2
  mkdir -p .peers/conformance
  (cd .peers/conformance && { [ -f package.json ] || npm init -y >/dev/null; } \
    && npm install --silent --no-audit --no-fund "@modelcontextprotocol/conformance@$CONFORMANCE_VERSION")
  touch .peers/conformance/.done
fi
if [ -z "$target" ] && [ ! -f .peers/venv/.done ]; then
  scripts/install-peers.sh
fi

NODE_BIN="$PWD/.peers/node22/node_modules/.bin"
CONFORMANCE="$PWD/.peers/conformance/node_modules/.bin/conformance"
mkdir -p "$OUT"

# --- fixture -------------------------------------------------------------------------------
fixture_pid=""
cleanup() {
  if [ -n "$fixture_pid" ] && kill -0 "$fixture_pid" 2>/dev/null; then
    kill "$fixture_pid" 2>/dev/null || true
    for _ in 1 2 3 4 5 6 7 8 9 10; do kill -0 "$fixture_pid" 2>/dev/null || break; sleep 0.2; done
    kill -9 "$fixture_pid" 2>/dev/null || true
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Answers at all (any HTTP status): the suite itself judges what the answer is.
answers() {
  local code
  code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 -X POST "$1" \
    -H 'Content-Type: application/json' -H 'Accept: application/json, text/event-stream' \
    -H 'MCP-Protocol-Version: 2026-07-28' -H 'Mcp-Method: server/discover' \
    -d '{"jsonrpc":"2.0","id":0,"method":"server/discover","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}}}}' \
    2>/dev/null) || true
  [ -n "$code" ] && [ "$code" != "000" ]
}

if [ -z "$target" ]; then
  port=$(.peers/venv/bin/python -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  .peers/venv/bin/python tests/conformance/fixture_server.py --port "$port" >"$OUT/fixture.log" 2>&1 &
  fixture_pid=$!
  target="http://127.0.0.1:$port/mcp"
  echo "fixture: pid $fixture_pid, $target (stderr: $OUT/fixture.log)"
fi

ready=""
for _ in $(seq 1 100); do
  if answers "$target"; then ready=1; break; fi
  if [ -n "$fixture_pid" ] && ! kill -0 "$fixture_pid" 2>/dev/null; then break; fi
  sleep 0.2
done
if [ -z "$ready" ]; then
  echo "conformance.sh: $target does not answer" >&2
  [ -f "$OUT/fixture.log" ] && tail -20 "$OUT/fixture.log" >&2
  exit 1
fi

# --- runs ----------------------------------------------------------------------------------
# Scored server scenarios of a requirement set, one per line (from `conformance list`).
scored_scenarios() {
  PATH="$NODE_BIN:$PATH" "$CONFORMANCE" list --requirements "$1" | awk '
    /^Server scenarios/ { on = 1; next }
    /^Client scenarios/ || /^Run and reported/ { on = 0 }
    on && /^[[:space:]]*- / { sub(/^[[:space:]]*- /, ""); print }'
}

summarize() {  # $1 = console log of one run, $2 = file listing the scored scenarios
  python3 - "$1" "$2" <<'PY'
import re, sys
lines = open(sys.argv[1], encoding="utf-8", errors="replace").read().splitlines()
scored = {l.strip() for l in open(sys.argv[2], encoding="utf-8") if l.strip()}
try:
    start = lines.index("=== SUMMARY ===")
except ValueError:
    print("  (no summary: the suite did not finish; see the log)")
    sys.exit()
counts = {True: [0, 0, 0, 0], False: [0, 0, 0, 0]}  # scenarios ok/failed, checks passed/failed
failing = {True: [], False: []}
for line in lines[start + 1:]:
    if line.startswith("Total:"):
        break
    m = re.match(r"([\u2713\u2717])\s+(\S+):\s+(\d+) passed, (\d+) failed", line)
    if not m:
        continue
    key = m.group(2) in scored
    ok = m.group(1) == "\u2713"
    c = counts[key]
    c[0 if ok else 1] += 1
    c[2] += int(m.group(3))
    c[3] += int(m.group(4))
    if not ok:
        failing[key].append(m.group(2))
s, u = counts[True], counts[False]
print(f"  scored scenarios:   {s[0]} passed, {s[1]} failed of {len(scored)} required "
      f"(checks: {s[2]} passed, {s[3]} failed)")
if failing[True]:
    print("    failing: " + ", ".join(failing[True]))
print(f"  unscored scenarios: {u[0]} passed, {u[1]} failed (checks: {u[2]} passed, {u[3]} failed)")
if failing[False]:
    print("    failing: " + ", ".join(failing[False]))
ansi = re.compile(r"\x1b\[[0-9;]*m")
after = lines[lines.index(next(l for l in lines[start:] if l.startswith("Total:"))) + 1:] if any(
    l.startswith("Total:") for l in lines[start:]) else []
for line in after:
    if line.strip():
        print("  " + ansi.sub("", line))
PY
}

status=0
for set in "${sets[@]}"; do
  echo
  echo "== conformance server --requirements $set ($target)"
  rm -rf "${OUT:?}/$set"
  started=$(date +%s)
  rc=0
  PATH="$NODE_BIN:$PATH" "$CONFORMANCE" server --url "$target" --requirements "$set" \
    --expected-failures "$BASELINE" -o "$OUT/$set" >"$OUT/$set.log" 2>&1 || rc=$?
  echo "  exit $rc after $(( $(date +%s) - started ))s; log $OUT/$set.log, results $OUT/$set/"
  scored_scenarios "$set" >"$OUT/$set.scored"
  summarize "$OUT/$set.log" "$OUT/$set.scored"
  [ "$rc" -eq 0 ] || status=1
done

echo
if [ "$status" -eq 0 ]; then
  echo "conformance: all requirement sets pass (modulo $BASELINE)"
else
  echo "conformance: FAILED (see the logs above)"
fi
exit "$status"
