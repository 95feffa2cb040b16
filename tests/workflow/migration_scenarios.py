"""Workflow scenarios 68 and up: issue 14, moving Qovery from the static key to an IAM
role.

- 68: after a move to a role (the credentials entry is AWS_ROLE, the mirroring
  registries use the role, the IAM user has no key left), a scheduled rotation ends
  NothingToRotate: a success, nothing changed, no lock; the audit passes with the same
  words; with the user deleted too, the same.
- 69: a migration's dry run (`migrate_to_role`) on two clusters with mirroring
  registries and a helm repository on the key: refused (AwsRejected) while the stack's
  QoveryRoleName does not name the role, as least privilege wants; then, with it, the
  report: the trust policy (Qovery's account, no external id), each holder's route, the
  canary; nothing changed.
- 70: the migration of two clusters with mirroring registries and a helm repository:
  the role credentials made, the canary moved and redeployed alone (the fake's deploy
  assumes the role in moto as Qovery's principal), then the other cluster, the
  registries switched, the drain, the static credentials and the key deleted; the
  user keyless. Then the schedule's run: NothingToRotate.
- 71: a role Qovery cannot assume (its trust policy names another account): the
  canary ends INVALID_CREDENTIALS, is pointed back at its static credentials and
  redeployed there, the role credentials removed: RoleNotProven, nothing else changed,
  every holder works.
- 72: a stop right after the canary was pointed at the role: the next run (the
  schedule's) undoes the migration (MigrationUndone); a stop right after the registries
  switched: the next run finishes it.
- 73: every task twice, the first answer lost, on three clusters in waves of two.
"""

from __future__ import annotations

import json
from typing import Callable

from stack import ACCOUNT, Stack
from worlds import assert_holders, assert_key_works, assert_nothing_changed, expect, make_world

# Qovery's principal in the local stack (moto_trust.py): a user of this account.
QOVERY_ACCOUNT_ROOT = "arn:aws:iam::999999999999:root"


def s68_scheduled_rotation_after_a_move_to_a_role(stack: Stack) -> str:
    w = make_world(stack, "onrole", entries=["role"],
                   registries=[{"holds": "role", "cluster": 0}, {"holds": "role", "cluster": 1}])
    role_arn = w.seed["credentials"][0]["role_arn"]
    (old_id, _), = w.keys
    # The move's last act: the static key deleted.
    stack.iam.delete_access_key(UserName=w.user, AccessKeyId=old_id)
    before = stack.fake.state()

    def assert_untouched(ex) -> None:
        after = stack.fake.state()
        writes = [r for r in after["requests"] if r["method"] not in ("GET", "HEAD")]
        assert not writes, f"Qovery got calls that change things: {writes}"
        assert after["credentials"] == before["credentials"], after["credentials"]
        assert after["container_registries"] == before["container_registries"]
        assert all(c["deploy_count"] == 0 for c in after["clusters"]), after["clusters"]
        assert w.key_ids() == [], w.key_ids()
        assert w.ledger() is None, w.ledger()
        assert not stack.key_secrets(w.user), "a key secret was created"

    # The schedule's input: the template's credentials_id, now the role entry.
    ex = w.run()
    expect(ex, "SUCCEEDED")
    assert ex.state_names() == ["Preflight", "IsDryRun", "WhichWork", "NothingToRotate"], ex.state_names()
    assert ex.output["mode"] == "nothing_to_rotate", ex.output["mode"]
    summary = ex.output["report"]["summary"]
    for part in (f"Qovery uses role {role_arn}", f"IAM user {w.user} has no access key", "Nothing to rotate",
                 f"credentials_id {w.creds} names role credentials", *(c for c in w.cluster_ids)):
        assert part in summary, f"{part!r} not in {summary}"
    assert_untouched(ex)

    audit = w.run({**w.input, "audit": True})
    expect(audit, "SUCCEEDED")
    assert audit.state_names() == ["Preflight", "IsDryRun", "DryRunReport"], audit.state_names()
    assert audit.output["report"]["audit"].startswith("Audit passed: Dry run. Qovery uses role"), audit.output["report"]
    assert_untouched(audit)

    # The operator deletes the keyless user, as the report says; the schedule still runs.
    for policy in stack.iam.list_user_policies(UserName=w.user)["PolicyNames"]:
        stack.iam.delete_user_policy(UserName=w.user, PolicyName=policy)
    stack.iam.delete_user(UserName=w.user)
    gone = w.run()
    expect(gone, "SUCCEEDED")
    assert gone.state_names()[-1] == "NothingToRotate", gone.state_names()
    assert f"IAM user {w.user} no longer exists" in gone.output["report"]["summary"], gone.output["report"]
    assert_untouched(gone)
    return summary[:160]


