"""One key rotation, end to end, on the local stack: the real state machine, the real
step binaries, moto for AWS and the fake Qovery behind the OpenAPI spec check.

It seeds an IAM user holding one key, the Qovery token secret, and a Qovery
organization whose AWS credentials hold that key and are used by the clusters. As in
Qovery, each AWS cluster has a mirroring container registry, which holds the same key;
one more registry holds the key of another IAM user (the rotation leaves it alone).
It runs one rotation, printing a line per state (key ids, holders and cluster
statuses, never a secret); then prints what changed, holder by holder, and the user's
rotation lock in the ledger table (released by a finished rotation; kept, naming the
execution, by one that failed half-way, for the next run to finish or undo). Exits 0
only if the rotation succeeded, every holder of the old key holds the new one, and
neither a key secret nor the lock was left behind.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import time
import uuid
from typing import Any

import botocore.exceptions

from stack import Execution, Stack, StackError, prism_problems
from worlds import KIND_LABELS, HolderState, holders_in, registry_seed

USER = "qovery-deployer"
# Another IAM user, whose key a registry holds: not the rotated key.
OTHER_USER = "qovery-ci-pusher"
CLUSTER_NAMES = ["production", "staging", "preview", "tools", "data"]


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="make demo ARGS='...'",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n"
        "  make demo\n"
        "  make demo ARGS='--dry-run'\n"
        "  make demo ARGS='--fail-cluster deployment_error'\n"
        "  make demo ARGS='--fail-cluster stuck --deploy-timeout 3'",
    )
    p.add_argument("--dry-run", action="store_true", help="run the preflight only: print its report, change nothing")
    p.add_argument(
        "--fail-cluster",
        choices=["deployment_error", "invalid_credentials", "stuck"],
        help="make the last cluster's redeploy end in DEPLOYMENT_ERROR or INVALID_CREDENTIALS, or never leave "
        "DEPLOYING (then the rotation times out after --deploy-timeout); the rotation then fails, both keys stay",
    )
    p.add_argument("--clusters", type=int, default=2, choices=range(1, 6), metavar="N", help="clusters using the credentials (1-5, default 2)")
    p.add_argument("--no-registries", action="store_true",
                   help="seed no container registry (by default each cluster's mirroring registry holds the key, "
                   f"and one registry holds a key of {OTHER_USER})")
    p.add_argument("--stale-polls", type=int, default=1, metavar="N",
                   help="status polls right after each deploy that still show the previous DEPLOYED (default 1)")
    p.add_argument("--deploy-timeout", type=int, metavar="SECONDS",
                   help="deploy_timeout_seconds of the execution (default 7200, or 3 with --fail-cluster stuck)")
    p.add_argument("--lambda-mode", choices=["prebuilt", "watch"],
                   help="prebuilt (default): cargo lambda serves the APIs and the prebuilt binaries poll it; "
                   "watch: cargo lambda starts each function itself with `cargo run`")
    return p.parse_args(argv)


def hhmmss(ts: str) -> str:
    t = dt.datetime.fromisoformat(ts.replace("Z", "+00:00")).astimezone()
    return t.strftime("%H:%M:%S.") + f"{t.microsecond // 1000:03d}"


class Progress:
    """Prints one line per state as the execution goes, from run-asl.mjs's events."""

    def __init__(self, stack: Stack, names: dict[str, str]):
        self.stack = stack
        self.names = names  # cluster id -> name
        self.map_items: list[str] = []
        self.polls: dict[str, int] = {}

    def cluster(self, ev: dict) -> str:
        idx = ev.get("index")
        if idx is None or idx >= len(self.map_items):
            return ""
        return self.names.get(self.map_items[idx], self.map_items[idx][:8])

    def statuses(self) -> str:
        clusters = self.stack.fake.clusters()
        return ", ".join(f"{self.names.get(cid, cid[:8])} {c['status']}" for cid, c in clusters.items())

    def line(self, ev: dict, mark: str, state: str, text: str) -> None:
        print(f"{hhmmss(ev['ts'])}  {mark} {state:<28} {text}", flush=True)

    def __call__(self, ev: dict) -> None:
        kind = ev.get("event")
        state = ev.get("state", "")
        where = self.cluster(ev)
        label = f"{state}[{where}]" if where else state
        if kind == "StateEntered" and state == "DeployClusters":
            self.map_items = [c["id"] for c in ev["input"].get("clusters") or []]
        if kind == "StateExited":
            self.line(ev, "ok", label, self.describe(state, ev.get("output")))
        elif kind == "StateFailed":
            msg = ev.get("cause") or ""
            try:
                msg = json.loads(msg).get("errorMessage", msg)
            except (ValueError, AttributeError):
                pass
            self.line(ev, "XX", label, f"{ev.get('error')}: {msg}")
        elif kind == "StateRetried":
            self.line(ev, "..", label, f"retry #{ev.get('attempt')} (Retry on {', '.join(ev.get('retrier', []))}, pause overridden to 0 s)")
        elif kind == "StateCaught":
            self.line(ev, "->", label, f"caught, going to {ev.get('next')}")

    def describe(self, state: str, out: Any) -> str:
        if not isinstance(out, dict):
            return ""
        if state == "Preflight":
            r = out.get("report", {})
            keys = ", ".join(f"{k['access_key_id']} ({k['status']})" for k in r.get("keys", []))
            skipped = ", ".join(f"{c['name']} {c['status']}" for c in out.get("skipped_clusters", []))
            alone = ", ".join(f"{KIND_LABELS.get(h['kind'], h['kind'])} {h['name']} ({h['reason']})" for h in r.get("left_alone", []))
            return (f"user keys: {keys}; holders of {out.get('old_access_key_id')}: {holder_names(out)}; "
                    f"redeploy (in order): {', '.join(c['name'] for c in out.get('clusters', []))}"
                    + (f"; skipped: {skipped}" if skipped else "") + (f"; left alone: {alone}" if alone else ""))
        if state == "IsDryRun":
            return "dry run: stop here" if out.get("dry_run") else "real rotation"
        if state == "WhatToDo":
            return f"recovery {out.get('recovery')}: {(out.get('report') or {}).get('recovery', '')}"
        if state == "UndoPrevious":
            d = out.get("undone") or {}
            return f"undone: deleted the ended run's key {d.get('deleted_access_key_id')} and its secret"
        if state == "DryRunReport":
            return (out.get("report") or {}).get("summary", "")
        if state == "CreateKey":
            return f"new key {out.get('new_access_key_id')} created, kept in secret {out.get('key_secret_id')} until Qovery holds it"
        if state in ("UpdateQovery", "FinishHandOver"):
            return (f"{holder_names(out)} hold {out.get('new_access_key_id')}; key secret deleted; "
                    f"old key {out.get('old_access_key_id')} may go after {out.get('drain_until')}")
        if state == "ReconcileHandOver":
            return (out.get("reconcile") or {}).get("summary", "")
        if state in ("DeployCluster", "CheckStatus"):
            cid = out.get("cluster_id", "")
            if state == "CheckStatus":
                self.polls[cid] = self.polls.get(cid, 0) + 1
            extra = f", poll #{self.polls[cid]}" if state == "CheckStatus" else ""
            return f"Qovery reports {out.get('status')} (phase {out.get('phase')}{extra})"
        if state in ("WaitForDeploy", "WaitForIdle"):
            return f"wait {out.get('poll_interval_seconds')} s (overridden locally)"
        if state in ("IsDeployed", "IsDeployRequested", "ClusterDeployed", "ClusterSkipped"):
            return f"phase {out.get('phase')}"
        if state == "DeployClusters":
            return "all clusters redeployed: " + self.statuses()
        if state == "Drain":
            return f"drain until {out.get('drain_until')} (overridden to 0 s locally)"
        if state == "QuarantineOldKey":
            return (out.get("quarantine") or {}).get("summary", "")
        if state == "Quarantine":
            return f"until {(out.get('quarantine') or {}).get('until')} (overridden to 0 s locally)"
        if state == "ReportSuccess":
            return "success report published to the notification topic"
        if state in ("DeleteOldKey", "Rotated"):
            d = out.get("deleted") or {}
            keys = ", ".join(f"{k['access_key_id']} ({k['status']})" for k in d.get("remaining_keys", []))
            return f"{'already deleted' if d.get('already_deleted') else 'deleted'} old key {d.get('deleted_access_key_id')}; user keys now: {keys}"
        if state == "RollbackNewKey":
            d = out.get("rollback") or {}
            return f"rolled back: deleted new key {d.get('deleted_access_key_id')}"
        return ""


