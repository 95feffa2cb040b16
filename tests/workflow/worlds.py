"""The worlds the workflow scenarios run in, and the checks every scenario shares.

A `World` is one scenario's IAM user and Qovery organization: credentials entries,
clusters, and the other objects Qovery keeps an AWS key in ("holders"): container
registries (each AWS cluster's mirroring registry is one), helm repositories, a
cluster's secret manager accesses and its Route53 DNS provider. `make_world` seeds
each holder holding the user's key, another key, a role, or no AWS key at all.

Every check sees every holder: `holders_in(snapshot)` turns the fake's state into one
`HolderState` per holder (the key id it holds, its secret, and every other field), and
`assert_holders` compares them with what the world seeded: the holders of the old key
must hold the new one (a key STS accepts, with the secret the fake holds), every other
holder must be exactly as seeded, and no holder may have lost or changed another field.
"""

from __future__ import annotations

import json
import secrets as pysecrets
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

import botocore.exceptions

from stack import ACCOUNT, ASL, REGION, Execution, Stack, prism_problems

# key_idle_seconds may not exceed the drain: the old key must have been idle for its last
# 60 s (the Waits take no time here, so that is wall-clock time since the harness or a
# caller last used it).
BASE_INPUT = {"drain_seconds": 60, "allow_short_drain": True, "key_idle_seconds": 60, "poll_interval_seconds": 10}
# States that change something; none of them may run when a scenario must change nothing.
CHANGING_STATES = ["CreateKey", "UpdateQovery", "FinishHandOver", "RollbackNewKey", "DeployClusters", "QuarantineOldKey",
                   "DeleteOldKey"]
IN_PROGRESS = {"DEPLOYING", "DEPLOYMENT_QUEUED", "QUEUED", "BUILDING"}
# The worlds the running scenario made, for the checks every scenario gets.
WORLDS: list["World"] = []

# The kinds of holder, as the rotation's outputs name them (HolderKind, snake case).
KINDS = ("credentials", "container_registry", "helm_repository", "secret_manager_access", "dns_provider")
# How the rotation's labels name each kind ("container registry mirror-1 (<id>)").
KIND_LABELS = {
    "credentials": "credentials",
    "container_registry": "container registry",
    "helm_repository": "helm repository",
    "secret_manager_access": "secret manager access",
    "dns_provider": "DNS provider",
}
# What a seeded holder holds: the user's key, another key, a role, or no AWS key.
HOLDS = ("key", "other", "role", "none")
# The PUT that gives each kind a new key (a secret manager access has none the rotator uses).
EDIT_OPERATION = {
    "credentials": "editAWSCredentials",
    "container_registry": "editContainerRegistry",
    "helm_repository": "editHelmRepository",
    "dns_provider": "editClusterDnsProvider",
}

Ref = tuple[str, str]  # (kind, id): one holder, as the outputs' HolderRef names it


@dataclass
class HolderState:
    """One holder as the fake holds it now. `id` is the object's Qovery id, or, for a
    DNS provider (which has none), its cluster's id, as the rotation's outputs say."""

    kind: str
    id: str
    name: str
    cluster_id: str | None
    key_id: str | None
    secret: str | None
    role_arn: str | None
    # Every other field (url, description, region, mode, domain, hosted zone, ...):
    # what a PUT must send back unchanged.
    fields: dict

    @property
    def ref(self) -> Ref:
        return (self.kind, self.id)

    def label(self) -> str:
        """How the rotation's messages start naming it: `container registry x (<id>)`."""
        return f"{KIND_LABELS[self.kind]} {self.name} ({self.id})"

    def holding(self) -> str:
        if self.key_id:
            return self.key_id
        return f"role {self.role_arn}" if self.role_arn else "no AWS key"


def holders_in(snapshot: dict) -> dict[Ref, HolderState]:
    """Every holder in a snapshot of the fake (`GET /_fake/state`), of every kind,
    those that hold no AWS key included (a Docker Hub registry, an automatic access)."""
    out: dict[Ref, HolderState] = {}

    def add(h: HolderState) -> None:
        out[h.ref] = h

    for c in snapshot["credentials"]:
        add(HolderState("credentials", c["id"], c["name"], None, c["access_key_id"] or None,
                        c["secret_access_key"] or None, None, {"name": c["name"]}))
    for kind, items in (("container_registry", snapshot.get("container_registries", [])),
                        ("helm_repository", snapshot.get("helm_repositories", []))):
        for r in items:
            rest = {k: v for k, v in r.items() if k not in ("access_key_id", "secret_access_key")}
            add(HolderState(kind, r["id"], r["name"], r.get("cluster_id"), r.get("access_key_id"),
                            r.get("secret_access_key"), r.get("role_arn"), rest))
    for cluster in snapshot["clusters"]:
        for a in cluster.get("secret_manager_accesses", []):
            rest = {k: v for k, v in a.items() if k not in ("access_key", "secret_key")}
            add(HolderState("secret_manager_access", a["id"], a["name"], cluster["id"], a.get("access_key"),
                            a.get("secret_key"), a.get("role_arn"), rest))
        d = cluster.get("dns_provider")
        if d:
            rest = {k: v for k, v in d.items() if k not in ("aws_access_key_id", "aws_secret_access_key")}
            add(HolderState("dns_provider", cluster["id"], d["domain"], cluster["id"], d["aws_access_key_id"] or None,
                            d["aws_secret_access_key"] or None, None, rest))
    return out