def role_for(stack: Stack, w, principal: str = QOVERY_ACCOUNT_ROOT) -> tuple[str, str]:
    """A role in the stack's account whose trust policy lets `principal` assume it, and
    the stack deployed so that preflight may read it. Returns (name, ARN)."""
    role_name = f"qovery-{w.user}"
    trust = {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"AWS": principal}, "Action": "sts:AssumeRole"}]}
    stack.iam.create_role(RoleName=role_name, AssumeRolePolicyDocument=json.dumps(trust))
    stack.deploy(w.user, qovery_role_name=role_name)
    return role_name, f"arn:aws:iam::{ACCOUNT}:role/{role_name}"


def migration_input(w, role_arn: str, **extra) -> dict:
    # Each cluster may deploy twice in a migration: a timeout that fits the history budget.
    return {**w.input, "deploy_timeout_seconds": 600, "migrate_to_role": {"role_arn": role_arn}, **extra}


def assert_migrated(w, ex, role_arn: str) -> dict:
    """Every cluster on one AWS_ROLE entry for the role, every registry and helm
    repository of the key on the role, the static credentials and the key gone, no
    lock. Returns the role entry."""
    state = w.stack.fake.state()
    roles = [c for c in state["credentials"] if c["object_type"] == "AWS_ROLE" and c["role_arn"] == role_arn]
    assert len(roles) == 1, state["credentials"]
    (entry,) = roles
    assert not any(c["id"] == w.creds for c in state["credentials"]), "the static credentials were not deleted"
    for c in state["clusters"]:
        assert c["credentials_id"] == entry["id"], f"cluster {c['name']} is on {c['credentials_id']}"
    for r in state["container_registries"] + state["helm_repositories"]:
        if r["id"] in w.seeds and w.seeds[r["id"]].get("access_key_id") == w.held[0]:
            assert r.get("role_arn") == role_arn and not r.get("access_key_id"), r
    assert w.key_ids() == [], w.key_ids()
    assert w.ledger() is None, w.ledger()
    assert not w.stack.key_secrets(w.user)
    return entry


def s70_migration_two_clusters(stack: Stack) -> str:
    w = make_world(stack, "migrate", mirrors=True, helm=[{"holds": "key"}])
    _, role_arn = role_for(stack, w)
    ex = w.run(migration_input(w, role_arn))
    expect(ex, "SUCCEEDED")
    names = ex.state_names()
    for state in ("CreateRoleEntry", "PointCluster", "DeployCluster", "HandOverToRole", "Drain",
                  "QuarantineOldKey", "DeleteOldKey"):
        assert state in names, f"{state} not entered: {names}"
    assert not {"CreateKey", "UpdateQovery"} & set(names), names
    entry = assert_migrated(w, ex, role_arn)
    fake = stack.fake.state()
    assert [c["ok"] for c in fake["role_checks"]] == [True, True], fake["role_checks"]
    # The canary was on the role and DEPLOYED before the other cluster was touched.
    moves = stack.fake.requests("specifyClusterCloudProviderInfo")
    assert len(moves) == 2 and w.cluster_ids[0] in moves[0]["path"], moves
    assert stack.fake.statuses("createAWSCredentials") == [201], stack.fake.statuses("createAWSCredentials")
    assert stack.fake.statuses("deleteAWSCredentials") == [204]
    assert all(c["deploy_count"] == 1 for c in fake["clusters"]), fake["clusters"]
    summary = ex.output["deleted"]["report"]["summary"]
    assert f"to role {role_arn} succeeded" in summary and entry["id"] in summary, summary
    assert f"IAM user {w.user} has no access key left" in summary and "delete-user" in summary, summary
    assert "(2 redeployed on the role, 0 not running" in summary, summary

    # The schedule's next run: nothing to rotate.
    after = w.run()
    expect(after, "SUCCEEDED")
    assert after.state_names() == ["Preflight", "IsDryRun", "WhichWork", "NothingToRotate"], after.state_names()
    return summary[:200]


