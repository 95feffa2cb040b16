#!/usr/bin/env bash
# Builds the six Lambda bootstraps as `make build` does (release, arm64, cross-compiled
# with zig) and reports the build time and each bootstrap's size.
# Usage: tools/measure-release.sh        (run from the repository root, after `make tools`)
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH"
target_dir="${CARGO_TARGET_DIR:-target}"

rustup target add aarch64-unknown-linux-gnu >/dev/null 2>&1 || true
started=$(date +%s)
cargo lambda build --release --arm64
elapsed=$(( $(date +%s) - started ))

echo
echo "release build (arm64): ${elapsed} s"
for bin in preflight create-key update-qovery deploy-cluster check-status delete-key; do
  file="$target_dir/lambda/$bin/bootstrap"
  bytes=$(stat -c %s "$file")
  printf '%-16s %9d bytes (%s MiB)  %s\n' "$bin" "$bytes" "$(awk -v b="$bytes" 'BEGIN{printf "%.2f", b/1048576}')" \
    "$(file -b "$file" | cut -d, -f1-2)"
done
