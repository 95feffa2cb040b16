"""The grant that lets preflight read the IAM role a migration hands Qovery (issue 14,
"Move to an IAM role"), after the SAM transform (tests/template/cfn.py, offline).

GIVEN template.yaml through the SAM transform
WHEN its roles' policies are resolved with QoveryRoleName empty, then set
THEN empty: no role of the stack may call iam:GetRole on anything; set: only the
     preflight function's role may, on that role name at the root path or under any
     path, and on no other role (never role/* alone); and QoveryRoleName takes a role
     name without its path, or nothing.
"""

from __future__ import annotations

import re
import unittest

from tests.template.cfn import Resolver, as_list, iam_match, raw, roles, statements, transformed

ORG = "0b6c3d4e-1111-4a2b-8c3d-5e6f7a8b9c0d"
APP = {"IamUserName": "qovery-deployer", "QoveryOrganizationId": ORG}
ROLE_NAME = "QoveryAdmin"
ROLE = f"arn:aws:iam::123456789012:role/{ROLE_NAME}"


def get_role_grants(template: dict, resolver: Resolver) -> dict[str, list[str]]:
    """role logical id -> the resources an Allow statement lets it call iam:GetRole on
    (an action pattern such as iam:Get* counts)."""
    out: dict[str, list[str]] = {}
    for logical, role in roles(template).items():
        for policy in resolver.resolve(role["Properties"]).get("Policies", []):
            for st in statements(policy["PolicyDocument"]):
                if st["Effect"] == "Allow" and any(
                    iam_match(a, "iam:GetRole", ignore_case=True) for a in as_list(st.get("Action", []))
                ):
                    out.setdefault(logical, []).extend(as_list(st["Resource"]))
    return out


def readable(resources: list[str], arn: str) -> bool:
    return any(iam_match(r, arn) for r in resources)


def check_scoped_to_the_role(test: unittest.TestCase, grants: dict[str, list[str]]) -> None:
    test.assertEqual(set(grants), {"PreflightFunctionRole"})
    resources = grants["PreflightFunctionRole"]
    for arn in (ROLE, f"arn:aws:iam::123456789012:role/qovery/{ROLE_NAME}",
                f"arn:aws:iam::123456789012:role/a/b/{ROLE_NAME}"):
        test.assertTrue(readable(resources, arn), arn)
    for arn in ("arn:aws:iam::123456789012:role/OrganizationAccountAccessRole",
                f"arn:aws:iam::123456789012:role/{ROLE_NAME}X",
                f"arn:aws:iam::123456789012:role/X{ROLE_NAME}",
                f"arn:aws:iam::123456789012:role/{ROLE_NAME}/Other",
                f"arn:aws:iam::999999999999:role/{ROLE_NAME}",
                f"arn:aws:iam::123456789012:user/{ROLE_NAME}"):
        test.assertFalse(readable(resources, arn), arn)


class QoveryRoleGrantTest(unittest.TestCase):
    def setUp(self) -> None:
        self.t = transformed()

    def test_no_grant_when_the_name_is_empty(self) -> None:
        self.assertEqual(raw()["Parameters"]["QoveryRoleName"]["Default"], "")
        self.assertEqual(get_role_grants(self.t, Resolver(self.t, APP)), {})

    def test_preflight_reads_only_that_role_when_the_name_is_set(self) -> None:
        grants = get_role_grants(self.t, Resolver(self.t, {**APP, "QoveryRoleName": ROLE_NAME}))
        self.assertEqual(grants, {"PreflightFunctionRole": [ROLE, f"arn:aws:iam::123456789012:role/*/{ROLE_NAME}"]})
        check_scoped_to_the_role(self, grants)

    def test_the_grant_is_under_the_condition(self) -> None:
        (grant,) = [
            st
            for st in statements(raw()["Resources"]["PreflightFunction"]["Properties"]["Policies"][0])
            if "Fn::If" in st
        ]
        condition, statement, otherwise = grant["Fn::If"]
        self.assertEqual(condition, "HasQoveryRoleName")
        self.assertEqual(otherwise, {"Ref": "AWS::NoValue"})
        self.assertEqual((statement["Sid"], statement["Action"]), ("ReadQoveryRole", "iam:GetRole"))
        self.assertEqual(
            raw()["Conditions"]["HasQoveryRoleName"],
            {"Fn::Not": [{"Fn::Equals": [{"Ref": "QoveryRoleName"}, ""]}]},
        )

    def test_the_check_sees_a_wider_grant(self) -> None:
        r = Resolver(self.t, {**APP, "QoveryRoleName": ROLE_NAME})
        for wider in ("arn:aws:iam::123456789012:role/*", f"arn:aws:iam::123456789012:role/*{ROLE_NAME}",
                      f"arn:aws:iam::123456789012:role/{ROLE_NAME}*"):
            with self.subTest(wider), self.assertRaises(AssertionError):
                check_scoped_to_the_role(self, {"PreflightFunctionRole": [ROLE, wider]})
        with self.assertRaises(AssertionError):  # another role granted as well
            check_scoped_to_the_role(self, {**get_role_grants(self.t, r), "CreateKeyFunctionRole": [ROLE]})
        with self.assertRaises(AssertionError):  # a role with a path left out
            check_scoped_to_the_role(self, {"PreflightFunctionRole": [ROLE]})

    def test_parameter_pattern(self) -> None:
        # CloudFormation matches AllowedPattern against the whole value; IAM role names
        # are 1 to 64 of [\w+=,.@-].
        pattern = raw()["Parameters"]["QoveryRoleName"]["AllowedPattern"]
        for ok in ("", ROLE_NAME, "a+b=c,d.e@f-g_h", "r" * 64):
            self.assertIsNotNone(re.fullmatch(pattern, ok), ok)
        for bad in ("qovery/QoveryAdmin", "/QoveryAdmin", ROLE, "Qovery Admin", "r" * 65, "a*"):
            self.assertIsNone(re.fullmatch(pattern, bad), bad)


if __name__ == "__main__":
    unittest.main()
