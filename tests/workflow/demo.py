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

--migrate-to-role moves Qovery from the key to an IAM role instead (migrate_to_role):
it creates the role, trusting Qovery's principal (moto_trust.py), deploys the stack
with QoveryRoleName, seeds a helm repository holding the key too, and prints the
migration's dry run (the trust policy, each holder's route, the canary); then runs the
migration, prints what changed (each holder from the key to the role, the role
credentials made, the static credentials and the key deleted), and runs the schedule's
input once more: NothingToRotate. With --fail-role the role trusts another account: the
canary fails on it, is pointed back and redeployed, the role credentials are removed,
and the execution fails with RoleNotProven. Exits 0 only if all of it is as expected.
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
        "  make demo ARGS='--fail-cluster stuck --deploy-timeout 3'\n"
        "  make demo ARGS='--migrate-to-role'\n"
        "  make demo ARGS='--migrate-to-role --dry-run'\n"
        "  make demo ARGS='--migrate-to-role --fail-role'",
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
    p.add_argument("--migrate-to-role", action="store_true",
                   help="instead of a rotation, move Qovery from the key to an IAM role (migrate_to_role): create the "
                   "role, trusting Qovery's principal, print the migration's dry run, then run it (with --dry-run, the "
                   "dry run only), then the schedule's next run, which finds nothing to rotate")
    p.add_argument("--fail-role", action="store_true",
                   help="with --migrate-to-role: the role trusts another account, so Qovery cannot assume it; the "
                   "canary fails on it and the migration is undone (RoleNotProven)")
    p.add_argument("--lambda-mode", choices=["prebuilt", "watch"],
                   help="prebuilt (default): cargo lambda serves the APIs and the prebuilt binaries poll it; "
                   "watch: cargo lambda starts each function itself with `cargo run`")
    args = p.parse_args(argv)
    if args.fail_role and not args.migrate_to_role:
        p.error("--fail-role goes with --migrate-to-role")
    if args.migrate_to_role and args.fail_cluster:
        p.error("--fail-cluster is for a rotation; a migration's failure is --fail-role")
    return args


def hhmmss(ts: str) -> str:
    t = dt.datetime.fromisoformat(ts.replace("Z", "+00:00")).astimezone()
    return t.strftime("%H:%M:%S.") + f"{t.microsecond // 1000:03d}"


class Progress:
    """Prints one line per state as the execution goes, from run-asl.mjs's events."""

    def __init__(self, stack: Stack, names: dict[str, str], brief_failures: bool = False):
        self.stack = stack
        self.names = names  # cluster id -> name
        # Failures' messages cut to their first 200 characters (the demo prints the
        # execution's cause in full at the end).
        self.brief_failures = brief_failures
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
            if self.brief_failures and len(msg) > 200:
                msg = msg[:200] + " [...]"
            self.line(ev, "XX", label, f"{ev.get('error')}: {msg}")
        elif kind == "StateRetried":
            self.line(ev, "..", label, f"retry #{ev.get('attempt')} (Retry on {', '.join(ev.get('retrier', []))}, pause overridden to 0 s)")
        elif kind == "StateCaught":
            self.line(ev, "->", label, f"caught, going to {ev.get('next')}")

    def describe(self, state: str, out: Any) -> str:
        if not isinstance(out, dict):
            return ""
        mode = out.get("mode")
        if state == "Preflight" and mode == "nothing_to_rotate":
            return "nothing to rotate: " + (out.get("report") or {}).get("summary", "").split(". ")[0]
        if state == "Preflight":
            r = out.get("report", {})
            keys = ", ".join(f"{k['access_key_id']} ({k['status']})" for k in r.get("keys", []))
            skipped = ", ".join(f"{c['name']} {c['status']}" for c in out.get("skipped_clusters", []))
            alone = ", ".join(f"{KIND_LABELS.get(h['kind'], h['kind'])} {h['name']} ({h['reason']})" for h in r.get("left_alone", []))
            return (f"user keys: {keys}; holders of {out.get('old_access_key_id')}: {holder_names(out)}; "
                    f"redeploy (in order): {', '.join(c['name'] for c in out.get('clusters', []))}"
                    + (f"; skipped: {skipped}" if skipped else "") + (f"; left alone: {alone}" if alone else ""))
        if state == "IsDryRun":
            if out.get("dry_run"):
                return "dry run: stop here"
            return {"migrate": "the migration itself", "nothing_to_rotate": "a real run"}.get(mode, "real rotation")
        if state == "CreateRoleEntry":
            m = out.get("migration") or {}
            entry = m.get("role_credentials") or {}
            return (f"role credentials {entry.get('name')} ({entry.get('id')}) "
                    f"{'created' if m.get('role_credentials_created') else 'adopted'} for {m.get('role_arn')}; no cluster on them yet")
        if state == "PointCluster":
            return f"pointed at {(out.get('target_credentials') or {}).get('name')}" if out.get("pointed") else "already there"
        if state == "HandOverToRole":
            switched = [f"{KIND_LABELS.get(h['kind'], h['kind'])} {h['name']}" for h in out.get("holders", [])
                        if h["kind"] != "credentials" and not h.get("access_key_id")]
            return (f"every cluster DEPLOYED on the role: switched to it {', '.join(switched) or 'no registry'} "
                    f"(no way back to the key from here); the key may go after {out.get('drain_until')}")
        if state == "UndoMigration":
            back = {o["cluster_id"]: o["credentials"]["name"] for o in (out.get("migration") or {}).get("cluster_origins", [])}
            moved = [c for wave in out.get("deploy_waves", []) for c in wave]
            return "pointed back, to redeploy there: " + (
                ", ".join(f"{c['name']} at {back.get(c['id'], '?')}" for c in moved) or "none")
        if state == "AbandonMigration":
            gone = (out.get("abandoned") or {}).get("deleted_role_credentials") or []
            return f"deleted the role credentials it made: {', '.join(gone) or 'none'}; lock released"
        if state == "NothingToRotate":
            return "success, nothing changed"
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
        if state == "DeployClusters" and mode == "migrate" and out.get("migration_error"):
            return "failed on the role, to be undone: " + self.statuses()
        if state == "DeployClusters" and mode == "undo_migration":
            return "back on the key and redeployed: " + self.statuses()
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
            keys = ", ".join(f"{k['access_key_id']} ({k['status']})" for k in d.get("remaining_keys", [])) or "none"
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
        "fake": fake,
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


