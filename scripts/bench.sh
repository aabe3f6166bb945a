#!/usr/bin/env bash
# The performance report: builds release binaries and runs the load harness (crates/bench),
# direct vs gateway side by side in one invocation. Not part of the test command.
#
#   scripts/bench.sh                      # full run, unpinned (about 15 minutes)
#   scripts/bench.sh --quick              # a minute-long smoke run
#   scripts/bench.sh --layout one-core --only "c=1"   # added latency with everything on CPU 0
#   scripts/bench.sh --only "=http c=64 seed/audit=async"  # one scenario, by its exact name
#   scripts/bench.sh --peers              # also ContextForge and mcp-proxy (installs them first)
#
# Other arguments go to `bench` (see `bench --help` in cargo's release directory). Results:
# target/bench/results.json and target/bench/results.md (printed at the end).
set -euo pipefail
cd "$(dirname "$0")/.."
args=()
for a in "$@"; do
  if [ "$a" = "--peers" ]; then
    scripts/bench-peers.sh install >&2
    args+=(--peer mcp-proxy --peer contextforge)
  else
    args+=("$a")
  fi
done
. scripts/lib/cargo-bin.sh
bin_dir=$(cargo_build_bins release -p portcullis -p portcullis-bench)
mkdir -p target/bench
# The gateway binary comes from the same build unless the caller names one.
case " ${args[*]-} " in *" --portcullis"*) ;; *) args=(--portcullis "$bin_dir/portcullis" "${args[@]}") ;; esac
"$bin_dir/bench" --json target/bench/results.json --markdown target/bench/results.md "${args[@]}"
echo
cat target/bench/results.md
