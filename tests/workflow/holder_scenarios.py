"""Workflow scenarios 30 and up: the other places Qovery keeps the key.

Qovery keeps the same AWS key in credentials entries, container registries (every AWS
cluster's mirroring registry is one), helm repositories, a cluster's secret manager
accesses and its Route53 DNS provider. A rotation must give the new key to every holder
of the old one, leave the holders of other keys and roles alone, and delete the old key
only once no holder holds it.

Each scenario checks IAM (the keys and their status), every holder in the fake (the key
it holds, that its other fields are unchanged: `assert_holders`), and Secrets Manager
(the key secret). run-scenarios.sh runs them with the others (scenarios.py).
"""

from __future__ import annotations

import json
import re
from typing import Callable

from stack import Stack
from worlds import (
    KIND_LABELS,
    HolderState,
    Ref,
    World,
    access_seed,
    assert_holders,
    assert_key_rejected,
    assert_key_works,
    assert_nothing_changed,
    assert_rotated,
    expect,
    key_secret_name,
    make_world,
    new_key_of,
    puts_to,
    registry_seed,
)


def held_old(w: World) -> dict[Ref, HolderState]:
    """The holders of the user's key at the start (and those put in since)."""
    return {ref: h for ref, h in w.baseline.items() if h.key_id == w.keys[0][0]}


def output_holders(out: dict) -> dict[Ref, dict]:
    return {(h["kind"], h["id"]): h for h in out["holders"]}


def left_alone(out: dict) -> dict[Ref, str]:
    return {(h["kind"], h["id"]): h["reason"] for h in out["report"]["left_alone"]}


def one_put_each(w: World, refs: list[Ref]) -> None:
    """Each holder got exactly one PUT, answered 200."""
    puts = {ref: puts_to(w, ref) for ref in refs}
    assert all(p == [200] for p in puts.values()), f"PUTs per holder (expected one 200 each): {puts}"


def no_puts(w: World, refs: list[Ref]) -> None:
    puts = {ref: puts_to(w, ref) for ref in refs if puts_to(w, ref)}
    assert not puts, f"holders that must be left alone were sent PUTs: {puts}"


def s30_mirroring_registries(stack: Stack) -> str:
    """Each AWS cluster's mirroring registry holds the key too: both registries and the
    credentials get the new key (credentials first), it works, and the old key is
    deleted, with one PUT per registry."""
    w = make_world(stack, "mirrors", mirrors=True)
    ex = w.run()
    new_id = assert_rotated(w, ex)
    mirrors = [("container_registry", r) for r in w.registries]
    assert set(held_old(w)) == {("credentials", w.creds), *mirrors}, sorted(held_old(w))
    one_put_each(w, [("credentials", w.creds), *mirrors])
    order = [r["operation"] for r in stack.fake.requests() if r["method"] == "PUT"]
    assert order == ["editAWSCredentials", "editContainerRegistry", "editContainerRegistry"], order
    out = ex.output
    got = {ref: (h["cluster_id"] if "cluster_id" in h else None, h["access_key_id"]) for ref, h in output_holders(out).items()}
    want = {ref: (h.cluster_id, new_id) for ref, h in held_old(w).items()}
    assert got == want, f"output holders {got}, expected {want}"
    for (_, rid), cid in zip(mirrors, w.cluster_ids):
        assert stack.fake.registry(rid)["cluster_id"] == cid
        assert any(k.startswith(f"container registry ") and f"({rid})" in k for k in out["deleted"]["kept_by"]), out["deleted"]["kept_by"]
    # Registries are read at each service deployment: no extra cluster redeploy.
    assert all(c["deploy_count"] == 1 and c["status"] == "DEPLOYED" for c in w.clusters().values()), w.clusters()
    return f"credentials and {len(mirrors)} mirroring registries moved to {new_id}, one PUT 200 each; old key deleted"


