"""moto's server, made to check the Resource of IAM policies for the calls the rotator makes.

moto 5.2.5 checks the Action of a signed request against the signer's policies, but for
IAM (users), Secrets Manager and Step Functions it checks every request against the
resource "*": a statement scoped to an ARN never matches, so every call it should allow
is denied. And it turns a policy's Resource into a regex by replacing "*" only, so the
"?" of Secrets Manager's "-??????" suffix crashes the request (HTTP 500, "multiple
repeat"). Its denials are also all in one XML shape that neither the IAM (query) nor
the Secrets Manager and Step Functions (JSON) SDK clients can parse, so the rotator
would see an error with no code.

This runs `moto.server.main` with three changes, so that the template's policies are
enforced as written and denied as AWS denies:

  - each request names the ARN it acts on: the IAM user of UserName (or, for
    GetAccessKeyLastUsed, the user who owns AccessKeyId), the secret of
    SecretId (or Name, for CreateSecret), the state machine or execution of
    stateMachineArn / executionArn, the DynamoDB table of TableName. Requests on
    anything else keep moto's "*".
  - Action and Resource patterns are matched as IAM does: "*" is any run of
    characters, "?" is exactly one, nothing else is special; actions ignore case.
  - a denial answers in the service's own error shape (IAM: AccessDenied in XML;
    Secrets Manager, Step Functions: AccessDeniedException in JSON) with AWS's message,
    and is logged to stderr (moto.log) with the signer, action and resource.

A secret that does not exist (yet) is named arn:...:secret:<name>-XXXXXX, as the
secret CreateSecret will make: the policies' "<name>-??????" matches it. That is the
assumption for DescribeSecret on a missing secret too; AWS's own behaviour there is not
checked here.

It always loads moto_atomic.py (DynamoDB's conditional writes applied atomically) and
moto_trust.py (sts:AssumeRole checked against the role's trust policy, and the Qovery
principal with QKR_MOTO_QOVERY_PRINCIPAL).
With QKR_MOTO_KEY_AGES set, it also loads moto_key_age.py (back-dated access keys,
for the audit scenarios); with QKR_MOTO_LAMBDA_ROUTES, moto_sfn_lambda.py (by_hand.py).

    python moto_resources.py -H 127.0.0.1 -p PORT      (moto_server's arguments)
"""

from __future__ import annotations

import inspect
import json
import os
import re
import sys
import uuid
from typing import Any
from xml.sax.saxutils import escape

from werkzeug.exceptions import HTTPException

from moto.core.exceptions import AccessDeniedError
from moto.core.responses import BaseResponse
from moto.dynamodb.responses import DynamoHandler
from moto.iam.access_control import IAMPolicyStatement, IAMRequest
from moto.iam.responses import IamResponse
from moto.secretsmanager.responses import SecretsManagerResponse
from moto.server import main as moto_main
from moto.stepfunctions.responses import StepFunctionResponse
from moto.utilities.utils import get_partition

# The hooks patched below are moto internals: fail loudly if a moto upgrade moves them.
if "_determine_resource" not in inspect.getsource(BaseResponse.call_action):
    sys.exit("moto_resources.py: moto's BaseResponse.call_action no longer asks _determine_resource; update this patch")
if not hasattr(IAMPolicyStatement, "_check_element_matches"):
    sys.exit("moto_resources.py: moto's IAMPolicyStatement._check_element_matches is gone; update this patch")


def iam_pattern(pattern: str, ignore_case: bool) -> re.Pattern[str]:
    """An IAM Action or Resource pattern: '*' any run of characters, '?' one character."""
    body = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.compile(f"^{body}$", re.IGNORECASE if ignore_case else 0)


def check_element_matches(self: IAMPolicyStatement, statement_element: Any, value: str) -> bool:
    patterns = self._statement[statement_element]
    if not isinstance(patterns, list):
        patterns = [patterns]
    ignore_case = statement_element in ("Action", "NotAction")
    return any(iam_pattern(p, ignore_case).match(value) for p in patterns)


IAMPolicyStatement._check_element_matches = check_element_matches  # type: ignore[method-assign]


def arn_prefix(response: BaseResponse, service: str, region: bool = True) -> str:
    return f"arn:{get_partition(response.region)}:{service}:{response.region if region else ''}:{response.current_account}"


_iam_determine_resource = IamResponse._determine_resource


