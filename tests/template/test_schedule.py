"""The schedules, their dead letters and the roles of template.yaml, after the SAM
transform (tests/template/cfn.py: the SAM translator, offline), resolved for sample
parameter values.

moto's CloudFormation does not create AWS::Scheduler::Schedule (nor the CloudWatch
alarm or the SNS topic policy): `make test-by-hand` deploys the stack without them. What
EventBridge Scheduler would be given is checked here, in the plain CloudFormation the
transform makes, and cfn-lint and `sam validate --lint` check it against the resource
schemas (`make lint`). No schedule runs here.

GIVEN template.yaml through the SAM transform
WHEN its intrinsics are resolved for sample parameter values
THEN the rotation schedule starts the state machine at ScheduleExpression in
     ScheduleTimezone with the rotation input (deploy_concurrency included), the audit
     schedule daily with the audit input, both with a short retry policy and the
     encrypted dead-letter queue whose alarm tells the topic; every role carries
     PermissionsBoundaryArn when it is set and none when it is empty; the state machine
     invokes exactly the six functions and publishes to the topic.
"""

from __future__ import annotations

import json
import re
import unittest

from tests.template.cfn import (
    NO_VALUE,
    Resolver,
    as_list,
    iam_match,
    raw,
    roles,
    statements,
    transformed,
)

ORG = "0b6c3d4e-1111-4a2b-8c3d-5e6f7a8b9c0d"
CREDS = "9f8e7d6c-2222-4b3a-9c8d-1e2f3a4b5c6d"
SAMPLE = {
    "IamUserName": "qovery-deployer",
    "QoveryOrganizationId": ORG,
    "QoveryCredentialsId": CREDS,
    "DrainSeconds": "10800",
    "DeployTimeoutSeconds": "3600",
    "PollIntervalSeconds": "120",
    "DeployConcurrency": "3",
    "KeyIdleSeconds": "1800",
    "QuarantineSeconds": "0",
    "MaxKeyAgeDays": "30",
    "ScheduleTimezone": "America/Argentina/Buenos_Aires",
}
FUNCTIONS = [
    "PreflightFunction",
    "CreateKeyFunction",
    "UpdateQoveryFunction",
    "DeployClusterFunction",
    "CheckStatusFunction",
    "DeleteKeyFunction",
]
BOUNDARY = "arn:aws:iam::123456789012:policy/qovery-key-rotator-permissions-boundary"


def schedules(template: dict) -> dict[str, dict]:
    return {k: r for k, r in template["Resources"].items() if r["Type"] == "AWS::Scheduler::Schedule"}


def schedule_by_name(template: dict, resolver: Resolver, name: str) -> tuple[str, dict]:
    found = [(k, r) for k, r in schedules(template).items() if resolver.resolve(r["Properties"]["Name"]) == name]
    if len(found) != 1:
        raise AssertionError(f"expected one schedule named {name}, found {[k for k, _ in found]}")
    return found[0]


def parse_input(text: str) -> dict:
    try:
        value = json.loads(text)
    except ValueError as e:
        raise AssertionError(f"the Input is not JSON ({e}): {text}") from None
    if not isinstance(value, dict):
        raise AssertionError(f"the Input is not a JSON object: {text}")
    return value


def check_rotation_input(value: dict, params: dict[str, str]) -> None:
    """The rotation input: exactly these fields, of these types."""
    expected = {
        "iam_user_name": params["IamUserName"],
        "organization_id": params["QoveryOrganizationId"],
        "drain_seconds": int(params["DrainSeconds"]),
        "deploy_timeout_seconds": int(params["DeployTimeoutSeconds"]),
        "poll_interval_seconds": int(params["PollIntervalSeconds"]),
        "deploy_concurrency": int(params["DeployConcurrency"]),
        "key_idle_seconds": int(params["KeyIdleSeconds"]),
        "quarantine_seconds": int(params["QuarantineSeconds"]),
    }
    if params.get("QoveryCredentialsId"):
        expected["credentials_id"] = params["QoveryCredentialsId"]
    if value != expected:
        raise AssertionError(f"rotation input {value}, expected {expected}")
    for k, v in value.items():
        if type(v) is not type(expected[k]):
            raise AssertionError(f"rotation input field {k} is a {type(v).__name__}, expected {type(expected[k]).__name__}")


