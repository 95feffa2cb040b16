# qovery-key-rotator. The README's two commands are `make demo` and `make test`.
# Every target installs what it needs: a pinned Python virtualenv (.venv) and the npm
# packages locked in tests/workflow/package-lock.json.

SHELL := /bin/bash
VENV := .venv
NODE_DIR := tests/workflow
export PATH := $(CURDIR)/$(VENV)/bin:$(CURDIR)/$(NODE_DIR)/node_modules/.bin:$(PATH)
ARGS ?=

.PHONY: tools build build-debug build-host lint fmt-check clippy test-unit test-workflow test demo bench deploy clean

# The six Lambda functions; the fake Qovery is only for tests, the demo and the benchmark.
FUNCTIONS := preflight create-key update-qovery deploy-cluster check-status delete-key

tools: $(VENV)/.installed $(NODE_DIR)/node_modules/.installed

$(VENV)/.installed: tools/requirements.txt
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet -r tools/requirements.txt
	touch $@

$(NODE_DIR)/node_modules/.installed: $(NODE_DIR)/package.json $(NODE_DIR)/package-lock.json
	cd $(NODE_DIR) && npm ci --no-audit --no-fund
	touch $@

# Debug binaries for the local stack and the tests.
build-debug:
	cargo build --workspace --bins

# Release bootstraps for Lambda (arm64, cross-compiled with zig): the six functions only.
build: tools
	rustup target add aarch64-unknown-linux-gnu
	cargo lambda build --release --arm64 $(addprefix -p ,$(FUNCTIONS))

# The same release profile for this machine, and the fake Qovery: what `make bench` runs.
build-host:
	cargo build --release $(addprefix -p ,$(FUNCTIONS) qovery-fake)

fmt-check:
	cargo fmt --all --check

clippy:
	cargo clippy --workspace --all-targets -- -D warnings

lint: tools
	cfn-lint template.yaml
	asl-validator --json-path statemachine/rotation.asl.json

# Handler tests: each step against a moto server and the fake Qovery.
test-unit: tools
	MOTO_SERVER=$(CURDIR)/$(VENV)/bin/moto_server cargo test --workspace

# The real state machine, run by aws-local-stepfunctions against the real binaries.
test-workflow: tools build-debug
	$(NODE_DIR)/run-scenarios.sh

test: fmt-check clippy lint test-unit test-workflow

demo: tools build-debug
	$(NODE_DIR)/demo.sh $(ARGS)

# Cold start, first and warm invocation and peak RSS of each function, on this machine.
# `make bench ARGS='--help'` lists the options.
bench: tools build-host
	$(VENV)/bin/python tools/bench/bench.py $(ARGS)

# Deploy to AWS with the SAM CLI (not installed by this Makefile; see the README).
# SAM's rust-cargolambda build method finds cargo-lambda and zig in .venv through PATH.
deploy: tools
	sam build --beta-features
	sam deploy --guided

clean:
	cargo clean
	rm -rf $(VENV) $(NODE_DIR)/node_modules
