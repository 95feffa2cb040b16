"""moto's sts:AssumeRole made to check the role's trust policy as AWS does, and the
IAM user Qovery assumes customers' roles with (issue 14).

moto 5.2.5 lets almost anyone assume any role. Past INITIAL_NO_AUTH_ACTION_COUNT it
checks that the caller's own policies allow sts:AssumeRole on the role's ARN, then
looks at the trust policy only if the role exists in the caller's own account
(`IAMRequestBase._is_assuming_role_operation`): a caller of another account, as Qovery
is, gets credentials for any role, trusted or not, existing or not. And its same-account
check is rough (`IAMPolicyStatement._check_principal`, `policy_conditions.py`): the
caller's ARN is compared to `Principal.AWS` by equality or as a substring, an account's
`:root` or bare id never matches, a statement with only a `Service` principal crashes the
request (TypeError), only StringEquals is evaluated (other operators pass), and a
condition key absent from the request passes (no ExternalId satisfies
`StringEquals sts:ExternalId`).

Importing this module replaces that check, for every sts:AssumeRole past moto's own
identity-policy check of the caller (so only where moto checks at all: past
INITIAL_NO_AUTH_ACTION_COUNT):

  - the role is looked up in the account its ARN names (any account moto knows);
    none: AccessDenied.
  - its trust policy is evaluated: an explicit Deny wins; an Allow counts if its Action
    matches sts:AssumeRole ("*" and "?" as IAM reads them, case-insensitive), its
    Principal is "*" or has an AWS entry that is "*", the caller's ARN,
    arn:<partition>:iam::<caller's account>:root or that bare account id (Service and
    Federated never name an IAM user or role), and every condition holds.
  - conditions: StringEquals and StringLike ("*", "?") on sts:ExternalId,
    aws:PrincipalAccount and aws:PrincipalArn; several values are alternatives, several
    keys and operators must all hold; a key the request lacks does not hold.
  - what this does not understand (another operator or key, NotPrincipal, a statement
    without Principal) counts against the caller, and is logged
    `[moto_trust] UNSUPPORTED ...`: it never holds in an Allow and always holds in a
    Deny, so a test cannot pass on something moto did not check.
  - a denial answers as STS does (403, AccessDenied in STS's XML, AWS's message: "User:
    <caller> is not authorized to perform: sts:AssumeRole on resource: <role>") and is
    logged `[moto_trust] DENIED <message> (<why>)` to stderr (moto.log). Not
    `[moto_resources] DENIED`: a role refusing Qovery is something tests cause on
    purpose, the functions' own calls being denied is not (Stack.denials_since).

At import, when QKR_MOTO_QOVERY_PRINCIPAL names a file, it also creates the Qovery
principal through moto's backends: IAM user `qovery-engine` in account 999999999999,
allowed sts:AssumeRole on arn:aws:iam::*:role/*, and an access key, written to that file
as JSON {"account_id", "user_name", "arn", "access_key_id", "secret_access_key"}. moto
gives a signed request the account whose IAM backend holds its key (`get_account_id_from`),
so requests signed with it come from 999999999999, as Qovery's come from Qovery's account.

Loaded by moto_resources.py (the workflow stack) and moto_forkserver.py (the handler
tests), before either serves a request.
"""

from __future__ import annotations

import inspect
import json
import os
import re
import sys
import uuid
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

from werkzeug.exceptions import HTTPException

from moto.core.responses import BaseResponse
from moto.iam.access_control import IAMRequestBase
from moto.iam.exceptions import NotFoundException
from moto.iam.models import get_account_id_from, iam_backends
from moto.sts.responses import TokenResponse
from moto.utilities.utils import get_partition

# The hooks used below are moto internals: fail loudly if a moto upgrade moves them.
_checks = {
    "IAMRequestBase.check_action_permitted asks _is_assuming_role_operation, then the trust check":
        ("permitted and self._check_role_trust_relationship(resource)",
         inspect.getsource(IAMRequestBase.check_action_permitted)),
    "IAMRequestBase keeps the request's data, action, region and signer":
        ("self._access_key = create_access_key", inspect.getsource(IAMRequestBase.__init__)),
    "STS names the RoleArn as the resource of AssumeRole":
        ('"RoleArn"', inspect.getsource(TokenResponse._determine_resource)),
    "an authorization failure raised as HTTPException is the answer":
        ("except HTTPException", inspect.getsource(BaseResponse.call_action)),
    "a request's account is the one whose IAM backend holds its key":
        ("get_account_id_from", inspect.getsource(BaseResponse.get_current_account)),
    "get_account_id_from looks in each backend's access_keys":
        (".access_keys", inspect.getsource(get_account_id_from)),
}
for _what, (_needle, _source) in _checks.items():
    if _needle not in _source:
        sys.exit(f"moto_trust.py: moto changed ({_what}: no {_needle!r}); update this patch")