def holder_names(out: dict) -> str:
    """`credentials aws-production, container registry production-mirror, ...`"""
    return ", ".join(f"{KIND_LABELS.get(h['kind'], h['kind'])} {h['name']}" for h in out.get("holders", [])) or "none"


def whose(stack: Stack, h: HolderState) -> str:
    """What STS says of the key a holder holds: `works, <user>` or `REJECTED by STS`."""
    if not h.key_id:
        return "role" if h.role_arn else "no AWS key"
    try:
        return "works, " + stack.caller_arn(h.key_id, h.secret or "").rsplit("/", 1)[-1]
    except botocore.exceptions.ClientError:
        return "REJECTED by STS"


def lock_text(item: dict | None) -> str:
    """The user's rotation lock and record in the ledger table, in a few words."""
    if not item:
        return "none"
    return f"execution {item['execution_id'].rsplit(':', 1)[-1][:8]}, phase {item['phase']}"


def snapshot(stack: Stack) -> dict:
    fake = stack.fake.state()
    holders = holders_in(fake)
    return {
        "lock": stack.ledger_item(USER),
        "keys": stack.keys(USER),
        "holders": holders,
        "works": {ref: whose(stack, h) for ref, h in holders.items()},
        "clusters": {c["id"]: c for c in fake["clusters"]},
    }


