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
  canary; nothing changed. Without dry_run: InvalidInput, nothing changed.
"""

from __future__ import annotations

import json
from typing import Callable

from stack import ACCOUNT, Stack
from worlds import assert_nothing_changed, expect, make_world

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
    assert "canary cluster migdry-cluster-1" in summary and "the move itself is not built yet" in summary, summary
    assert_nothing_changed(w, ex)

    refused = w.run({**migration, "dry_run": False})
    expect(refused, "FAILED", "InvalidInput")
    assert "runs only with `dry_run: true`" in refused.cause_message(), refused.cause_message()
    assert_nothing_changed(w, refused)
    return summary[:160]


MIGRATION_SCENARIOS: list[tuple[str, str, Callable[[Stack], str]]] = [
    ("68", "a scheduled rotation after a move to a role -> NothingToRotate, nothing changes (user keyless, then deleted)",
     s68_scheduled_rotation_after_a_move_to_a_role),
    ("69", "a migration's dry run: refused without QoveryRoleName, then the plan; not a dry run -> InvalidInput",
     s69_migration_dry_run),
]
