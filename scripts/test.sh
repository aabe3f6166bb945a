#!/usr/bin/env bash
# The whole test suite, from a fresh machine: installs what the tests need, then runs
# formatting, lints, every test, and a smoke run of the README's run command.
# Usage: scripts/test.sh            (CI runs exactly this via .ci/run)
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n== %s\n' "$*"; }

# A clean build is never incremental's: its cache only costs disk (1.5 GB of the test build).
if [ "${CI:-}" = "true" ]; then export CARGO_INCREMENTAL=0; fi

disk() { df -h "${CARGO_TARGET_DIR:-target}" 2>/dev/null | awk 'NR==2 {print "disk: " $4 " free on " $6}' || true; }
step "disk"
mkdir -p "${CARGO_TARGET_DIR:-target}"
disk

step "toolchain components"
if command -v rustup >/dev/null 2>&1; then
  rustup component add rustfmt clippy >/dev/null 2>&1 || true
fi

step "MSRV: no locked dependency declares a rust-version above the workspace's"
scripts/msrv-check.py

step "Prometheus (Debian's package) for the metrics test"
if ! command -v prometheus >/dev/null 2>&1; then
  apt-cache policy prometheus 2>/dev/null | grep -q 'Candidate: [0-9]' || apt-get update
  DEBIAN_FRONTEND=noninteractive apt-get install -y prometheus
fi

step "Redis (Debian's package) for the shared-store tests"
if ! command -v redis-server >/dev/null 2>&1; then
  apt-cache policy redis-server 2>/dev/null | grep -q 'Candidate: [0-9]' || apt-get update
  DEBIAN_FRONTEND=noninteractive apt-get install -y redis-server
fi

step "Chromium and chromedriver (Debian's packages) for the console's browser test"
if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; then
  apt-cache policy chromium-driver 2>/dev/null | grep -q 'Candidate: [0-9]' || apt-get update
  DEBIAN_FRONTEND=noninteractive apt-get install -y chromium chromium-driver
fi

step "real MCP peers (PyPI, npm) under .peers/"
scripts/install-peers.sh
export PORTCULLIS_REQUIRE_PEERS=1

# Test data lives in tests/data/ (a missing file fails its test). Only the data the project may
# not carry is read from ../shared beside the repository; see tests/data/README.md.
if [ ! -d ../shared/fixtures ]; then
  echo "note: ../shared/fixtures not found; the tests on the Odoo tool list (not redistributable) will say 'skipped'"
fi

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy -D warnings (all targets, benches included)"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "cargo doc: no broken or private intra-doc links"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --locked --quiet

step "the fuzz targets compile (their own workspace; checked before the long test run)"
cargo check --manifest-path fuzz/Cargo.toml --bins --locked

step "cargo test"
cargo test --workspace --locked

step "fuzzing: a short run of each parser target (AFL++ on stable; see docs/fuzzing.md)"
scripts/fuzz.sh --seconds 15

step "MCP conformance suite: the fixture direct, then through the gateway (HTTP and stdio upstreams)"
scripts/conformance.sh
scripts/conformance-gateway.sh

step "MCP conformance suite, client scenarios: Portcullis as the client of the suite's servers"
scripts/conformance-client.sh

step "smoke: the README's run command"
scripts/run.sh >/dev/null

step "disk at the end"
disk
du -sh "${CARGO_TARGET_DIR:-target}" fuzz/target 2>/dev/null || true

echo
echo "all tests passed"