def s71_role_not_assumable(stack: Stack) -> str:
    w = make_world(stack, "badrole", mirrors=True)
    # Qovery's principal is in 999999999999: a role trusting another account refuses it.
    _, role_arn = role_for(stack, w, principal="arn:aws:iam::111111111111:root")
    ex = w.run(migration_input(w, role_arn))
    expect(ex, "FAILED", "RoleNotProven")
    assert ex.state_names()[-1] == "MigrationAbandoned", ex.state_names()
    cause = ex.cause_message()
    assert "INVALID_CREDENTIALS" in cause and "trust policy" in cause and "was undone" in cause, cause
    fake = stack.fake.state()
    by_id = {c["id"]: c for c in fake["clusters"]}
    canary, other = w.cluster_ids
    assert by_id[canary]["deploy_count"] == 2 and by_id[other]["deploy_count"] == 0, fake["clusters"]
    assert all(c["credentials_id"] == w.creds for c in fake["clusters"]), fake["clusters"]
    assert not [c for c in fake["credentials"] if c["object_type"] == "AWS_ROLE"], fake["credentials"]
    assert [c["ok"] for c in fake["role_checks"]] == [False], fake["role_checks"]
    assert stack.fake.statuses("createAWSCredentials") == [201]
    assert stack.fake.statuses("deleteAWSCredentials") == [204]
    assert w.key_ids() == [(w.held[0], "Active")], w.key_ids()
    assert_holders(w)
    assert_key_works(w, *w.held)
    assert w.ledger() is None, w.ledger()
    return cause[:200]


def s72_stopped_migrations_are_undone_or_finished(stack: Stack) -> str:
    w = make_world(stack, "migstop", mirrors=True)
    _, role_arn = role_for(stack, w)
    first = w.run(migration_input(w, role_arn), stop_after="PointCluster")
    assert first.status == "ABORTED", first.status
    canary = w.cluster_ids[0]
    moved = {c["id"]: c["credentials_id"] for c in stack.fake.state()["clusters"]}
    assert moved[canary] != w.creds, "the canary was not pointed at the role"
    assert w.ledger()["phase"] == "moving_clusters", w.ledger()

    # The schedule's run (no migrate_to_role) meets the stopped migration: it undoes it.
    undo = w.run()
    expect(undo, "SUCCEEDED")
    names = undo.state_names()
    assert names[-1] == "MigrationUndone" and "UndoMigration" in names and "CreateKey" not in names, names
    fake = stack.fake.state()
    assert all(c["credentials_id"] == w.creds for c in fake["clusters"]), fake["clusters"]
    assert not [c for c in fake["credentials"] if c["object_type"] == "AWS_ROLE"], fake["credentials"]
    assert w.ledger() is None and w.key_ids() == [(w.held[0], "Active")]
    assert_holders(w)

    # Stopped after the switch (the point of no return): the next run finishes it.
    second = w.run(migration_input(w, role_arn), stop_after="HandOverToRole")
    assert second.status == "ABORTED", second.status
    assert w.ledger()["phase"] == "handed_over", w.ledger()
    finish = w.run(migration_input(w, role_arn))
    expect(finish, "SUCCEEDED")
    names = finish.state_names()
    assert "CreateRoleEntry" not in names and "HandOverToRole" in names and "DeleteOldKey" in names, names
    assert_migrated(w, finish, role_arn)
    return f"undone ({len(undo.state_names())} states), then finished ({len(names)} states)"


