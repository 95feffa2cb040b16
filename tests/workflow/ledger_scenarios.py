"""Workflow scenarios 41 and up: issue 12, rotations that cannot collide, delete only
what they provably made, and are finished by the next run.

A DynamoDB item per IAM user (the ledger) is the rotation's lock and its record.
Preflight takes the lock; another execution that holds it and still runs makes a new
one fail `RotationInProgress`; one that ended (stopped, failed) leaves its record, and
the next run decides from it: `fresh` (rotate from the start), `undo` (delete the key
the ended run created and no holder took, then rotate) or `finish` (give the ended
run's new key to the holders still lacking it, redeploy, delete the old key).

Each scenario checks IAM (keys and their status), every holder in the fake
(`assert_holders`), Secrets Manager (the key secrets) and the ledger item. The checks
every scenario gets (worlds.after_every_run) also check the ledger after each run: gone
after a finished or rolled-back rotation, naming the execution after one that ended
half-way, untouched by a dry run or a preflight failure, and never holding a secret.
"""

from __future__ import annotations

import json
import threading
from typing import Any, Callable

from stack import Execution, Stack
from worlds import (
    deployed_in_order,
    World,
    assert_holders,
    assert_key_rejected,
    assert_key_works,
    created_key,
    expect,
    key_secret_name,
    make_world,
    new_key_of,
    puts_to,
)

# The Task states of a normal rotation, in order, and the extra stop points.
# stop point -> (the record's phase after the stop, None: no item; what the next run does)
STOPS: dict[str, tuple[str | None, str]] = {
    "Preflight": ("planned", "fresh"),
    "CreateKey": ("key_created", "undo"),
    "UpdateQovery": ("handed_over", "finish"),
    "DeployCluster": ("handed_over", "finish"),
    "CheckStatus": ("handed_over", "finish"),
    # A Succeed state in the Map: the first cluster's new deployment reached DEPLOYED.
    "ClusterDeployed": ("handed_over", "finish"),
    "DeleteOldKey": (None, "fresh"),
}
# The states each recovery runs after preflight, and those it must not. Every one ends
# with the quarantine (issue 15): QuarantineOldKey, the Quarantine wait, DeleteOldKey.
RETIRE = ["QuarantineOldKey", "Quarantine", "DeleteOldKey"]
PATHS = {
    "fresh": (["CreateKey", "UpdateQovery", "DeployClusters", *RETIRE], ["UndoPrevious", "FinishHandOver"]),
    "undo": (["UndoPrevious", "CreateKey", "UpdateQovery", "DeployClusters", *RETIRE], ["FinishHandOver"]),
    "finish": (["FinishHandOver", "DeployClusters", *RETIRE], ["UndoPrevious", "CreateKey", "UpdateQovery"]),
}


def preflight_output(ex: Execution) -> dict:
    exits = ex.exited("Preflight")
    assert exits, f"{ex.name}: Preflight never exited\n{ex.describe()}"
    return exits[0]["output"]


def recovery_of(ex: Execution) -> str:
    return preflight_output(ex)["recovery"]


def snapshot(w: World) -> dict[str, Any]:
    """What a dry run must not change: IAM keys, every holder's key and secret, the key
    secrets, the clusters' deployments, the calls that change Qovery, the ledger item."""
    fake = w.stack.fake.state()
    return {
        "keys": w.key_ids(),
        "holders": {ref: (h.key_id, h.secret) for ref, h in w.holders().items()},
        "key secrets": sorted((v["name"], v["version"], tuple(v["stages"])) for v in w.stack.key_secrets(w.user)),
        "deployments": {c["id"]: (c["status"], c["deploy_count"], c["last_execution_id"]) for c in fake["clusters"]},
        "changing calls": len([r for r in fake["requests"] if r["method"] not in ("GET", "HEAD")]),
        "ledger": w.stack.ledger_item(w.user),
    }


def assert_dry_run_changes_nothing(w: World, dry: Execution, before: dict[str, Any]) -> None:
    expect(dry, "SUCCEEDED")
    assert dry.state_names() == ["Preflight", "IsDryRun", "DryRunReport"], dry.state_names()
    after = snapshot(w)
    changed = {k: (before[k], after[k]) for k in before if before[k] != after[k]}
    assert not changed, f"the dry run changed {sorted(changed)}: {changed}"


