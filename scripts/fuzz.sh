#!/usr/bin/env bash
# Fuzzes the parsers that face untrusted bytes with AFL++ (the `afl` crate, stable Rust):
# installs cargo-afl when missing (it builds AFL++ from the crate's own source with the
# machine's C compiler), builds the targets under fuzz/, then runs each one from its corpus
# in fuzz/corpus/<target>/. A crash fails the script (exit 1) and its input is kept.
# Usage: scripts/fuzz.sh [--seconds N | --execs N] [--jobs J] [--max-len B] [--out DIR] [TARGET...]
#   --seconds N  run each target N seconds (default 20)
#   --execs N    run each target until N executions instead
#   --jobs J     targets run at once (default 2; each is one process)
#   --max-len B  inputs of at most B bytes (AFL++ -G; default: AFL++'s own, 1 MB)
#   --out DIR    findings (queue, crashes, fuzzer_stats) per target (default fuzz/out)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

ALL_TARGETS=(policy_doc mcp_message relay_from_client sse_parser intercept_import http_headers)
seconds=20 execs="" jobs=2 maxlen="" out="$root/fuzz/out" targets=()
while [ $# -gt 0 ]; do
  case "$1" in
    --seconds) seconds=$2; shift 2 ;;
    --execs) execs=$2; shift 2 ;;
    --jobs) jobs=$2; shift 2 ;;
    --max-len) maxlen=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    -h|--help) sed -n 2,11p "$0"; exit 0 ;;
    -*) echo "unknown option $1" >&2; exit 2 ;;
    *) targets+=("$1"); shift ;;
  esac
done
[ ${#targets[@]} -gt 0 ] || targets=("${ALL_TARGETS[@]}")

AFL_VERSION=0.18.2
if ! cargo afl --version 2>/dev/null | grep -q "$AFL_VERSION"; then
  echo "== installing cargo-afl $AFL_VERSION (builds AFL++ from source)"
  cargo install cargo-afl --version "$AFL_VERSION" --locked
fi
# Builds AFL++ for this toolchain unless it is already built (then it says so and fails).
cargo afl config --build >/dev/null 2>&1 || true

echo "== building the fuzz targets"
export CARGO_TARGET_DIR="${FUZZ_TARGET_DIR:-$root/fuzz/target}"
(cd fuzz && cargo afl build --release --locked --bins)
bin="$CARGO_TARGET_DIR/release"

export AFL_NO_UI=1 AFL_SKIP_CPUFREQ=1 AFL_I_DONT_CARE_ABOUT_MISSING_CRASHES=1 \
  AFL_NO_AFFINITY=1 AFL_QUIET=1
mkdir -p "$out"

run() {
  local t=$1 limit
  if [ -n "$execs" ]; then limit=(-E "$execs"); else limit=(-V "$seconds"); fi
  if [ -n "$maxlen" ]; then limit+=(-G "$maxlen"); fi
  rm -rf "${out:?}/$t"
  cargo afl fuzz -i "fuzz/corpus/$t" -o "$out/$t" "${limit[@]}" -- "$bin/$t" \
    >"$out/$t.log" 2>&1 || { echo "afl-fuzz failed on $t, see $out/$t.log" >&2; tail -20 "$out/$t.log" >&2; return 1; }
}

if [ -n "$execs" ]; then each="$execs execs"; else each="$seconds s"; fi
echo "== fuzzing: ${targets[*]} ($each each, $jobs at a time)"
pids=() failed=0
for t in "${targets[@]}"; do
  [ -x "$bin/$t" ] || { echo "no such target: $t" >&2; exit 2; }
  run "$t" & pids+=($!)
  if [ ${#pids[@]} -ge "$jobs" ]; then
    wait "${pids[0]}" || failed=1
    pids=("${pids[@]:1}")
  fi
done
for p in "${pids[@]}"; do wait "$p" || failed=1; done

stat() { sed -n "s/^$2 *: //p" "$out/$1/default/fuzzer_stats" 2>/dev/null; }
printf '%-18s %12s %10s %8s %8s %8s\n' target execs execs/s edges corpus crashes
for t in "${targets[@]}"; do
  crashes=$(stat "$t" saved_crashes)
  printf '%-18s %12s %10s %8s %8s %8s\n' "$t" "$(stat "$t" execs_done)" \
    "$(stat "$t" execs_per_sec)" "$(stat "$t" edges_found)/$(stat "$t" total_edges)" \
    "$(stat "$t" corpus_count)" "${crashes:-?}"
  if [ "${crashes:-1}" != 0 ]; then
    failed=1
    echo "CRASH in $t: inputs in $out/$t/default/crashes/ (replay: $bin/$t < FILE)" >&2
  fi
done
[ "$failed" = 0 ] || { echo "fuzzing failed" >&2; exit 1; }
echo "fuzzing: no crash"