# ------------------------------------------------------------------ seeding holders


def random_key() -> tuple[str, str]:
    """A made-up access key (not an IAM key anywhere): "another key" a holder holds."""
    return "AKIA" + pysecrets.token_hex(8).upper(), pysecrets.token_urlsafe(30)


def ecr_url(region: str, oci: bool = False) -> str:
    return f"{'oci' if oci else 'https'}://{ACCOUNT}.dkr.ecr.{region}.amazonaws.com"


def registry_seed(family: str, holds: str, name: str, key: tuple[str, str], *, region: str = REGION,
                  cluster_id: str | None = None, **extra: Any) -> dict:
    """A container registry (family "container": kind ECR) or helm repository ("helm":
    OCI_ECR) holding `key` (holds "key" or "other"), a role, or, of a kind that holds no
    AWS key (DOCKER_HUB, HTTPS), nothing. Every one has a description, so that a PUT that
    drops or changes it shows. `extra` overrides any field (kind, url, description,
    skip_tls_verification)."""
    if holds not in HOLDS:
        raise ValueError(f"holds must be one of {HOLDS}, not {holds!r}")
    helm = family == "helm"
    seed: dict[str, Any] = {"id": str(uuid.uuid4()), "name": name, "description": f"{name}, seeded by the workflow tests"}
    if holds == "none":
        seed |= {"kind": "HTTPS", "url": "https://charts.example.com"} if helm else {
            "kind": "DOCKER_HUB", "url": "https://registry-1.docker.io"}
    else:
        seed |= {"kind": "OCI_ECR" if helm else "ECR", "url": ecr_url(region, oci=helm), "region": region}
        if holds == "role":
            seed["role_arn"] = f"arn:aws:iam::{ACCOUNT}:role/{name}"
        else:
            seed["access_key_id"], seed["secret_access_key"] = key
    if cluster_id is not None:
        seed["cluster_id"] = cluster_id
    return seed | extra


def access_seed(holds: str, name: str, key: tuple[str, str], region: str = REGION) -> dict:
    """A cluster's secret manager access: static credentials (holds "key"/"other"),
    AWS_ROLE_ARN ("role") or AUTOMATICALLY_CONFIGURED ("none")."""
    seed: dict[str, Any] = {"id": str(uuid.uuid4()), "name": name, "region": region}
    if holds in ("key", "other"):
        return seed | {"mode": "AWS_STATIC_CREDENTIALS", "access_key": key[0], "secret_key": key[1]}
    if holds == "role":
        return seed | {"mode": "AWS_ROLE_ARN", "role_arn": f"arn:aws:iam::{ACCOUNT}:role/{name}"}
    if holds == "none":
        return seed | {"mode": "AUTOMATICALLY_CONFIGURED"}
    raise ValueError(f"holds must be one of {HOLDS}, not {holds!r}")


def dns_seed(holds: str, domain: str, key: tuple[str, str], region: str = REGION) -> dict:
    """A Route53 DNS provider with static credentials (the only kind Route53 has)."""
    if holds not in ("key", "other"):
        raise ValueError(f"a Route53 DNS provider holds a static key: holds must be key or other, not {holds!r}")
    return {"domain": domain, "aws_region": region, "hosted_zone_id": "Z0" + pysecrets.token_hex(8).upper(),
            "aws_access_key_id": key[0], "aws_secret_access_key": key[1]}


# ------------------------------------------------------------------ the world