for _name in ("_is_assuming_role_operation", "_check_role_trust_relationship"):
    if not hasattr(IAMRequestBase, _name):
        sys.exit(f"moto_trust.py: moto's IAMRequestBase.{_name} is gone; update this patch")

ACTION = "sts:AssumeRole"
ROLE_ARN = re.compile(r"^arn:(aws|aws-cn|aws-us-gov|aws-iso|aws-iso-b|aws-iso-e|aws-iso-f|aws-eusc):iam::(\d{12}):role/.+$")
CONDITION_KEYS = ("sts:externalid", "aws:principalaccount", "aws:principalarn")

QOVERY_ACCOUNT = "999999999999"
QOVERY_USER = "qovery-engine"


def log(kind: str, message: str) -> None:
    print(f"[moto_trust] {kind} {message}", file=sys.stderr, flush=True)


def _pattern(pattern: str, ignore_case: bool) -> re.Pattern[str]:
    """IAM's wildcards: "*" any run of characters, "?" exactly one, nothing else special."""
    body = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.compile(f"^{body}$", re.IGNORECASE if ignore_case else 0)


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


class TrustDenied(HTTPException):
    """STS's own AccessDenied (a query-protocol XML error), which SDKs parse."""

    code = 403

    def __init__(self, message: str):
        super().__init__()
        self.description = (
            '<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><Error><Type>Sender</Type>'
            f"<Code>AccessDenied</Code><Message>{escape(message)}</Message></Error>"
            f"<RequestId>{uuid.uuid4()}</RequestId></ErrorResponse>"
        )


class Caller:
    """Who asks, and the request's values for the supported condition keys."""

    def __init__(self, arn: str, account: str, partition: str, external_id: str | None):
        self.arn = arn
        self.account = account
        self.partition = partition
        self.values = {"aws:principalaccount": account, "aws:principalarn": arn}
        if external_id is not None:
            self.values["sts:externalid"] = external_id

    def named_by(self, entry: Any) -> bool:
        return entry in ("*", self.arn, self.account, f"arn:{self.partition}:iam::{self.account}:root")


class Verdict:
    def __init__(self, role_arn: str):
        self.role_arn = role_arn
        self.unsupported: list[str] = []

    def unsupported_part(self, what: str, effect: str) -> bool:
        """Something this module does not evaluate: it counts against the caller."""
        self.unsupported.append(what)
        log("UNSUPPORTED", f"{what} in the trust policy of {self.role_arn}: "
            f"{'holds' if effect == 'Deny' else 'does not hold'} ({effect} statement; fail closed)")
        return effect == "Deny"


def _principal_matches(statement: dict, effect: str, caller: Caller, verdict: Verdict) -> bool:
    if "NotPrincipal" in statement or "Principal" not in statement:
        return verdict.unsupported_part("a statement without Principal (or with NotPrincipal)", effect)
    principal = statement["Principal"]
    if principal == "*":
        return True
    if not isinstance(principal, dict):
        return verdict.unsupported_part(f"Principal {principal!r}", effect)
    # Only AWS entries can name an IAM user or role; Service, Federated and
    # CanonicalUser principals never do.
    return any(caller.named_by(entry) for entry in _as_list(principal.get("AWS", [])))


def _condition_holds(operator: str, key: str, expected: Any, effect: str, caller: Caller, verdict: Verdict) -> bool:
    if operator not in ("StringEquals", "StringLike") or key.lower() not in CONDITION_KEYS:
        return verdict.unsupported_part(f"condition {operator} on {key}", effect)
    actual = caller.values.get(key.lower())
    if actual is None:
        return False  # as on AWS: a key the request lacks does not hold
    if operator == "StringEquals":
        return any(actual == str(value) for value in _as_list(expected))
    return any(_pattern(str(value), ignore_case=False).match(actual) for value in _as_list(expected))