ROLE_NAME = "qovery-access"
# An account that is not Qovery's: a role trusting only it refuses Qovery (--fail-role).
OTHER_ACCOUNT = "111111111111"


def create_role(stack: Stack, principal: str) -> str:
    """The role Qovery is to use, trusting `principal` (no external id: Qovery sends
    none); the stack deployed with QoveryRoleName naming it, so that preflight may read
    it. Returns its ARN."""
    trust = {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"AWS": principal}, "Action": "sts:AssumeRole"}]}
    arn = stack.iam.create_role(RoleName=ROLE_NAME, AssumeRolePolicyDocument=json.dumps(trust))["Role"]["Arn"]
    stack.deploy(USER, qovery_role_name=ROLE_NAME)
    return arn


def qovery_can_assume(stack: Stack, role_arn: str) -> bool:
    """Whether Qovery's principal (moto_trust.py) may assume the role, asked of STS now."""
    p = stack.qovery_principal
    try:
        stack._client("sts", (p["access_key_id"], p["secret_access_key"])).assume_role(
            RoleArn=role_arn, RoleSessionName="qkr-demo-check")
        return True
    except botocore.exceptions.ClientError:
        return False


def print_plan(ex: Execution) -> None:
    """The dry run's report.migration: the trust policy, each holder's route, the canary."""
    out = ex.output or {}
    report = out.get("report") or {}
    plan = report.get("migration") or {}
    print(f"\nThe dry run's plan (report.migration), for role {plan.get('role_arn')}:")
    print("  trust policy (trust_lines):")
    for line in plan.get("trust_lines", []):
        print(f"    {line}")
    print(f"  holders of key {plan.get('static_access_key_id')}, and their route:")
    for h in plan.get("holders", []):
        holder = h.get("holder") or {}
        route = h.get("route")
        why = f": {h['reason']}" if h.get("reason") else ""
        print(f"    {KIND_LABELS.get(holder.get('kind'), holder.get('kind'))} {holder.get('name')}: {route}{why}")
    clusters = out.get("clusters") or []
    if clusters:
        print(f"  canary: {clusters[0]['name']} (redeployed alone on the role first)"
              + (f"; then: {', '.join(c['name'] for c in clusters[1:])}" if clusters[1:] else ""))
    if plan.get("other_user_keys"):
        print(f"  keys of the user Qovery does not hold (left alone): {', '.join(plan['other_user_keys'])}")
    print(f"  summary: {report.get('summary', '')}\n")


def holding_text(s: dict, ref: tuple[str, str]) -> str:
    h = s["holders"][ref]
    if h.key_id:
        return f"{h.key_id} ({s['works'][ref]})"
    if h.role_arn:
        return f"role {h.role_arn.rsplit('/', 1)[-1]}"
    return "no AWS key"


