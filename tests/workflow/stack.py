"""The local stack the workflow tests and the demo run on, and the execution runner.

One `Stack` starts, on free ports:
  - moto's server (IAM, STS, Secrets Manager, Step Functions) with signature and
    policy checks on: only the first three requests go unsigned, to seed an admin.
    It runs through `moto_resources.py`, so that policies are checked on their
    Resource as well as their Action;
  - the fake Qovery (`target/debug/qovery-fake`);
  - Prism in proxy mode with `--errors` between the functions and the fake, so that a
    request or response that breaks Qovery's OpenAPI spec fails the run;
  - `cargo lambda watch`, which serves the Lambda Invoke API by function name, and the
    six prebuilt step binaries running the real Lambda runtime loop against it;
  - in moto, what the template's stack holds: the token secret, the ledger table
    (DynamoDB, the per-user rotation lock and record) and the state machine.

Each function signs its AWS calls as its own moto IAM user, whose inline policies are
that function's `Policies` in template.yaml, resolved for the local world
(`template_policies.py`). The template scopes them to one IAM user (IamUserName), so
`Stack.deploy(user)` re-scopes them, as a stack update would, before each scenario.
Seeding, the scenarios' assertions and the Qovery user use the admin's key.

`Stack.run()` executes `statemachine/rotation.asl.json` with aws-local-stepfunctions
(`run-asl.mjs`) and returns the recorded history; it can stop the execution right after
a state (`stop_after`) or hold it there while the test starts another (`hold_after`).
`Stack.ledger(user)` reads the user's rotation record.

Every child runs in its own process group and carries a marker in its environment;
`stop()` kills the groups, then any process that still carries the marker, and checks
that none is left. It runs on normal exit, on an exception, on Ctrl-C and on SIGTERM.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
import re
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import boto3
import botocore.config
import botocore.exceptions

from template_policies import LocalWorld, Template, TemplateError

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
# QKR_ASL runs another definition (say, a candidate edit) through the same scenarios.
ASL = Path(os.environ.get("QKR_ASL", REPO / "statemachine" / "rotation.asl.json")).resolve()
TARGET = Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target")) / "debug"
NODE = HERE / "node_modules" / ".bin" / "node"
PRISM = HERE / "node_modules" / ".bin" / "prism"
PRISM_NO_REDIRECT = HERE / "prism_no_redirect.cjs"
DRIVER = HERE / "run-asl.mjs"
PYTHON = REPO / ".venv" / "bin" / "python"
MOTO_SERVER = HERE / "moto_resources.py"
CARGO_LAMBDA = REPO / ".venv" / "bin" / "cargo-lambda"

FUNCTIONS = ["preflight", "create-key", "update-qovery", "deploy-cluster", "check-status", "delete-key"]
# Two instances each let these run in parallel, as Lambda would: the Map's iterations
# (deploy-cluster, check-status), and two executions' preflights racing for the lock.
INSTANCES = {"preflight": 2, "deploy-cluster": 2, "check-status": 2}

REGION = "us-east-1"
ACCOUNT = "123456789012"  # moto's default account
# AWS::StackName of the local "deployment". The state machine's name, the token
# secret's name and the policies' ARNs all derive from it, as in template.yaml.
STACK_NAME = "qovery-key-rotator"
STATE_MACHINE_ROLE = f"arn:aws:iam::{ACCOUNT}:role/{STACK_NAME}-state-machine"
# The notification topic the ASL's ReportSuccess publishes to (run-asl.mjs delivers its
# messages to a file per execution: Execution.published).
NOTIFICATION_TOPIC_ARN = f"arn:aws:sns:{REGION}:{ACCOUNT}:{STACK_NAME}-notifications"
MARKER = "QKR_STACK_ID"


class StackError(RuntimeError):
    pass


def log(msg: str) -> None:
    print(f"[stack] {msg}", file=sys.stderr, flush=True)


def loud(msg: str) -> None:
    bar = "!" * 78
    print(f"\n{bar}\n!! {msg}\n{bar}\n", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, proc: "Proc", timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        proc.check_alive()
        with socket.socket() as s:
            s.settimeout(0.2)
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise StackError(f"{proc.name} did not listen on port {port} within {timeout:.0f} s; see {proc.log_path}")


def resolve_spec() -> Path | None:
    """The Qovery OpenAPI spec, or None (with a loud warning) when it may be skipped."""
    raw = os.environ.get("QOVERY_OPENAPI_SPEC") or str(REPO.parent / "shared" / "qovery-openapi.yaml")
    path = Path(raw)
    if not path.is_absolute():
        path = REPO / path
    if path.is_file():
        return path
    if os.environ.get("CI") == "true":
        raise StackError(f"the Qovery OpenAPI spec {path} is missing; with CI=true it is required (set QOVERY_OPENAPI_SPEC)")
    loud(
        f"QOVERY OPENAPI SPEC NOT FOUND AT {path}: THE SPEC CHECK OF QOVERY CALLS IS SKIPPED.\n"
        "!! The functions talk to the fake directly; a call that breaks the spec will NOT be caught.\n"
        "!! Set QOVERY_OPENAPI_SPEC to the spec's path to turn the check on."
    )
    return None


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen
    log_path: Path

    def check_alive(self) -> None:
        code = self.popen.poll()
        if code is not None:
            raise StackError(f"{self.name} exited with code {code}; last lines of {self.log_path}:\n{tail(self.log_path)}")


def tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def marked_pids(marker_value: str, var: str = MARKER) -> list[int]:
    """Processes whose environment carries var=marker_value: every descendant of the
    stack, even one that left its process group or was re-parented."""
    needle = f"{var}={marker_value}".encode()
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            env = (entry / "environ").read_bytes()
        except OSError:
            continue
        if needle in env.split(b"\0"):
            pids.append(int(entry.name))
    return pids


@dataclass
class Execution:
    """One run of the state machine, as recorded by run-asl.mjs."""

    name: str
    arn: str
    input: dict
    status: str
    error: str | None
    cause: str | None
    output: Any
    events: list[dict]
    duration_s: float
    function_logs: str
    prism_log: str
    driver_stderr: str
    # AWS calls moto denied during the execution ("User: ... is not authorized to ...").
    aws_denials: list[str] = dataclasses.field(default_factory=list)
    # Messages the execution published to the notification topic: {TopicArn, Subject, Message}.
    published: list[dict] = dataclasses.field(default_factory=list)

    @property
    def succeeded(self) -> bool:
        return self.status == "SUCCEEDED"

    def of(self, event: str, state: str | None = None) -> list[dict]:
        return [e for e in self.events if e.get("event") == event and (state is None or e.get("state") == state)]

    def entered(self, state: str) -> list[dict]:
        return self.of("StateEntered", state)

    def exited(self, state: str) -> list[dict]:
        return self.of("StateExited", state)

    def invocations(self, function: str) -> list[dict]:
        """Every invocation of the function, those whose answer was lost included."""
        return [e for e in self.events if e.get("event") == "LambdaFunctionScheduled" and e.get("function") == function]

    def lost_answers(self, function: str) -> list[dict]:
        """The invocations whose answer Stack.run(twice=...) threw away."""
        return [e for e in self.invocations(function) if e.get("answerLost")]

    def state_names(self) -> list[str]:
        return [e["state"] for e in self.of("StateEntered")]

    def cause_message(self) -> str | None:
        """errorMessage from a Lambda error's Cause (a JSON document, as on AWS)."""
        if self.cause is None:
            return None
        try:
            doc = json.loads(self.cause)
            return doc.get("errorMessage", self.cause) if isinstance(doc, dict) else self.cause
        except ValueError:
            return self.cause

    def describe(self) -> str:
        lines = [f"execution {self.name}: {self.status} {self.error or ''} in {self.duration_s:.1f} s"]
        for e in self.events:
            kind = e.get("event")
            if kind in ("StateEntered", "StateFailed", "StateRetried", "StateCaught", "LambdaFunctionFailed", "ExecutionFailed"):
                extra = ""
                if "error" in e:
                    extra = f" {e['error']}: {str(e.get('cause'))[:300]}"
                idx = f"[{e['index']}]" if "index" in e else ""
                lines.append(f"  {e['ts']} {kind} {e.get('state', '')}{idx}{extra}")
        return "\n".join(lines)