@dataclass
class World:
    """One scenario's IAM user, Qovery organization, and what they held at the start."""

    stack: Stack
    tag: str
    user: str
    keys: list[tuple[str, str]]  # (access key id, secret) created for the user
    org: str
    creds: str  # the first credentials entry; all_creds lists every entry seeded
    all_creds: list[str]
    cluster_ids: list[str]
    held: tuple[str, str]  # the key the fake's (first) credentials hold at the start
    input: dict
    # Another key (made up, not an IAM key), which holders seeded with holds="other" hold.
    other_key: tuple[str, str] = field(default_factory=random_key)
    # Ids of the seeded container registries and helm repositories, in seed order, and
    # each one's seed (to put it back, changed or not).
    registries: list[str] = field(default_factory=list)
    helm_repositories: list[str] = field(default_factory=list)
    seeds: dict[str, dict] = field(default_factory=dict)
    # The whole seed the fake was given (PUT /_fake/state), for reseed().
    seed: dict = field(default_factory=dict)
    faults: bool = False
    denials_expected: bool = False  # the scenario makes moto deny a function's call on purpose
    before_fake: dict = field(default_factory=dict)
    # Every holder at the start, and those put in since (put_container_registry): what
    # the holder checks compare with.
    baseline: dict[Ref, HolderState] = field(default_factory=dict)
    executions: list[Execution] = field(default_factory=list)
    # New keys' secrets, read from their key secret while it exists: once the
    # rotation deletes it, only these let the leak check look for them.
    new_secrets: dict[str, str] = field(default_factory=dict)
    # Every secret_access_key the fake was sent, read after each run (a later world reseeds it).
    received_secrets: set[str] = field(default_factory=set)
    # Other secrets the scenario made (a key someone else created mid-run), by label:
    # the leak checks look for them too.
    extra_secrets: dict[str, str] = field(default_factory=dict)
    # Per execution name: the user's ledger item (raw attributes) right before and right
    # after the run, and when the run started and ended (time.monotonic()), to tell
    # which runs overlapped. The ledger checks of after_every_run read them.
    ledger_before: dict[str, dict | None] = field(default_factory=dict)
    ledger_after: dict[str, dict | None] = field(default_factory=dict)
    spans: dict[str, tuple[float, float]] = field(default_factory=dict)

    def run(self, input: dict | None = None, **kw: Any) -> Execution:
        """Stack.run with the world's input (or `input`), recording the new key's secret
        once CreateKey stored it, the ledger item before and after, and what the fake
        was sent. Safe to call from several threads at once, and from an on_event
        callback of another run (a second execution while the first one runs)."""
        before = self.stack.ledger_item(self.user)
        t0 = time.monotonic()

        def capture(ev: dict) -> None:
            if ev.get("event") == "StateExited" and ev.get("state") == "CreateKey":
                out = ev.get("output") or {}
                try:
                    doc = json.loads(self.stack.sm.get_secret_value(
                        SecretId=out["key_secret_id"], VersionId=out["new_key_version_id"])["SecretString"])
                    self.new_secrets[doc["access_key_id"]] = doc["secret_access_key"]
                except (KeyError, botocore.exceptions.ClientError):
                    pass  # already deleted: the hand-over outran us; the fake has the secret
            if kw.get("on_event"):
                kw["on_event"](ev)
        ex = self.stack.run(self.input if input is None else input, **{**kw, "on_event": capture})
        self.spans[ex.name] = (t0, time.monotonic())
        self.ledger_before[ex.name] = before
        self.ledger_after[ex.name] = self.stack.ledger_item(self.user)
        self.executions.append(ex)
        self.received_secrets |= set(self.stack.fake.state().get("received_secrets", []))
        return ex

    def overlapped(self, ex: Execution) -> bool:
        """Whether another run of this world was under way while `ex` ran."""
        start, end = self.spans.get(ex.name, (0.0, 0.0))
        return any(s < end and start < e for name, (s, e) in self.spans.items() if name != ex.name)

    def ledger(self) -> dict | None:
        """The user's rotation record now (Stack.ledger)."""
        return self.stack.ledger(self.user)

    def fault(self, operation: str, status: int, times: int = 1, **kw: Any) -> None:
        """See FakeQovery.fault: retry_after, echo_request, apply, after, location."""
        self.stack.fake.fault(operation, status, times, **kw)
        self.faults = True

    # ---- holders put in during the scenario
    def put_container_registry(self, seed: dict) -> None:
        """Adds (or replaces) a container registry without resetting the fake's request
        log: safe mid-execution. It joins the baseline as it is now."""
        self.stack.fake.put_container_registry(seed)
        self._rebase(("container_registry", seed["id"]), seed, self.registries)

    def put_helm_repository(self, seed: dict) -> None:
        self.stack.fake.put_helm_repository(seed)
        self._rebase(("helm_repository", seed["id"]), seed, self.helm_repositories)

    def reseed(self, change: Callable[[dict], None]) -> None:
        """Reseeds the fake with the world's seed changed by `change` (which edits it in
        place), say to give a cluster a secret manager access mid-run, which no control
        call adds. Each cluster keeps its status and last deployment. The fake's request
        log and faults start afresh; the baseline becomes what the fake holds now, so
        call it before anything was changed."""
        now = self.clusters()
        for c in self.seed["clusters"]:
            if c["id"] in now:
                for k in ("status", "last_execution_id", "last_deployment_date"):
                    c[k] = now[c["id"]][k]
        change(self.seed)
        self.stack.fake.seed(self.seed)
        self.baseline = self.holders()

    def _rebase(self, ref: Ref, seed: dict, ids: list[str]) -> None:
        self.seeds[seed["id"]] = seed
        if seed["id"] not in ids:
            ids.append(seed["id"])
        self.baseline[ref] = self.holders()[ref]

    # ---- what the world looks like now
    def key_ids(self) -> list[tuple[str, str]]:
        return self.stack.keys(self.user)

    def qovery_key(self, creds: str | None = None) -> tuple[str, str]:
        c = self.stack.fake.credentials(creds or self.creds)
        return c["access_key_id"], c["secret_access_key"]

    def qovery_keys(self) -> list[str]:
        """The key id each seeded credentials entry holds, in seed order."""
        return [self.qovery_key(c)[0] for c in self.all_creds]

    def holders(self) -> dict[Ref, HolderState]:
        """Every holder the fake holds now."""
        return holders_in(self.stack.fake.state())

    def holding(self, key_id: str, holders: dict[Ref, HolderState] | None = None) -> list[HolderState]:
        """The holders that hold key_id (now, or in `holders`)."""
        return [h for h in (holders if holders is not None else self.holders()).values() if h.key_id == key_id]

    def clusters(self) -> dict[str, dict]:
        return self.stack.fake.clusters()

    def user_arn(self) -> str:
        return f"arn:aws:iam::{ACCOUNT}:user/{self.user}"