def check_audit_input(value: dict, params: dict[str, str]) -> None:
    expected = {
        "iam_user_name": params["IamUserName"],
        "organization_id": params["QoveryOrganizationId"],
        "audit": True,
        "max_key_age_days": int(params["MaxKeyAgeDays"]),
    }
    if params.get("QoveryCredentialsId"):
        expected["credentials_id"] = params["QoveryCredentialsId"]
    if value != expected:
        raise AssertionError(f"audit input {value}, expected {expected}")
    if value["audit"] is not True or type(value["max_key_age_days"]) is not int:
        raise AssertionError(f"audit input types: {value}")


def boundaries(template: dict, resolver: Resolver) -> dict[str, object]:
    """logical id of each role -> its resolved PermissionsBoundary (NO_VALUE: none)."""
    out = {}
    for logical, role in roles(template).items():
        props = resolver.resolve(role["Properties"])
        out[logical] = props.get("PermissionsBoundary", NO_VALUE)
    return out


def invoke_resources(state_machine_role: dict, resolver: Resolver) -> list[str]:
    """The resources of the one statement that grants lambda:InvokeFunction; fails if
    any other statement grants a Lambda action, or that one grants something else."""
    found = []
    for policy in state_machine_role["Properties"].get("Policies", []):
        for st in statements(policy["PolicyDocument"]):
            actions = as_list(st["Action"])
            if any(a.lower().startswith("lambda:") or a == "*" for a in actions):
                found.append(st)
    if state_machine_role["Properties"].get("ManagedPolicyArns"):
        raise AssertionError(f"the state machine's role has managed policies: {state_machine_role['Properties']['ManagedPolicyArns']}")
    if len(found) != 1:
        raise AssertionError(f"expected one statement granting Lambda actions, found {len(found)}: {found}")
    (st,) = found
    if st["Effect"] != "Allow" or as_list(st["Action"]) != ["lambda:InvokeFunction"] or "Condition" in st:
        raise AssertionError(f"the invoke statement is not a plain Allow of lambda:InvokeFunction: {st}")
    return [resolver.resolve(r) for r in as_list(st["Resource"])]


def check_invoke(resources: list, function_arns: list[str]) -> None:
    for r in resources:
        if not isinstance(r, str) or "*" in r or "?" in r:
            raise AssertionError(f"invoke resource {r!r} is not an exact ARN")
    if sorted(resources) != sorted(function_arns) or len(set(resources)) != len(function_arns):
        raise AssertionError(f"the state machine may invoke {sorted(resources)}, expected exactly {sorted(function_arns)}")