@dataclass
class FakeQovery:
    url: str

    def _call(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method)
        if data is not None:
            req.add_header("content-type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                raw = resp.read()
        except urllib.error.HTTPError as e:
            raise StackError(f"fake Qovery {method} {path} -> {e.code}: {e.read()[:500]!r}") from None
        return json.loads(raw) if raw else None

    def state(self) -> dict:
        return self._call("GET", "/_fake/state")

    def seed(self, seed: dict) -> None:
        self._call("PUT", "/_fake/state", seed)

    def fault(
        self,
        operation: str,
        status: int,
        times: int = 1,
        retry_after: int | None = None,
        *,
        echo_request: bool = False,
        apply: bool = False,
        after: int = 0,
        location: str | None = None,
    ) -> None:
        """The next `times` calls of `operation` (an operationId, or "*") answer `status`.
        echo_request: a gateway page quoting the request (line, Authorization, raw body).
        apply: the call is served for real, then answered `status` (a lost answer).
        after: that many calls of the operation go through first.
        location: answer a redirect there instead (status 301, 302, 303, 307 or 308);
        the call changes nothing."""
        body: dict[str, Any] = {"operation": operation, "status": status, "times": times}
        if location is not None:
            body["location"] = location
        if retry_after is not None:
            body["retry_after"] = retry_after
        if echo_request:
            body["echo_request"] = True
        if apply:
            body["apply"] = True
        if after:
            body["after"] = after
        self._call("POST", "/_fake/faults", body)

    def credentials(self, credentials_id: str) -> dict:
        for c in self.state()["credentials"]:
            if c["id"] == credentials_id:
                return c
        raise StackError(f"the fake holds no credentials {credentials_id}")

    def clusters(self) -> dict[str, dict]:
        return {c["id"]: c for c in self.state()["clusters"]}

    def cluster(self, cluster_id: str) -> dict:
        try:
            return self.clusters()[cluster_id]
        except KeyError:
            raise StackError(f"the fake holds no cluster {cluster_id}") from None

    # The other holders of an AWS key. Each snapshot carries the secret, which the API
    # never returns: a test can prove the key Qovery holds works.

    def registry(self, registry_id: str) -> dict:
        """A container registry as the fake holds it now (RegistrySnapshot)."""
        return self._find("container_registries", registry_id, "container registry")

    def helm_repository(self, repository_id: str) -> dict:
        return self._find("helm_repositories", repository_id, "helm repository")

    def secret_manager_access(self, cluster_id: str, access_id: str) -> dict:
        for a in self.cluster(cluster_id).get("secret_manager_accesses", []):
            if a["id"] == access_id:
                return a
        raise StackError(f"cluster {cluster_id} has no secret manager access {access_id}")

    def dns_provider(self, cluster_id: str) -> dict | None:
        """The cluster's Route53 provider, or None when it uses Qovery's DNS."""
        return self.cluster(cluster_id).get("dns_provider")

    def _find(self, list_name: str, object_id: str, what: str) -> dict:
        for r in self.state().get(list_name, []):
            if r["id"] == object_id:
                return r
        raise StackError(f"the fake holds no {what} {object_id}")

    def put_container_registry(self, registry: dict) -> None:
        """Adds a container registry (a SeedRegistry object), or replaces the one with
        its id, WITHOUT resetting the request log or the faults: usable mid-execution,
        from an on_event callback."""
        self._call("POST", "/_fake/container_registries", registry)

    def put_helm_repository(self, repository: dict) -> None:
        """The same for a helm repository."""
        self._call("POST", "/_fake/helm_repositories", repository)

    def set_cluster_status(self, cluster_id: str, status: str) -> None:
        """Sets one cluster's status (a ClusterStateEnum value), as if something outside
        the rotation moved it: every read reports it from now on. Nothing else changes
        (deployments, request log, faults): usable mid-execution."""
        self._call("POST", "/_fake/cluster_status", {"cluster_id": cluster_id, "status": status})

    def requests(self, operation: str | None = None, path_contains: str | None = None) -> list[dict]:
        """The API calls the fake answered since the last seed, optionally only those of
        an operationId and whose path contains a string (an object's id, say)."""
        return [
            r for r in self.state()["requests"]
            if (operation is None or r["operation"] == operation)
            and (path_contains is None or path_contains in r["path"])
        ]

    def statuses(self, operation: str, path_contains: str | None = None) -> list[int]:
        """The status each call of `operation` was answered with, in order."""
        return [r["status"] for r in self.requests(operation, path_contains)]


class Stack:
    def __init__(self, *, log_dir: Path | None = None, lambda_mode: str | None = None):
        self.stack_id = uuid.uuid4().hex
        self.log_dir = log_dir or self._new_log_dir()
        self.lambda_mode = lambda_mode or os.environ.get("QKR_LAMBDA_MODE", "prebuilt")
        if self.lambda_mode not in ("prebuilt", "watch"):
            raise StackError(f"QKR_LAMBDA_MODE must be prebuilt or watch, not {self.lambda_mode}")
        self.procs: list[Proc] = []
        # More environment for moto's server (by_hand.py turns on its Lambda routing).
        self.extra_moto_env: dict[str, str] = {}
        self.function_procs: list[Proc] = []
        self.token = "qovtok_" + secrets.token_urlsafe(24)
        self.spec: Path | None = None
        # Parsed before anything starts: a template the stack cannot resolve fails here.
        self.template = Template()
        self.keys_file = self.log_dir / "aws-keys.json"
        self.key_ages_file = self.log_dir / "key-ages.json"
        # The Qovery principal moto_trust.py creates (QKR_MOTO_QOVERY_PRINCIPAL): the IAM
        # user the fake Qovery assumes customers' roles as.
        self.principal_file = self.log_dir / "qovery-principal.json"
        self.started = False
        self._old_handlers: dict[int, Any] = {}

    # ---------------------------------------------------------------- lifecycle

    @staticmethod
    def _new_log_dir() -> Path:
        root = REPO / ".stack"
        root.mkdir(exist_ok=True)
        runs = sorted(p for p in root.iterdir() if p.is_dir() and p.name.startswith("run-"))
        for old in runs[:-4]:  # keep the last few runs' logs for debugging
            shutil.rmtree(old, ignore_errors=True)
        path = root / f"run-{dt.datetime.now().strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"
        path.mkdir()
        return path

    def __enter__(self) -> "Stack":
        self._install_signal_handlers()
        for attempt in (1, 2):
            try:
                self.start()
                return self
            except StackError as e:
                self.stop()
                # A free port can be taken between picking and binding it: retry once.
                if attempt == 2 or "exited with code" not in str(e):
                    self._restore_signal_handlers()
                    raise
                log(f"start failed ({e}); retrying once")
            except BaseException:
                self.stop()
                self._restore_signal_handlers()
                raise
        raise AssertionError("unreachable")

    def __exit__(self, *exc: Any) -> None:
        self.stop()
        self._restore_signal_handlers()

    def _install_signal_handlers(self) -> None:
        def on_signal(signum: int, _frame: Any) -> None:
            # Unwind through __exit__ so that the stack is stopped.
            raise KeyboardInterrupt(f"signal {signum}")

        # SIGINT too: a shell may have started us with it ignored.
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            self._old_handlers[sig] = signal.signal(sig, on_signal)

    def _restore_signal_handlers(self) -> None:
        for sig, handler in self._old_handlers.items():
            signal.signal(sig, handler)

    def _spawn(self, name: str, argv: list[str], env: dict[str, str], cwd: Path = REPO) -> Proc:
        log_path = self.log_dir / f"{name}.log"
        out = open(log_path, "ab")
        popen = subprocess.Popen(
            argv,
            cwd=cwd,
            env={**env, MARKER: self.stack_id},
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # own process group: Ctrl-C reaches us, and we stop it
        )
        out.close()
        proc = Proc(name, popen, log_path)
        self.procs.append(proc)
        return proc

    def _base_env(self) -> dict[str, str]:
        keep = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "CARGO_HOME", "RUSTUP_HOME", "CARGO_TARGET_DIR", "QKR_RUN_ID")
        env = {k: v for k, v in os.environ.items() if k in keep}
        env["PATH"] = os.pathsep.join([str(NODE.parent), str(PYTHON.parent), env.get("PATH", "")])
        return env

    def _check_prerequisites(self) -> None:
        missing = [str(TARGET / f) for f in FUNCTIONS + ["qovery-fake"] if not (TARGET / f).is_file()]
        if missing:
            raise StackError("missing binaries (run `cargo build --workspace --bins` first): " + ", ".join(missing))
        for tool in (NODE, PYTHON, CARGO_LAMBDA, DRIVER):
            if not tool.exists():
                raise StackError(f"missing {tool} (run `make tools`)")
        version = subprocess.run([str(NODE), "--version"], capture_output=True, text=True).stdout.strip()
        if not re.match(r"v(2[2-9]|[3-9]\d)\.", version):
            raise StackError(f"{NODE} is {version}; aws-local-stepfunctions needs Node >= 22")

    def start(self) -> None:
        t0 = time.monotonic()
        self._check_prerequisites()
        self.spec = resolve_spec()
        base = self._base_env()

        self.moto_port = free_port()
        moto = self._spawn(
            "moto",
            [str(PYTHON), str(MOTO_SERVER), "-H", "127.0.0.1", "-p", str(self.moto_port)],
            # Only the seeding of the admin (3 calls) goes unsigned; every later request
            # must be signed by a live key whose user's policy allows the action on the
            # resource.
            # QKR_MOTO_KEY_AGES: the back-dated keys of backdate_key() (moto_key_age.py).
            # QKR_MOTO_QOVERY_PRINCIPAL: where moto_trust.py writes the Qovery principal.
            {**base, "INITIAL_NO_AUTH_ACTION_COUNT": "3", "QKR_MOTO_KEY_AGES": str(self.key_ages_file),
             "QKR_MOTO_QOVERY_PRINCIPAL": str(self.principal_file), **self.extra_moto_env},
        )
        self.moto_url = f"http://127.0.0.1:{self.moto_port}"
        # moto_trust.py writes the principal at import, before moto listens, and logs
        # PRINCIPAL once the file is complete. The fake reads it at start: every deploy on
        # role credentials then calls sts:AssumeRole on moto as Qovery does, and a role
        # whose trust policy refuses Qovery's account ends it INVALID_CREDENTIALS.
        self._wait_for_line(moto, r"\[moto_trust\] PRINCIPAL (\S+)", timeout=30)
        self.qovery_principal = json.loads(self.principal_file.read_text())
        fake = self._spawn(
            "qovery-fake",
            [str(TARGET / "qovery-fake"), "--port", "0",
             "--aws-endpoint", self.moto_url, "--qovery-principal", str(self.principal_file)],
            {**base, "RUST_LOG": "info"},
        )

        self.lambda_port = free_port()
        self.invoke_url = f"http://127.0.0.1:{self.lambda_port}"
        watch_argv = [
            str(CARGO_LAMBDA), "lambda", "watch",
            "--invoke-address", "127.0.0.1", "--invoke-port", str(self.lambda_port),
            "--manifest-path", str(REPO / "Cargo.toml"),
            # cargo never touches the network here: the build ran before the stack.
            "--offline",
        ]
        if self.lambda_mode == "prebuilt":
            # Serve the Invoke and Runtime APIs only; the functions are the prebuilt
            # binaries, started below with the runtime API URL cargo lambda would give them.
            watch_argv.append("--only-lambda-apis")
        # In watch mode cargo lambda starts each function with `cargo run` on first invoke;
        # the env file is written once the moto key and the Qovery URL are known.
        self.env_file = self.log_dir / "functions.env"

        # The fake prints its URL once it listens.
        self.fake_url = self._wait_for_line(fake, r"listening on (http://127\.0\.0\.1:\d+)", timeout=20)
        self.fake = FakeQovery(self.fake_url)

        if self.spec is not None:
            self.prism_port = free_port()
            prism = self._spawn(
                "prism",
                # prism_no_redirect.cjs: Prism passes a redirect on instead of following it.
                [str(NODE), "--require", str(PRISM_NO_REDIRECT), str(PRISM), "proxy", str(self.spec), self.fake_url, "--errors",
                 "--host", "127.0.0.1", "--port", str(self.prism_port)],
                base,
            )
            self.qovery_url = f"http://127.0.0.1:{self.prism_port}"
        else:
            prism = None
            self.qovery_url = self.fake_url

        wait_for_port(self.moto_port, moto, timeout=30)
        try:
            self._seed_aws()
            # Each function's environment as template.yaml sets it (QOVERY_TOKEN_SECRET_ID
            # is the token secret's ARN, KEY_SECRET_PREFIX the prefix its policies spell
            # out), with QoveryApiUrl pointing at Prism; then what the local AWS endpoint needs.
            self.template_env = {f: self.template.function_env(f, self.world) for f in FUNCTIONS}
        except TemplateError as e:
            raise StackError(f"template.yaml: {e}") from None
        self.key_secret_prefix = self.template_env["create-key"]["KEY_SECRET_PREFIX"]
        self.function_env = {
            # Executions here are stopped and taken over at once; on AWS the functions
            # wait TAKEOVER_GRACE_SECONDS (360) for a stopped execution's last Lambda.
            "TAKEOVER_GRACE_SECONDS": "0",
            "AWS_ENDPOINT_URL": self.moto_url,
            "AWS_REGION": REGION,
            "AWS_DEFAULT_REGION": REGION,
            "AWS_EC2_METADATA_DISABLED": "true",
            "AWS_CONFIG_FILE": str(self.log_dir / "aws-config"),
            "AWS_SHARED_CREDENTIALS_FILE": str(self.log_dir / "aws-credentials"),
            "RUST_BACKTRACE": "1",
        }
        # Empty AWS config files: nothing from the host's ~/.aws may leak in.
        for name in ("aws-config", "aws-credentials"):
            (self.log_dir / name).write_text("")
        if self.lambda_mode == "watch":
            # cargo lambda gives every function the same env file, so the key cannot be
            # in it: a credential_process picks the function's key by the
            # AWS_LAMBDA_FUNCTION_NAME that cargo lambda sets.
            envs = {json.dumps(e, sort_keys=True) for e in self.template_env.values()}
            if len(envs) != 1:
                raise StackError("watch mode needs every function to have the same template environment")
            cmd = " ".join(shlex.quote(str(a)) for a in (PYTHON, Path(__file__).resolve(), "credential-process", self.keys_file))
            (self.log_dir / "aws-config").write_text(f"[default]\ncredential_process = {cmd}\n")
            env = {**self.function_env, **self.template_env[FUNCTIONS[0]]}
            self.env_file.write_text("".join(f"{k}={v}\n" for k, v in env.items()))
            watch_argv += ["--ignore-changes", "--env-file", str(self.env_file)]
        watch = self._spawn("cargo-lambda", watch_argv, {**base, "RUST_LOG": "info"})
        wait_for_port(self.lambda_port, watch, timeout=60)
        if self.lambda_mode == "prebuilt":
            self._start_functions(base)
        if prism is not None:
            wait_for_port(self.prism_port, prism, timeout=60)
        self.started = True
        log(
            f"up in {time.monotonic() - t0:.1f} s: moto {self.moto_url}, fake {self.fake_url}, "
            f"{'prism ' + self.qovery_url if self.spec else 'NO SPEC CHECK'}, lambda {self.invoke_url} "
            f"({self.lambda_mode}); each function signs as IAM user {STACK_NAME}-<function> with its "
            f"policies from template.yaml; logs in {self.log_dir}"
        )

    def _start_functions(self, base: dict[str, str]) -> None:
        for name in FUNCTIONS:
            for i in range(INSTANCES.get(name, 1)):
                key_id, secret = self.function_keys[name]
                env = {
                    **base,
                    **self.function_env,
                    **self.template_env[name],
                    # As Lambda hands a function its role's credentials.
                    "AWS_ACCESS_KEY_ID": key_id,
                    "AWS_SECRET_ACCESS_KEY": secret,
                    "AWS_LAMBDA_FUNCTION_NAME": name,
                    "AWS_LAMBDA_FUNCTION_VERSION": "1",
                    "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "128",
                    "AWS_LAMBDA_RUNTIME_API": f"http://127.0.0.1:{self.lambda_port}/.rt/{name}",
                }
                suffix = f"-{i + 1}" if INSTANCES.get(name, 1) > 1 else ""
                proc = self._spawn(f"fn-{name}{suffix}", [str(TARGET / name)], env)
                self.function_procs.append(proc)
        time.sleep(0.2)
        for proc in self.function_procs:
            proc.check_alive()

    def _wait_for_line(self, proc: Proc, pattern: str, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        rx = re.compile(pattern)
        while time.monotonic() < deadline:
            proc.check_alive()
            m = rx.search(proc.log_path.read_text(errors="replace"))
            if m:
                return m.group(1)
            time.sleep(0.05)
        raise StackError(f"{proc.name} printed no line matching {pattern!r} within {timeout:.0f} s; see {proc.log_path}")

    def _seed_aws(self) -> None:
        unsigned = self._client("iam", ("unsigned", "unsigned"))
        unsigned.create_user(UserName="qkr-admin")
        unsigned.put_user_policy(
            UserName="qkr-admin",
            PolicyName="admin",
            PolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}),
        )
        key = unsigned.create_access_key(UserName="qkr-admin")["AccessKey"]
        self.admin_key = (key["AccessKeyId"], key["SecretAccessKey"])
        self.iam = self._client("iam")
        self.sm = self._client("secretsmanager")
        self.sfn = self._client("stepfunctions")

        # What the template's stack would create, named as the template names it. The
        # token secret is the stack's own (ExistingQoveryTokenSecretArn left empty): its
        # ARN is what `!Ref QoveryTokenSecret` means from now on.
        self.world = LocalWorld(stack_name=STACK_NAME, account_id=ACCOUNT, region=REGION,
                                parameters={"QoveryApiUrl": self.qovery_url})
        token_name = self.template.resource_property("QoveryTokenSecret", "Name", self.world)
        self.token_secret_arn = self.sm.create_secret(Name=token_name, SecretString=self.token)["ARN"]
        self.world.resources["QoveryTokenSecret"] = self.token_secret_arn
        # The ledger table, as the template's LedgerTable (CreateLedgerTable=true).
        self.ddb = self._client("dynamodb")
        self.ledger_table = self.template.resource_property("LedgerTable", "TableName", self.world)
        self.ddb.create_table(
            TableName=self.ledger_table,
            BillingMode="PAY_PER_REQUEST",
            AttributeDefinitions=self.template.resource_property("LedgerTable", "AttributeDefinitions", self.world),
            KeySchema=self.template.resource_property("LedgerTable", "KeySchema", self.world),
        )
        self.state_machine_name = self.template.resource_property("RotationStateMachine", "Name", self.world)
        self.state_machine_arn = self.sfn.create_state_machine(
            name=self.state_machine_name, definition=ASL.read_text(), roleArn=STATE_MACHINE_ROLE
        )["stateMachineArn"]

        # One IAM user per function, standing for its execution role; deploy() gives
        # each its policies.
        self.function_users = {f: f"{STACK_NAME}-{f}" for f in FUNCTIONS}
        self.function_keys = {}
        for function, user in self.function_users.items():
            self.iam.create_user(UserName=user)
            k = self.iam.create_access_key(UserName=user)["AccessKey"]
            self.function_keys[function] = (k["AccessKeyId"], k["SecretAccessKey"])
        self.keys_file.write_text(json.dumps({"admin": self.admin_key, **self.function_keys}, indent=1))
        self.keys_file.chmod(0o600)
        self.deploy(self.template.parameter_default("IamUserName"))

    def deploy(self, iam_user_name: str, policies: dict[str, dict[str, dict]] | None = None,
               qovery_role_name: str = "") -> None:
        """Gives each function's user its policies from template.yaml, resolved with
        IamUserName=iam_user_name (and QoveryRoleName=qovery_role_name, empty unless a
        migration's role is to be read): what deploying (or updating) the stack for that
        user does to the functions' roles. `policies` replaces the documents of some
        functions (function -> policy name -> document), e.g. to prove that a missing
        action bites. Signed with the admin's key."""
        self.world.parameters["IamUserName"] = iam_user_name
        self.world.parameters["QoveryRoleName"] = qovery_role_name
        for function, user in self.function_users.items():
            if policies is not None and function in policies:
                docs = policies[function]
            else:
                docs = self.template.function_policies(function, self.world)
            docs = {name: doc for name, doc in docs.items() if doc["Statement"]}
            for stale in set(self.iam.list_user_policies(UserName=user)["PolicyNames"]) - set(docs):
                self.iam.delete_user_policy(UserName=user, PolicyName=stale)
            for name, doc in docs.items():
                self.iam.put_user_policy(UserName=user, PolicyName=name, PolicyDocument=json.dumps(doc))
        self.deployed_for = iam_user_name

    def function_policies(self, function: str, iam_user_name: str) -> dict[str, dict]:
        """The function's policies from template.yaml, resolved for iam_user_name."""
        world = dataclasses.replace(self.world, parameters={**self.world.parameters, "IamUserName": iam_user_name})
        return self.template.function_policies(function, world)

    def _client(self, service: str, key: tuple[str, str] | None = None) -> Any:
        key = key or self.admin_key
        return boto3.client(
            service,
            endpoint_url=self.moto_url,
            region_name=REGION,
            aws_access_key_id=key[0],
            aws_secret_access_key=key[1],
            config=botocore.config.Config(retries={"max_attempts": 1}),
        )

    def stop(self) -> None:
        # A second Ctrl-C must not cut the clean-up short.
        masked = {sig: signal.signal(sig, signal.SIG_IGN) for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
        try:
            self._stop()
        finally:
            for sig, handler in masked.items():
                signal.signal(sig, handler)

    def _stop(self) -> None:
        for proc in reversed(self.procs):
            if proc.popen.poll() is None:
                try:
                    os.killpg(proc.popen.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        deadline = time.monotonic() + 5
        for proc in self.procs:
            try:
                proc.popen.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
        for proc in self.procs:
            try:
                os.killpg(proc.popen.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            try:
                proc.popen.wait(timeout=2)
            except subprocess.TimeoutExpired:
                pass
        # Anything that escaped its group (a grandchild in a new session, say).
        for _ in range(20):
            left = marked_pids(self.stack_id)
            if not left:
                break
            for pid in left:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(0.1)
        left = marked_pids(self.stack_id)
        if left:
            loud(f"processes of the stack still running after stop: {left}")
        elif self.procs:
            log(f"stopped: {len(self.procs)} processes, none left running")
        self.procs = []
        self.function_procs = []

    def serve_until_interrupted(self) -> None:
        """Keeps the stack up until Ctrl-C, failing if one of its processes dies."""
        try:
            while True:
                time.sleep(1)
                for proc in self.procs:
                    proc.check_alive()
        except KeyboardInterrupt:
            pass

    # ---------------------------------------------------------------- AWS helpers

    def create_user(self, name: str, keys: int = 1) -> list[tuple[str, str]]:
        """An IAM user holding `keys` access keys, allowed to call sts:GetCallerIdentity
        (moto checks the policy of whoever signs, and the rotator proves a key works that way)."""
        self.iam.create_user(UserName=name)
        self.iam.put_user_policy(
            UserName=name,
            PolicyName="whoami",
            PolicyDocument=json.dumps(
                {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:GetCallerIdentity", "Resource": "*"}]}
            ),
        )
        out = []
        for _ in range(keys):
            k = self.iam.create_access_key(UserName=name)["AccessKey"]
            out.append((k["AccessKeyId"], k["SecretAccessKey"]))
        return out

    def backdate_key(self, key_id: str, created: dt.datetime) -> None:
        """From now on IAM says the access key was created at `created` (an aware
        datetime): ListAccessKeys reports it as its CreateDate (moto_key_age.py). moto
        itself can only stamp a key with the moment it made it."""
        ages = json.loads(self.key_ages_file.read_text()) if self.key_ages_file.exists() else {}
        ages[key_id] = created.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        tmp = self.key_ages_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(ages, indent=1))
        tmp.replace(self.key_ages_file)

    def key_created(self, user: str, key_id: str) -> dt.datetime:
        """The key's CreateDate, as ListAccessKeys gives it."""
        for m in self.iam.list_access_keys(UserName=user)["AccessKeyMetadata"]:
            if m["AccessKeyId"] == key_id:
                return m["CreateDate"]
        raise StackError(f"IAM user {user} has no key {key_id}")

    def keys(self, user: str) -> list[tuple[str, str]]:
        """(access key id, status) of every key of the user, sorted by id; none once the
        user is deleted (as an operator does after a move to a role)."""
        try:
            meta = self.iam.list_access_keys(UserName=user)["AccessKeyMetadata"]
        except self.iam.exceptions.NoSuchEntityException:
            return []
        return sorted((m["AccessKeyId"], m["Status"]) for m in meta)

    def caller_arn(self, key_id: str, secret: str) -> str:
        """GetCallerIdentity signed with this key: the user's ARN, or raises ClientError."""
        return self._client("sts", (key_id, secret)).get_caller_identity()["Arn"]

    def key_secret_prefix_of(self, user: str) -> str:
        """Each execution keeps the new key in <prefix>/<user>/<execution name>."""
        return f"{self.key_secret_prefix}/{user}/"

    def all_secret_versions(self) -> list[dict]:
        """Every version of every secret moto has, deprecated versions and secrets
        scheduled for deletion included, each read by VersionId (moto may serve a stale
        AWSCURRENT without one): [{"name", "version", "stages", "value"}]."""
        out = []
        for page in self.sm.get_paginator("list_secrets").paginate(IncludePlannedDeletion=True):
            for secret in page["SecretList"]:
                arn = secret["ARN"]
                versions = self.sm.list_secret_version_ids(SecretId=arn, IncludeDeprecated=True)["Versions"]
                for v in versions:
                    try:
                        value = self.sm.get_secret_value(SecretId=arn, VersionId=v["VersionId"]).get("SecretString")
                    except botocore.exceptions.ClientError as e:
                        value = f"<unreadable: {e.response['Error']['Code']}>"
                    out.append({"name": secret["Name"], "version": v["VersionId"], "stages": v.get("VersionStages", []), "value": value})
        return out

    def key_secrets(self, user: str) -> list[dict]:
        """The versions of every key secret of `user` that still exists."""
        prefix = self.key_secret_prefix_of(user)
        return [v for v in self.all_secret_versions() if v["name"].startswith(prefix)]

    # ---------------------------------------------------------------- the ledger

    def ledger_item(self, user: str) -> dict[str, str] | None:
        """The user's item in the ledger table (the rotation lock and record), each
        attribute as its string, read consistently; None when there is none."""
        item = self.ddb.get_item(TableName=self.ledger_table, Key={"iam_user_name": {"S": user}},
                                 ConsistentRead=True).get("Item")
        if item is None:
            return None
        return {name: value.get("S", json.dumps(value)) for name, value in item.items()}

    def ledger(self, user: str) -> dict | None:
        """The user's rotation record (the item's `record`, parsed), or None. The item's
        own execution_id and phase must agree with the record's."""
        item = self.ledger_item(user)
        if item is None:
            return None
        record = json.loads(item["record"])
        if (item.get("execution_id"), item.get("phase")) != (record.get("execution_id"), record.get("phase")):
            raise StackError(f"ledger item of {user}: execution_id/phase {item.get('execution_id')}/{item.get('phase')} "
                             f"disagree with its record's {record.get('execution_id')}/{record.get('phase')}")
        return record

    def another_state_machine(self, name: str) -> str:
        """A second state machine in moto with the same definition, as a second stack
        for the same IAM user would have (same functions, same ledger table). Its ARN,
        for run(state_machine_arn=...)."""
        return self.sfn.create_state_machine(name=name, definition=ASL.read_text(), roleArn=STATE_MACHINE_ROLE)["stateMachineArn"]

    # ---------------------------------------------------------------- executions

    @staticmethod
    def _release(driver: subprocess.Popen) -> None:
        """Lets an execution held by hold_after go on (run-asl.mjs reads `release`)."""
        assert driver.stdin is not None
        try:
            driver.stdin.write("release\n")
            driver.stdin.close()
        except (BrokenPipeError, OSError):
            pass  # it ended already

    def log_marks(self) -> dict[Path, int]:
        paths = [p.log_path for p in self.function_procs]
        if self.lambda_mode == "watch":
            paths += [p.log_path for p in self.procs if p.name == "cargo-lambda"]
        paths += [p.log_path for p in self.procs if p.name in ("prism", "moto")]
        return {p: p.stat().st_size if p.exists() else 0 for p in paths}

    def logs_since(self, marks: dict[Path, int], prism: bool) -> str:
        """What the functions (or, with prism=True, Prism) logged since `marks`."""
        chunks = []
        for path, offset in marks.items():
            if path.name == "moto.log" or (path.name == "prism.log") != prism:
                continue
            with open(path, "rb") as f:
                f.seek(offset)
                chunks.append(f.read().decode(errors="replace"))
        return "".join(chunks)

    def denials_since(self, marks: dict[Path, int]) -> list[str]:
        """The AWS calls moto denied since `marks` (moto_resources.py logs each one)."""
        out = []
        for path, offset in marks.items():
            if path.name == "moto.log":
                with open(path, "rb") as f:
                    f.seek(offset)
                    text = f.read().decode(errors="replace")
                out += [line.split("DENIED ", 1)[1] for line in text.splitlines() if "[moto_resources] DENIED " in line]
        return out

    def run(
        self,
        input: dict,
        *,
        wait_ms: dict[str, int] | None = None,
        on_event: Callable[[dict], None] | None = None,
        timeout: float = 120,
        twice: bool | list[str] = False,
        stop_after: str | None = None,
        hold_after: str | None = None,
        state_machine_arn: str | None = None,
        notify_on_success: bool = True,
    ) -> Execution:
        """Runs the real ASL once. The execution is also started in moto's state machine
        (where it stays RUNNING until the run ends; then it is stopped, so that
        DescribeExecution says ABORTED), so that it is RUNNING from the preflight's
        point of view while it runs, as on AWS; $$.Execution.Id is its moto ARN.
        state_machine_arn: another state machine of moto's (another_state_machine()) to
        start it in, as another stack's execution.

        stop_after (a state name): the execution is stopped right after that state
        exits, as `aws stepfunctions stop-execution` would between two states: no
        function is invoked after it, and the execution ends ABORTED (error
        ExecutionAborted). Stopping after the last Task (DeleteOldKey) may end it
        SUCCEEDED instead: only a Succeed state follows.

        hold_after (a state name): the execution is held, still running, right after
        that state first exits, until on_event returned for that StateExited event:
        no function is invoked meanwhile. A test starts a second execution from there
        while this one holds the rotation lock, say.

        notify_on_success: the NotifyOnSuccess template parameter, substituted into the
        definition as CloudFormation would.

        twice (True for every Task state, or a list of Task state names): each Lambda
        invocation of those states is made twice with the same input, and only the
        second answer reaches the engine: at-least-once delivery with the first answer
        lost. Execution.invocations() counts both; lost_answers() the first ones."""
        name = str(uuid.uuid4())
        machine = state_machine_arn or self.state_machine_arn
        arn = self.sfn.start_execution(stateMachineArn=machine, name=name, input=json.dumps(input))["executionArn"]
        context = {
            "Execution": {"Id": arn, "Name": name, "RoleArn": STATE_MACHINE_ROLE},
            "StateMachine": {"Id": machine, "Name": machine.rsplit(":", 1)[-1]},
        }
        argv = [
            str(NODE), str(DRIVER),
            "--definition", str(ASL),
            "--invoke-url", self.invoke_url,
            "--input", json.dumps(input),
            "--context", json.dumps(context),
            "--substitution", f"NotificationTopicArn={NOTIFICATION_TOPIC_ARN}",
            "--substitution", f"NotifyOnSuccess={'true' if notify_on_success else 'false'}",
        ]
        outbox = self.log_dir / "executions" / f"{name}.sns.jsonl"
        outbox.parent.mkdir(exist_ok=True)
        argv += ["--sns-outbox", str(outbox)]
        for state, ms in (wait_ms or {}).items():
            argv += ["--wait-ms", f"{state}={ms}"]
        if isinstance(twice, str):
            raise StackError(f"twice takes True or a list of Task state names, not the string {twice!r}")
        for state in ["*"] if twice is True else (twice or []):
            argv += ["--twice", state]
        if stop_after is not None:
            argv += ["--stop-after", stop_after]
        if hold_after is not None:
            argv += ["--hold-after", hold_after]
        marks = self.log_marks()
        events: list[dict] = []
        t0 = time.monotonic()
        with tempfile.TemporaryFile() as err:
            driver = subprocess.Popen(argv, cwd=HERE, stdin=subprocess.PIPE if hold_after else subprocess.DEVNULL,
                                      stdout=subprocess.PIPE, stderr=err, text=True, env=self._base_env())
            watchdog = threading.Timer(timeout, driver.kill)
            watchdog.start()
            held = hold_after is not None
            try:
                assert driver.stdout is not None
                for line in driver.stdout:
                    try:
                        ev = json.loads(line)
                    except ValueError:
                        ev = {"event": "DriverOutput", "text": line.rstrip()}
                    events.append(ev)
                    if on_event:
                        on_event(ev)
                    if held and ev.get("event") == "StateExited" and ev.get("state") == hold_after:
                        held = False
                        self._release(driver)
                driver.wait(timeout=10)
            finally:
                watchdog.cancel()
                if driver.poll() is None:
                    driver.kill()
                    driver.wait()
                if driver.stdin is not None and not driver.stdin.closed:
                    try:
                        driver.stdin.close()
                    except OSError:
                        pass
                try:
                    self.sfn.stop_execution(executionArn=arn)
                except botocore.exceptions.ClientError:
                    pass
            err.seek(0)
            stderr = err.read().decode(errors="replace")
        duration = time.monotonic() - t0
        time.sleep(0.05)  # let the functions' last log lines land
        history = self.log_dir / "executions" / f"{name}.jsonl"
        history.parent.mkdir(exist_ok=True)
        history.write_text("".join(json.dumps(e) + "\n" for e in events))
        result = next((e for e in reversed(events) if e.get("event") == "Result"), None)
        if result is None and duration >= timeout:
            raise StackError(f"execution {name} ran longer than {timeout:.0f} s and was killed")
        if result is None:
            raise StackError(f"run-asl.mjs ended without a result (exit {driver.returncode}):\n{stderr[-2000:]}")
        if result["status"] == "DRIVER_ERROR":
            raise StackError(f"run-asl.mjs failed: {result.get('cause')}\n{stderr[-2000:]}")
        for proc in self.function_procs:
            if proc.popen.poll() is not None:
                raise StackError(f"function {proc.name} died (exit {proc.popen.returncode}); see {proc.log_path}:\n{tail(proc.log_path)}")
        return Execution(
            name=name,
            arn=arn,
            input=input,
            status=result["status"],
            error=result.get("error"),
            cause=result.get("cause"),
            output=result.get("output"),
            events=events,
            duration_s=duration,
            function_logs=self.logs_since(marks, prism=False),
            prism_log=self.logs_since(marks, prism=True),
            driver_stderr=stderr,
            aws_denials=self.denials_since(marks),
            published=[json.loads(line) for line in outbox.read_text().splitlines()] if outbox.exists() else [],
        )


def prism_problems(prism_log: str, faults_injected: bool) -> list[str]:
    """Spec violations Prism reported. With --errors a violating request or response is
    answered with an error (logged as 'Request terminated with error'); a status code
    the spec does not list is only a warning, expected when a fault was injected."""
    problems = []
    for line in prism_log.splitlines():
        if "Request terminated with error" in line:
            problems.append(line.strip())
        elif "Violation:" in line:
            if faults_injected and "Unable to match the returned status code" in line:
                continue
            problems.append(line.strip())
    return problems


def main() -> int:
    """`stack.sh`: start the stack and keep it up until Ctrl-C, to poke at it by hand."""
    with Stack() as stack:
        print(f"moto (AWS)      {stack.moto_url}   admin key {stack.admin_key[0]}; every key's secret in {stack.keys_file}")
        print(f"function users  {', '.join(stack.function_users.values())}: template policies for IAM user {stack.deployed_for}")
        print(f"fake Qovery     {stack.fake_url}   control API: GET/PUT /_fake/state, POST /_fake/faults, "
              "POST /_fake/container_registries and /_fake/helm_repositories")
        print(f"Qovery API      {stack.qovery_url}" + ("   (Prism, spec-checked)" if stack.spec else "   (NO spec check)"))
        print(f"Lambda invoke   {stack.invoke_url}/2015-03-31/functions/<name>/invocations")
        print(f"state machine   {stack.state_machine_arn}")
        print(f"ledger table    {stack.ledger_table} (DynamoDB: one item per IAM user, the rotation lock and record)")
        print(f"logs            {stack.log_dir}")
        print("Ctrl-C stops everything.", flush=True)
        stack.serve_until_interrupted()
    return 0


def credential_process(keys_file: str) -> int:
    """The AWS config's credential_process in watch mode: the key of the function named
    by AWS_LAMBDA_FUNCTION_NAME (cargo lambda sets it), in the format the SDK reads."""
    function = os.environ.get("AWS_LAMBDA_FUNCTION_NAME", "")
    keys = json.loads(Path(keys_file).read_text())
    if function not in FUNCTIONS or function not in keys:
        print(f"credential-process: no key for function {function!r}", file=sys.stderr)
        return 1
    key_id, secret = keys[function]
    print(json.dumps({"Version": 1, "AccessKeyId": key_id, "SecretAccessKey": secret}))
    return 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["credential-process"]:
        sys.exit(credential_process(sys.argv[2]))
    try:
        sys.exit(main())
    except StackError as e:
        print(f"stack: {e}", file=sys.stderr)
        sys.exit(1)