def assert_functions_after(ex: Execution, stop: str, last_function_state: str) -> None:
    """The stop held: the execution ended ABORTED right after `stop` exited, and no
    function was invoked after `last_function_state`'s (the stop itself, for a Task)."""
    expect(ex, "ABORTED", "ExecutionAborted")
    assert ex.exited(stop), f"{stop} never exited\n{ex.describe()}"
    scheduled = [e["state"] for e in ex.of("LambdaFunctionScheduled")]
    assert scheduled and scheduled[-1] == last_function_state, (
        f"stopped after {stop}, but the functions invoked were {scheduled}\n{ex.describe()}"
    )


def assert_finished_rotation(w: World, ex: Execution, final: str) -> None:
    """The run SUCCEEDED with exactly one Active key, `final`, which every holder of the
    user's original key holds (STS accepts it); the original key is dead, no key secret
    is left, and the lock is released."""
    expect(ex, "SUCCEEDED")
    assert w.key_ids() == [(final, "Active")], f"expected only {final} Active, the user has {w.key_ids()}"
    moved = assert_holders(w, final)
    assert moved, "no holder moved to the new key"
    old_id, old_secret = w.keys[0]
    assert_key_rejected(w, old_id, old_secret)
    assert not w.stack.key_secrets(w.user), f"key secrets left: {sorted({v['name'] for v in w.stack.key_secrets(w.user)})}"
    assert w.ledger() is None, f"the ledger still has {w.ledger()}"


def assert_path(ex: Execution, recovery: str) -> None:
    names = ex.state_names()
    ran, not_ran = PATHS[recovery]
    missing = [s for s in ran if s not in names]
    extra = [s for s in not_ran if s in names]
    assert not missing and not extra, f"recovery {recovery}: missing {missing}, unexpected {extra}: {names}"
    assert names.index("WhatToDo") < names.index(ran[0]), names
    assert [names.index(s) for s in RETIRE] == sorted(names.index(s) for s in RETIRE), f"the quarantine out of order: {names}"