def s31_other_keys_and_roles_left_alone(stack: Stack) -> str:
    """A registry and a helm repository holding another key, one of each using a role,
    and one of each of a kind with no AWS key: no PUT to any, nothing changes in them,
    and those with a key or a role are named in report.left_alone of the dry run and
    of the real run."""
    w = make_world(stack, "leftalone", clusters=[{}],
                   registries=[{"holds": "other"}, {"holds": "role"}, {"holds": "none"}],
                   helm=[{"holds": "other"}, {"holds": "role"}, {"holds": "none"}])
    other_id = w.other_key[0]
    (reg_other, reg_role, reg_none), (helm_other, helm_role, helm_none) = w.registries, w.helm_repositories
    want = {
        ("container_registry", reg_other): f"holds {other_id}",
        ("container_registry", reg_role): f"uses role {w.seeds[reg_role]['role_arn']}",
        ("helm_repository", helm_other): f"holds {other_id}",
        ("helm_repository", helm_role): f"uses role {w.seeds[helm_role]['role_arn']}",
    }
    dry = w.run({**w.input, "dry_run": True})
    expect(dry, "SUCCEEDED")
    assert_nothing_changed(w, dry)
    assert left_alone(dry.output) == want, f"dry run left_alone {left_alone(dry.output)}, expected {want}"
    summary = dry.output["report"]["summary"]
    for ref, reason in want.items():
        assert f"{w.baseline[ref].label()}" in summary and reason in summary, f"{ref} / {reason} not in the summary: {summary}"
    for rid in (reg_none, helm_none):
        assert rid not in summary, f"{rid}, which holds no AWS key, is named in the summary"

    ex = w.run()
    new_id = assert_rotated(w, ex)
    assert set(held_old(w)) == {("credentials", w.creds)}
    assert left_alone(ex.output) == want, ex.output["report"]["left_alone"]
    assert set(output_holders(ex.output)) == {("credentials", w.creds)}, ex.output["holders"]
    sent = [r for r in stack.fake.requests() if r["operation"] in ("editContainerRegistry", "editHelmRepository")]
    assert not sent, f"registries of other keys or roles were sent PUTs: {sent}"
    return f"rotated to {new_id}; {len(want)} holders of another key or a role named in left_alone and untouched, 2 keyless ones ignored"


def s32_helm_repository(stack: Stack) -> str:
    """An OCI_ECR helm repository (skip_tls_verification on, with a description) holds
    the key: it gets the new key with every other field sent back; one of another key
    is left alone."""
    w = make_world(stack, "helm", clusters=[{}], helm=[{"holds": "key", "skip_tls_verification": True}, {"holds": "other"}])
    ex = w.run()
    new_id = assert_rotated(w, ex)
    mine, other = (("helm_repository", h) for h in w.helm_repositories)
    assert set(held_old(w)) == {("credentials", w.creds), mine}
    one_put_each(w, [("credentials", w.creds), mine])
    no_puts(w, [other])
    repo = stack.fake.helm_repository(mine[1])
    assert repo["access_key_id"] == new_id and repo["skip_tls_verification"] is True, repo
    assert output_holders(ex.output)[mine]["access_key_id"] == new_id, ex.output["holders"]
    return f"helm repository {repo['name']} moved to {new_id} (skip_tls_verification, url, description kept); the other left alone"


