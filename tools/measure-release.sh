#!/usr/bin/env bash
# Builds the six Lambda bootstraps as `make build` does (release, arm64, cross-compiled
# with zig) and reports the build time and each bootstrap's size, raw and zipped, against
# the goals: at most 5 MiB raw and 2.5 MiB zipped.
# Usage: tools/measure-release.sh   (after `make tools`). The time is a cold build only
# with an empty target directory, e.g. CARGO_TARGET_DIR=$(mktemp -d) tools/measure-release.sh
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH"
target_dir="${CARGO_TARGET_DIR:-target}"
functions=(preflight create-key update-qovery deploy-cluster check-status delete-key)

rustup target add aarch64-unknown-linux-gnu >/dev/null 2>&1 || true
started=$(date +%s)
cargo lambda build --release --arm64 "${functions[@]/#/--package=}"
elapsed=$(( $(date +%s) - started ))

echo
echo "release build (arm64): ${elapsed} s"
printf '%-16s %10s %9s %12s  %s\n' function bytes MiB "zipped MiB" file
over=()
for bin in "${functions[@]}"; do
  file="$target_dir/lambda/$bin/bootstrap"
  bytes=$(stat -c %s "$file")
  # Lambda deploys a zip; this is its size at deflate level 9.
  zipped=$(python3 -c 'import io, sys, zipfile
buffer = io.BytesIO()
with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as z:
    z.write(sys.argv[1], "bootstrap")
print(len(buffer.getvalue()))' "$file")
  printf '%-16s %10d %9s %12s  %s\n' "$bin" "$bytes" \
    "$(awk -v b="$bytes" 'BEGIN{printf "%.2f", b/1048576}')" \
    "$(awk -v b="$zipped" 'BEGIN{printf "%.2f", b/1048576}')" \
    "$(file -b "$file" | cut -d, -f1-2)"
  if (( bytes > 5 * 1048576 || zipped * 2 > 5 * 1048576 )); then
    over+=("$bin")
  fi
done
if (( ${#over[@]} )); then
  echo "over the goals (5 MiB raw, 2.5 MiB zipped): ${over[*]}"
else
  echo "every bootstrap is within the goals (5 MiB raw, 2.5 MiB zipped)"
fi