def stop_then_next_run(stack: Stack, stop: str) -> str:
    """Stops a rotation right after `stop` exits; checks what it left (IAM, holders, key
    secrets, the ledger item naming it); a dry run of the next run says what it would
    do (report.recovery) and changes nothing; then the next run ends the rotation with
    the recovery expected, and the user ends with one Active key every holder holds, no
    key secret and no ledger item."""
    phase, recovery = STOPS[stop]
    w = make_world(stack, f"stop-{stop.lower()}", mirrors=True)
    old_id = w.keys[0][0]
    first = w.run(stop_after=stop)

    # ---- what the stop left
    if stop == "DeleteOldKey" and first.status == "SUCCEEDED":
        pass  # only the Succeed state followed: the engine got there before the stop
    else:
        last = {"ClusterDeployed": "CheckStatus"}.get(stop, stop)
        assert_functions_after(first, stop, last)
    described = stack.sfn.describe_execution(executionArn=first.arn)["status"]
    assert described == "ABORTED", f"Step Functions says {first.name} is {described}, not ABORTED"
    created = created_key(first)
    record = w.ledger()
    if phase is None:
        assert record is None, f"DeleteOldKey released the lock, but the ledger has {record}"
    else:
        assert record and record["execution_id"] == first.arn and record["phase"] == phase, (
            f"after a stop after {stop} the ledger should name {first.arn} in phase {phase}: {record}"
        )
        assert record.get("new_access_key_id") == created, (record.get("new_access_key_id"), created)
        assert record["old_access_key_id"] == old_id, record
    secrets_left = {v["name"] for v in stack.key_secrets(w.user)}
    if stop == "Preflight":
        assert w.key_ids() == [(old_id, "Active")], w.key_ids()
        assert_holders(w)
        assert not secrets_left, secrets_left
    elif stop == "CreateKey":
        assert created and w.key_ids() == sorted([(old_id, "Active"), (created, "Active")]), w.key_ids()
        assert_holders(w)  # nobody has the new key
        assert secrets_left == {key_secret_name(w, first)}, secrets_left
        assert record and record["key_secret_id"], record
    elif stop == "DeleteOldKey":
        assert created and w.key_ids() == [(created, "Active")], w.key_ids()
        assert_holders(w, created)
        assert not secrets_left, secrets_left
    else:
        assert created and w.key_ids() == sorted([(old_id, "Active"), (created, "Active")]), w.key_ids()
        assert_holders(w, created)  # the hand-over was complete
        assert not secrets_left, f"the key secret outlived a complete hand-over: {secrets_left}"
        assert record and record["handover_at"] and record["clusters"], record
    at_stop = {c["id"]: (c["status"], c["deploy_count"]) for c in w.clusters().values()}

    # ---- a dry run of the next run says what it would do, and changes nothing
    before = snapshot(w)
    dry = w.run({**w.input, "dry_run": True})
    assert_dry_run_changes_nothing(w, dry, before)
    assert dry.output["recovery"] == recovery, f"the dry run would do {dry.output['recovery']}, not {recovery}"
    said = dry.output["report"]["recovery"]
    if phase is not None:
        assert first.arn in said, f"report.recovery does not name the ended execution: {said}"
    if recovery != "fresh":
        assert said in dry.output["report"]["summary"], dry.output["report"]["summary"]
    if recovery == "undo":
        assert dry.output["undo"]["new_access_key_id"] == created, dry.output.get("undo")

    # ---- the next run ends the rotation
    if stop == "DeleteOldKey":
        # The stopped run's hand-over and assert_holders above proved the key this run
        # retires with STS seconds ago: a use, for IAM. The idle check has its own scenarios.
        second = w.run({**w.input, "key_idle_seconds": 0})
    else:
        second = w.run()
    expect(second, "SUCCEEDED")
    assert recovery_of(second) == recovery, f"the next run chose {recovery_of(second)}, not {recovery}"
    assert_path(second, recovery)
    final = created if recovery == "finish" else new_key_of(w)
    assert_finished_rotation(w, second, final)
    if created and recovery != "finish":
        assert final != created, f"the next run ended on the stopped run's key {created}"
        assert_key_rejected(w, created, w.new_secrets[created])
    if recovery == "undo":
        undone = second.exited("UndoPrevious")[0]["output"]["undone"]
        assert undone["deleted_access_key_id"] == created, undone

    # ---- holders got one PUT per rotation; clusters as expected
    rotations = 2 if stop == "DeleteOldKey" else 1
    puts = {ref: puts_to(w, ref) for ref, h in w.baseline.items() if h.key_id == old_id}
    assert all(p == [200] * rotations for p in puts.values()), f"PUTs per holder (expected {rotations} x 200): {puts}"
    clusters = w.clusters()
    assert all(c["status"] == "DEPLOYED" for c in clusters.values()), {c["name"]: c["status"] for c in clusters.values()}
    deploys = [clusters[cid]["deploy_count"] for cid in w.cluster_ids]
    # A deployment started after the hand-over, finished or not when the next run began,
    # is followed, never repeated: one deploy per cluster (two rotations: two each).
    expected = {"DeleteOldKey": [2, 2]}.get(stop, [1, 1])
    assert deploys == expected, f"deploy counts {deploys}, expected {expected} (at the stop: {at_stop})"
    how = {"fresh": "rotated afresh", "undo": f"undid {created}, rotated afresh", "finish": f"finished on {created}"}[recovery]
    return (f"stopped after {stop} ({first.status}, ledger {phase or 'released'}); dry run said {recovery}; "
            f"next run {how} -> {final}; deploys {deploys}")


def stop_scenario(stop: str) -> Callable[[Stack], str]:
    def scenario(stack: Stack) -> str:
        return stop_then_next_run(stack, stop)

    scenario.__name__ = f"stop_after_{stop}"
    scenario.__doc__ = stop_then_next_run.__doc__
    return scenario