def leaks(ex: Execution, secrets: list[str]) -> list[str]:
    places = {"history": json.dumps(ex.events), "function logs": ex.function_logs}
    return [where for s in secrets if s for where, text in places.items() if s in text]


def billing_counts(ex: Execution) -> str:
    """What Step Functions Standard and Lambda bill this execution for: a transition
    per state entered, retries included, and a request per function invocation (the
    cost per rotation in docs/cost.md is built from these)."""
    entered, retried = len(ex.of("StateEntered")), len(ex.of("StateRetried"))
    invoked: dict[str, int] = {}
    for e in ex.of("LambdaFunctionScheduled"):
        invoked[e["function"]] = invoked.get(e["function"], 0) + 1
    per_function = ", ".join(f"{name} {n}" for name, n in invoked.items())
    return (
        f"state transitions: {entered + retried} ({entered} states entered, {retried} retries); "
        f"Lambda invocations: {sum(invoked.values())} ({per_function})"
    )


def seed_organization(stack: Stack, args: argparse.Namespace, key: tuple[str, str], other_key: tuple[str, str],
                      helm: bool = False) -> tuple[str, str, dict[str, str], list[dict]]:
    """Seeds the fake Qovery: credentials aws-production holding `key`, used by the
    clusters; unless --no-registries, each cluster's mirroring registry holding `key`,
    a registry holding `other_key` and, with helm, a helm repository holding `key`.
    Returns the organization id, the credentials id, cluster id -> name and the
    container registries."""
    org, creds = str(uuid.uuid4()), str(uuid.uuid4())
    names = {}
    clusters = []
    for i in range(args.clusters):
        cid = str(uuid.uuid4())
        names[cid] = CLUSTER_NAMES[i]
        seed: dict[str, Any] = {"id": cid, "name": CLUSTER_NAMES[i], "credentials_id": creds, "stale_polls": args.stale_polls}
        if args.fail_cluster and i == args.clusters - 1:
            seed["outcome"] = args.fail_cluster
        clusters.append(seed)
    registries = [] if args.no_registries else [
        # Qovery gives every AWS cluster a mirroring registry, holding the cluster's key.
        *(registry_seed("container", "key", f"{c['name']}-mirror", key, cluster_id=c["id"]) for c in clusters),
        registry_seed("container", "other", "ci-images", other_key),
    ]
    world: dict[str, Any] = {
        "token": stack.token,
        "organization_id": org,
        "credentials": [{"id": creds, "name": "aws-production", "access_key_id": key[0], "secret_access_key": key[1]}],
        "clusters": clusters,
        "container_registries": registries,
    }
    if helm and not args.no_registries:
        world["helm_repositories"] = [registry_seed("helm", "key", "charts", key)]
    stack.fake.seed(world)
    return org, creds, names, registries


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    t0 = time.monotonic()
    deploy_timeout = args.deploy_timeout or (3 if args.fail_cluster == "stuck" else 7200)
    with Stack(lambda_mode=args.lambda_mode) as stack:
        (old_id, old_secret), = stack.create_user(USER, 1)
        stack.deploy(USER)  # the functions' policies: the template's, for IamUserName=USER
        other_key = stack.create_user(OTHER_USER, 1)[0]
        org, creds, names, registries = seed_organization(stack, args, (old_id, old_secret), other_key)
        before = snapshot(stack)
        input = {
            "iam_user_name": USER,
            "organization_id": org,
            "drain_seconds": 60,
            "allow_short_drain": True,
            # The BEFORE table above proved the old key works with STS seconds ago, and
            # the drain takes no time here: no idle window would pass. (The idle check
            # has its own workflow scenarios, 63 and 67.)
            "key_idle_seconds": 0,
            "poll_interval_seconds": 10,
            "deploy_timeout_seconds": deploy_timeout,
        }
        if args.dry_run:
            input["dry_run"] = True
        held_by = f"Qovery credentials aws-production ({creds})"
        if registries:
            held_by += " and each cluster's mirroring registry"
        print(f"\nRotating the key of IAM user {USER} held by {held_by}")
        print(f"execution input: {json.dumps(input)}\n")
        # The deploy deadline is wall-clock, so a stuck cluster needs real (short) polls.
        wait_ms = {"WaitForDeploy": 250, "WaitForIdle": 250} if args.fail_cluster == "stuck" else None
        ex = stack.run(input, on_event=Progress(stack, names), wait_ms=wait_ms)
        after = snapshot(stack)

        secrets = [stack.token, old_secret, other_key[1], stack.qovery_principal["secret_access_key"]]
        secrets += [h.secret for s in (before, after) for h in s["holders"].values() if h.secret]
        left = stack.key_secrets(USER)
        for v in left:
            try:
                secrets.append(json.loads(v["value"]).get("secret_access_key"))
            except (ValueError, AttributeError):
                secrets.append(v["value"])
        leaked = leaks(ex, secrets)
        spec = prism_problems(ex.prism_log, faults_injected=False)

        def keys(s: dict) -> str:
            return ", ".join(f"{k} ({st})" for k, st in s["keys"]) or "none"

        rows = [("IAM user keys", keys(before), keys(after)),
                ("rotation lock (ledger)", lock_text(before["lock"]), lock_text(after["lock"]))]
        for ref, b in before["holders"].items():
            a = after["holders"].get(ref)
            rows.append((f"{KIND_LABELS[b.kind]} {b.name}", f"{b.key_id} ({before['works'][ref]})",
                         f"{a.key_id} ({after['works'][ref]})" if a else "GONE"))
        for cid, c in after["clusters"].items():
            rows.append((f"cluster {c['name']}", before["clusters"][cid]["status"],
                         f"{c['status']} (deployed {c['deploy_count']}x, {c['status_polls']} status polls)"))
        w1, w2 = (max(len(r[i]) for r in rows) + 2 for i in (0, 1))
        print()
        print(f"{'':{w1}}{'BEFORE':<{w2}}AFTER")
        for what, was, now in rows:
            print(f"{what:<{w1}}{was:<{w2}}{now}")
        print()
        ok = ex.succeeded
        verdict = "SUCCEEDED" if ok else f"FAILED with {ex.error}: {ex.cause_message()}"
        print(f"rotation {verdict}")
        # A rotation that succeeded left no holder on the old key (a dry run changes nothing).
        new_id = (ex.output or {}).get("new_access_key_id")
        stuck = [f"{KIND_LABELS[h.kind]} {h.name}" for ref, h in before["holders"].items()
                 if ok and not args.dry_run and h.key_id == old_id and after["holders"][ref].key_id != new_id]
        if stuck:
            print(f"HOLDERS NOT ON THE NEW KEY: {', '.join(stuck)}")
            ok = False
        if after["lock"] and ex.succeeded:
            print(f"ROTATION LOCK LEFT BEHIND: {lock_text(after['lock'])}")
            ok = False
        elif after["lock"]:
            print(f"the rotation lock stays with this execution ({lock_text(after['lock'])}): "
                  "the next run finishes or undoes what it did")
        if left and not (after["lock"] and not ex.succeeded):
            print(f"KEY SECRET LEFT BEHIND: {', '.join(sorted({v['name'] for v in left}))}")
            ok = False
        if leaked:
            print(f"SECRET LEAKED in: {', '.join(sorted(set(leaked)))}")
            ok = False
        if spec:
            print("Qovery calls broke the OpenAPI spec:\n  " + "\n  ".join(spec))
            ok = False
        if ex.aws_denials:
            print("template.yaml's policies denied AWS calls:\n  " + "\n  ".join(ex.aws_denials))
            ok = False
        if not stack.spec:
            print("WARNING: the OpenAPI spec check was skipped (spec not found)")
        print(billing_counts(ex))
        history = stack.log_dir / "history.jsonl"
        history.write_text("".join(json.dumps(e) + "\n" for e in ex.events))
        print(f"execution {ex.duration_s:.1f} s; history and logs in {stack.log_dir}")
    print(f"demo took {time.monotonic() - t0:.1f} s")
    return 0 if ok else 1


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except StackError as e:
        print(f"demo: {e}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        print("demo: interrupted; the stack was stopped", file=sys.stderr)
        sys.exit(130)