def make_world(
    stack: Stack,
    tag: str,
    *,
    keys: int = 1,
    clusters: list[dict] | None = None,
    holds: tuple[str, str] | None = None,
    token: str | None = None,
    entries: int | list[str] = 1,
    registries: list[dict] | None = None,
    helm: list[dict] | None = None,
    mirrors: bool = False,
) -> World:
    """An IAM user with `keys` keys and an organization whose AWS credentials entries
    hold the user's first key (or `holds`). `entries` is how many, or what each holds
    ("key", "other" or "role", see HOLDS).

    A cluster spec may say which entry it uses with "entry" (an index; default 0),
    give it secret manager accesses with "accesses" (a list of HOLDS values) and a
    Route53 DNS provider with "dns" ("key" or "other"); any other field is the fake's
    SeedCluster's. `registries` and `helm` are container registries and helm
    repositories: each a dict with "holds" (a HOLDS value), optionally "cluster" (an
    index: the mirroring registry of that cluster; container registries only) and any
    field of registry_seed. `mirrors=True` gives each cluster a mirroring ECR registry
    holding the key, as Qovery gives every AWS cluster one."""
    user = f"qkr-{tag}-{pysecrets.token_hex(3)}"
    created = stack.create_user(user, keys)
    # The functions' policies are the template's, for this IAM user.
    stack.deploy(user)
    held = holds or created[0]
    other = random_key()

    def key_for(what: str) -> tuple[str, str]:
        return held if what == "key" else other

    def entry_seed(i: int, entry_id: str, what: str) -> dict:
        seed = {"id": entry_id, "name": f"aws-{tag}-{i + 1}"}
        if what == "role":
            return seed | {"role_arn": f"arn:aws:iam::{ACCOUNT}:role/qovery-{tag}"}
        return seed | {"access_key_id": key_for(what)[0], "secret_access_key": key_for(what)[1]}

    org = str(uuid.uuid4())
    entry_holds = ["key"] * entries if isinstance(entries, int) else list(entries)
    all_creds = [str(uuid.uuid4()) for _ in entry_holds]
    creds = all_creds[0]
    specs = clusters if clusters is not None else [{}, {}]
    cluster_seeds = []
    for i, extra in enumerate(specs):
        extra = dict(extra)
        name = f"{tag}-cluster-{i + 1}"
        entry = all_creds[extra.pop("entry", 0)]
        seed = {"id": str(uuid.uuid4()), "name": name, "credentials_id": entry}
        accesses = extra.pop("accesses", [])
        if accesses:
            seed["secret_manager_accesses"] = [
                access_seed(a, f"{name}-secrets-{j + 1}", key_for(a)) for j, a in enumerate(accesses)
            ]
        dns = extra.pop("dns", None)
        if dns:
            seed["dns_provider"] = dns_seed(dns, f"{name}.{tag}.example.com", key_for(dns))
        cluster_seeds.append({**seed, **extra})

    def registry_specs(family: str, given: list[dict] | None) -> list[dict]:
        out = []
        for i, spec in enumerate(given or []):
            spec = dict(spec)
            what = spec.pop("holds", "key")
            cluster = spec.pop("cluster", None)
            cluster_id = cluster_seeds[cluster]["id"] if cluster is not None else None
            default = f"{tag}-{'helm' if family == 'helm' else 'ecr'}-{i + 1}"
            if cluster is not None:
                default = f"{cluster_seeds[cluster]['name']}-mirror"
            name = spec.pop("name", default)
            out.append(registry_seed(family, what, name, key_for(what), cluster_id=cluster_id, **spec))
        return out

    container_specs = list(registries or [])
    if mirrors:
        container_specs = [{"holds": "key", "cluster": i} for i in range(len(cluster_seeds))] + container_specs
    container_seeds = registry_specs("container", container_specs)
    helm_seeds = registry_specs("helm", helm)
    seed = {
        "token": token or stack.token,
        "organization_id": org,
        "credentials": [entry_seed(i, c, h) for i, (c, h) in enumerate(zip(all_creds, entry_holds))],
        "clusters": cluster_seeds,
        "container_registries": container_seeds,
        "helm_repositories": helm_seeds,
    }
    stack.fake.seed(seed)
    w = World(
        stack=stack,
        tag=tag,
        user=user,
        keys=created,
        org=org,
        creds=creds,
        all_creds=all_creds,
        cluster_ids=[c["id"] for c in cluster_seeds],
        held=held,
        input={"iam_user_name": user, "organization_id": org, "credentials_id": creds, **BASE_INPUT},
        other_key=other,
        registries=[r["id"] for r in container_seeds],
        helm_repositories=[r["id"] for r in helm_seeds],
        seeds={r["id"]: r for r in container_seeds + helm_seeds},
        seed=seed,
    )
    w.before_fake = stack.fake.state()
    w.baseline = holders_in(w.before_fake)
    WORLDS.append(w)
    return w


