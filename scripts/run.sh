#!/usr/bin/env bash
# The README's run command: builds Portcullis and runs `portcullis demo` — the gateway in
# front of an Odoo-like demo server with a seed-style policy: ten pipeline runs pass, the
# eleventh in the same minute is denied, the delete tool is not even listed, the payment tool
# is denied. It ends by printing a client configuration snippet for Claude Desktop / Cursor.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib/cargo-bin.sh
bin_dir=$(cargo_build_bins release -p portcullis)
exec "$bin_dir/portcullis" demo "$@"