def reseed_keeping_state(w: World, change: Callable[[dict], None]) -> None:
    """Reseeds the fake with the world's seed as the fake holds it now (every holder's
    key and secret, each cluster's status and last deployment), changed by `change`.
    The fake's PUT /_fake/state resets everything else (request log, faults, deploy
    counts). The baseline stays what the world seeded, so the holder checks still
    compare with the start."""
    now = w.stack.fake.state()
    seed = json.loads(json.dumps(w.seed))
    creds = {c["id"]: c for c in now["credentials"]}
    for c in seed["credentials"]:
        c["access_key_id"], c["secret_access_key"] = creds[c["id"]]["access_key_id"], creds[c["id"]]["secret_access_key"]
    for family in ("container_registries", "helm_repositories"):
        held = {r["id"]: r for r in now.get(family, [])}
        for r in seed.get(family, []):
            for k in ("access_key_id", "secret_access_key"):
                if held[r["id"]].get(k) is not None:
                    r[k] = held[r["id"]][k]
    clusters = {c["id"]: c for c in now["clusters"]}
    for c in seed["clusters"]:
        n = clusters[c["id"]]
        for k in ("status", "last_execution_id", "last_deployment_date"):
            c[k] = n[k]
        if c.get("dns_provider"):
            for k in ("aws_access_key_id", "aws_secret_access_key"):
                c["dns_provider"][k] = n["dns_provider"][k]
    change(seed)
    holding = {ref: (h.key_id, h.secret) for ref, h in w.holders().items()}
    w.stack.fake.seed(seed)
    w.seed = seed
    again = {ref: (h.key_id, h.secret) for ref, h in w.holders().items()}
    assert again == holding, "the reseed changed what the holders hold"


def s48_failed_canary_fixed_then_finished(stack: Stack) -> str:
    """The canary (first cluster) ends in DEPLOYMENT_ERROR after the hand-over: the run
    fails ClusterDeployFailed, both keys stay, the lock stays with it. Someone fixes the
    cluster; the next run finishes (recovery finish): no new key, no PUT, it redeploys
    the failed cluster and the one never reached, drains, deletes the old key."""
    w = make_world(stack, "canaryfix", mirrors=True, clusters=[{"outcome": "deployment_error"}, {}])
    old_id = w.keys[0][0]
    first = w.run()
    expect(first, "FAILED", "ClusterDeployFailed")
    created = new_key_of(w)
    assert w.key_ids() == sorted([(old_id, "Active"), (created, "Active")]), w.key_ids()
    assert_holders(w, created)
    assert not stack.key_secrets(w.user), "the key secret outlived the hand-over"
    record = w.ledger()
    assert record and record["execution_id"] == first.arn and record["phase"] == "handed_over", record
    assert record["new_access_key_id"] == created, record
    canary, other = w.cluster_ids
    clusters = w.clusters()
    assert clusters[canary]["status"] == "DEPLOYMENT_ERROR" and clusters[other]["deploy_count"] == 0, clusters

    reseed_keeping_state(w, lambda seed: seed["clusters"][0].update(outcome="deployed"))
    before = snapshot(w)
    dry = w.run({**w.input, "dry_run": True})
    assert_dry_run_changes_nothing(w, dry, before)
    assert dry.output["recovery"] == "finish", dry.output["recovery"]
    assert [c["id"] for c in dry.output["clusters"]] == [canary, other], dry.output["clusters"]

    second = w.run()
    assert recovery_of(second) == "finish", recovery_of(second)
    assert_path(second, "finish")
    assert_finished_rotation(w, second, created)
    sent = [r for r in stack.fake.requests() if r["method"] == "PUT"]
    assert not sent, f"finishing sent PUTs though every holder had the key: {sent}"
    clusters = w.clusters()
    # deploy_count restarted at the reseed: one redeploy each by the finishing run.
    assert [clusters[c]["deploy_count"] for c in (canary, other)] == [1, 1], clusters
    assert [d["id"] for d in deployed_in_order(second.output)] == [canary, other], second.output["deployments"]
    return f"canary failed, fixed; next run finished on {created}, redeployed the canary and the other cluster, no PUT"