# ------------------------------------------------------------------ shared checks


def expect(ex: Execution, status: str, error: str | None = None) -> None:
    assert ex.status == status and ex.error == error, (
        f"expected {status} {error or ''}, got {ex.status} {ex.error}: {ex.cause_message()}\n{ex.describe()}"
    )


def assert_holders(w: World, new_id: str | None = None, *, old_id: str | None = None,
                   stay: Iterable[Ref] = ()) -> list[HolderState]:
    """Every holder against the world's baseline. With new_id: each holder that held
    old_id (by default the user's first key) now holds new_id, with a secret STS
    accepts as the user's, except those in `stay`, which must be exactly as they were.
    Every other holder is exactly as it was (key, secret, role), and no holder changed
    any other field, appeared or vanished. Returns the holders that moved."""
    old_id = old_id or w.keys[0][0]
    stay = set(stay)
    now = w.holders()
    problems = []
    gone = sorted(set(w.baseline) - set(now))
    extra = sorted(set(now) - set(w.baseline))
    if gone:
        problems.append(f"holders gone: {gone}")
    if extra:
        problems.append(f"holders nobody seeded: {extra}")
    moved = []
    for ref, before in w.baseline.items():
        after = now.get(ref)
        if after is None:
            continue
        if (after.name, after.cluster_id, after.role_arn, after.fields) != (before.name, before.cluster_id, before.role_arn, before.fields):
            changed = sorted(k for k in set(before.fields) | set(after.fields) if before.fields.get(k) != after.fields.get(k))
            problems.append(f"{before.label()}: fields changed {changed or ['name/cluster/role']}: "
                            f"{ {k: before.fields.get(k) for k in changed} } -> { {k: after.fields.get(k) for k in changed} }")
        if new_id is not None and before.key_id == old_id and ref not in stay:
            if after.key_id != new_id:
                problems.append(f"{before.label()} holds {after.holding()}, not the new key {new_id}")
                continue
            try:
                arn = w.stack.caller_arn(after.key_id, after.secret or "")
            except botocore.exceptions.ClientError as e:
                problems.append(f"{before.label()} holds {new_id} with a secret STS rejects: {e.response['Error']['Code']}")
                continue
            if arn != w.user_arn():
                problems.append(f"{before.label()} holds {new_id}, which STS says belongs to {arn}")
            moved.append(after)
        elif (after.key_id, after.secret) != (before.key_id, before.secret):
            problems.append(f"{before.label()} held {before.holding()} and now holds {after.holding()}"
                            + ("" if after.key_id != before.key_id else " (another secret)"))
    assert not problems, "holders in Qovery are not as expected:\n  " + "\n  ".join(problems)
    return moved


def assert_nothing_changed(w: World, ex: Execution) -> None:
    """No key created or deleted, no holder in Qovery touched, no deploy, no key secret."""
    ran = [s for s in CHANGING_STATES if ex.entered(s)]
    assert not ran, f"states that change things ran: {ran}\n{ex.describe()}"
    assert w.key_ids() == sorted((k[0], "Active") for k in w.keys), f"IAM keys changed: {w.key_ids()}"
    assert w.qovery_key() == w.held, f"Qovery now holds {w.qovery_key()[0]}, expected {w.held[0]}"
    assert_holders(w)
    after = w.stack.fake.state()
    before = {c["id"]: c for c in w.before_fake["clusters"]}
    for c in after["clusters"]:
        assert c["deploy_count"] == 0, f"cluster {c['name']} was deployed"
        assert c["status"] == before[c["id"]]["status"], f"cluster {c['name']} is now {c['status']}"
    changing = [r for r in after["requests"] if r["method"] not in ("GET", "HEAD")]
    assert not changing, f"Qovery got calls that change things: {changing}"
    assert not w.stack.key_secrets(w.user), "a key secret was created"


def deployed_in_order(output: dict) -> list[dict]:
    """The clusters of a finished rotation's waves (`deployments`), in the order they
    redeployed: each {id, name, outcome, status}."""
    return [c for wave in output.get("deployments", []) for c in wave["clusters"]]


