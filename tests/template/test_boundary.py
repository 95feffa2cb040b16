"""The permissions boundary of deploy/github-oidc-role.yaml against the roles of
template.yaml, and the CI CloudFormation role's hold on it.

GIVEN both templates, resolved for the same stack name, IAM user, ledger table, token
      secret and Qovery role name (template.yaml after the SAM transform: every role it
      makes)
WHEN every (action, resource) a role of the rotator's stack is granted is matched
     against the boundary's Allow statements, as IAM matches patterns
THEN each one falls inside the boundary (so the boundary breaks nothing), the boundary
     grants nothing on "*" but the log-delivery actions that need it, and the CI role
     creates and changes roles only with that boundary, never removes it, and cannot
     change the boundary policy.

What this cannot check offline: IAM itself evaluating the boundary and the
iam:PermissionsBoundary conditions on AWS. The names CloudFormation generates are made
up here as it makes them (<stack>-<logical id>-<suffix>).
"""

from __future__ import annotations

import unittest

from tests.template.cfn import (
    BASIC_EXECUTION_ROLE,
    Resolver,
    as_list,
    ci,
    iam_match,
    roles,
    statements,
    transformed,
)

STACK = "qkr-prod"
USER = "qovery-deployer"
TABLE = "qkr-ledger"
EXISTING_TOKEN = "arn:aws:secretsmanager:us-east-1:123456789012:secret:qovery/api-token-XyZ123"
ORG = "0b6c3d4e-1111-4a2b-8c3d-5e6f7a8b9c0d"
QOVERY_ROLE = "QoveryAdmin"

# What AWSLambdaBasicExecutionRole is used for: each function's own log group and streams.
BASIC_EXECUTION_ACTIONS = ["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents"]

BOUNDED_ACTIONS = [
    "iam:CreateRole",
    "iam:PutRolePermissionsBoundary",
    "iam:PutRolePolicy",
    "iam:DeleteRolePolicy",
    "iam:AttachRolePolicy",
    "iam:DetachRolePolicy",
]
BOUNDARY_POLICY_CHANGES = [
    "iam:CreatePolicyVersion",
    "iam:DeletePolicyVersion",
    "iam:SetDefaultPolicyVersion",
    "iam:DeletePolicy",
]


def worlds() -> list[tuple[str, dict, dict]]:
    """(name, template.yaml parameters, CI template parameters): the stack's own token
    secret, an existing one, and a role for Qovery to assume after a migration."""
    app = {"IamUserName": USER, "LedgerTableName": TABLE, "QoveryOrganizationId": ORG}
    ci_params = {"RotatorStackName": STACK, "IamUserName": USER, "LedgerTableName": TABLE,
                 "GitHubRepository": "octo-org/octo-repo"}
    return [
        ("stack's token secret", app, ci_params),
        ("existing token secret", {**app, "ExistingQoveryTokenSecretArn": EXISTING_TOKEN},
         {**ci_params, "ExistingQoveryTokenSecretArn": EXISTING_TOKEN}),
        ("Qovery role", {**app, "QoveryRoleName": QOVERY_ROLE}, {**ci_params, "QoveryRoleName": QOVERY_ROLE}),
    ]


def granted(template: dict, resolver: Resolver) -> list[tuple[str, str, str]]:
    """(role, action, resource) for every Allow the stack's roles get. A managed policy
    is only allowed if it is AWSLambdaBasicExecutionRole, taken as what the function
    uses it for (its own log group and streams)."""
    out = []
    for logical, role in roles(template).items():
        props = resolver.resolve(role["Properties"])
        for policy in props.get("Policies", []):
            for st in statements(policy["PolicyDocument"]):
                if st["Effect"] != "Allow":
                    continue
                if "NotAction" in st or "NotResource" in st:
                    raise AssertionError(f"{logical}: NotAction/NotResource is not checked here: {st}")
                for action in as_list(st["Action"]):
                    for resource in as_list(st["Resource"]):
                        out.append((logical, action, resource))
        for arn in props.get("ManagedPolicyArns", []):
            if arn != BASIC_EXECUTION_ROLE:
                raise AssertionError(f"{logical}: managed policy {arn} is not checked here")
            function = logical.removesuffix("Role")
            group = f"arn:aws:logs:us-east-1:123456789012:log-group:/aws/lambda/{resolver.ref(function)}"
            out.append((logical, "logs:CreateLogGroup", group))
            for action in BASIC_EXECUTION_ACTIONS[1:]:
                out.append((logical, action, f"{group}:log-stream:2030/01/07/[$LATEST]0123456789abcdef"))
    return out


def boundary_document(ci_template: dict, resolver: Resolver) -> dict:
    return resolver.resolve(ci_template["Resources"]["RotatorPermissionsBoundary"]["Properties"]["PolicyDocument"])


