#!/usr/bin/env bash
# `make test-by-hand`: the README's "Run a rotation by hand", run against the local stack
# (by_hand.py --check-readme). Other arguments pass through to by_hand.py. Needs
# `cargo build --workspace --bins` and `make tools tools-sam` (the AWS CLI).
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
run_stack_python by_hand.py "${@:---check-readme}"
