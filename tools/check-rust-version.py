"""Checks that the workspace's rust-version is the truth: no locked dependency needs a
newer Rust, and rust-toolchain.toml pins a toolchain at least that new.

cargo only compares a dependency's rust-version with the compiler that runs it, so a
rust-version in Cargo.toml that is too low goes unnoticed until someone builds with that
version. Run by `make lint`.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split("."))


def main() -> int:
    metadata = json.loads(
        subprocess.run(
            ["cargo", "metadata", "--format-version", "1", "--locked"],
            cwd=REPO, check=True, capture_output=True, text=True,
        ).stdout
    )
    workspace = set(metadata["workspace_members"])
    declared = tomllib.loads((REPO / "Cargo.toml").read_text())["workspace"]["package"]["rust-version"]
    channel = tomllib.loads((REPO / "rust-toolchain.toml").read_text())["toolchain"]["channel"]
    needs = max(
        ((version(p["rust_version"]), p["name"], p["version"]) for p in metadata["packages"]
         if p.get("rust_version") and p["id"] not in workspace),
        default=((0,), "-", "-"),
    )
    need_text = ".".join(map(str, needs[0]))
    problems = []
    if version(declared) < needs[0]:
        problems.append(f"Cargo.toml says rust-version = {declared}, but the locked {needs[1]} {needs[2]} needs {need_text}")
    if version(channel) < version(declared):
        problems.append(f"rust-toolchain.toml pins {channel}, older than rust-version {declared}")
    for problem in problems:
        print(f"check-rust-version: {problem}", file=sys.stderr)
    if not problems:
        print(f"check-rust-version: rust-version {declared} (locked dependencies need {need_text}, "
              f"{needs[1]} {needs[2]}); toolchain {channel}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
