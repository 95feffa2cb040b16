# Shared by run-scenarios.sh and demo.sh: runs a Python entry point of the workflow
# stack with the repo's venv, and makes sure nothing it started outlives it.
#
# Every process the stack starts carries QKR_RUN_ID in its environment. stack.py stops
# its process groups itself (also on Ctrl-C and SIGTERM); the trap below is the last
# resort for a Python that was killed outright: it kills whatever still carries the id.

set -uo pipefail
WORKFLOW_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_DIR="$(cd "$WORKFLOW_DIR/../.." && pwd)"
PYTHON="$REPO_DIR/.venv/bin/python"

if [[ ! -x "$PYTHON" ]]; then
  echo "missing $PYTHON: run \`make tools\` first" >&2
  exit 1
fi

QKR_RUN_ID="$(cat /proc/sys/kernel/random/uuid)"

leftovers() {
  local pid
  for pid in /proc/[0-9]*; do
    pid="${pid#/proc/}"
    [[ "$pid" == "$$" ]] && continue
    if grep -qzx "QKR_RUN_ID=$QKR_RUN_ID" "/proc/$pid/environ" 2>/dev/null; then
      echo "$pid"
    fi
  done
}

sweep() {
  local pids
  pids="$(leftovers)"
  if [[ -n "$pids" ]]; then
    echo "[stack] killing leftover processes: $(echo $pids)" >&2
    kill -9 $pids 2>/dev/null
    sleep 0.2
    pids="$(leftovers)"
    if [[ -n "$pids" ]]; then
      echo "[stack] WARNING: processes still running: $(echo $pids)" >&2
    fi
  fi
}

# Runs "$PYTHON <script> args..." and returns its exit code, sweeping afterwards.
run_stack_python() {
  local script="$1"
  shift
  local child code
  trap 'sweep' EXIT
  # Ctrl-C reaches Python too (same process group); wait for it to clean up.
  trap ':' INT TERM
  QKR_RUN_ID="$QKR_RUN_ID" PYTHONDONTWRITEBYTECODE=1 "$PYTHON" "$WORKFLOW_DIR/$script" "$@" &
  child=$!
  while true; do
    wait "$child"
    code=$?
    # wait returns >128 when a trapped signal interrupted it; the child may still run.
    if kill -0 "$child" 2>/dev/null; then
      kill -TERM "$child" 2>/dev/null
      continue
    fi
    break
  done
  return "$code"
}
