"""Workflow scenarios 63 and up: issue 15, a holder nobody told us about never loses
its key.

After the drain, QuarantineOldKey asks IAM when the old key was last used
(GetAccessKeyLastUsed): used within `key_idle_seconds` (default 3600) it fails
`KeyStillInUse`, both keys stay Active and nothing changes. Otherwise it switches the
old key off (Inactive) for `quarantine_seconds` (default 3600; the Quarantine Wait is
0 ms here, as every Wait), and DeleteOldKey, before the delete, reads every cluster of
the rotation: one in `INVALID_CREDENTIALS` or an error state switches the old key back
on and fails `KeyStillInUse`.

moto records a key's last use on every request that carries it (any service, signed
or not, before it checks anything), so a scenario that signs with the old key makes it
"used" at that moment; and moto 5.2.5 accepts an Inactive key like an Active one, so
"switched off" shows in ListAccessKeys, not in a caller's calls.

- 63: a steady user of the old key (a thread signing sts:GetCallerIdentity with it
  every 0.2 s, before, during and after the run) -> KeyStillInUse at QuarantineOldKey;
  then, the caller gone, the next run finishes.
- 64: a cluster turns INVALID_CREDENTIALS while the old key is switched off
  (`FakeQovery.set_cluster_status`, while the execution is held after
  QuarantineOldKey) -> KeyStillInUse at DeleteOldKey, the old key switched back on;
  then, the cluster healthy again, the next run finishes.
- 65: the normal rotation with the quarantine: the old key Inactive between
  QuarantineOldKey and DeleteOldKey, which reads the clusters' statuses, then deletes.
- 66: every task twice: the second QuarantineOldKey call finds the key already off.
- 67: a dry run reports the key's last use (`report.key_last_used`).
"""

from __future__ import annotations

import datetime as dt
import json
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import botocore.exceptions

from ledger_scenarios import assert_finished_rotation, assert_path, recovery_of
from stack import REGION, Execution, Stack
from worlds import (
    BASE_INPUT,
    assert_holders,
    assert_key_works,
    assert_nothing_changed,
    assert_rotated,
    expect,
    make_world,
    new_key_of,
    puts_to,
)

DEFAULT_QUARANTINE_SECONDS = 3600


