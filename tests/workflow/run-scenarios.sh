#!/usr/bin/env bash
# `make test-workflow`: every workflow scenario on one local stack. Arguments pass
# through to scenarios.py (scenario numbers, -k SUBSTRING, --lambda-mode).
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
run_stack_python scenarios.py "$@"