def max_attempts(state: str, error: str) -> int:
    """MaxAttempts of the ASL retrier of `state` that matches `error`."""
    def find(states: dict) -> dict | None:
        for name, st in states.items():
            if name == state:
                return st
            inner = st.get("ItemProcessor") or st.get("Iterator")
            if inner and (hit := find(inner["States"])):
                return hit
        return None

    st = find(json.loads(ASL.read_text())["States"])
    assert st is not None, f"no state {state} in the ASL"
    for r in st.get("Retry", []):
        if error in r["ErrorEquals"]:
            return r.get("MaxAttempts", 3)
    raise AssertionError(f"{state} has no Retry on {error}")


def new_key_of(w: World) -> str:
    ids = {k for k, _ in w.key_ids()}
    new = ids - {k[0] for k in w.keys}
    assert len(new) == 1, f"expected exactly one new key, the user has {sorted(ids)}"
    return new.pop()


def assert_key_works(w: World, key_id: str, secret: str) -> None:
    arn = w.stack.caller_arn(key_id, secret)
    assert arn == w.user_arn(), f"STS says {key_id} belongs to {arn}"


def assert_key_rejected(w: World, key_id: str, secret: str) -> None:
    try:
        arn = w.stack.caller_arn(key_id, secret)
    except botocore.exceptions.ClientError as e:
        assert e.response["Error"]["Code"] == "InvalidClientTokenId", f"unexpected STS error {e}"
        return
    raise AssertionError(f"moto still accepts the deleted key {key_id} (as {arn})")


def assert_rotated(w: World, ex: Execution) -> str:
    """The rotation finished: only the new key is left, every holder of the old key
    (of every kind, those added during the run included) holds it and it works, every
    other holder is untouched, the old key is dead, and no key secret is left."""
    expect(ex, "SUCCEEDED")
    old_id, old_secret = w.keys[0]
    new_id = new_key_of(w)
    assert w.key_ids() == [(new_id, "Active")], f"expected only the new key, got {w.key_ids()}"
    moved = assert_holders(w, new_id)
    assert moved, "no holder moved to the new key"
    assert_key_rejected(w, old_id, old_secret)
    assert not w.stack.key_secrets(w.user), "a key secret outlived the rotation"
    return new_id


def secrets_of(w: World) -> dict[str, str]:
    """Every secret the scenario knows, read after the run: the seeded keys' secrets,
    the other key's, the token, the new key's secret from the key secret, every secret
    any holder of any kind held at the start or holds now, and every secret the fake was
    sent in a PUT (refused or rolled back ones too)."""
    found = {"Qovery API token": w.stack.token, "secret of the other key": w.other_key[1]}
    found["secret of the Qovery principal"] = w.stack.qovery_principal["secret_access_key"]
    for kid, secret in w.keys:
        found[f"secret of seeded key {kid}"] = secret
    for kid, secret in w.new_secrets.items():
        found[f"secret of new key {kid}"] = secret
    for v in w.stack.key_secrets(w.user):
        try:
            doc = json.loads(v["value"])
        except ValueError:
            doc = None
        # A JSON document's other fields (the key id) are not secret.
        value = doc.get("secret_access_key") if isinstance(doc, dict) else v["value"]
        found[f"key secret {v['name']} version {v['version']}"] = value
    for when, holders in (("held at the start", w.baseline), ("holds now", w.holders())):
        for h in holders.values():
            if h.secret:
                found[f"secret {h.label()} {when} for {h.key_id}"] = h.secret
    for i, secret in enumerate(sorted(w.received_secrets)):
        found[f"secret sent to Qovery #{i + 1}"] = secret
    found.update(w.extra_secrets)
    return {k: v for k, v in found.items() if v}


# Any run of this many characters of a secret counts as a leak: an error page cut in the
# middle of a secret still gives its first part away.
PIECE = 12


def leaked_piece(secret: str, text: str) -> str | None:
    """A PIECE-character piece of `secret` (the whole of a shorter one) found in `text`."""
    n = min(PIECE, len(secret))
    return next((p for p in (secret[i : i + n] for i in range(len(secret) - n + 1)) if p in text), None)


def key_secret_name(w: World, ex: Execution) -> str:
    """The name of the execution's key secret (its ARN adds a random suffix)."""
    return w.stack.key_secret_prefix_of(w.user) + ex.name


def created_key(ex: Execution) -> str | None:
    exits = ex.exited("CreateKey")
    return (exits[-1].get("output") or {}).get("new_access_key_id") if exits else None


def secret_name_of(secret_id: str) -> str:
    """A key secret's name, from its id as a record or a state keeps it: the name
    itself, or its ARN (`arn:...:secret:<name>-XXXXXX`)."""
    if secret_id.startswith("arn:") and ":secret:" in secret_id:
        return secret_id.split(":secret:", 1)[1][:-7]
    return secret_id


def record_owners(record: dict | None) -> set[str]:
    """The executions a ledger record speaks for: the one holding the lock, and the
    ended one whose rotation it took over."""
    if not record:
        return set()
    return {r for r in (record.get("execution_id"), record.get("took_over_from")) if r}


