"""Workflow scenarios 68 and up: issue 14, moving Qovery from the static key to an IAM
role.

- 68: after a move to a role (the credentials entry is AWS_ROLE, the mirroring
  registries use the role, the IAM user has no key left), a scheduled rotation ends
  NothingToRotate: a success, nothing changed, no lock; the audit passes with the same
  words; with the user deleted too, the same.
"""

from __future__ import annotations

from typing import Callable

from stack import Stack
from worlds import expect, make_world


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


MIGRATION_SCENARIOS: list[tuple[str, str, Callable[[Stack], str]]] = [
    ("68", "a scheduled rotation after a move to a role -> NothingToRotate, nothing changes (user keyless, then deleted)",
     s68_scheduled_rotation_after_a_move_to_a_role),
]
