#!/usr/bin/env bash
# Starts the local stack (moto, fake Qovery, Prism, cargo lambda and the six functions)
# and keeps it up until Ctrl-C; prints the URLs. Needs `cargo build --workspace --bins`.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
run_stack_python stack.py "$@"
