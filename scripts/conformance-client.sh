#!/usr/bin/env bash
# Runs the official MCP conformance suite's CLIENT scenarios with Portcullis as the client: the
# suite's scenario server is the upstream of `portcullis stdio --url`, driven by a real Python
# `mcp` 1.x ClientSession (tests/conformance/client_driver.py). What is judged is what
# Portcullis sends upstream: its initialize, its tool calls, its SSE resumption (sse-retry:
# wait the server's `retry`, then GET with Last-Event-ID), and its era bridge (request-metadata:
# the 1.x client's handshake bridged to a 2026-07-28-only server, every request with `_meta`
# and the version header, a -32022 answered by retrying with a supported version).
#
# Usage: scripts/conformance-client.sh [SCENARIO...]   (default: the list below)
#
# Not run, and why:
#   elicitation-sep1034-client-defaults  the driver client declares no elicitation capability
#   auth/*                               OAuth on the upstream side is not built
# Needs .peers (scripts/install-peers.sh, scripts/conformance.sh install what is missing).
set -euo pipefail
cd "$(dirname "$0")/.."

scenarios=("$@")
[ ${#scenarios[@]} -gt 0 ] || scenarios=(initialize tools_call sse-retry request-metadata)

[ -f .peers/venv1/.done ] || scripts/install-peers.sh
[ -x .peers/conformance/node_modules/.bin/conformance ] || scripts/conformance.sh --set 2025-11-25 >/dev/null
. scripts/lib/cargo-bin.sh
bin="$(cargo_build_bins debug -p portcullis)/portcullis"
out="target/conformance/client"
mkdir -p "$out"
echo '{"version":"1","default":"allow"}' >"$out/allow.json"
cmd="$PWD/.peers/venv1/bin/python $PWD/tests/conformance/client_driver.py $bin $PWD/$out/allow.json"

rc=0
for s in "${scenarios[@]}"; do
  log="$out/$s.log"
  if PATH="$PWD/.peers/node22/node_modules/.bin:$PATH" \
      .peers/conformance/node_modules/.bin/conformance client --command "$cmd" --scenario "$s" \
      -o "$out/$s" >"$log" 2>&1 && grep -q "OVERALL: PASSED" "$log"; then
    echo "  ✓ $s: $(grep -m1 '^Passed:' "$log")"
  else
    echo "  ✗ $s (log: $log)"
    grep -E "FAILURE|Error:|OVERALL" "$log" | sed 's/^/      /' | head -20
    rc=1
  fi
done
exit $rc
