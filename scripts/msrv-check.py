#!/usr/bin/env python3
"""Fails when a locked dependency declares a rust-version above the workspace's.

Reads `cargo metadata --format-version 1 --locked` (every package of Cargo.lock, all
platforms), takes the workspace's rust-version from its member packages (each must declare
one, and all the same), and lists every dependency whose own `rust-version` is higher. Exit 0
when none is, 1 otherwise. Packages that declare no rust-version cannot be checked; their
count is printed.
"""
import json
import subprocess
import sys


def version_key(text):
    """"1.85" and "1.85.0" compare equal; missing parts count as zero."""
    parts = [int(p) for p in text.split(".")]
    return tuple(parts + [0] * (3 - len(parts)))


def main():
    meta = json.loads(
        subprocess.run(
            ["cargo", "metadata", "--format-version", "1", "--locked"],
            check=True,
            stdout=subprocess.PIPE,
        ).stdout
    )
    members = set(meta["workspace_members"])
    ours = {}
    deps = []
    for pkg in meta["packages"]:
        if pkg["id"] in members:
            ours[pkg["name"]] = pkg.get("rust_version")
        else:
            deps.append(pkg)
    undeclared = sorted(name for name, rv in ours.items() if not rv)
    if undeclared:
        print("msrv: workspace members without rust-version.workspace = true: " + ", ".join(undeclared))
        return 1
    declared = set(ours.values())
    if len(declared) != 1:
        print(f"msrv: workspace members disagree on rust-version: {sorted(declared)}")
        return 1
    msrv = declared.pop()
    above = sorted(
        (p for p in deps if p.get("rust_version") and version_key(p["rust_version"]) > version_key(msrv)),
        key=lambda p: (version_key(p["rust_version"]), p["name"]),
        reverse=True,
    )
    unknown = sum(1 for p in deps if not p.get("rust_version"))
    if above:
        print(f"msrv: the workspace declares rust-version {msrv}, but these locked dependencies need more:")
        for p in above:
            print(f"  {p['name']} {p['version']}: rust-version {p['rust_version']}")
        print("Raise rust-version in Cargo.toml, or lock older versions (cargo update -p NAME --precise V).")
        return 1
    highest = max((version_key(p["rust_version"]) for p in deps if p.get("rust_version")), default=None)
    top = ".".join(map(str, highest)) if highest else "none"
    print(f"msrv: rust-version {msrv} covers all {len(deps)} locked dependencies "
          f"(highest declared: {top}; {unknown} declare none)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