def print_table(stack: Stack, before: dict, after: dict) -> None:
    """Each holder, the role credentials, the clusters and the user's keys, before the
    migration and after it."""
    def keys(s: dict) -> str:
        return ", ".join(f"{k} ({st})" for k, st in s["keys"]) or "none"

    def entry_name(s: dict, cid: str) -> str:
        return next((c["name"] for c in s["fake"]["credentials"] if c["id"] == cid), f"{cid[:8]} (GONE)")

    role_entries = lambda s: [c for c in s["fake"]["credentials"] if c["object_type"] == "AWS_ROLE"]  # noqa: E731
    rows = [("IAM user keys", keys(before), keys(after)),
            ("rotation lock (ledger)", lock_text(before["lock"]), lock_text(after["lock"])),
            ("role credentials (AWS_ROLE)",
             ", ".join(c["name"] for c in role_entries(before)) or "none",
             ", ".join(f"{c['name']} ({c['id'][:8]}): role {c['role_arn'].rsplit('/', 1)[-1]}" for c in role_entries(after))
             or ("none (made, then deleted)" if stack.fake.requests("createAWSCredentials") else "none"))]
    for ref, b in before["holders"].items():
        rows.append((f"{KIND_LABELS[b.kind]} {b.name}", holding_text(before, ref),
                     holding_text(after, ref) if ref in after["holders"] else "GONE (deleted)"))
    checks = after["fake"].get("role_checks", [])
    for cid, c in after["clusters"].items():
        b = before["clusters"][cid]
        assumed = [("ok" if r["ok"] else "REFUSED") for r in checks if r["cluster_id"] == cid]
        rows.append((f"cluster {c['name']}", f"{b['status']} on {entry_name(before, b['credentials_id'])}",
                     f"{c['status']} on {entry_name(after, c['credentials_id'])} (deployed {c['deploy_count']}x"
                     + (f"; Qovery assumed the role: {', '.join(assumed)}" if assumed else "") + ")"))
    w1, w2 = (max(len(r[i]) for r in rows) + 2 for i in (0, 1))
    print()
    print(f"{'':{w1}}{'BEFORE':<{w2}}AFTER")
    for what, was, now in rows:
        print(f"{what:<{w1}}{was:<{w2}}{now}")


def check_migrated(stack: Stack, ex: Execution, before: dict, after: dict, creds: str, role_arn: str) -> list[str]:
    """What a migration that succeeded must have left: every cluster on one AWS_ROLE
    entry for the role, every other holder of the key on the role, the static
    credentials and the key gone, the user keyless, no lock, no key secret."""
    problems = []
    if not ex.succeeded:
        return [f"the migration FAILED with {ex.error}: {ex.cause_message()}"]
    print("migration SUCCEEDED: " + (((ex.output or {}).get("deleted") or {}).get("report") or {}).get("summary", ""))
    fake = after["fake"]
    roles = [c for c in fake["credentials"] if c["object_type"] == "AWS_ROLE" and c.get("role_arn") == role_arn]
    if len(roles) != 1:
        return problems + [f"{len(roles)} role credentials for {role_arn}, not one"]
    entry = roles[0]["id"]
    if any(c["id"] == creds for c in fake["credentials"]):
        problems.append("the static credentials aws-production are still there")
    for c in fake["clusters"]:
        if c["credentials_id"] != entry:
            problems.append(f"cluster {c['name']} is not on the role credentials")
        if c["status"] != "DEPLOYED":
            problems.append(f"cluster {c['name']} is {c['status']}")
    old_id = before["keys"][0][0]
    for ref, b in before["holders"].items():
        if b.kind == "credentials":
            continue
        a = after["holders"].get(ref)
        if b.key_id == old_id and (a is None or a.role_arn != role_arn or a.key_id):
            problems.append(f"{KIND_LABELS[b.kind]} {b.name} is not on the role")
        if b.key_id != old_id and (a is None or (a.key_id, a.secret, a.role_arn) != (b.key_id, b.secret, b.role_arn)):
            problems.append(f"{KIND_LABELS[b.kind]} {b.name}, which did not hold the key, changed")
    checks = fake.get("role_checks", [])
    if len(checks) != len(fake["clusters"]) or not all(r["ok"] for r in checks):
        problems.append(f"Qovery's role checks: {checks}")
    made, deleted = stack.fake.statuses("createAWSCredentials"), stack.fake.statuses("deleteAWSCredentials")
    if (made, deleted) != ([201], [204]):
        problems.append(f"credentials made {made}, deleted {deleted}: not the role's made once and the static deleted once")
    moves = stack.fake.requests("specifyClusterCloudProviderInfo")
    if len(moves) != len(fake["clusters"]) or fake["clusters"][0]["id"] not in moves[0]["path"]:
        problems.append("the clusters were not pointed at the role once each, the canary first")
    if after["keys"]:
        problems.append(f"IAM user {USER} still has keys: {after['keys']}")
    if after["lock"]:
        problems.append(f"the rotation lock was left behind: {lock_text(after['lock'])}")
    if stack.key_secrets(USER):
        problems.append("a key secret was left behind")
    return problems


