"""`make bench`: the cold start and the cost of each step function, as Lambda would see it.

Each step's release binary (built for this host) runs against a minimal Lambda Runtime
API (runtime_api.py), moto's server for AWS and the fake Qovery, with the event the
state machine would give it (events.py). A run seeds two fresh worlds (an IAM user
holding one key, Qovery credentials holding that key, one cluster), then, for each
function in rotation order, starts its process and measures:

  init     spawn to the first GET /next (the Lambda Init phase);
  first    the first invocation: event handed over to result read, world 1;
  cold     spawn to the first result: what a cold start adds to a state's duration;
  warm     the second invocation of the same process, world 2;
  peak     the process's peak RSS (VmHWM, read before it is stopped).

The outputs feed the next function's events, so every invocation does the real work
of a rotation (create-key creates a key, delete-key deletes one). One warm-up run is
not counted; the table gives the median of the counted runs, and min-max.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path

import boto3
import botocore.config

import events
from events import FUNCTIONS, World
from runtime_api import RuntimeApi

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = REPO / ".venv" / "bin"
REGION = "us-east-1"
ACCOUNT = "123456789012"  # moto's default account
STACK = "qovery-key-rotator"
LEDGER_TABLE = "qovery-key-rotator-ledger"
KEY_SECRET_PREFIX = "qovery-key-rotator"  # template.yaml's KEY_SECRET_PREFIX
WARM_SUSPICIOUS_MS = 35  # a delayed-ACK stall is 40 ms


class BenchError(RuntimeError):
    pass


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, proc: subprocess.Popen, what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise BenchError(f"{what} exited with code {proc.returncode}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise BenchError(f"{what} did not listen on port {port} within {timeout:.0f} s")


@dataclass
class Sample:
    init_ms: float
    first_ms: float
    warm_ms: float
    peak_mb: float

    @property
    def cold_ms(self) -> float:
        return self.init_ms + self.first_ms


class Bench:
    def __init__(self, bin_dir: Path, log_dir: Path):
        self.bin_dir = bin_dir
        self.log_dir = log_dir
        self.procs: list[subprocess.Popen] = []
        self.token = "qovtok_" + uuid.uuid4().hex

    # ------------------------------------------------------------------ the stack

    def spawn(self, name: str, argv: list[str], env: dict[str, str]) -> subprocess.Popen:
        log = open(self.log_dir / f"{name}.log", "ab")
        proc = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
        log.close()
        self.procs.append(proc)
        return proc

    def start(self) -> None:
        base = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8"}
        moto_port = free_port()
        moto = self.spawn("moto", [str(VENV_BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(moto_port)], base)
        fake = self.spawn("qovery-fake", [str(self.bin_dir / "qovery-fake"), "--port", "0"], {**base, "RUST_LOG": "warn"})
        self.fake_url = self.wait_for_fake(fake)
        wait_for_port(moto_port, moto, "moto_server")
        self.moto_url = f"http://127.0.0.1:{moto_port}"

        def client(service: str):
            return boto3.client(service, endpoint_url=self.moto_url, region_name=REGION, aws_access_key_id="bench",
                                aws_secret_access_key="bench", config=botocore.config.Config(retries={"max_attempts": 1}))

        self.iam, self.sm, self.sfn = client("iam"), client("secretsmanager"), client("stepfunctions")
        # The ledger table, as template.yaml's LedgerTable.
        client("dynamodb").create_table(
            TableName=LEDGER_TABLE,
            BillingMode="PAY_PER_REQUEST",
            AttributeDefinitions=[{"AttributeName": "iam_user_name", "AttributeType": "S"}],
            KeySchema=[{"AttributeName": "iam_user_name", "KeyType": "HASH"}],
        )
        self.token_secret_arn = self.sm.create_secret(Name=f"{STACK}/qovery-api-token", SecretString=self.token)["ARN"]
        self.state_machine_arn = self.sfn.create_state_machine(
            name=f"{STACK}-rotation",
            definition=(REPO / "statemachine" / "rotation.asl.json").read_text(),
            roleArn=f"arn:aws:iam::{ACCOUNT}:role/{STACK}-state-machine",
        )["stateMachineArn"]
        # Empty AWS config files: nothing from the host's ~/.aws may leak in.
        for name in ("aws-config", "aws-credentials"):
            (self.log_dir / name).write_text("")
        self.function_env = {
            **base,
            # What template.yaml sets.
            "QOVERY_API_URL": self.fake_url,
            "QOVERY_TOKEN_SECRET_ID": self.token_secret_arn,
            "KEY_SECRET_PREFIX": KEY_SECRET_PREFIX,
            "LEDGER_TABLE": LEDGER_TABLE,
            "RUST_LOG": "info",
            # What Lambda sets.
            "AWS_REGION": REGION,
            "AWS_DEFAULT_REGION": REGION,
            "AWS_ACCESS_KEY_ID": "ASIABENCH",
            "AWS_SECRET_ACCESS_KEY": "bench",
            "AWS_SESSION_TOKEN": "bench",
            "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "128",
            "AWS_LAMBDA_LOG_STREAM_NAME": "bench",
            # The local stack.
            "AWS_ENDPOINT_URL": self.moto_url,
            "AWS_EC2_METADATA_DISABLED": "true",
            "AWS_CONFIG_FILE": str(self.log_dir / "aws-config"),
            "AWS_SHARED_CREDENTIALS_FILE": str(self.log_dir / "aws-credentials"),
        }

    def wait_for_fake(self, proc: subprocess.Popen, timeout: float = 20) -> str:
        log = self.log_dir / "qovery-fake.log"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise BenchError(f"qovery-fake exited with code {proc.returncode}; see {log}")
            for line in log.read_text(errors="replace").splitlines():
                if line.startswith("qovery-fake listening on "):
                    return line.split()[-1]
            time.sleep(0.02)
        raise BenchError(f"qovery-fake printed no URL within {timeout:.0f} s; see {log}")

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()

    # ------------------------------------------------------------------ worlds

    def new_worlds(self, run: int, count: int) -> list[World]:
        worlds, credentials, clusters = [], [], []
        organization_id = str(uuid.uuid4())
        for i in range(count):
            user = f"bench-{run}-{i}-{uuid.uuid4().hex[:6]}"
            self.iam.create_user(UserName=user)
            key = self.iam.create_access_key(UserName=user)["AccessKey"]
            w = World(
                iam_user_name=user,
                organization_id=organization_id,
                credentials_id=str(uuid.uuid4()),
                cluster_id=str(uuid.uuid4()),
                execution_arn="",
                state_machine_arn=self.state_machine_arn,
            )
            credentials.append({"id": w.credentials_id, "name": f"aws-{user}", "access_key_id": key["AccessKeyId"],
                                "secret_access_key": key["SecretAccessKey"]})
            clusters.append({"id": w.cluster_id, "name": f"cluster-{i}", "credentials_id": w.credentials_id})
            # The execution is RUNNING in moto, as it would be on AWS while its steps run.
            w.execution_arn = self.sfn.start_execution(stateMachineArn=self.state_machine_arn, name=str(uuid.uuid4()),
                                                       input=json.dumps(events.execution_input(w)))["executionArn"]
            worlds.append(w)
        seed = {"token": self.token, "organization_id": organization_id, "credentials": credentials, "clusters": clusters}
        req = urllib.request.Request(self.fake_url + "/_fake/state", data=json.dumps(seed).encode(), method="PUT",
                                     headers={"content-type": "application/json"})
        with urllib.request.urlopen(req, timeout=10) as resp:
            resp.read()
        return worlds

    def end_worlds(self, worlds: list[World]) -> None:
        for w in worlds:
            self.sfn.stop_execution(executionArn=w.execution_arn)

    # ------------------------------------------------------------------ one function

    def measure(self, function: str, worlds: list[World]) -> Sample:
        api = RuntimeApi(f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{STACK}-{function}")
        env = {**self.function_env, "AWS_LAMBDA_FUNCTION_NAME": f"{STACK}-{function}",
               "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{STACK}-{function}", "AWS_LAMBDA_RUNTIME_API": api.address}
        log = open(self.log_dir / f"fn-{function}.log", "ab")
        try:
            spawned = time.perf_counter_ns()
            proc = subprocess.Popen([str(self.bin_dir / function)], env=env, stdin=subprocess.DEVNULL, stdout=log,
                                    stderr=subprocess.STDOUT)
        finally:
            log.close()
        try:
            if not api.wait_ready(timeout=30):
                raise BenchError(f"{function} did not poll for an event: {api.init_error or 'timeout'}; "
                                 f"see {self.log_dir / f'fn-{function}.log'}")
            init_ms = (api.ready_ns - spawned) / 1e6
            times = []
            for w in worlds:
                result = api.invoke(events.event(function, w), timeout=60)
                if not result.ok:
                    raise BenchError(f"{function} failed on {w.iam_user_name}: {json.dumps(result.body)[:600]}")
                w.outputs[function] = result.body
                times.append((result.done_ns - result.sent_ns) / 1e6)
            # Not the reaped child's ru_maxrss: that counts the forked Python before exec.
            peak_kib = peak_rss_kib(proc.pid)
        finally:
            proc.kill()
            proc.wait()
            api.close()
        return Sample(init_ms, times[0], times[1], peak_kib * 1024 / 1e6)


def peak_rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise BenchError(f"no VmHWM in /proc/{pid}/status")


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores, {platform.system()} {platform.release()}, load {os.getloadavg()[0]:.1f}"


def table(samples: dict[str, list[Sample]]) -> str:
    def cell(values: list[float], digits: int) -> str:
        return f"{statistics.median(values):.{digits}f} ({min(values):.{digits}f}-{max(values):.{digits}f})"

    rows = [["function", "init ms", "first invocation ms", "cold: spawn to result ms", "warm invocation ms",
             "peak RSS MB"]]
    for function, runs in samples.items():
        rows.append([function] + [cell([getattr(s, k) for s in runs], 1)
                                  for k in ("init_ms", "first_ms", "cold_ms", "warm_ms", "peak_mb")])
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))) for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="make bench ARGS='...'", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-n", "--runs", type=int, default=10, help="counted runs (default 10)")
    p.add_argument("--warmup", type=int, default=1, help="runs not counted, first (default 1)")
    p.add_argument("--bin-dir", type=Path, default=REPO / "target" / "release",
                   help="where the step binaries and qovery-fake are (default target/release)")
    p.add_argument("--json", type=Path, help="also write every sample to this file")
    p.add_argument("--keep-logs", action="store_true", help="keep the functions' and the stack's logs (kept anyway on failure)")
    args = p.parse_args(argv)
    missing = [f for f in FUNCTIONS + ["qovery-fake"] if not (args.bin_dir / f).is_file()]
    if missing:
        raise BenchError(f"missing in {args.bin_dir}: {', '.join(missing)} (`make bench` builds them)")

    log_dir = Path(tempfile.mkdtemp(prefix="qkr-bench-"))
    bench = Bench(args.bin_dir, log_dir)
    samples: dict[str, list[Sample]] = {f: [] for f in FUNCTIONS}
    try:
        bench.start()
        for run in range(args.warmup + args.runs):
            worlds = bench.new_worlds(run, 2)
            for function in FUNCTIONS:
                sample = bench.measure(function, worlds)
                if run >= args.warmup:
                    samples[function].append(sample)
            bench.end_worlds(worlds)
    except BaseException:
        print(f"bench: logs in {log_dir}", file=sys.stderr)
        raise
    finally:
        bench.stop()
    if not args.keep_logs:
        shutil.rmtree(log_dir, ignore_errors=True)

    print(f"machine: {machine()}")
    print(f"binaries: {args.bin_dir}; {args.runs} runs after {args.warmup} warm-up; median (min-max)"
          + (f"; logs in {log_dir}" if args.keep_logs else ""))
    print(table(samples))
    slow = [f for f, runs in samples.items() if statistics.median(s.warm_ms for s in runs) >= WARM_SUSPICIOUS_MS]
    if slow:
        print(f"WARNING: warm invocations near 40 ms ({', '.join(slow)}): a delayed-ACK stall in the harness, not the code")
    if args.json:
        args.json.write_text(json.dumps({f: [s.__dict__ for s in runs] for f, runs in samples.items()}, indent=1))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except BenchError as e:
        print(f"bench: {e}", file=sys.stderr)
        sys.exit(1)
