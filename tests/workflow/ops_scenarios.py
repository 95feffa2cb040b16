"""Workflow scenarios 53 and up: issue 13, what an operator runs and reads.

- 53: a redirect is never followed. The credentials PUT is answered `307` with a
  Location pointing at a recording HTTP server the scenario starts: nothing reaches it
  (no connection, no byte), the hand-over is reconciled and rolled back.
- 54 to 56, 62: `deploy_concurrency`. The first cluster (the canary) redeploys alone,
  then waves of at most `deploy_concurrency` clusters at once. The fake's request log
  shows the order Qovery saw: every cluster's deploy POST and status polls. A cluster
  seeded with `stale_polls` s answers s stale polls after its deploy, then DEPLOYING,
  then its outcome, so its (s + 2)th poll after the POST is the one that reported
  DEPLOYED (or the failure), and the last: `walk()` reads that from the log.
- 57: the success report published to the notification topic (`Execution.published`),
  and `notify_on_success=False`.
- 58 to 61: the audit (`{"audit": true, "max_key_age_days": N}`): a dry run that judges
  the key's age (`KeyTooOld`), an ended run's unfinished rotation
  (`RotationUnfinished`), and passes while another execution rotates. A key is made
  old with `Stack.backdate_key` (moto_key_age.py: ListAccessKeys reports the date the
  test chose as its CreateDate).

Each scenario checks IAM, every holder (`assert_holders`), the key secrets and the
ledger item, as the scenarios before it; the checks every scenario gets also look for
secrets in the published messages.
"""

from __future__ import annotations

import datetime as dt
import http.server
import json
import socket
import threading
import urllib.request
from dataclasses import dataclass, field
from typing import Any, Callable

from stack import NOTIFICATION_TOPIC_ARN, Execution, Stack, prism_problems
from ledger_scenarios import assert_finished_rotation, assert_path, recovery_of, snapshot
from worlds import (
    World,
    assert_holders,
    assert_key_rejected,
    assert_key_works,
    assert_nothing_changed,
    assert_rotated,
    created_key,
    deployed_in_order,
    expect,
    leaked_piece,
    make_world,
    new_key_of,
    puts_to,
    secrets_of,
)

# Four or five clusters poll more than BASE_INPUT's 10 s interval allows within the
# history budget preflight checks (every cluster's worst case counts); the waits are
# 0 ms here anyway.
WAVE_INPUT = {"poll_interval_seconds": 30}


# ------------------------------------------------------------------ a recording server


class _CountingReader:
    """The handler's rfile, counting every byte read from the connection."""

    def __init__(self, raw: Any, recorder: "Recorder"):
        self._raw = raw
        self._recorder = recorder

    def _count(self, data: bytes) -> bytes:
        with self._recorder.lock:
            self._recorder.bytes += len(data)
        return data

    def read(self, *args: Any) -> bytes:
        return self._count(self._raw.read(*args))

    def readline(self, *args: Any) -> bytes:
        return self._count(self._raw.readline(*args))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._raw, name)