def check_undone(stack: Stack, ex: Execution, before: dict, after: dict, creds: str, canary: str) -> list[str]:
    """What a migration whose role Qovery cannot assume must have left: RoleNotProven,
    the canary pointed back at the static credentials and redeployed there, the role
    credentials gone, the key and every holder as they were."""
    problems = []
    if ex.succeeded or ex.error != "RoleNotProven":
        return [f"the migration ended {ex.status} {ex.error or ''}, not FAILED with RoleNotProven"]
    print(f"migration FAILED with {ex.error}, as it should: {ex.cause_message()}")
    fake = after["fake"]
    for cid, c in after["clusters"].items():
        if c["credentials_id"] != creds:
            problems.append(f"cluster {c['name']} is not back on aws-production")
        if c["status"] != "DEPLOYED":
            problems.append(f"cluster {c['name']} is {c['status']}")
        want = 2 if cid == canary else 0
        if c["deploy_count"] != want:
            problems.append(f"cluster {c['name']} was deployed {c['deploy_count']}x, not {want}x")
    if [c for c in fake["credentials"] if c["object_type"] == "AWS_ROLE"]:
        problems.append("the role credentials are still there")
    made, deleted = stack.fake.statuses("createAWSCredentials"), stack.fake.statuses("deleteAWSCredentials")
    if (made, deleted) != ([201], [204]):
        problems.append(f"role credentials made {made}, deleted {deleted}: not made once and deleted once")
    if [r["ok"] for r in fake.get("role_checks", [])] != [False]:
        problems.append(f"Qovery's role checks: {fake.get('role_checks')}")
    if after["keys"] != before["keys"]:
        problems.append(f"IAM user {USER}'s keys changed: {after['keys']}")
    for ref, b in before["holders"].items():
        a = after["holders"].get(ref)
        if a is None or (a.key_id, a.secret, a.role_arn) != (b.key_id, b.secret, b.role_arn):
            problems.append(f"{KIND_LABELS[b.kind]} {b.name} changed")
        elif b.key_id and not after["works"][ref].startswith("works"):
            problems.append(f"{KIND_LABELS[b.kind]} {b.name}'s key no longer works")
    if after["lock"]:
        problems.append(f"the rotation lock was left behind: {lock_text(after['lock'])}")
    if stack.key_secrets(USER):
        problems.append("a key secret was left behind")
    return problems


def check_nothing_to_rotate(stack: Stack, ex: Execution, settled: dict) -> list[str]:
    """The schedule's run after a migration: NothingToRotate, a success that changes nothing."""
    if not ex.succeeded:
        return [f"the schedule's run FAILED with {ex.error}: {ex.cause_message()}"]
    summary = ((ex.output or {}).get("report") or {}).get("summary", "")
    print(f"schedule's run SUCCEEDED: {summary}")
    problems = []
    if ex.state_names()[-1] != "NothingToRotate" or "Nothing to rotate" not in summary:
        problems.append(f"the schedule's run went through {ex.state_names()}")
    now = stack.fake.state()
    writes = [r for r in now["requests"][len(settled["requests"]):] if r["method"] not in ("GET", "HEAD")]
    if writes or now["credentials"] != settled["credentials"] or now["clusters"] != settled["clusters"]:
        problems.append("the schedule's run changed something in Qovery")
    if stack.keys(USER) or stack.ledger_item(USER):
        problems.append("the schedule's run left a key or a lock")
    return problems


