#!/usr/bin/env bash
# Runs the official MCP conformance suite THROUGH Portcullis: our dual-era fixture
# (tests/conformance/fixture_server.py) behind `portcullis serve` with an allow-all policy,
# once as an HTTP upstream and once as a stdio upstream, both eras each. Every scored scenario
# that passes direct must pass through the gateway (same baseline file).
# Usage: scripts/conformance-gateway.sh   (needs .peers from install-peers.sh; builds portcullis)
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib/cargo-bin.sh
bin="$(cargo_build_bins debug -p portcullis)/portcullis"
work="$(mktemp -d)"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 1 200); do (echo >"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.05; done; echo "nothing on port $1" >&2; return 1; }

fix_port=$(free_port)
.peers/venv/bin/python tests/conformance/fixture_server.py --port "$fix_port" >"$work/fixture.log" 2>&1 &
pids+=($!)
gw_port=$(free_port)
echo '{"version":"1","default":"allow"}' >"$work/allow.json"
cat >"$work/portcullis.toml" <<TOML
[gateway]
listen = "127.0.0.1:$gw_port"
data_dir = "$work/data"

[[servers]]
name = "fixture-http"
url = "http://127.0.0.1:$fix_port/mcp"
policy = "allow.json"
auth = "none"

[[servers]]
name = "fixture-stdio"
command = ["$PWD/.peers/venv/bin/python", "$PWD/tests/conformance/fixture_server.py", "--stdio"]
policy = "allow.json"
auth = "none"
TOML
wait_port "$fix_port"
"$bin" serve --config "$work/portcullis.toml" --memory-counters --log warn >"$work/gateway.log" 2>&1 &
pids+=($!)
wait_port "$gw_port"
rc=0
for upstream in fixture-http fixture-stdio; do
  echo "== through the gateway, upstream $upstream"
  scripts/conformance.sh --target "http://127.0.0.1:$gw_port/mcp/$upstream" || rc=1
done
if [ $rc -ne 0 ]; then
  echo "--- gateway log"; tail -50 "$work/gateway.log"
fi
exit $rc