def s33_route53_dns_provider(stack: Stack) -> str:
    """A cluster's Route53 DNS provider holds the key, while the cluster's credentials
    hold another key: the provider gets the new key and its cluster is redeployed
    because of it. A third cluster's provider of another key is left alone and its
    cluster is not redeployed."""
    w = make_world(stack, "dns", entries=["key", "other"],
                   clusters=[{"entry": 0}, {"entry": 1, "dns": "key"}, {"entry": 1, "dns": "other"}])
    ex = w.run()
    new_id = assert_rotated(w, ex)
    first, dns_cluster, other_cluster = w.cluster_ids
    mine, other = ("dns_provider", dns_cluster), ("dns_provider", other_cluster)
    assert set(held_old(w)) == {("credentials", w.creds), mine}, sorted(held_old(w))
    one_put_each(w, [("credentials", w.creds), mine])
    no_puts(w, [other, ("credentials", w.all_creds[1])])
    clusters = w.clusters()
    assert [clusters[c]["deploy_count"] for c in w.cluster_ids] == [1, 1, 0], {c["name"]: c["deploy_count"] for c in clusters.values()}
    assert clusters[dns_cluster]["status"] == "DEPLOYED", clusters[dns_cluster]
    plan = {c["id"]: c["held_by"] for c in ex.output["clusters"]}
    domain = w.baseline[mine].name
    assert set(plan) == {first, dns_cluster}, plan
    assert plan[dns_cluster].startswith(f"DNS provider {domain} ({dns_cluster})"), plan[dns_cluster]
    assert plan[first].startswith(f"credentials aws-{w.tag}-1 ({w.creds})"), plan[first]
    assert set(left_alone(ex.output)) == {other, ("credentials", w.all_creds[1])}, ex.output["report"]["left_alone"]
    provider = stack.fake.dns_provider(dns_cluster)
    assert provider["aws_access_key_id"] == new_id and provider["hosted_zone_id"] == w.baseline[mine].fields["hosted_zone_id"], provider
    return f"DNS provider {domain} moved to {new_id}; its cluster redeployed (held_by DNS provider); the other provider's cluster untouched"


def s34_secret_manager_access_refused(stack: Stack) -> str:
    """A secret manager access holds the key. The rotation cannot edit it (Qovery
    edits one only through its whole cluster), so deleting the old key would break it:
    PreconditionFailed at preflight, nothing changed, and the cause names the access and
    its cluster."""
    w = make_world(stack, "smaccess", mirrors=True, clusters=[{}, {"accesses": ["role", "key", "none"]}])
    ex = w.run()
    expect(ex, "FAILED", "PreconditionFailed")
    assert ex.state_names() == ["Preflight"], ex.state_names()
    assert_nothing_changed(w, ex)
    cluster = w.clusters()[w.cluster_ids[1]]
    access = next(h for h in w.baseline.values() if h.kind == "secret_manager_access" and h.key_id == w.keys[0][0])
    message = ex.cause_message()
    for text in ("secret manager access", access.name, access.id, cluster["name"], cluster["id"], w.keys[0][0]):
        assert text in message, f"the cause does not name {text!r}: {message}"
    return message[:220]


