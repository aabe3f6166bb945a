# Sourced by the scripts that run a binary they build: where cargo puts its binaries, and a
# build step that says it may take a while. Never hard-codes ./target, so CARGO_TARGET_DIR,
# `build.target-dir` in a .cargo/config.toml and the like are honoured.
#
#   cargo_target_dir             prints cargo's target directory (absolute)
#   cargo_build_bins PROFILE ARGS...
#                                `cargo build --locked -q ARGS...` (PROFILE: debug or release;
#                                release adds --release), after a note on stderr, then prints
#                                the directory holding the built binaries

cargo_target_dir() {
  local meta dir
  meta=$(cargo metadata --format-version 1 --no-deps --locked) || return 1
  # One line of JSON; the path is a JSON string (only \\ and \" can appear escaped in a path).
  dir=$(printf '%s' "$meta" | sed -n 's/.*"target_directory":"\(\([^"\\]\|\\.\)*\)".*/\1/p' \
    | sed 's/\\"/"/g; s/\\\\/\\/g')
  if [ -z "$dir" ]; then
    echo "cargo metadata did not name a target directory" >&2
    return 1
  fi
  printf '%s\n' "$dir"
}

cargo_build_bins() {
  local profile=$1 dir
  shift
  dir=$(cargo_target_dir) || return 1
  case "$profile" in
    release) set -- --release "$@" ;;
    debug) ;;
    *) echo "cargo_build_bins: unknown profile $profile" >&2; return 2 ;;
  esac
  echo "building $profile binaries in $dir (first time: a few minutes)…" >&2
  cargo build --locked -q "$@" || return 1
  printf '%s\n' "$dir/$profile"
}