def instances(resource: str) -> list[str]:
    """A granted resource pattern and what it stands for: the pattern itself (a
    boundary pattern matching it literally covers it) and the pattern with each
    wildcard filled in with a name of slashes, colons and dashes."""
    return [resource, resource.replace("*", "a/b:c-d").replace("?", "x")]


def outside(boundary: dict, grants: list[tuple[str, str, str]]) -> list[tuple[str, str, str]]:
    """The grants no Allow statement of the boundary covers (action and resource)."""
    allows = [st for st in statements(boundary) if st["Effect"] == "Allow"]
    missing = []
    for role, action, resource in grants:
        covered = any(
            any(iam_match(a, action, ignore_case=True) for a in as_list(st["Action"]))
            and all(any(iam_match(r, value) for r in as_list(st["Resource"])) for value in instances(resource))
            and "Condition" not in st
            for st in allows
        )
        if not covered:
            missing.append((role, action, resource))
    return missing


class BoundaryCoversTheStackTest(unittest.TestCase):
    def setUp(self) -> None:
        self.app = transformed()
        self.ci = ci()

    def test_every_grant_of_every_role_is_inside_the_boundary(self) -> None:
        for name, app_params, ci_params in worlds():
            with self.subTest(name):
                grants = granted(self.app, Resolver(self.app, app_params, stack_name=STACK))
                self.assertEqual({g[0] for g in grants}, set(roles(self.app)))  # every role has grants
                boundary = boundary_document(self.ci, Resolver(self.ci, ci_params))
                self.assertEqual(outside(boundary, grants), [])

    def test_the_check_sees_a_grant_outside(self) -> None:
        _, app_params, ci_params = worlds()[0]
        r = Resolver(self.app, app_params, stack_name=STACK)
        grants = granted(self.app, r)
        boundary = boundary_document(self.ci, Resolver(self.ci, ci_params))
        extra = [
            ("X", "iam:CreateUser", f"arn:aws:iam::123456789012:user/{USER}"),
            ("X", "iam:CreateAccessKey", "arn:aws:iam::123456789012:user/admin"),
            ("X", "secretsmanager:GetSecretValue", "arn:aws:secretsmanager:us-east-1:123456789012:secret:qovery-key-rotator/admin/x-AbCdEf"),
            ("X", "secretsmanager:GetSecretValue", "arn:aws:secretsmanager:us-east-1:123456789012:secret:qovery-key-rotator/*"),
            ("X", "lambda:InvokeFunction", "arn:aws:lambda:us-east-1:123456789012:function:other-stack-F"),
            ("X", "dynamodb:Scan", f"arn:aws:dynamodb:us-east-1:123456789012:table/{TABLE}"),
            ("X", "sns:Publish", "*"),
        ]
        self.assertEqual(outside(boundary, grants + extra), extra)
        # And a boundary missing what a role needs.
        for sid in ("ScheduleDeadLetters", "PublishNotifications", "FunctionLogs"):
            smaller = {**boundary, "Statement": [st for st in statements(boundary) if st.get("Sid") != sid]}
            self.assertNotEqual(outside(smaller, grants), [], sid)

    def test_the_other_token_secret_is_outside(self) -> None:
        # The boundary for the stack's own secret does not cover an existing one.
        _, app_params, _ = worlds()[1]
        _, _, ci_params = worlds()[0]
        grants = granted(self.app, Resolver(self.app, app_params, stack_name=STACK))
        boundary = boundary_document(self.ci, Resolver(self.ci, ci_params))
        self.assertIn(EXISTING_TOKEN, {g[2] for g in outside(boundary, grants)})

    def test_another_qovery_role_is_outside(self) -> None:
        # The boundary for no role, or for another role name, lets preflight read neither.
        _, app_params, ci_params = worlds()[2]
        grants = granted(self.app, Resolver(self.app, app_params, stack_name=STACK))
        reads = {("PreflightFunctionRole", "iam:GetRole", f"arn:aws:iam::123456789012:role/{path}{QOVERY_ROLE}")
                 for path in ("", "*/")}
        self.assertLessEqual(reads, set(grants))
        for name, other in (("none", {k: v for k, v in ci_params.items() if k != "QoveryRoleName"}),
                            ("another", {**ci_params, "QoveryRoleName": "SomeoneElse"})):
            with self.subTest(name):
                boundary = boundary_document(self.ci, Resolver(self.ci, other))
                self.assertEqual(set(outside(boundary, grants)), reads)

    def test_wildcard_resources_only_for_log_delivery(self) -> None:
        for name, _, ci_params in worlds():
            with self.subTest(name):
                boundary = boundary_document(self.ci, Resolver(self.ci, ci_params))
                for st in statements(boundary):
                    self.assertEqual(st["Effect"], "Allow")
                    if "*" in as_list(st["Resource"]):
                        self.assertEqual(st.get("Sid"), "StateMachineLogDelivery")
                        self.assertTrue(all(a.startswith("logs:") and "Log" in a or "ResourcePolic" in a for a in as_list(st["Action"])), st)
                    for a in as_list(st["Action"]):
                        self.assertNotIn("*", a, st)
                        self.assertFalse(a.startswith("iam:") and a not in {
                            "iam:ListAccessKeys", "iam:GetAccessKeyLastUsed", "iam:CreateAccessKey", "iam:UpdateAccessKey",
                            "iam:DeleteAccessKey", "iam:GetRole"}, a)
                    # The Qovery role's read: that name, at the root or under any path.
                    if "iam:GetRole" in as_list(st["Action"]):
                        self.assertEqual(as_list(st["Action"]), ["iam:GetRole"])
                        self.assertEqual(as_list(st["Resource"]), [
                            f"arn:aws:iam::123456789012:role/{QOVERY_ROLE}",
                            f"arn:aws:iam::123456789012:role/*/{QOVERY_ROLE}",
                        ])