class ScheduleTest(unittest.TestCase):
    def setUp(self) -> None:
        self.t = transformed()
        self.r = Resolver(self.t, SAMPLE)

    def test_rotation_schedule(self) -> None:
        logical, s = schedule_by_name(self.t, self.r, "qovery-key-rotator-rotation")
        p = s["Properties"]
        self.assertEqual(p["ScheduleExpression"], {"Ref": "ScheduleExpression"})
        self.assertEqual(self.r.resolve(p["ScheduleExpression"]), "cron(0 9 ? * TUE#1 *)")
        self.assertEqual(self.r.resolve(p["ScheduleExpressionTimezone"]), "America/Argentina/Buenos_Aires")
        self.assertEqual(p["FlexibleTimeWindow"], {"Mode": "OFF"})
        self.assertEqual(self.r.resolve(p["State"]), "ENABLED")
        off = Resolver(self.t, {**SAMPLE, "ScheduleEnabled": "false"})
        self.assertEqual(off.resolve(p["State"]), "DISABLED")
        # The audit switch is not the rotation's.
        self.assertEqual(Resolver(self.t, {**SAMPLE, "AuditSchedule": "false"}).resolve(p["State"]), "ENABLED")
        self.assert_target(logical, p["Target"])
        check_rotation_input(parse_input(self.r.resolve(p["Target"]["Input"])), SAMPLE)

    def test_audit_schedule(self) -> None:
        logical, s = schedule_by_name(self.t, self.r, "qovery-key-rotator-key-age-audit")
        p = s["Properties"]
        self.assertEqual(self.r.resolve(p["ScheduleExpression"]), "cron(0 8 * * ? *)")
        self.assertEqual(p["ScheduleExpressionTimezone"], {"Ref": "ScheduleTimezone"})
        self.assertEqual(p["FlexibleTimeWindow"], {"Mode": "OFF"})
        self.assertEqual(self.r.resolve(p["State"]), "ENABLED")
        self.assertEqual(Resolver(self.t, {**SAMPLE, "AuditSchedule": "false"}).resolve(p["State"]), "DISABLED")
        self.assertEqual(Resolver(self.t, {**SAMPLE, "ScheduleEnabled": "false"}).resolve(p["State"]), "ENABLED")
        self.assert_target(logical, p["Target"])
        check_audit_input(parse_input(self.r.resolve(p["Target"]["Input"])), SAMPLE)

    def assert_target(self, logical: str, target: dict) -> None:
        self.assertEqual(target["Arn"], {"Ref": "RotationStateMachine"})
        self.assertEqual(target["DeadLetterConfig"], {"Arn": {"Fn::GetAtt": ["ScheduleDeadLetterQueue", "Arn"]}})
        retry = target["RetryPolicy"]
        self.assertIn(retry["MaximumRetryAttempts"], (2, 3))
        self.assertTrue(60 <= retry["MaximumEventAgeInSeconds"] <= 3600, retry)
        # The schedule's own role: start this state machine, dead-letter to this queue.
        (role_logical, attribute) = target["RoleArn"]["Fn::GetAtt"]
        self.assertEqual(attribute, "Arn")
        role = self.t["Resources"][role_logical]
        self.assertEqual(role["Type"], "AWS::IAM::Role")
        trust = statements(role["Properties"]["AssumeRolePolicyDocument"])
        self.assertEqual([as_list(st["Principal"]["Service"]) for st in trust], [["scheduler.amazonaws.com"]])
        granted = sorted(
            (a, json.dumps(self.r.resolve(r)))
            for policy in role["Properties"]["Policies"]
            for st in statements(policy["PolicyDocument"])
            for a in as_list(st["Action"])
            for r in as_list(st["Resource"])
        )
        self.assertEqual(granted, sorted([
            ("states:StartExecution", json.dumps(self.r.ref("RotationStateMachine"))),
            ("sqs:SendMessage", json.dumps(self.r.getatt("ScheduleDeadLetterQueue", "Arn"))),
        ]), f"{logical}'s role")

    def test_inputs_without_credentials_id_and_outputs_in_sync(self) -> None:
        for params in (SAMPLE, {**SAMPLE, "QoveryCredentialsId": ""}):
            with self.subTest(credentials=bool(params["QoveryCredentialsId"])):
                r = Resolver(self.t, params)
                _, rot = schedule_by_name(self.t, r, "qovery-key-rotator-rotation")
                _, aud = schedule_by_name(self.t, r, "qovery-key-rotator-key-age-audit")
                rotation = parse_input(r.resolve(rot["Properties"]["Target"]["Input"]))
                audit = parse_input(r.resolve(aud["Properties"]["Target"]["Input"]))
                check_rotation_input(rotation, params)
                check_audit_input(audit, params)
                self.assertEqual(parse_input(r.resolve(self.t["Outputs"]["ExecutionInput"]["Value"])), rotation)
                self.assertEqual(parse_input(r.resolve(self.t["Outputs"]["AuditExecutionInput"]["Value"])), audit)

    def test_defaults(self) -> None:
        r = Resolver(self.t, {"QoveryOrganizationId": ORG})
        _, rot = schedule_by_name(self.t, r, "qovery-key-rotator-rotation")
        p = rot["Properties"]
        self.assertEqual(r.resolve(p["ScheduleExpressionTimezone"]), "UTC")
        self.assertEqual(r.resolve(p["State"]), "ENABLED")
        rotation = parse_input(r.resolve(p["Target"]["Input"]))
        self.assertEqual(rotation["deploy_concurrency"], 1)
        # The same defaults as the code's (input.rs): an hour idle, an hour switched off.
        self.assertEqual((rotation["key_idle_seconds"], rotation["quarantine_seconds"]), (3600, 3600))
        _, aud = schedule_by_name(self.t, r, "qovery-key-rotator-key-age-audit")
        self.assertEqual(r.resolve(aud["Properties"]["State"]), "ENABLED")
        self.assertEqual(parse_input(r.resolve(aud["Properties"]["Target"]["Input"]))["max_key_age_days"], 45)
        params = self.t["Parameters"]
        self.assertEqual((params["MaxKeyAgeDays"]["MinValue"], params["MaxKeyAgeDays"]["MaxValue"]), (1, 365))
        self.assertEqual((params["DeployConcurrency"]["MinValue"], params["DeployConcurrency"]["MaxValue"]), (1, 10))
        self.assertEqual((params["KeyIdleSeconds"]["MinValue"], params["KeyIdleSeconds"]["MaxValue"]), (0, 2592000))
        self.assertEqual((params["QuarantineSeconds"]["MinValue"], params["QuarantineSeconds"]["MaxValue"]), (0, 604800))
        self.assertEqual(params["NotifyOnSuccess"]["AllowedValues"], ["true", "false"])
        self.assertEqual(params["NotifyOnSuccess"]["Default"], "true")

    def test_parameter_patterns(self) -> None:
        # CloudFormation matches AllowedPattern against the whole value.
        params = raw()["Parameters"]
        tz = params["ScheduleTimezone"]["AllowedPattern"]
        for ok in ("UTC", "Europe/Paris", "America/Argentina/Buenos_Aires", "America/Port-au-Prince", "Etc/GMT+5"):
            self.assertRegex(ok, f"^(?:{tz})$")
        for bad in ("", "Europe Paris", "/Paris", "Europe/", "Europe//Paris", "Europe/Paris;x"):
            self.assertIsNone(re.fullmatch(tz, bad), bad)
        expr = params["ScheduleExpression"]["AllowedPattern"]
        for ok in ("rate(30 days)", "cron(0 9 ? * TUE#1 *)", "at(2030-01-07T09:00:00)", params["ScheduleExpression"]["Default"]):
            self.assertIsNotNone(re.fullmatch(expr, ok), ok)
        for bad in ("daily", "cron 0 9 * * ? *", "every(1 day)", ""):
            self.assertIsNone(re.fullmatch(expr, bad), bad)

    def test_dead_letter_queue_and_alarm(self) -> None:
        q = self.t["Resources"]["ScheduleDeadLetterQueue"]
        self.assertEqual(q["Type"], "AWS::SQS::Queue")
        self.assertIs(q["Properties"]["SqsManagedSseEnabled"], True)
        self.assertEqual(q["Properties"]["MessageRetentionPeriod"], 14 * 24 * 3600)
        self.assertNotIn("FifoQueue", q["Properties"])  # Scheduler takes standard queues only
        alarm = self.t["Resources"]["ScheduleDeadLetterAlarm"]["Properties"]
        self.assertEqual((alarm["Namespace"], alarm["MetricName"]), ("AWS/SQS", "NumberOfMessagesSent"))
        self.assertEqual(alarm["Dimensions"], [{"Name": "QueueName", "Value": {"Fn::GetAtt": ["ScheduleDeadLetterQueue", "QueueName"]}}])
        self.assertEqual((alarm["Statistic"], alarm["Threshold"], alarm["ComparisonOperator"]), ("Sum", 1, "GreaterThanOrEqualToThreshold"))
        self.assertEqual(alarm["TreatMissingData"], "notBreaching")
        self.assertEqual(alarm["AlarmActions"], [{"Ref": "NotificationTopic"}])
        # The topic lets CloudWatch publish for this alarm only, and still the failure rule.
        policy = self.t["Resources"]["NotificationTopicPolicy"]["Properties"]["PolicyDocument"]
        by_service = {st["Principal"]["Service"]: st for st in statements(policy)}
        self.assertEqual(set(by_service), {"events.amazonaws.com", "cloudwatch.amazonaws.com"})
        cw = by_service["cloudwatch.amazonaws.com"]
        self.assertEqual((cw["Effect"], cw["Action"], cw["Resource"]), ("Allow", "sns:Publish", {"Ref": "NotificationTopic"}))
        self.assertEqual(cw["Condition"]["ArnEquals"]["aws:SourceArn"], {"Fn::GetAtt": ["ScheduleDeadLetterAlarm", "Arn"]})
        self.assertEqual(cw["Condition"]["StringEquals"]["aws:SourceAccount"], {"Ref": "AWS::AccountId"})
        ev = by_service["events.amazonaws.com"]
        self.assertEqual(ev["Condition"]["ArnEquals"]["aws:SourceArn"], {"Fn::GetAtt": ["RotationFailedRule", "Arn"]})