def s35_registry_put_rejected_after_credentials(stack: Stack) -> str:
    """The credentials took the new key, then every PUT of the mirroring registry gets
    a 400. The hand-over started, so it is never rolled back: reconcile (mixed), the
    finish fails again, HandOverUnfinished. Both keys stay active, the credentials hold
    the new key, the registry the old one, and the key secret keeps the new key's
    secret for it. The cause says which holder holds which key."""
    w = make_world(stack, "regput400", clusters=[{}], mirrors=True)
    w.fault("editContainerRegistry", 400, 1000)
    old_id, old_secret = w.keys[0]
    ex = w.run()
    expect(ex, "FAILED", "HandOverIncomplete")
    names = ex.state_names()
    assert names[-1] == "HandOverUnfinished", names
    assert names.index("UpdateQovery") < names.index("ReconcileHandOver") < names.index("FinishHandOver"), names
    for state in ("RollbackNewKey", "DeployClusters", "DeleteOldKey"):
        assert state not in names, f"{state} ran: {names}"
    assert ex.exited("ReconcileHandOver")[0]["output"]["reconcile"]["qovery_holds"] == "mixed"
    new_id = new_key_of(w)
    assert w.key_ids() == sorted([(old_id, "Active"), (new_id, "Active")]), w.key_ids()
    registry = ("container_registry", w.registries[0])
    moved = assert_holders(w, new_id, stay=[registry])
    assert [h.ref for h in moved] == [("credentials", w.creds)], moved
    assert stack.fake.registry(w.registries[0])["access_key_id"] == old_id
    assert_key_works(w, old_id, old_secret)
    # The credentials were sent the key once; the registry once by UpdateQovery, once by FinishHandOver.
    assert puts_to(w, ("credentials", w.creds)) == [200], puts_to(w, ("credentials", w.creds))
    assert puts_to(w, registry) == [400, 400], puts_to(w, registry)
    assert all(c["deploy_count"] == 0 for c in w.clusters().values()), w.clusters()
    # The key secret is kept, and holds the new key with the secret the credentials hold.
    doc = json.loads(stack.sm.get_secret_value(SecretId=key_secret_name(w, ex))["SecretString"])
    assert doc["access_key_id"] == new_id and doc["secret_access_key"] == w.qovery_key()[1], "the key secret does not hold the new key"
    assert_key_works(w, doc["access_key_id"], doc["secret_access_key"])
    message = ex.cause_message()
    creds_label = w.baseline[("credentials", w.creds)].label()
    registry_label = w.baseline[registry].label()
    on_new = re.search(rf"Holders on the new key {new_id}: (.*?)\. Holders still on the old key {old_id}: (.*?)\. ", message)
    assert on_new, f"the cause does not say which holder holds which key: {message}"
    assert creds_label in on_new.group(1) and w.registries[0] not in on_new.group(1), on_new.group(1)
    assert registry_label in on_new.group(2) and w.creds not in on_new.group(2), on_new.group(2)
    assert "400" in message, message
    return f"credentials on {new_id}, registry still on {old_id}; HandOverUnfinished, both keys Active, key secret kept: {message[:120]}"


def s36_registry_added_after_preflight(stack: Stack) -> str:
    """A mirroring registry starts holding the old key after preflight (someone set it
    up mid-rotation). The hand-over finds it and gives it the new key too, and the old
    key is deleted only after, once no holder holds it."""
    w = make_world(stack, "latecomer", clusters=[{}])
    late = registry_seed("container", "key", f"{w.tag}-late-mirror", w.held, cluster_id=w.cluster_ids[0])
    seen: dict[str, object] = {}

    def on_event(ev: dict) -> None:
        if ev.get("event") == "StateExited" and ev.get("state") == "Preflight" and "added" not in seen:
            w.put_container_registry(late)
            seen["added"] = True
        if ev.get("event") == "StateExited" and ev.get("state") == "UpdateQovery" and "handed" not in seen:
            seen["handed"] = (stack.fake.registry(late["id"])["access_key_id"], w.key_ids())

    ex = w.run(on_event=on_event)
    new_id = assert_rotated(w, ex)  # the baseline has the late registry, holding the old key
    old_id = w.keys[0][0]
    ref = ("container_registry", late["id"])
    preflight = ex.exited("Preflight")[0]["output"]
    assert ref not in output_holders(preflight), f"the registry was there at preflight: {preflight['holders']}"
    assert output_holders(ex.output)[ref]["access_key_id"] == new_id, ex.output["holders"]
    # Right after the hand-over the registry held the new key, and both keys were live.
    assert seen.get("handed") == (new_id, sorted([(old_id, "Active"), (new_id, "Active")])), seen
    one_put_each(w, [("credentials", w.creds), ref])
    assert any(f"({late['id']})" in k for k in ex.output["deleted"]["kept_by"]), ex.output["deleted"]["kept_by"]
    return f"registry added after preflight got {new_id} in the hand-over; {old_id} deleted after"