def iam_resource(self: IamResponse) -> str:
    resource = _iam_determine_resource(self)  # moto's own: roles
    if resource != "*":
        return resource
    # GetAccessKeyLastUsed names only the key; IAM authorizes it on the user who owns it.
    key_id = self._get_param("AccessKeyId")
    if self._get_action() == "GetAccessKeyLastUsed" and key_id:
        for owner in self.backend.users.values():
            if any(k.access_key_id == key_id for k in owner.access_keys):
                return owner.arn
        return "*"
    user = self._get_param("UserName")
    if not user:
        return "*"
    try:
        return self.backend.get_user(user).arn
    except Exception:  # noqa: BLE001 - unknown user: moto answers NoSuchEntity after the check
        return f"{arn_prefix(self, 'iam', region=False)}:user/{user}"


def secret_resource(self: SecretsManagerResponse) -> str:
    secret_id = self._get_param("SecretId") or self._get_param("Name")
    if not secret_id:
        return "*"
    secret = self.backend.secrets.get(secret_id)
    if secret is not None:
        return secret.arn
    if secret_id.startswith("arn:"):
        return secret_id
    return f"{arn_prefix(self, 'secretsmanager')}:secret:{secret_id}-XXXXXX"


def states_resource(self: StepFunctionResponse) -> str:
    arn = self._get_param("executionArn") or self._get_param("stateMachineArn")
    if arn:
        return arn
    name = self._get_param("name")
    if self._get_action() == "CreateStateMachine" and name:
        return f"{arn_prefix(self, 'states')}:stateMachine:{name}"
    return "*"


def dynamodb_resource(self: DynamoHandler) -> str:
    table = self._get_param("TableName")
    return f"{arn_prefix(self, 'dynamodb')}:table/{table}" if table else "*"


class Denied(HTTPException):
    code = 403

    def __init__(self, service: str, message: str):
        super().__init__()
        # IAM and STS are query protocols: their SDK clients parse XML errors.
        namespaces = {"iam": "https://iam.amazonaws.com/doc/2010-05-08/",
                      "sts": "https://sts.amazonaws.com/doc/2011-06-15/"}
        if service in namespaces:
            self.description = (
                f'<ErrorResponse xmlns="{namespaces[service]}"><Error><Type>Sender</Type>'
                f"<Code>AccessDenied</Code><Message>{escape(message)}</Message></Error>"
                f"<RequestId>{uuid.uuid4()}</RequestId></ErrorResponse>"
            )
        else:
            self.description = json.dumps({"__type": "AccessDeniedException", "Message": message})


_check_action_permitted = IAMRequest.check_action_permitted


def check_action_permitted(self: IAMRequest, resource: str) -> None:
    try:
        _check_action_permitted(self, resource)
    except AccessDeniedError:
        action = self._action
        message = (
            f"User: {self._access_key.arn} is not authorized to perform: {action} on resource: {resource} "
            f"because no identity-based policy allows the {action} action"
        )
        print(f"[moto_resources] DENIED {message}", file=sys.stderr, flush=True)
        raise Denied(self._service, message) from None


IAMRequest.check_action_permitted = check_action_permitted  # type: ignore[method-assign]
IamResponse._determine_resource = iam_resource  # type: ignore[method-assign]
SecretsManagerResponse._determine_resource = secret_resource  # type: ignore[attr-defined]
StepFunctionResponse._determine_resource = states_resource  # type: ignore[attr-defined]
DynamoHandler._determine_resource = dynamodb_resource  # type: ignore[attr-defined]

# DynamoDB's conditional writes applied atomically, as on AWS (the rotation lock).
import moto_atomic  # noqa: E402,F401

# sts:AssumeRole checked against the role's trust policy, in any account, as on AWS; and
# the Qovery principal, when QKR_MOTO_QOVERY_PRINCIPAL names its file (issue 14).
import moto_trust  # noqa: E402,F401

if os.environ.get("QKR_MOTO_LAMBDA_ROUTES"):
    # by_hand.py: moto's own Step Functions engine invokes the real step binaries.
    import moto_sfn_lambda

    moto_sfn_lambda.install(os.environ["QKR_MOTO_LAMBDA_ROUTES"])

if os.environ.get("QKR_MOTO_KEY_AGES"):
    # The audit scenarios: back-dated access keys (ListAccessKeys' CreateDate).
    import moto_key_age

    moto_key_age.install(os.environ["QKR_MOTO_KEY_AGES"])

if __name__ == "__main__":
    moto_main(sys.argv[1:])