class RolesTest(unittest.TestCase):
    def setUp(self) -> None:
        self.t = transformed()

    def test_every_role_carries_the_boundary_when_set(self) -> None:
        got = boundaries(self.t, Resolver(self.t, {**SAMPLE, "PermissionsBoundaryArn": BOUNDARY}))
        # Six functions, the state machine, the two schedules.
        self.assertEqual(len(got), 9, sorted(got))
        self.assertEqual({k for k, v in got.items() if v != BOUNDARY}, set())

    def test_no_role_carries_a_boundary_when_empty(self) -> None:
        got = boundaries(self.t, Resolver(self.t, SAMPLE))
        self.assertEqual(len(got), 9, sorted(got))
        self.assertEqual({k for k, v in got.items() if v is not NO_VALUE}, set())

    def test_boundary_check_can_fail(self) -> None:
        t = transformed()
        del t["Resources"]["RotationStateMachineKeyAgeAuditRole"]["Properties"]["PermissionsBoundary"]
        got = boundaries(t, Resolver(t, {**SAMPLE, "PermissionsBoundaryArn": BOUNDARY}))
        self.assertEqual({k for k, v in got.items() if v != BOUNDARY}, {"RotationStateMachineKeyAgeAuditRole"})

    def test_state_machine_invokes_exactly_the_six_functions(self) -> None:
        self.assertEqual(sorted(FUNCTIONS), sorted(k for k, r in raw()["Resources"].items() if r["Type"] == "AWS::Serverless::Function"))
        r = Resolver(self.t, SAMPLE)
        role = self.t["Resources"]["RotationStateMachineRole"]
        check_invoke(invoke_resources(role, r), [r.getatt(f, "Arn") for f in FUNCTIONS])
        # Each one names its function: a made-up ARN shows it is the !GetAtt, not a pattern.
        for arn in invoke_resources(role, r):
            self.assertTrue(iam_match(arn, arn) and not any(iam_match(arn, a) for a in [arn + "-other", arn + ":1"]))

    def test_invoke_check_can_fail(self) -> None:
        r = Resolver(self.t, SAMPLE)
        arns = [r.getatt(f, "Arn") for f in FUNCTIONS]
        with self.assertRaises(AssertionError):
            check_invoke(arns[:5] + ["arn:aws:lambda:us-east-1:123456789012:function:qovery-key-rotator-*"], arns)
        with self.assertRaises(AssertionError):
            check_invoke(arns[:5], arns)
        # SAM's LambdaInvokePolicy, as the template had it: function:<name>*.
        role = {"Properties": {"Policies": [{"PolicyDocument": {"Statement": [
            {"Effect": "Allow", "Action": ["lambda:InvokeFunction"],
             "Resource": {"Fn::Sub": ["arn:${AWS::Partition}:lambda:${AWS::Region}:${AWS::AccountId}:function:${functionName}*",
                                      {"functionName": {"Ref": "PreflightFunction"}}]}},
        ]}}]}}
        with self.assertRaises(AssertionError):
            check_invoke(invoke_resources(role, r), arns)

    def test_state_machine_publishes_to_the_topic_and_gets_its_substitutions(self) -> None:
        sm = self.t["Resources"]["RotationStateMachine"]["Properties"]
        subs = sm["DefinitionSubstitutions"]
        self.assertEqual(subs["NotificationTopicArn"], {"Ref": "NotificationTopic"})
        self.assertEqual(subs["NotifyOnSuccess"], {"Ref": "NotifyOnSuccess"})
        for f in FUNCTIONS:
            self.assertEqual(subs[f"{f}Arn"], {"Fn::GetAtt": [f, "Arn"]})
        role = self.t["Resources"]["RotationStateMachineRole"]
        publish = [
            st for p in role["Properties"]["Policies"] for st in statements(p["PolicyDocument"])
            if "sns:Publish" in as_list(st["Action"])
        ]
        self.assertEqual([(st["Effect"], st["Resource"]) for st in publish], [("Allow", {"Ref": "NotificationTopic"})])


if __name__ == "__main__":
    unittest.main()