def s37_every_task_twice_with_registries(stack: Stack) -> str:
    """At-least-once delivery with registries and a helm repository: every Task runs
    twice with the same input, only the second answer counts. Same outcome as once, and
    each holder got exactly one PUT, answered 200 (the second hand-over finds every
    holder on the new key)."""
    w = make_world(stack, "twiceholders", mirrors=True, registries=[{"holds": "other"}],
                   helm=[{"holds": "key"}, {"holds": "role"}])
    ex = w.run(twice=True)
    new_id = assert_rotated(w, ex)
    moved = sorted(held_old(w))
    assert len(moved) == 4, moved  # credentials, two mirrors, one helm repository
    one_put_each(w, moved)
    no_puts(w, [("container_registry", w.registries[-1]), ("helm_repository", w.helm_repositories[1])])
    deploys = {c["name"]: c["deploy_count"] for c in w.clusters().values()}
    assert all(n == 1 for n in deploys.values()), f"extra deployments: {deploys}"
    assert len(ex.lost_answers("update-qovery")) >= 1 and len(ex.invocations("update-qovery")) >= 2, ex.describe()
    return f"rotated to {new_id} with every task twice; {len(moved)} holders, one PUT 200 each; deploys {deploys}"


def s38_dry_run_lists_every_holder(stack: Stack) -> str:
    """A dry run lists every holder of the key, of every kind, by kind, name and id (and
    cluster), in its output and in its report's summary, and the holders it would leave
    alone; it changes nothing."""
    w = make_world(stack, "dryholders", entries=2, mirrors=True,
                   clusters=[{"entry": 0}, {"entry": 1, "dns": "key", "accesses": ["role"]}],
                   registries=[{"holds": "other"}], helm=[{"holds": "key"}, {"holds": "role"}])
    old_id = w.keys[0][0]
    ex = w.run({**w.input, "dry_run": True})
    expect(ex, "SUCCEEDED")
    assert ex.state_names() == ["Preflight", "IsDryRun", "DryRunReport"], ex.state_names()
    assert_nothing_changed(w, ex)
    want = held_old(w)
    kinds = sorted({k for k, _ in want})
    assert kinds == sorted(["credentials", "container_registry", "helm_repository", "dns_provider"]), kinds
    got = output_holders(ex.output)
    assert set(got) == set(want), f"output holders {sorted(got)}, expected {sorted(want)}"
    for ref, h in want.items():
        o = got[ref]
        assert (o["name"], o.get("cluster_id"), o["access_key_id"]) == (h.name, h.cluster_id, old_id), (o, h)
    summary = ex.output["report"]["summary"]
    missing = [h.label() for h in want.values() if h.label() not in summary]
    assert not missing, f"the summary does not name {missing}: {summary}"
    assert f"{len(want)} Qovery holder(s)" in summary, summary
    alone = left_alone(ex.output)
    assert {k for k, _ in alone} == {"container_registry", "helm_repository", "secret_manager_access"}, alone
    for ref in alone:
        assert w.baseline[ref].label() in summary, f"{ref} left alone but not in the summary"
    labels = sorted({KIND_LABELS[k] for k in kinds})
    return f"dry run lists {len(want)} holders ({', '.join(labels)}) and {len(alone)} left alone; nothing changed"


def s39_secret_manager_access_after_preflight(stack: Stack) -> str:
    """A secret manager access takes the old key after preflight. The hand-over finds
    it before any PUT, and the rotation cannot change it: a certain failure
    (PreconditionFailed) with no holder sent the new key, so the new key is rolled back
    at once, without the reconcile. Nothing in Qovery changed."""
    w = make_world(stack, "lateaccess", mirrors=True, clusters=[{}])
    access = access_seed("key", f"{w.tag}-late-secrets", w.held)

    def on_event(ev: dict) -> None:
        if ev.get("event") == "StateExited" and ev.get("state") == "Preflight":
            w.reseed(lambda seed: seed["clusters"][0].setdefault("secret_manager_accesses", []).append(access))

    ex = w.run(on_event=on_event)
    expect(ex, "FAILED", "PreconditionFailed")
    names = ex.state_names()
    assert names.index("UpdateQovery") + 1 == names.index("RollbackNewKey"), names
    assert "ReconcileHandOver" not in names, names
    sent = [r for r in stack.fake.requests() if r["method"] == "PUT"]
    assert not sent, f"a PUT was sent: {sent}"
    message = ex.cause_message()
    for text in (access["name"], access["id"], w.cluster_ids[0], "No holder was sent the new key yet"):
        assert text in message, f"the cause does not say {text!r}: {message}"
    old_id, old_secret = w.keys[0]
    assert w.key_ids() == [(old_id, "Active")], w.key_ids()
    assert_holders(w)
    assert_key_works(w, old_id, old_secret)
    (created,) = w.new_secrets
    assert_key_rejected(w, created, w.new_secrets[created])
    assert not stack.key_secrets(w.user), "the key secret outlived the rollback"
    return f"access found by the hand-over, no PUT; rolled back {created} at once: {message[:120]}"