def _statement_applies(statement: dict, effect: str, caller: Caller, verdict: Verdict) -> bool:
    if "NotAction" in statement:
        actions = _as_list(statement["NotAction"])
        if any(_pattern(a, ignore_case=True).match(ACTION) for a in actions):
            return False
    elif not any(_pattern(a, ignore_case=True).match(ACTION) for a in _as_list(statement.get("Action", []))):
        return False
    if not _principal_matches(statement, effect, caller, verdict):
        return False
    # Evaluate every condition (no short cut), so each unsupported one is logged.
    results = [
        _condition_holds(operator, key, expected, effect, caller, verdict)
        for operator, block in (statement.get("Condition") or {}).items()
        for key, expected in block.items()
    ]
    return all(results)


def evaluate(policy: dict, caller: Caller, role_arn: str) -> str | None:
    """None if the trust policy lets `caller` assume the role, else why not."""
    verdict = Verdict(role_arn)
    allowed = False
    for statement in _as_list(policy.get("Statement", [])):
        effect = statement.get("Effect")
        if effect not in ("Allow", "Deny"):
            verdict.unsupported_part(f"Effect {effect!r}", "Allow")
            continue
        if _statement_applies(statement, effect, caller, verdict):
            if effect == "Deny":
                return "an explicit Deny in the role's trust policy" + _because(verdict)
            allowed = True
    return None if allowed else "no statement of the role's trust policy allows the caller" + _because(verdict)


def _because(verdict: Verdict) -> str:
    return f"; unsupported: {', '.join(verdict.unsupported)}" if verdict.unsupported else ""


def _find_role(role_arn: str) -> Any:
    match = ROLE_ARN.match(role_arn)
    # `in` first: indexing iam_backends would create the account.
    if not match or match.group(2) not in iam_backends:
        return None
    try:
        return iam_backends[match.group(2)][match.group(1)].get_role_by_arn(role_arn)
    except (KeyError, NotFoundException):  # KeyError: a partition moto has no backend for
        return None


def _always_assuming_role(self: IAMRequestBase, resource_arn: str) -> bool:
    # moto asks for the trust check only when the role is in the caller's account;
    # every sts:AssumeRole gets it here, wherever the role is (or is not).
    return self._action == ACTION


def _check_trust(self: IAMRequestBase, role_arn: str) -> bool:
    caller_arn = self._access_key.arn
    external_id = self._data.get("ExternalId")
    if isinstance(external_id, list):
        external_id = external_id[0] if external_id else None
    caller = Caller(caller_arn, self.account_id, get_partition(self._region), external_id)
    role = _find_role(role_arn)
    if role is None:
        why = "no such role"
    else:
        why = evaluate(json.loads(role.assume_role_policy_document), caller, role_arn)
    if why is None:
        return True
    message = f"User: {caller_arn} is not authorized to perform: {ACTION} on resource: {role_arn}"
    log("DENIED", f"{message} ({why})")
    raise TrustDenied(message)


IAMRequestBase._is_assuming_role_operation = _always_assuming_role  # type: ignore[method-assign]
IAMRequestBase._check_role_trust_relationship = _check_trust  # type: ignore[method-assign]


def create_qovery_principal(path: Path) -> None:
    """The IAM user Qovery assumes roles with, in an account of its own; its key goes to
    `path` only (never printed)."""
    iam = iam_backends[QOVERY_ACCOUNT]["aws"]
    user = iam.create_user(region_name="us-east-1", user_name=QOVERY_USER)
    iam.put_user_policy(QOVERY_USER, "assume-customer-roles", json.dumps({
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": ACTION, "Resource": "arn:aws:iam::*:role/*"}],
    }))
    key = iam.create_access_key(QOVERY_USER)
    if get_account_id_from(key.access_key_id) != QOVERY_ACCOUNT:
        sys.exit("moto_trust.py: moto does not place the Qovery principal's key in its account; update this patch")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump({
            "account_id": QOVERY_ACCOUNT,
            "user_name": QOVERY_USER,
            "arn": user.arn,
            "access_key_id": key.access_key_id,
            "secret_access_key": key.secret_access_key,
        }, f)
    log("PRINCIPAL", f"{user.arn} (key {key.access_key_id}) written to {path}")


if os.environ.get("QKR_MOTO_QOVERY_PRINCIPAL"):
    create_qovery_principal(Path(os.environ["QKR_MOTO_QOVERY_PRINCIPAL"]))