class CloudFormationRoleTest(unittest.TestCase):
    def setUp(self) -> None:
        self.ci = ci()
        self.role = self.ci["Resources"]["CloudFormationRole"]["Properties"]
        (policy,) = self.role["Policies"]
        self.statements = statements(policy["PolicyDocument"])
        self.boundary = {"Ref": "RotatorPermissionsBoundary"}

    def test_roles_are_created_and_changed_only_with_the_boundary(self) -> None:
        for st in self.statements:
            if st["Effect"] != "Allow":
                continue
            actions = [a for a in as_list(st["Action"]) if a in BOUNDED_ACTIONS]
            if actions:
                self.assertEqual(st.get("Condition", {}).get("StringEquals", {}).get("iam:PermissionsBoundary"),
                                 self.boundary, st.get("Sid"))
            for a in as_list(st["Action"]):
                self.assertFalse(iam_match(a, "iam:DeleteRolePermissionsBoundary", ignore_case=True), st.get("Sid"))
                self.assertFalse(any(iam_match(a, c, ignore_case=True) for c in BOUNDARY_POLICY_CHANGES), st.get("Sid"))
                self.assertNotIn("*", a, st.get("Sid"))
        allowed = {a for st in self.statements if st["Effect"] == "Allow" for a in as_list(st["Action"])}
        self.assertTrue(set(BOUNDED_ACTIONS) <= allowed)

    def test_explicit_denials(self) -> None:
        denies = [st for st in self.statements if st["Effect"] == "Deny"]

        def denied(action: str, resource: object, condition: dict | None = None) -> bool:
            return any(
                action in as_list(st["Action"]) and resource in as_list(st["Resource"]) and st.get("Condition") == condition
                for st in denies
            )

        for action in BOUNDED_ACTIONS:
            self.assertTrue(denied(action, "*", {"StringNotEquals": {"iam:PermissionsBoundary": self.boundary}}), action)
        self.assertTrue(denied("iam:DeleteRolePermissionsBoundary", "*"))
        for action in BOUNDARY_POLICY_CHANGES:
            self.assertTrue(denied(action, self.boundary), action)
        guard = self.ci["Resources"]["CloudFormationRoleGuard"]["Properties"]
        self.assertEqual(guard["RoleName"], {"Ref": "CloudFormationRole"})
        (st,) = statements(guard["PolicyDocument"])
        self.assertEqual((st["Effect"], st["Action"]), ("Deny", "iam:*"))
        self.assertEqual(sorted(r["Fn::GetAtt"][0] for r in st["Resource"]), ["CloudFormationRole", "DeployRole"])

    def test_boundary_is_an_output(self) -> None:
        self.assertEqual(self.ci["Outputs"]["PermissionsBoundaryArn"]["Value"], self.boundary)
        self.assertEqual(self.ci["Resources"]["RotatorPermissionsBoundary"]["Type"], "AWS::IAM::ManagedPolicy")

    def test_roles_go_only_to_the_services_the_stack_uses(self) -> None:
        app = transformed()
        principals = {
            service
            for role in roles(app).values()
            for st in statements(role["Properties"]["AssumeRolePolicyDocument"])
            for service in as_list(st["Principal"]["Service"])
        }
        (passrole,) = [st for st in self.statements if "iam:PassRole" in as_list(st["Action"])]
        self.assertEqual(set(passrole["Condition"]["StringEquals"]["iam:PassedToService"]), principals)

    def test_every_resource_type_of_the_stack_has_permissions(self) -> None:
        prefix = {"StepFunctions": "states", "Logs": "logs", "CloudWatch": "cloudwatch"}
        services = {
            prefix.get(r["Type"].split("::")[1], r["Type"].split("::")[1].lower())
            for r in transformed()["Resources"].values()
        }
        allowed = {a.split(":")[0] for st in self.statements if st["Effect"] == "Allow" for a in as_list(st["Action"])}
        self.assertEqual(services - allowed, set())


if __name__ == "__main__":
    unittest.main()