def migrate(args: argparse.Namespace, t0: float) -> int:
    """--migrate-to-role: a dry run, the move itself (or, with --fail-role, its undo),
    then the schedule's next run."""
    problems: list[str] = []
    with Stack(lambda_mode=args.lambda_mode) as stack:
        (old_id, old_secret), = stack.create_user(USER, 1)
        other_key = stack.create_user(OTHER_USER, 1)[0]
        qovery_account = stack.qovery_principal["account_id"]
        trusted = f"arn:aws:iam::{OTHER_ACCOUNT if args.fail_role else qovery_account}:root"
        role_arn = create_role(stack, trusted)
        org, creds, names, _ = seed_organization(stack, args, (old_id, old_secret), other_key, helm=True)
        before = snapshot(stack)
        base = {
            "iam_user_name": USER,
            "organization_id": org,
            "drain_seconds": 60,
            "allow_short_drain": True,
            "key_idle_seconds": 0,
            "poll_interval_seconds": 10,
        }
        # Each cluster may deploy twice in a migration (on the role, and back): a deploy
        # timeout that fits the history budget.
        move = {**base, "deploy_timeout_seconds": 600, "migrate_to_role": {"role_arn": role_arn}}
        print(f"\nMoving Qovery from IAM user {USER}'s key {old_id} to role {role_arn}")
        print(f"the role trusts {trusted} (Qovery's principal is {stack.qovery_principal['arn']}): "
              f"{'Qovery can assume it' if qovery_can_assume(stack, role_arn) else 'Qovery CANNOT assume it'}")
        print(f"the stack is deployed with QoveryRoleName={ROLE_NAME}\n")

        executions: list[tuple[str, Execution]] = []
        dry = {**move, "dry_run": True}
        print(f"1. the dry run: {json.dumps(dry)}\n")
        ex = stack.run(dry, on_event=Progress(stack, names, brief_failures=True))
        executions.append(("dry run", ex))
        if not ex.succeeded:
            problems.append(f"the dry run FAILED with {ex.error}: {ex.cause_message()}")
        else:
            print_plan(ex)
        if ex.state_names() != ["Preflight", "IsDryRun", "DryRunReport"]:
            problems.append(f"the dry run went through {ex.state_names()}")
        now = snapshot(stack)
        if any(r["method"] not in ("GET", "HEAD") for r in now["fake"]["requests"]) or any(
                now["fake"][k] != before["fake"][k] for k in ("credentials", "clusters", "container_registries", "helm_repositories")):
            problems.append("the dry run changed something in Qovery")
        if now["keys"] != before["keys"] or now["lock"]:
            problems.append("the dry run changed the user's keys or left a lock")

        if not args.dry_run and not problems:
            print(f"2. the migration: {json.dumps(move)}\n")
            ex = stack.run(move, on_event=Progress(stack, names, brief_failures=True))
            executions.append(("migration", ex))
            after = snapshot(stack)
            print_table(stack, before, after)
            print()
            if args.fail_role:
                problems += check_undone(stack, ex, before, after, creds, canary=next(iter(names)))
            else:
                problems += check_migrated(stack, ex, before, after, creds, role_arn)
                if ex.succeeded:
                    print(f"\n3. the schedule's next run: {json.dumps({**base, 'deploy_timeout_seconds': 7200})}\n")
                    settled = stack.fake.state()
                    nxt = stack.run({**base, "deploy_timeout_seconds": 7200}, on_event=Progress(stack, names, brief_failures=True))
                    executions.append(("schedule's run", nxt))
                    problems += check_nothing_to_rotate(stack, nxt, settled)

        secrets = [stack.token, old_secret, other_key[1], stack.qovery_principal["secret_access_key"]]
        end = stack.fake.state()
        secrets += [h.secret for f in (before["fake"], end) for h in holders_in(f).values() if h.secret]
        secrets += end.get("received_secrets", [])
        for name, ex in executions:
            leaked = leaks(ex, secrets)
            if leaked:
                problems.append(f"SECRET LEAKED in the {name}'s {', '.join(sorted(set(leaked)))}")
            spec = prism_problems(ex.prism_log, faults_injected=False)
            if spec:
                problems.append(f"the {name}'s Qovery calls broke the OpenAPI spec:\n  " + "\n  ".join(spec))
            if ex.aws_denials:
                problems.append(f"template.yaml's policies denied AWS calls of the {name}:\n  " + "\n  ".join(ex.aws_denials))
        if not stack.spec:
            print("WARNING: the OpenAPI spec check was skipped (spec not found)")
        print()
        for problem in problems:
            print(f"NOT AS EXPECTED: {problem}")
        for name, ex in executions:
            print(f"{name}: {ex.status} in {ex.duration_s:.1f} s; {billing_counts(ex)}")
            (stack.log_dir / f"history-{name.replace(chr(39), '').replace(' ', '-')}.jsonl").write_text(
                "".join(json.dumps(e) + "\n" for e in ex.events))
        print(f"history and logs in {stack.log_dir}")
    print(f"demo took {time.monotonic() - t0:.1f} s")
    return 0 if not problems else 1


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    t0 = time.monotonic()
    if args.migrate_to_role:
        return migrate(args, t0)
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