def assert_no_key_secret_left(w: World, ex: Execution) -> None:
    """Issue 6: the new key's secret lives only until every holder holds it, or until
    the rollback removed the key. Afterwards no version of any secret, deprecated and
    scheduled-for-deletion ones included, holds a secret access key.

    Issue 12: a run that ended leaving the lock (stopped, or failed after preflight)
    leaves its record, and the next run finishes or undoes it and removes its key
    secret. While the user's ledger record names a new key and its key secret, that key
    secret may remain, and then holds exactly that key and its secret. It must remain
    when the recorded rotation ended HandOverUnfinished (the holders still on the old
    key need it), and may hold anything after HandOverUnknown. Once a later run took the
    rotation over and finished or undid it, the record no longer names it, and it must
    be gone."""
    if ex.status == "RUNNING":
        return
    record = w.ledger()
    owners = record_owners(record)
    recorded = [o for o in w.executions if o.arn in owners]
    # key secret name -> (the document it must hold, None: anything; whether it must exist)
    kept: dict[str, tuple[tuple[str, str] | None, bool]] = {}
    if record and record.get("key_secret_id") and record.get("new_access_key_id"):
        name = secret_name_of(record["key_secret_id"])
        new_id = record["new_access_key_id"]
        if any(o.entered("HandOverUnknown") for o in recorded):
            kept[name] = (None, False)
        else:
            unfinished = any(o.entered("HandOverUnfinished") for o in recorded)
            assert new_id in w.new_secrets, (
                f"the ledger record names the new key {new_id} and its key secret {name}, but its secret was never seen"
            )
            kept[name] = ((new_id, w.new_secrets[new_id]), unfinished)
    for other in recorded:
        if other.entered("HandOverUnfinished"):
            assert any(required for _, required in kept.values()), (
                f"{other.name} ended HandOverUnfinished, but the ledger record does not name its new key and key secret: "
                f"{ {k: record.get(k) for k in ('phase', 'new_access_key_id', 'key_secret_id')} if record else None }"
            )
    secrets = set(w.new_secrets.values()) | {s for _, s in w.keys} | set(w.extra_secrets.values())
    versions = w.stack.all_secret_versions()
    for name, (doc, required) in kept.items():
        if doc is None:
            continue
        mine = [v for v in versions if v["name"] == name]
        current = [v for v in mine if "AWSCURRENT" in v["stages"]]
        if required:
            assert current, f"the hand-over did not finish, but the key secret {name} is gone: the holders still on the old key need it"
        for v in mine:
            try:
                stored = json.loads(v["value"] or "")
            except ValueError:
                stored = None
            held = (stored.get("access_key_id"), stored.get("secret_access_key")) if isinstance(stored, dict) else None
            assert held == doc, (
                f"key secret {name} version {v['version']} {v['stages']} kept for the recorded rotation holds "
                f"{held[0] if held else 'something else'}, not exactly the new key {doc[0]} and its secret"
            )
    for v in versions:
        if v["name"] in kept:
            continue
        value = v["value"] or ""
        held = [s for s in secrets if s and s in value]
        assert not held and '"secret_access_key"' not in value.replace(" ", "").replace('"secret_access_key":null', ""), (
            f"secret {v['name']} version {v['version']} {v['stages']} still holds a secret access key after {ex.status}"
            + (f" (the ledger record names {record.get('key_secret_id')})" if record else " (no ledger record names it)")
        )


def released(ex: Execution) -> bool:
    """The execution ended its rotation and released the user's lock: DeleteOldKey
    retired the old key, RollbackNewKey removed the new one, or AbandonMigration
    undid a move to a role."""
    return bool(ex.exited("DeleteOldKey") or ex.exited("RollbackNewKey") or ex.exited("AbandonMigration"))


def assert_no_secret_in_ledger(w: World, item: dict | None, when: str) -> None:
    """No piece of any secret the scenario knows in a ledger item (every attribute, the
    record's JSON included), as the leak check looks for them."""
    if not item:
        return
    text = json.dumps(item)
    leaks = [f"{what} ({len(piece)}+ characters of it)" for what, secret in secrets_of(w).items()
             if (piece := leaked_piece(secret, text)) is not None]
    assert not leaks, f"SECRET LEAKED into the ledger item of {w.user} {when}: " + "; ".join(leaks)


def describe_item(item: dict | None) -> str:
    if not item:
        return "no item"
    return f"an item of execution {item.get('execution_id')} (phase {item.get('phase')})"


