#!/usr/bin/env bash
# `make demo ARGS='...'`: one rotation on the local stack, with progress and a
# before/after summary. `demo.sh --help` lists the options.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
run_stack_python demo.py "$@"