def s49_key_made_by_someone_else(stack: Stack) -> str:
    """Between preflight and create-key, someone creates a key for the user. CreateKey
    cannot prove it made it: PreconditionFailed naming it, nothing changed (the key is
    kept, every holder still on the old key, no key secret), the lock left with the
    run. The next run cannot explain the extra key either (PreconditionFailed in
    preflight, lock untouched); once the owner deletes it, a run rotates from the start."""
    w = make_world(stack, "foreignkey", mirrors=True)
    old_id, old_secret = w.keys[0]
    made: dict[str, tuple[str, str]] = {}

    def on_event(ev: dict) -> None:
        if ev.get("event") == "StateExited" and ev.get("state") == "Preflight" and not made:
            k = stack.iam.create_access_key(UserName=w.user)["AccessKey"]
            made["key"] = (k["AccessKeyId"], k["SecretAccessKey"])
            w.extra_secrets[f"secret of {k['AccessKeyId']}, made by someone else"] = k["SecretAccessKey"]

    first = w.run(on_event=on_event)
    expect(first, "FAILED", "PreconditionFailed")
    other_id, other_secret = made["key"]
    assert first.of("StateFailed", "CreateKey"), first.describe()
    assert not first.invocations("update-qovery") and not first.invocations("delete-key"), first.describe()
    message = first.cause_message() or ""
    assert other_id in message and "cannot prove" in message, message
    assert w.key_ids() == sorted([(old_id, "Active"), (other_id, "Active")]), w.key_ids()
    assert_key_works(w, other_id, other_secret)
    assert_key_works(w, old_id, old_secret)
    assert_holders(w)
    assert not stack.key_secrets(w.user), "a key secret was created"
    assert not [r for r in stack.fake.requests() if r["method"] != "GET"], "Qovery got calls that change things"
    record = w.ledger()
    assert record and record["execution_id"] == first.arn and record["phase"] == "planned", record
    assert record.get("new_access_key_id") is None, record

    second = w.run()
    expect(second, "FAILED", "PreconditionFailed")
    assert second.state_names() == ["Preflight"], second.state_names()
    assert other_id in (second.cause_message() or ""), second.cause_message()
    assert w.key_ids() == sorted([(old_id, "Active"), (other_id, "Active")]), w.key_ids()
    assert w.ledger() == record, f"a failed preflight changed the ledger: {w.ledger()}"

    stack.iam.delete_access_key(UserName=w.user, AccessKeyId=other_id)
    # assert_key_works above used the old key seconds ago; the idle check has its own scenarios.
    third = w.run({**w.input, "key_idle_seconds": 0})
    assert recovery_of(third) == "fresh", recovery_of(third)
    assert_path(third, "fresh")
    final = new_key_of(w)
    assert_finished_rotation(w, third, final)
    return f"{message[:140]}; kept {other_id}; next run refused too; after it was deleted, rotated to {final}"