def assert_ledger(w: World) -> None:
    """Issue 12, after every run: the user's ledger item (lock and record) right after
    each run, and now. A rotation that finished (SUCCEEDED, DeleteOldKey) or was rolled
    back (RollbackNewKey) released the lock: no item. A dry run, and a run that failed in
    preflight (before it takes the lock), left the item as it was. Every other run that
    ended (stopped, or failed after preflight) left the item, naming it. No item, ever,
    holds a piece of a secret. (Runs that overlapped another run of the world are only
    checked for what they may not do.)"""
    ran = {ex.arn for ex in w.executions}
    for ex in w.executions:
        if ex.name not in w.ledger_after:
            continue  # planted by a negative control
        before, after = w.ledger_before[ex.name], w.ledger_after[ex.name]
        assert_no_secret_in_ledger(w, before, f"before {ex.name}")
        assert_no_secret_in_ledger(w, after, f"after {ex.name}")
        owner = after.get("execution_id") if after else None
        alone = not w.overlapped(ex)
        what = f"{ex.name} ({ex.status} {ex.error or ''})"
        if ex.input.get("dry_run") or ex.input.get("audit"):
            # An audit is a dry run that also judges: it never takes the lock either.
            assert not alone or after == before, f"the dry run {what} changed the ledger: {describe_item(before)} -> {describe_item(after)}"
            assert owner != ex.arn, f"the dry run {what} took the lock"
        elif ex.entered("NothingToRotate"):
            # Qovery uses a role, nothing to rotate: like a dry run, no lock, no record.
            assert owner != ex.arn and (not alone or after == before), (
                f"{what} found nothing to rotate, yet changed the ledger: {describe_item(before)} -> {describe_item(after)}"
            )
        elif released(ex):
            assert owner != ex.arn, f"{what} finished its rotation, but still holds the lock: {describe_item(after)}"
            assert not alone or after is None, f"{what} finished its rotation, but the ledger still has {describe_item(after)}"
        elif set(ex.state_names()) <= {"Preflight"}:
            assert owner != ex.arn, f"{what} failed in preflight, yet holds the lock: {describe_item(after)}"
            assert not alone or after == before, (
                f"{what} failed in preflight, yet changed the ledger: {describe_item(before)} -> {describe_item(after)}"
            )
        else:
            assert ex.status != "SUCCEEDED", f"{what}: a rotation that SUCCEEDED without DeleteOldKey"
            assert owner == ex.arn, (
                f"{what} ended after preflight without finishing or rolling back, so its lock and record must stay "
                f"for the next run; the ledger has {describe_item(after)}"
            )
    item = w.stack.ledger_item(w.user)
    assert_no_secret_in_ledger(w, item, "at the end")
    if item:
        assert item["execution_id"] in ran, f"the ledger item of {w.user} names {item['execution_id']}, which the scenario never ran"


def assert_no_leaks(w: World, ex: Execution) -> None:
    """Scenario 14, in every scenario: no secret in any recorded state input or output,
    Lambda event, error or cause, in the functions' log output, or in a message
    published to the notification topic."""
    if ex.invocations("preflight"):
        assert ex.function_logs.strip(), "no function log output was captured: the log leak check would be vacuous"
    places = {
        "execution history (state inputs/outputs, errors, causes)": json.dumps(ex.events),
        "the functions' logs": ex.function_logs,
        "the driver's stderr": ex.driver_stderr,
        "the messages published to the notification topic": json.dumps(ex.published),
    }
    leaks = []
    for what, secret in secrets_of(w).items():
        for where, text in places.items():
            piece = leaked_piece(secret, text)
            if piece is not None:
                # Name the place and how much: never print the piece itself.
                leaks.append(f"{what} in {where} ({len(piece)}+ characters of it)")
    assert not leaks, "SECRET LEAKED: " + "; ".join(leaks)


def assert_spec_clean(w: World, ex: Execution) -> None:
    problems = prism_problems(ex.prism_log, w.faults)
    assert not problems, "Qovery calls broke the OpenAPI spec (Prism):\n  " + "\n  ".join(problems)


def assert_no_denials(w: World, ex: Execution) -> None:
    """The template's policies allowed every AWS call the functions made, including
    calls whose failure the code only logs (unstaging a rolled-back key, say)."""
    assert not ex.aws_denials, "template.yaml's policies denied AWS calls:\n  " + "\n  ".join(ex.aws_denials)


def clear_key_secrets(w: World) -> list[str]:
    """Deletes (without recovery) every key secret of the world's user that is still
    there: after HandOverUnfinished one is kept on purpose, and an operator would clear
    it once the hand-over is done by hand. The runner calls it once a scenario's checks
    ran, so that no later scenario finds it."""
    names = sorted({v["name"] for v in w.stack.key_secrets(w.user)})
    for name in names:
        try:
            w.stack.sm.delete_secret(SecretId=name, ForceDeleteWithoutRecovery=True)
        except botocore.exceptions.ClientError:
            pass
    return names


def after_every_run(w: World) -> None:
    for ex in w.executions:
        assert_no_leaks(w, ex)
        assert_no_key_secret_left(w, ex)
        assert_spec_clean(w, ex)
        if not w.denials_expected:
            assert_no_denials(w, ex)
    assert_ledger(w)


def status_of(w: World) -> dict[str, str]:
    return {cid: c["status"] for cid, c in w.clusters().items()}


def puts_to(w: World, h: HolderState | Ref) -> list[int]:
    """The status of every PUT the fake got for this holder, in order."""
    kind, hid = h if isinstance(h, tuple) else h.ref
    return w.stack.fake.statuses(EDIT_OPERATION[kind], path_contains=hid)
