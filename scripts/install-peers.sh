#!/usr/bin/env bash
# Installs the real MCP peers the protocol tests drive, under .peers/ (git-ignored), pinned
# to the versions verified in ../shared/spec/test-peers.md. Idempotent: a stamp file skips
# work already done. Needs python3 (3.10+) and npm; reaches PyPI and the npm registry.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .peers

if [ ! -f .peers/venv/.done ]; then
  python3 -m venv .peers/venv
  .peers/venv/bin/pip install -q --disable-pip-version-check "mcp==2.3.0" "mcp-server-time==2026.10.19"
  touch .peers/venv/.done
fi
if [ ! -f .peers/venv1/.done ]; then
  python3 -m venv .peers/venv1
  .peers/venv1/bin/pip install -q --disable-pip-version-check "mcp==1.30.0"
  touch .peers/venv1/.done
fi
if [ ! -f .peers/node/.done ]; then
  mkdir -p .peers/node
  (cd .peers/node && npm init -y >/dev/null && npm install --silent --no-audit --no-fund \
      @modelcontextprotocol/server-everything@2026.8.31 @modelcontextprotocol/inspector@0.15.0)
  touch .peers/node/.done
fi
# The servers behind the path and URL operators' tests (tests/path_url_peers.rs); their own
# stamps, so that a .peers/ installed before them gets them too.
if [ ! -f .peers/venv/.fetch.done ]; then
  .peers/venv/bin/pip install -q --disable-pip-version-check "mcp-server-fetch==2026.10.24"
  touch .peers/venv/.fetch.done
fi
if [ ! -f .peers/node/.filesystem.done ]; then
  (cd .peers/node && npm install --silent --no-audit --no-fund \
      @modelcontextprotocol/server-filesystem@2026.8.31)
  touch .peers/node/.filesystem.done
fi
# The authorization server behind the OAuth tests (tests/oauth.rs, tests/peers/oidc_provider.mjs).
if [ ! -f .peers/node/.oidc.done ]; then
  (cd .peers/node && npm install --silent --no-audit --no-fund oidc-provider@9.13.3)
  touch .peers/node/.oidc.done
fi
echo "peers ready under .peers/"