def s40_registry_takes_old_key_after_hand_over(stack: Stack) -> str:
    """After the hand-over, while the clusters redeploy, someone gives a new registry
    the old key. QuarantineOldKey (issue 15: before the old key is switched off, then
    deleted) asks every holder and refuses (UnsafeDelete): the old key is never
    switched off, let alone deleted, under a holder. Both keys stay Active."""
    w = make_world(stack, "lateold", mirrors=True, clusters=[{}])
    late = registry_seed("container", "key", f"{w.tag}-late-ecr", w.held)

    def on_event(ev: dict) -> None:
        if ev.get("event") == "StateEntered" and ev.get("state") == "DeployClusters" and late["id"] not in w.registries:
            w.put_container_registry(late)

    ex = w.run(on_event=on_event)
    expect(ex, "FAILED", "UnsafeDelete")
    assert ex.of("StateFailed", "QuarantineOldKey") and not ex.entered("DeleteOldKey"), ex.describe()
    old_id, old_secret = w.keys[0]
    new_id = new_key_of(w)
    assert w.key_ids() == sorted([(old_id, "Active"), (new_id, "Active")]), w.key_ids()
    ref = ("container_registry", late["id"])
    moved = assert_holders(w, new_id, stay=[ref])
    assert sorted(h.ref for h in moved) == sorted([("credentials", w.creds), ("container_registry", w.registries[0])]), moved
    assert stack.fake.registry(late["id"])["access_key_id"] == old_id
    assert_key_works(w, old_id, old_secret)
    assert puts_to(w, ref) == [], puts_to(w, ref)
    assert w.clusters()[w.cluster_ids[0]]["status"] == "DEPLOYED"
    message = ex.cause_message()
    assert late["id"] in message and old_id in message, message
    assert not stack.key_secrets(w.user), "the key secret outlived the hand-over"
    return f"QuarantineOldKey refused, both keys kept Active: {message[:160]}"


HOLDER_SCENARIOS: list[tuple[str, str, Callable[[Stack], str]]] = [
    ("30", "each cluster's mirroring registry holds the key -> all get the new key", s30_mirroring_registries),
    ("31", "registries and helm repositories of other keys or roles -> left alone, in left_alone", s31_other_keys_and_roles_left_alone),
    ("32", "a helm repository holds the key -> gets the new key", s32_helm_repository),
    ("33", "a Route53 DNS provider holds the key -> new key, its cluster redeployed", s33_route53_dns_provider),
    ("34", "a secret manager access holds the key -> PreconditionFailed, nothing changes", s34_secret_manager_access_refused),
    ("35", "registry PUT refused after the credentials moved -> HandOverUnfinished, both keys kept", s35_registry_put_rejected_after_credentials),
    ("36", "a registry starts holding the old key after preflight -> gets the new key", s36_registry_added_after_preflight),
    ("37", "every task runs twice with registries and a helm repository -> one PUT per holder", s37_every_task_twice_with_registries),
    ("38", "dry run lists every holder by kind, name and id", s38_dry_run_lists_every_holder),
    ("39", "a secret manager access takes the key after preflight -> rolled back at once", s39_secret_manager_access_after_preflight),
    ("40", "a registry takes the old key after the hand-over -> UnsafeDelete at the quarantine, both keys kept Active", s40_registry_takes_old_key_after_hand_over),
]