def s50_two_executions_at_once(stack: Stack) -> str:
    """Two executions for the same user start at the same moment (two preflight
    instances, as Lambda would run them): exactly one rotates; the other fails
    RotationInProgress in preflight, naming the first, and changes nothing."""
    w = make_world(stack, "race", mirrors=True)
    barrier = threading.Barrier(2)
    results: list[Execution | BaseException | None] = [None, None]

    def go(i: int) -> None:
        try:
            barrier.wait(timeout=30)
            results[i] = w.run()
        except BaseException as e:  # noqa: BLE001 - re-raised below
            results[i] = e

    threads = [threading.Thread(target=go, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=180)
    for r in results:
        if isinstance(r, BaseException):
            raise r
    runs = [r for r in results if isinstance(r, Execution)]
    assert len(runs) == 2, results
    winners = [r for r in runs if r.status == "SUCCEEDED"]
    losers = [r for r in runs if r.status != "SUCCEEDED"]
    assert len(winners) == 1 and len(losers) == 1, [(r.name, r.status, r.error) for r in runs]
    (winner,), (loser,) = winners, losers
    expect(loser, "FAILED", "RotationInProgress")
    assert loser.state_names() == ["Preflight"], loser.state_names()
    message = loser.cause_message() or ""
    assert winner.arn in message, f"the loser does not name the winner {winner.arn}: {message}"
    final = new_key_of(w)
    assert_finished_rotation(w, winner, final)
    puts = {ref: puts_to(w, ref) for ref, h in w.baseline.items() if h.key_id == w.keys[0][0]}
    assert all(p == [200] for p in puts.values()), f"PUTs per holder: {puts}"
    assert all(c["deploy_count"] == 1 for c in w.clusters().values()), w.clusters()
    how = "lost the conditional write" if "took the rotation lock" in message else "found the lock taken"
    return f"one rotated to {final}; the other {how}: {message[:140]}"


def s51_second_stack(stack: Stack) -> str:
    """A second stack for the same IAM user (another state machine, the same functions
    and ledger table): its execution, started while the first stack's execution holds
    the lock, fails RotationInProgress naming it, and changes nothing. Once the first
    rotation finished, the second stack's execution rotates the key."""
    w = make_world(stack, "twostacks", mirrors=True)
    machine = stack.another_state_machine(f"qkr-second-{w.user}-rotation")
    during: dict[str, Execution] = {}

    def on_event(ev: dict) -> None:
        if ev.get("event") == "StateExited" and ev.get("state") == "Preflight" and "other" not in during:
            during["other"] = w.run(state_machine_arn=machine)

    first = w.run(on_event=on_event, hold_after="Preflight")
    key1 = new_key_of(w)
    assert_finished_rotation(w, first, key1)
    other = during["other"]
    assert other.arn.startswith(machine.replace(":stateMachine:", ":execution:")), other.arn
    expect(other, "FAILED", "RotationInProgress")
    assert other.state_names() == ["Preflight"], other.state_names()
    message = other.cause_message() or ""
    assert first.arn in message, f"the second stack's execution does not name {first.arn}: {message}"
    assert w.ledger_after[other.name] and w.ledger_after[other.name]["execution_id"] == first.arn

    # The first rotation's hand-over and assert_finished_rotation proved key1 with STS
    # seconds ago: a use, for IAM. The idle check has its own scenarios.
    second = w.run({**w.input, "key_idle_seconds": 0}, state_machine_arn=machine)
    expect(second, "SUCCEEDED")
    (key2, _), = w.key_ids()
    assert key2 != key1, w.key_ids()
    assert_finished_rotation(w, second, key2)
    assert_key_rejected(w, key1, w.new_secrets[key1])
    return f"the second stack's execution refused while the first ran: {message[:120]}; then it rotated {key1} -> {key2}"


def s52_unfinished_hand_over_finished_next_run(stack: Stack) -> str:
    """The mirroring registry's PUT is refused twice (UpdateQovery, then
    FinishHandOver): HandOverUnfinished, the credentials on the new key, the registry on
    the old one, both keys Active, the key secret and the lock kept. The next run
    finishes: the kept key secret gives the registry the new key, the cluster is
    redeployed, the old key deleted, the key secret and the lock removed."""
    w = make_world(stack, "unfinished", clusters=[{}], mirrors=True)
    w.fault("editContainerRegistry", 400, 2)
    old_id = w.keys[0][0]
    first = w.run()
    expect(first, "FAILED", "HandOverIncomplete")
    assert first.state_names()[-1] == "HandOverUnfinished", first.state_names()
    created = new_key_of(w)
    registry = ("container_registry", w.registries[0])
    assert_holders(w, created, stay=[registry])
    assert w.key_ids() == sorted([(old_id, "Active"), (created, "Active")]), w.key_ids()
    record = w.ledger()
    assert record and record["execution_id"] == first.arn and record["new_access_key_id"] == created, record
    assert record["phase"] == "handing_over", record
    kept = stack.key_secrets(w.user)
    assert {v["name"] for v in kept} == {key_secret_name(w, first)}, kept

    second = w.run()
    assert recovery_of(second) == "finish", recovery_of(second)
    assert_path(second, "finish")
    assert_finished_rotation(w, second, created)
    assert puts_to(w, registry) == [400, 400, 200], puts_to(w, registry)
    assert puts_to(w, ("credentials", w.creds)) == [200], puts_to(w, ("credentials", w.creds))
    assert [c["deploy_count"] for c in w.clusters().values()] == [1], w.clusters()
    return f"HandOverUnfinished kept the key secret and the lock; next run gave the registry {created} and finished"


NEXT_RUN = {
    "fresh": "rotates from the start",
    "undo": "deletes its key, then rotates (undo)",
    "finish": "finishes it (finish)",
}

LEDGER_SCENARIOS: list[tuple[str, str, Callable[[Stack], str]]] = [
    *(
        (str(41 + i), f"stopped after {stop}; a dry run says so, the next run {NEXT_RUN[recovery]}", stop_scenario(stop))
        for i, (stop, (_, recovery)) in enumerate(STOPS.items())
    ),
    ("48", "the canary fails, is fixed, the next run finishes (redeploys it)", s48_failed_canary_fixed_then_finished),
    ("49", "a key made by someone else after preflight -> PreconditionFailed, kept, nothing changed", s49_key_made_by_someone_else),
    ("50", "two executions started at once -> one rotates, the other RotationInProgress", s50_two_executions_at_once),
    ("51", "a second stack's execution while the first holds the lock -> RotationInProgress", s51_second_stack),
    ("52", "HandOverUnfinished, then the next run finishes with the kept key secret", s52_unfinished_hand_over_finished_next_run),
]