def parse_time(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


def now_utc() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


@dataclass
class KeyUser:
    """A caller the rotation cannot see (a script, a laptop, another organization): a
    thread that signs sts:GetCallerIdentity with `key` every `interval` seconds, from
    start() until stop()."""

    stack: Stack
    key: tuple[str, str]
    interval: float = 0.2
    calls: int = 0
    errors: list[str] = field(default_factory=list)
    # (just before, just after) the last call STS answered: its time as IAM records it.
    last: tuple[dt.datetime, dt.datetime] | None = None
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> "KeyUser":
        client = self.stack._client("sts", self.key)

        def loop() -> None:
            while not self._stop.is_set():
                before = now_utc()
                try:
                    client.get_caller_identity()
                    self.calls += 1
                    self.last = (before, now_utc())
                except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as e:
                    self.errors.append(str(e)[:200])
                self._stop.wait(self.interval)

        self._thread = threading.Thread(target=loop, name=f"key-user-{self.key[0]}", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10
        while self.calls == 0 and not self.errors and time.monotonic() < deadline:
            time.sleep(0.02)
        assert self.calls > 0, f"the key user's first call did not go through: {self.errors}"
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)


def quarantine_of(ex: Execution) -> dict:
    exits = ex.exited("QuarantineOldKey")
    assert exits, f"QuarantineOldKey never exited\n{ex.describe()}"
    return exits[-1]["output"]["quarantine"]


def assert_quarantine_path(ex: Execution) -> None:
    """Drain, QuarantineOldKey, the Quarantine wait, DeleteOldKey, in that order."""
    names = ex.state_names()
    order = ["Drain", "QuarantineOldKey", "Quarantine", "DeleteOldKey"]
    missing = [s for s in order if s not in names]
    assert not missing, f"missing {missing}: {names}"
    assert [names.index(s) for s in order] == sorted(names.index(s) for s in order), names


def s63_steady_user_of_the_old_key(stack: Stack) -> str:
    """Something Qovery does not know signs with the old key every 0.2 s, from before
    the run until after it. At the drain's end IAM says the key was used a moment ago:
    KeyStillInUse at QuarantineOldKey, naming the service and region of that use. Both
    keys stay Active (the caller never failed), every holder holds the new key, nothing
    is deleted, the ledger record stays for the next run. Once the caller is gone, a
    run with key_idle_seconds 2 finishes the rotation (recovery finish, no PUT) and
    deletes the old key."""
    w = make_world(stack, "steadyuser", mirrors=True)
    old_id, _ = w.keys[0]
    user = KeyUser(stack, w.keys[0]).start()
    try:
        first = w.run()
        calls_during = user.calls
        time.sleep(0.5)  # and after the run's end
    finally:
        user.stop()
    expect(first, "FAILED", "KeyStillInUse")
    assert not user.errors, f"the old key stopped working for its user: {user.errors}"
    assert user.calls > calls_during, f"the key user did not go on after the run: {user.calls} calls"
    assert first.of("StateFailed", "QuarantineOldKey"), first.describe()
    assert not first.entered("Quarantine") and not first.entered("DeleteOldKey"), first.describe()
    message = first.cause_message() or ""
    for text in (old_id, f"by sts in region {REGION}", f"key_idle_seconds ({BASE_INPUT['key_idle_seconds']} s)", "Both keys stay active",
                 "nothing was deleted"):
        assert text in message, f"the cause does not say {text!r}: {message}"
    new_id = new_key_of(w)
    assert w.key_ids() == sorted([(old_id, "Active"), (new_id, "Active")]), w.key_ids()
    moved = assert_holders(w, new_id)  # every holder on the new key, which STS accepts
    assert len(moved) == 3 and not w.holding(old_id), moved
    record = w.ledger()
    assert record and record["execution_id"] == first.arn and record["phase"] == "handed_over", record
    # Preflight saw the caller too, for the report.
    seen = first.exited("Preflight")[0]["output"]["report"].get("key_last_used")
    assert seen and (seen["service"], seen["region"]) == ("sts", REGION), seen

    time.sleep(3)
    second = w.run({**w.input, "key_idle_seconds": 2})
    assert recovery_of(second) == "finish", recovery_of(second)
    assert_path(second, "finish")
    assert_finished_rotation(w, second, new_id)
    assert all(puts_to(w, ref) == [200] for ref in (h.ref for h in moved)), "the finishing run sent a PUT"
    last = quarantine_of(second)["last_used"]
    assert last and (last["service"], last["region"]) == ("sts", REGION), last
    assert user.last is not None
    before, after = user.last
    at = parse_time(last["at"])
    assert before - dt.timedelta(seconds=1) <= at <= after + dt.timedelta(seconds=1), (
        f"IAM says the old key was last used at {at}, the key user's last call was between {before} and {after}"
    )
    return (f"{user.calls} calls with the old key; {message[:130]}; both keys kept; then, the caller gone, "
            f"the next run finished on {new_id}")


def s64_cluster_fails_during_the_quarantine(stack: Stack) -> str:
    """While the old key is switched off (the execution held right after
    QuarantineOldKey), a cluster of the rotation turns INVALID_CREDENTIALS: it may
    still need the old key. DeleteOldKey reads the clusters, switches the old key back
    on and fails KeyStillInUse naming the cluster and its status. Both keys Active,
    every holder on the new key, nothing deleted, the ledger record kept. Once the
    cluster is healthy again, the next run finishes (recovery finish) and deletes the
    old key."""
    w = make_world(stack, "quarantinebroke", mirrors=True)
    old_id, old_secret = w.keys[0]
    broken = w.cluster_ids[1]
    name = w.clusters()[broken]["name"]
    during: dict[str, Any] = {}

    def on_event(ev: dict) -> None:
        if ev.get("event") == "StateExited" and ev.get("state") == "QuarantineOldKey" and "keys" not in during:
            during["keys"] = w.key_ids()
            during["ledger"] = w.ledger()
            stack.fake.set_cluster_status(broken, "INVALID_CREDENTIALS")

    first = w.run(on_event=on_event, hold_after="QuarantineOldKey")
    expect(first, "FAILED", "KeyStillInUse")
    new_id = new_key_of(w)
    assert during["keys"] == sorted([(old_id, "Inactive"), (new_id, "Active")]), during["keys"]
    assert during["ledger"] and during["ledger"]["phase"] == "quarantined", during["ledger"]
    assert first.of("StateFailed", "DeleteOldKey") and first.entered("Quarantine"), first.describe()
    message = first.cause_message() or ""
    for text in (f"{name} ({broken}) is INVALID_CREDENTIALS", f"The key {old_id} was switched back on",
                 "nothing was deleted"):
        assert text in message, f"the cause does not say {text!r}: {message}"
    assert w.key_ids() == sorted([(old_id, "Active"), (new_id, "Active")]), w.key_ids()
    moved = assert_holders(w, new_id)
    assert len(moved) == 3 and not w.holding(old_id), moved
    record = w.ledger()
    assert record and record["execution_id"] == first.arn, record
    assert not first.published, first.published

    # Someone redeploys the cluster; the old key is switched on again, and signing with
    # it works (which IAM counts as a use: hence key_idle_seconds 0 below).
    stack.fake.set_cluster_status(broken, "DEPLOYED")
    assert_key_works(w, old_id, old_secret)
    second = w.run({**w.input, "key_idle_seconds": 0})
    assert recovery_of(second) == "finish", recovery_of(second)
    assert_path(second, "finish")
    assert_finished_rotation(w, second, new_id)
    assert quarantine_of(second)["switched_off"], quarantine_of(second)
    return f"{message[:160]}; then the next run finished on {new_id}"


def s65_quarantine_then_delete(stack: Stack) -> str:
    """The normal rotation, quarantine_seconds by default (3600): the old key never
    used, QuarantineOldKey switches it off until an hour from then; held right after,
    IAM lists it Inactive and the ledger says quarantined. DeleteOldKey reads the
    clusters' statuses and deletes it: one key left, every holder on it. The output
    and the published report say what the quarantine did."""
    w = make_world(stack, "quarantine", mirrors=True)
    old_id, _ = w.keys[0]
    during: dict[str, Any] = {}

    def on_event(ev: dict) -> None:
        if ev.get("event") == "StateExited" and ev.get("state") == "QuarantineOldKey" and "keys" not in during:
            during["keys"] = w.key_ids()
            during["ledger"] = w.ledger()
            during["requests"] = len(stack.fake.requests())
            during["at"] = parse_time(ev["ts"])

    ex = w.run(on_event=on_event, hold_after="QuarantineOldKey")
    new_id = assert_rotated(w, ex)
    assert_quarantine_path(ex)
    assert during["keys"] == sorted([(old_id, "Inactive"), (new_id, "Active")]), during["keys"]
    assert during["ledger"]["execution_id"] == ex.arn and during["ledger"]["phase"] == "quarantined", during["ledger"]
    q = ex.output["quarantine"]
    assert (q["old_access_key_id"], q["switched_off"], q["already_off"], q["already_deleted"], q["last_used"]) == (
        old_id, True, False, False, None), q
    until = parse_time(q["until"]) - during["at"]
    assert abs(until.total_seconds() - DEFAULT_QUARANTINE_SECONDS) <= 5, f"the quarantine lasts until {q['until']}"
    assert "switched off until" in q["summary"] and "never" in q["summary"], q["summary"]
    # After the hold, DeleteOldKey read the clusters' statuses before deleting.
    after = [r["operation"] for r in stack.fake.requests()[during["requests"]:]]
    assert "getOrganizationClusterStatus" in after, after
    assert ex.output["deleted"]["deleted_access_key_id"] == old_id, ex.output["deleted"]
    (sent,) = ex.published
    report = json.loads(sent["Message"])
    assert report["quarantine_seconds"] == DEFAULT_QUARANTINE_SECONDS == ex.output["quarantine_seconds"], report
    assert report["old_key_last_used"] == {"at_drain_end": None, "before_delete": None}, report["old_key_last_used"]
    return f"{old_id} Inactive while held, until {q['until']}; clusters read; deleted; one key {new_id}"


def s66_quarantine_every_task_twice(stack: Stack) -> str:
    """At-least-once delivery with the quarantine: every Task twice, the first answer
    lost. The first QuarantineOldKey call switches the old key off; the second finds it
    already off and ends the same way; the rotation finishes with one key."""
    w = make_world(stack, "quarantinetwice", mirrors=True)
    old_id, _ = w.keys[0]
    ex = w.run(twice=True)
    new_id = assert_rotated(w, ex)
    assert_quarantine_path(ex)
    answers = ex.of("LambdaFunctionSucceeded", "QuarantineOldKey")
    assert [bool(e.get("answerLost")) for e in answers] == [True, False], answers
    lost, kept = (e["output"] for e in answers)
    assert (lost["switched_off"], lost["already_off"]) == (True, False), lost
    assert (kept["switched_off"], kept["already_off"], kept["already_deleted"]) == (False, True, False), kept
    assert ex.output["quarantine"] == kept, ex.output["quarantine"]
    deletes = ex.of("LambdaFunctionSucceeded", "DeleteOldKey")
    assert [bool(e.get("answerLost")) for e in deletes] == [True, False], deletes
    assert ex.output["deleted"]["already_deleted"], ex.output["deleted"]
    assert len(ex.published) == 1, ex.published
    return f"QuarantineOldKey: switched off, then already off; DeleteOldKey: deleted, then already deleted; one key {new_id}"


def s67_dry_run_reports_last_use(stack: Stack) -> str:
    """A dry run says when the key Qovery holds was last used: nothing in the report
    while it never was; after the harness signed a call with it, the time, the service
    (sts) and the region. Neither changes anything."""
    w = make_world(stack, "lastused")
    old_id, old_secret = w.keys[0]
    dry = {**w.input, "dry_run": True}
    never = w.run(dry)
    expect(never, "SUCCEEDED")
    assert "key_last_used" not in never.output["report"], never.output["report"]
    assert_nothing_changed(w, never)

    before = now_utc()
    assert_key_works(w, old_id, old_secret)
    after = now_utc()
    used = w.run(dry)
    expect(used, "SUCCEEDED")
    last = used.output["report"].get("key_last_used")
    assert last and (last["service"], last["region"]) == ("sts", REGION), used.output["report"]
    at = parse_time(last["at"])
    slack = dt.timedelta(seconds=1)
    assert before - slack <= at <= after + slack, (before, last["at"], after)
    assert_nothing_changed(w, used)
    return f"never used: no key_last_used; after one STS call: {last['at']} by {last['service']} in {last['region']}"


QUARANTINE_SCENARIOS: list[tuple[str, str, Callable[[Stack], str]]] = [
    ("63", "a steady user of the old key -> KeyStillInUse, both keys kept; once it stops, the next run finishes",
     s63_steady_user_of_the_old_key),
    ("64", "a cluster turns INVALID_CREDENTIALS during the quarantine -> old key switched back on, KeyStillInUse",
     s64_cluster_fails_during_the_quarantine),
    ("65", "the quarantine: the old key switched off, the clusters read, then deleted", s65_quarantine_then_delete),
    ("66", "every task twice with the quarantine -> already off, already deleted, one key", s66_quarantine_every_task_twice),
    ("67", "a dry run reports the key's last use (none, then sts and its region)", s67_dry_run_reports_last_use),
]
