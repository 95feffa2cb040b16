#!/usr/bin/env bash
# The local stack with template.yaml deployed in moto, for the AWS CLI (by_hand.py).
# `make test-by-hand` runs it with --check-doc: docs/by-hand.md, "Run a rotation by hand".
# No option: prints the AWS CLI's environment and keeps the stack up until Ctrl-C.
# Needs `cargo build --workspace --bins` and `make tools tools-sam`.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
run_stack_python by_hand.py "$@"