def s73_migration_every_task_twice(stack: Stack) -> str:
    w = make_world(stack, "migtwice", clusters=[{}, {}, {}], mirrors=True)
    _, role_arn = role_for(stack, w)
    ex = w.run(migration_input(w, role_arn, deploy_concurrency=2), twice=True)
    expect(ex, "SUCCEEDED")
    assert_migrated(w, ex, role_arn)
    assert stack.fake.statuses("createAWSCredentials") == [201], stack.fake.statuses("createAWSCredentials")
    assert len(stack.fake.requests("specifyClusterCloudProviderInfo")) == 3
    assert stack.fake.statuses("deleteAWSCredentials") == [204], stack.fake.statuses("deleteAWSCredentials")
    fake = stack.fake.state()
    assert all(c["deploy_count"] == 1 for c in fake["clusters"]), fake["clusters"]
    assert ex.output["deleted"]["already_deleted"] in (True, False)
    return f"{len(ex.state_names())} states, each task twice"


def s69_migration_dry_run(stack: Stack) -> str:
    w = make_world(stack, "migdry", mirrors=True, helm=[{"holds": "key"}])
    role_name = f"qovery-{w.user}"
    role_arn = f"arn:aws:iam::{ACCOUNT}:role/{role_name}"
    trust = {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"AWS": QOVERY_ACCOUNT_ROOT}, "Action": "sts:AssumeRole"}]}
    stack.iam.create_role(RoleName=role_name, AssumeRolePolicyDocument=json.dumps(trust))
    # Each cluster may deploy twice in a migration: a timeout that fits the history budget.
    migration = {**w.input, "dry_run": True, "deploy_timeout_seconds": 600, "migrate_to_role": {"role_arn": role_arn}}

    # The stack deployed without QoveryRoleName: preflight may not read the role.
    w.denials_expected = True
    denied = w.run(migration)
    expect(denied, "FAILED", "AwsRejected")
    assert f"QoveryRoleName={role_name}" in denied.cause_message(), denied.cause_message()
    assert_nothing_changed(w, denied)

    stack.deploy(w.user, qovery_role_name=role_name)
    ex = w.run(migration)
    expect(ex, "SUCCEEDED")
    assert ex.state_names() == ["Preflight", "IsDryRun", "DryRunReport"], ex.state_names()
    assert ex.output["mode"] == "migrate", ex.output["mode"]
    plan = ex.output["report"]["migration"]
    assert plan["role_arn"] == role_arn and plan["static_access_key_id"] == w.held[0], plan
    assert plan["trust"]["outside_principals"] == [QOVERY_ACCOUNT_ROOT], plan["trust"]
    assert any(line.startswith("No external id:") for line in plan["trust_lines"]), plan["trust_lines"]
    routes = sorted((h["holder"]["kind"], h["route"]) for h in plan["holders"])
    assert routes == [("container_registry", "switch_to_role"), ("container_registry", "switch_to_role"),
                      ("credentials", "move_clusters"), ("helm_repository", "switch_to_role")], routes
    assert [c["id"] for c in ex.output["clusters"]] == w.cluster_ids, ex.output["clusters"]
    summary = ex.output["report"]["summary"]
    assert "canary cluster migdry-cluster-1" in summary, summary
    assert_nothing_changed(w, ex)

    return summary[:160]


MIGRATION_SCENARIOS: list[tuple[str, str, Callable[[Stack], str]]] = [
    ("68", "a scheduled rotation after a move to a role -> NothingToRotate, nothing changes (user keyless, then deleted)",
     s68_scheduled_rotation_after_a_move_to_a_role),
    ("69", "a migration's dry run: refused without QoveryRoleName, then the plan",
     s69_migration_dry_run),
    ("70", "a migration of two clusters with mirroring registries -> on the role, key deleted; then NothingToRotate",
     s70_migration_two_clusters),
    ("71", "a role Qovery cannot assume -> the canary moved back, RoleNotProven, nothing else changed",
     s71_role_not_assumable),
    ("72", "a migration stopped before the switch is undone by the next run; stopped after it, finished",
     s72_stopped_migrations_are_undone_or_finished),
    ("73", "a migration with every task twice, the first answer lost -> one entry, one move, one deploy each",
     s73_migration_every_task_twice),
]