@dataclass
class Recorder:
    """An HTTP server on 127.0.0.1 that counts every connection it accepts (at accept
    time, before any byte) and every byte it reads, and answers any request with 200
    `{}` after reading its body: what a redirect's target would see of a client that
    follows it."""

    connections: int = 0
    bytes: int = 0
    requests: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    server: http.server.ThreadingHTTPServer | None = None

    def start(self) -> "Recorder":
        recorder = self

        class Handler(http.server.BaseHTTPRequestHandler):
            disable_nagle_algorithm = True

            def setup(self) -> None:
                super().setup()
                self.rfile = _CountingReader(self.rfile, recorder)  # type: ignore[assignment]

            def _answer(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                if length:
                    self.rfile.read(length)
                with recorder.lock:
                    recorder.requests.append(f"{self.command} {self.path}")
                body = b"{}"
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_PUT = do_POST = do_DELETE = do_PATCH = do_HEAD = _answer

            def log_message(self, *args: Any) -> None:
                pass

        class Server(http.server.ThreadingHTTPServer):
            daemon_threads = True

            def get_request(self) -> tuple[socket.socket, Any]:
                conn, addr = super().get_request()
                with recorder.lock:
                    recorder.connections += 1
                return conn, addr

        self.server = Server(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def seen(self) -> tuple[int, int, list[str]]:
        with self.lock:
            return self.connections, self.bytes, list(self.requests)

    def reset(self) -> None:
        with self.lock:
            self.connections, self.bytes, self.requests = 0, 0, []

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()


def s53_put_redirected_never_followed(stack: Stack) -> str:
    """The credentials PUT, which carries the new secret key, is answered 307 with a
    Location on another server (a recording one, started here). The client follows no
    redirect: nothing reaches that server. The PUT reached something that may have
    applied it, so the hand-over is HandOverIncomplete: reconciled (Qovery still holds
    the old key), rolled back (the new key deleted, its key secret gone); every holder
    keeps the old key, which still works."""
    w = make_world(stack, "redirect", mirrors=True)
    old_id, old_secret = w.keys[0]
    recorder = Recorder().start()
    try:
        # The recorder counts: one request of our own, then a clean slate.
        with urllib.request.urlopen(urllib.request.Request(recorder.url + "/probe", data=b"x" * 10, method="PUT"), timeout=5):
            pass
        connections, nbytes, requests = recorder.seen()
        assert connections == 1 and nbytes > 10 and requests == ["PUT /probe"], recorder.seen()
        recorder.reset()

        location = f"{recorder.url}/organization/{w.org}/aws/credentials/{w.creds}"
        w.fault("editAWSCredentials", 307, 1, location=location)
        ex = w.run()
        connections, nbytes, requests = recorder.seen()
    finally:
        recorder.stop()
    assert (connections, nbytes, requests) == (0, 0, []), (
        f"the redirect was followed: {connections} connection(s), {nbytes} byte(s), requests {requests}"
    )
    expect(ex, "FAILED", "HandOverIncomplete")
    names = ex.state_names()
    assert names.index("UpdateQovery") < names.index("WaitBeforeReconcile") < names.index("ReconcileHandOver") \
        < names.index("RollbackNewKey") < names.index("RolledBack"), names
    assert "FinishHandOver" not in names and "DeployClusters" not in names, names
    assert ex.exited("ReconcileHandOver")[0]["output"]["reconcile"]["qovery_holds"] == "old_key", ex.describe()
    # One PUT, answered 307, not retried; no other holder was sent the key.
    assert stack.fake.statuses("editAWSCredentials") == [307], stack.fake.statuses("editAWSCredentials")
    assert stack.fake.statuses("editContainerRegistry") == [], stack.fake.statuses("editContainerRegistry")
    message = ex.cause_message() or ""
    for text in ("307", f"a redirect to {location}", "never follows"):
        assert text in message, f"the cause does not say {text!r}: {message}"
    # Prism warns about the 307 (the spec lists no redirect for the PUT); the scenario
    # injected a fault, so that warning is expected, and nothing else may show.
    problems = prism_problems(ex.prism_log, False)
    if stack.spec is not None:
        assert problems and all("Unable to match the returned status code" in p for p in problems), problems
        assert prism_problems(ex.prism_log, True) == [], prism_problems(ex.prism_log, True)
    assert w.key_ids() == [(old_id, "Active")], w.key_ids()
    assert_holders(w)
    assert_key_works(w, old_id, old_secret)
    created = created_key(ex)
    assert created and created in w.new_secrets, "the new key's secret was never seen"
    assert_key_rejected(w, created, w.new_secrets[created])
    assert ex.exited("RollbackNewKey")[0]["output"]["rollback"]["deleted_access_key_id"] == created
    assert not stack.key_secrets(w.user), "the key secret outlived the rollback"
    assert not ex.published, ex.published
    return (f"PUT 307 -> nothing reached the Location (0 connections, 0 bytes); HandOverIncomplete, reconciled "
            f"(old_key), rolled back {created}; Prism: {len(problems)} status warning(s), expected")


# ------------------------------------------------------------------ waves


@dataclass
class Walk:
    """One cluster's redeploy as the fake's request log shows it (indexes into it)."""

    first: int | None  # its first per-cluster call after the hand-over
    deploys: list[int]
    polls: list[int]  # status polls after its first deploy POST
    stale: int

    @property
    def end(self) -> int:
        """The poll that reported its outcome (DEPLOYED or the failure): the last one."""
        assert len(self.polls) == self.stale + 2, (
            f"expected {self.stale} stale poll(s), one DEPLOYING and the outcome after the deploy POST, "
            f"got {len(self.polls)} poll(s)"
        )
        return self.polls[-1]


def walk(w: World) -> tuple[dict[str, Walk], list[dict]]:
    """Each cluster's deploy POSTs and status polls (getClusterStatus), by index in the
    fake's request log; and the log."""
    log = w.stack.fake.requests()
    seeds = {c["id"]: c for c in w.seed["clusters"]}
    out = {}
    for cid in w.cluster_ids:
        mine = [i for i, r in enumerate(log) if f"/cluster/{cid}/" in r["path"]
                and r["operation"] in ("getClusterStatus", "deployCluster")]
        deploys = [i for i in mine if log[i]["operation"] == "deployCluster"]
        polls = [i for i in mine if log[i]["operation"] == "getClusterStatus" and deploys and i > deploys[0]]
        out[cid] = Walk(mine[0] if mine else None, deploys, polls, seeds[cid].get("stale_polls", 0))
    return out, log


def waves_of(ex: Execution) -> list[list[str]]:
    """The waves UpdateQovery planned (deploy_waves), as cluster ids."""
    out = (ex.exited("UpdateQovery") or ex.exited("FinishHandOver"))[-1]["output"]
    return [[c["id"] for c in wave] for wave in out["deploy_waves"]]


def s54_waves(stack: Stack) -> str:
    """Four clusters, deploy_concurrency 2: the canary alone, then [c2, c3] at once,
    then [c4]. In Qovery's log: no other cluster is touched before the canary's
    redeploy reported DEPLOYED; c2 and c3 are both deploying at the same time (both
    POSTs before either reported DEPLOYED); c3 is slower, and c4 starts only once both
    reported DEPLOYED (a wave waits for its slowest cluster). The rotation finishes."""
    w = make_world(stack, "waves", clusters=[{"stale_polls": 1}, {"stale_polls": 1}, {"stale_polls": 4}, {}])
    c1, c2, c3, c4 = w.cluster_ids
    ex = w.run({**w.input, **WAVE_INPUT, "deploy_concurrency": 2})
    new_id = assert_rotated(w, ex)
    assert waves_of(ex) == [[c1], [c2, c3], [c4]], waves_of(ex)
    waves = [(d["wave"], [c["id"] for c in d["clusters"]]) for d in ex.output["deployments"]]
    assert waves == [(0, [c1]), (1, [c2, c3]), (2, [c4])], ex.output["deployments"]
    assert all(c["outcome"] == "deployed" and c["status"] == "DEPLOYED" for c in deployed_in_order(ex.output)), ex.output["deployments"]
    clusters = w.clusters()
    assert [clusters[c]["deploy_count"] for c in w.cluster_ids] == [1, 1, 1, 1], clusters
    walks, log = walk(w)
    canary = walks[c1]
    touched = {c: walks[c].first for c in (c2, c3, c4)}
    assert all(i is not None and i > canary.end for i in touched.values()), (
        f"a cluster was touched before the canary reported DEPLOYED (log index {canary.end}): {touched}"
    )
    both_deploying = max(walks[c2].deploys[0], walks[c3].deploys[0])
    assert both_deploying < min(walks[c2].end, walks[c3].end), (
        f"c2 and c3 were not deploying at once: deploy POSTs at {walks[c2].deploys[0]}, {walks[c3].deploys[0]}; "
        f"DEPLOYED at {walks[c2].end}, {walks[c3].end}"
    )
    assert walks[c2].end < walks[c3].end, "c3 (4 stale polls) should end after c2 (1): the check below would be weak"
    assert walks[c4].first > walks[c3].end, (
        f"c4 was touched (log index {walks[c4].first}) before c3 reported DEPLOYED ({walks[c3].end})"
    )
    assert len(ex.published) == 1, ex.published
    return (f"waves [c1] [c2 c3] [c4]; canary DEPLOYED at log #{canary.end} before any other; c2/c3 POSTs "
            f"#{walks[c2].deploys[0]}/#{walks[c3].deploys[0]} before DEPLOYED #{walks[c2].end}/#{walks[c3].end}; "
            f"c4 from #{walks[c4].first}; rotated to {new_id}")


def s55_failure_inside_a_wave(stack: Stack) -> str:
    """Four clusters, deploy_concurrency 2. In the second wave c2's redeploy fails
    (DEPLOYMENT_ERROR) while c3, slower, is still deploying: c3 is followed to its end
    (DEPLOYED, after c2 failed), c4 is never touched, and the execution fails
    ClusterDeployFailed naming c2's failure and c3 deployed. Both keys stay Active,
    every holder on the new key; the old key is not deleted, the lock stays."""
    w = make_world(stack, "wavefail", mirrors=True,
                   clusters=[{}, {"outcome": "deployment_error"}, {"stale_polls": 4}, {}])
    c1, c2, c3, c4 = w.cluster_ids
    old_id = w.keys[0][0]
    ex = w.run({**w.input, **WAVE_INPUT, "deploy_concurrency": 2})
    expect(ex, "FAILED", "ClusterDeployFailed")
    assert waves_of(ex) == [[c1], [c2, c3], [c4]], waves_of(ex)
    new_id = new_key_of(w)
    assert w.key_ids() == sorted([(old_id, "Active"), (new_id, "Active")]), w.key_ids()
    assert_holders(w, new_id)
    assert not ex.entered("DeleteOldKey") and not ex.entered("RollbackNewKey") and not ex.published, ex.describe()
    clusters = w.clusters()
    statuses = {c: (clusters[c]["status"], clusters[c]["deploy_count"]) for c in w.cluster_ids}
    assert statuses == {c1: ("DEPLOYED", 1), c2: ("DEPLOYMENT_ERROR", 1), c3: ("DEPLOYED", 1), c4: ("DEPLOYED", 0)}, statuses
    walks, _ = walk(w)
    assert max(walks[c2].deploys[0], walks[c3].deploys[0]) < walks[c2].end, (
        f"c2 and c3 were not deploying at once: deploy POSTs at {walks[c2].deploys[0]}, {walks[c3].deploys[0]}; "
        f"c2 failed at {walks[c2].end}"
    )
    assert walks[c2].end < walks[c3].end, (
        f"c3 reported DEPLOYED (log #{walks[c3].end}) before c2 failed (#{walks[c2].end}): it was not followed past the failure"
    )
    assert walks[c4].first is None and clusters[c4]["status_polls"] == 0, f"c4 was touched: {walks[c4]}, {clusters[c4]}"
    # Only the canary's wave and this one ran CheckWave.
    assert len(ex.exited("CheckWave")) == 1 and len(ex.of("StateFailed", "CheckWave")) == 1, ex.describe()
    message = ex.cause_message() or ""
    label = lambda c: f"{clusters[c]['name']} ({c})"  # noqa: E731
    for text in (f"Cluster {label(c2)} of wave 1 failed with ClusterDeployFailed", "DEPLOYMENT_ERROR",
                 f"{label(c2)}: failed", f"{label(c3)}: deployed", "no cluster of a later wave was started"):
        assert text in message, f"the cause does not say {text!r}: {message}"
    assert c4 not in message, message
    record = w.ledger()
    assert record and record["execution_id"] == ex.arn and record["phase"] == "handed_over", record
    return f"c2 DEPLOYMENT_ERROR, c3 followed to DEPLOYED after it, c4 untouched; both keys live: {message[:120]}"


def s56_canary_fails_in_waves(stack: Stack) -> str:
    """deploy_concurrency 2 and the canary fails: no other cluster is redeployed, or
    even asked for its status; ClusterDeployFailed naming the canary; both keys kept."""
    w = make_world(stack, "wavecanary", clusters=[{"outcome": "deployment_error"}, {}, {}])
    c1, c2, c3 = w.cluster_ids
    old_id = w.keys[0][0]
    ex = w.run({**w.input, **WAVE_INPUT, "deploy_concurrency": 2})
    expect(ex, "FAILED", "ClusterDeployFailed")
    assert waves_of(ex) == [[c1], [c2, c3]], waves_of(ex)
    new_id = new_key_of(w)
    assert w.key_ids() == sorted([(old_id, "Active"), (new_id, "Active")]), w.key_ids()
    assert_holders(w, new_id)
    clusters = w.clusters()
    assert (clusters[c1]["status"], clusters[c1]["deploy_count"]) == ("DEPLOYMENT_ERROR", 1), clusters[c1]
    for c in (c2, c3):
        assert clusters[c]["deploy_count"] == 0 and clusters[c]["status_polls"] == 0, clusters[c]
    walks, _ = walk(w)
    assert walks[c2].first is None and walks[c3].first is None, walks
    assert [e["input"]["cluster_id"] for e in ex.invocations("deploy-cluster")] == [c1], ex.describe()
    message = ex.cause_message() or ""
    assert "of the canary" in message and f"{clusters[c1]['name']} ({c1}): failed" in message, message
    assert not ex.entered("DeleteOldKey") and not ex.published, ex.describe()
    return f"canary failed, c2 and c3 never touched; both keys live: {message[:120]}"


def s62_waves_every_task_twice(stack: Stack) -> str:
    """At-least-once delivery with waves: three clusters, deploy_concurrency 2, every
    Task run twice with the first answer lost. One deploy per cluster, the rotation
    ends as with one call each, and one success message is published (run-asl.mjs's
    `twice` doubles Lambda invocations only: the sns:publish integration of
    ReportSuccess runs once)."""
    # stale_polls: the second deploy-cluster call reads a status that does not show the
    # first call's deployment yet, POSTs again, is refused (one is queued), and follows it.
    w = make_world(stack, "wavetwice", mirrors=True,
                   clusters=[{"stale_polls": 1}, {"stale_polls": 1}, {"stale_polls": 1}])
    c1, c2, c3 = w.cluster_ids
    ex = w.run({**w.input, **WAVE_INPUT, "deploy_concurrency": 2}, twice=True)
    new_id = assert_rotated(w, ex)
    assert waves_of(ex) == [[c1], [c2, c3]], waves_of(ex)
    assert [(d["wave"], [c["id"] for c in d["clusters"]]) for d in ex.output["deployments"]] == [(0, [c1]), (1, [c2, c3])], \
        ex.output["deployments"]
    deploys = {c["name"]: c["deploy_count"] for c in w.clusters().values()}
    assert all(n == 1 for n in deploys.values()), f"extra deployments: {deploys}"
    assert all(p == [200] for p in (puts_to(w, ref) for ref, h in w.baseline.items() if h.key_id == w.keys[0][0])), \
        "one PUT 200 per holder"
    waves_checked = [e for e in ex.invocations("check-status") if "wave" in (e.get("input") or {})]
    assert len(waves_checked) == 4 and sum(1 for e in waves_checked if e.get("answerLost")) == 2, waves_checked
    assert len(ex.published) == 1, ex.published
    assert json.loads(ex.published[0]["Message"])["new_access_key_id"] == new_id
    return f"rotated to {new_id} with every task twice in waves [c1] [c2 c3]; deploys {sorted(deploys.values())}; one message"


# ------------------------------------------------------------------ the success report


def parse_time(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


def s57_success_report(stack: Stack) -> str:
    """A finished rotation publishes one message to the stack's topic: the subject
    names the IAM user; the JSON message names both keys, every holder that changed,
    each cluster redeployed or skipped (a STOPPED one), the drain and the duration,
    as the execution did, the old key's last use at the drain's end and before the
    delete (issue 15: null, never used) and the quarantine, and holds no secret.
    Rotated again with NotifyOnSuccess off, nothing is published and the rotation still
    succeeds; its report (in DeleteOldKey's output) gives the last use of the key it
    retired, which the first rotation's checks used: by sts, in the stack's region."""
    w = make_world(stack, "report", mirrors=True, registries=[{"holds": "other"}],
                   clusters=[{}, {}, {"status": "STOPPED"}])
    c1, c2, c3 = w.cluster_ids
    old_id = w.keys[0][0]
    before = dt.datetime.now(dt.timezone.utc)
    ex = w.run()
    after = dt.datetime.now(dt.timezone.utc)
    new_id = assert_rotated(w, ex)
    assert ex.state_names()[-4:] == ["NotifyOnSuccessSetting", "ShouldReportSuccess", "ReportSuccess", "Rotated"], ex.state_names()
    assert len(ex.published) == 1, ex.published
    (sent,) = ex.published
    subject = f"Qovery key rotated: IAM user {w.user}"
    assert (sent["TopicArn"], sent["Subject"], sent["state"]) == (NOTIFICATION_TOPIC_ARN, subject, "ReportSuccess"), sent
    report = json.loads(sent["Message"])
    assert report["subject"] == subject, report
    assert (report["iam_user_name"], report["old_access_key_id"], report["new_access_key_id"]) == (w.user, old_id, new_id), report
    # Every holder that took the new key, as the execution's holders name them, and
    # exactly those the fake shows moved (the registry of another key is not one).
    moved = {h.ref for h in w.holding(new_id)}
    expected = {(h["kind"], h["id"]) for h in ex.output["holders"]}
    assert moved == expected and len(moved) == 4, (moved, expected)
    labels = {(h["kind"], h["id"]): h for h in ex.output["holders"]}
    changed = report["holders_changed"]
    assert len(changed) == len(labels), changed
    for (kind, hid), h in labels.items():
        start = f"{w.baseline[(kind, hid)].label()}"
        assert any(line.startswith(start) for line in changed), f"{start} not in holders_changed {changed}"
    assert w.other_key[0] not in sent["Message"], "the registry of another key is in the report"
    clusters = [(c["id"], c["outcome"]) for c in report["clusters"]]
    assert clusters == [(c1, "redeployed"), (c2, "redeployed"), (c3, "skipped")], report["clusters"]
    assert [c["id"] for c in deployed_in_order(ex.output)] == [c1, c2], ex.output["deployments"]
    (skipped,) = ex.output["skipped_clusters"]
    assert (skipped["id"], skipped["status"]) == (c3, "STOPPED"), skipped
    assert report["clusters"][2]["reason"] == skipped["reason"], (report["clusters"][2], skipped)
    drain = report["drain"]
    assert drain["seconds"] == w.input["drain_seconds"], drain
    assert (drain["from"], drain["until"]) == (ex.output["qovery_updated_at"], ex.output["drain_until"]), (drain, ex.output)
    assert parse_time(drain["until"]) - parse_time(drain["from"]) == dt.timedelta(seconds=drain["seconds"]), drain
    started, finished = parse_time(report["started_at"]), parse_time(report["finished_at"])
    slack = dt.timedelta(seconds=1)
    assert before - slack <= started <= finished <= after + slack, (before, report["started_at"], report["finished_at"], after)
    assert abs((finished - started).total_seconds() - report["duration_seconds"]) <= 1, report
    assert report["duration_seconds"] <= ex.duration_s + 1, (report["duration_seconds"], ex.duration_s)
    # Issue 15: nothing ever signed with the seeded key, and the default quarantine.
    assert report["old_key_last_used"] == {"at_drain_end": None, "before_delete": None}, report["old_key_last_used"]
    assert report["quarantine_seconds"] == 3600 == ex.output["quarantine_seconds"], (report["quarantine_seconds"], ex.output["quarantine_seconds"])
    for text in (w.user, old_id, new_id, "2 cluster(s) redeployed", "1 skipped", "4 holder(s) changed"):
        assert text in report["summary"], f"{text!r} not in the summary: {report['summary']}"
    leaks = [what for what, secret in secrets_of(w).items() if leaked_piece(secret, json.dumps(sent)) is not None]
    assert not leaks, f"SECRET LEAKED into the success report: {leaks}"

    # NotifyOnSuccess off: the same world rotated again publishes nothing. The
    # hand-over and assert_rotated above proved new_id with STS seconds ago (a use, for
    # IAM): the idle check has its own scenarios.
    second = w.run({**w.input, "key_idle_seconds": 0, "quarantine_seconds": 5}, notify_on_success=False)
    expect(second, "SUCCEEDED")
    ((third, status),) = w.key_ids()
    assert third not in (old_id, new_id) and status == "Active", w.key_ids()
    assert_holders(w, third)
    assert second.published == [], second.published
    names = second.state_names()
    assert names[-3:] == ["NotifyOnSuccessSetting", "ShouldReportSuccess", "Rotated"] and "ReportSuccess" not in names, names
    unsent = second.output["deleted"]["report"]
    used = unsent["old_key_last_used"]
    at_end = used["at_drain_end"]
    assert at_end and (at_end["service"], at_end["region"]) == ("sts", "us-east-1"), used
    assert parse_time(at_end["at"]) <= dt.datetime.now(dt.timezone.utc), used
    # Switched off in between, so not used since.
    assert used["before_delete"] == at_end, used
    assert unsent["quarantine_seconds"] == 5, unsent["quarantine_seconds"]
    return (f"one message '{subject}': {old_id} -> {new_id}, {len(changed)} holders, clusters "
            f"{[o for _, o in clusters]}, drain {drain['seconds']} s, {report['duration_seconds']} s; "
            f"then NotifyOnSuccess off: nothing published, rotated to {third}")


# ------------------------------------------------------------------ the audit


def audit_input(w: World, **extra: Any) -> dict:
    return {**w.input, "audit": True, **extra}


def assert_audit_changed_nothing(w: World, ex: Execution) -> None:
    assert_nothing_changed(w, ex)
    assert w.ledger_before[ex.name] is None and w.ledger_after[ex.name] is None, "the audit wrote to the ledger"
    assert not ex.published, ex.published


def s58_audit_fresh_key(stack: Stack) -> str:
    """An audit of a key created a moment ago passes, 0 days old, and changes nothing:
    keys, holders, no PUT, no deploy, no key secret, no ledger item."""
    w = make_world(stack, "auditfresh", mirrors=True)
    ex = w.run(audit_input(w))
    expect(ex, "SUCCEEDED")
    assert ex.state_names() == ["Preflight", "IsDryRun", "DryRunReport"], ex.state_names()
    report = ex.output["report"]
    assert report["key_age_days"] == 0, report
    verdict = report["audit"]
    assert verdict.startswith("Audit passed") and f"{w.keys[0][0]} that Qovery holds is 0 day(s) old" in verdict \
        and "max_key_age_days (45)" in verdict, verdict
    assert_audit_changed_nothing(w, ex)
    return verdict[:150]


def s59_audit_old_key(stack: Stack) -> str:
    """The key Qovery holds was created 60 days ago (back-dated in moto): an audit with
    max_key_age_days 45 fails KeyTooOld stating "60 day(s)", an audit with 90 passes
    and says 60 days; neither changes anything."""
    w = make_world(stack, "auditold", mirrors=True)
    old_id = w.keys[0][0]
    created = dt.datetime.now(dt.timezone.utc).replace(microsecond=0) - dt.timedelta(days=60, hours=1)
    stack.backdate_key(old_id, created)
    assert stack.key_created(w.user, old_id) == created, (stack.key_created(w.user, old_id), created)

    too_old = w.run(audit_input(w, max_key_age_days=45))
    expect(too_old, "FAILED", "KeyTooOld")
    assert too_old.state_names() == ["Preflight"], too_old.state_names()
    message = too_old.cause_message() or ""
    for text in (old_id, "60 day(s) ago", "max_key_age_days (45)", "changed nothing"):
        assert text in message, f"the cause does not say {text!r}: {message}"
    assert_audit_changed_nothing(w, too_old)

    within = w.run(audit_input(w, max_key_age_days=90))
    expect(within, "SUCCEEDED")
    report = within.output["report"]
    assert report["key_age_days"] == 60, report
    assert "is 60 day(s) old" in report["audit"] and "max_key_age_days (90)" in report["audit"], report["audit"]
    assert_audit_changed_nothing(w, within)
    return f"45: {message[:110]}; 90: passed, 60 days"


def s60_audit_unfinished_rotation(stack: Stack) -> str:
    """A rotation stopped right after UpdateQovery (every holder on the new key, both
    keys Active, the record handed_over). An audit fails RotationUnfinished naming the
    stopped execution and changes nothing (the ledger item byte for byte, no PUT, no
    deploy); then a normal run finishes the rotation."""
    w = make_world(stack, "auditunfinished", mirrors=True)
    first = w.run(stop_after="UpdateQovery")
    expect(first, "ABORTED", "ExecutionAborted")
    created = created_key(first)
    record = w.ledger()
    assert record and record["execution_id"] == first.arn and record["phase"] == "handed_over", record
    before = snapshot(w)
    audit = w.run(audit_input(w))
    expect(audit, "FAILED", "RotationUnfinished")
    assert audit.state_names() == ["Preflight"], audit.state_names()
    after = snapshot(w)
    changed = {k: (before[k], after[k]) for k in before if before[k] != after[k]}
    assert not changed, f"the audit changed {sorted(changed)}: {changed}"
    assert w.ledger_before[audit.name] == w.ledger_after[audit.name] == before["ledger"], "the audit touched the ledger item"
    message = audit.cause_message() or ""
    for text in (first.arn, "ended without finishing", "The next run would finish it", "The audit changed nothing"):
        assert text in message, f"the cause does not say {text!r}: {message}"
    assert not audit.published

    second = w.run()
    assert recovery_of(second) == "finish", recovery_of(second)
    assert_path(second, "finish")
    assert_finished_rotation(w, second, created)
    return f"{message[:140]}; the next run finished on {created}"


def s61_audit_while_rotating(stack: Stack) -> str:
    """An audit while another execution rotates the user (held, RUNNING, right after
    UpdateQovery: both keys Active, every holder on the new key): it passes, saying the
    user is being rotated, and takes no lock; the held rotation then finishes."""
    w = make_world(stack, "auditbusy", mirrors=True)
    during: dict[str, Any] = {}

    def on_event(ev: dict) -> None:
        if ev.get("event") == "StateExited" and ev.get("state") == "UpdateQovery" and "audit" not in during:
            during["keys"] = w.key_ids()
            during["audit"] = w.run(audit_input(w))

    first = w.run(on_event=on_event, hold_after="UpdateQovery")
    new_id = assert_rotated(w, first)
    audit = during["audit"]
    assert isinstance(audit, Execution)
    assert len(during["keys"]) == 2, f"the audit ran while the user had {during['keys']}, not both keys"
    expect(audit, "SUCCEEDED")
    assert audit.state_names() == ["Preflight", "IsDryRun", "DryRunReport"], audit.state_names()
    verdict = audit.output["report"]["audit"]
    assert verdict.startswith("Audit passed") and "being rotated right now" in verdict and first.arn in verdict, verdict
    assert audit.output["report"].get("key_age_days") is None, audit.output["report"]
    for item in (w.ledger_before[audit.name], w.ledger_after[audit.name]):
        assert item and item["execution_id"] == first.arn, f"the lock was not the held rotation's around the audit: {item}"
    assert not audit.published and len(first.published) == 1, (audit.published, first.published)
    assert all(c["deploy_count"] == 1 for c in w.clusters().values()), w.clusters()
    return f"{verdict[:150]}; the held rotation finished on {new_id}"


OPS_SCENARIOS: list[tuple[str, str, Callable[[Stack], str]]] = [
    ("53", "the credentials PUT answered 307 elsewhere -> not followed, reconciled, rolled back", s53_put_redirected_never_followed),
    ("54", "deploy_concurrency 2 -> the canary alone, then waves of two, each waiting for its slowest", s54_waves),
    ("55", "a cluster fails inside a wave -> the others of the wave followed to their end, no later wave", s55_failure_inside_a_wave),
    ("56", "the canary fails with deploy_concurrency 2 -> no other cluster touched", s56_canary_fails_in_waves),
    ("57", "a finished rotation publishes its success report; NotifyOnSuccess off publishes nothing", s57_success_report),
    ("58", "audit of a fresh key -> passes, 0 days, nothing changed", s58_audit_fresh_key),
    ("59", "audit of a 60-day-old key -> KeyTooOld at 45 days, passes at 90", s59_audit_old_key),
    ("60", "audit after a rotation stopped half-way -> RotationUnfinished, nothing changed; the next run finishes", s60_audit_unfinished_rotation),
    ("61", "audit while another execution rotates -> passes, being rotated", s61_audit_while_rotating),
    ("62", "every task twice with waves -> one deploy per cluster, one message", s62_waves_every_task_twice),
]
