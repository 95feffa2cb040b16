"""template.yaml as CloudFormation sees it, offline, for the template tests.

- `transformed()`: template.yaml through the SAM translator (aws-sam-translator, in
  .venv as cfn-lint's dependency), as by_hand.py does it for moto: no AWS call, the one
  managed policy the functions use given by ARN. The result is the plain CloudFormation
  the SAM transform makes on AWS: the functions', state machine's and schedules' roles,
  the AWS::Scheduler::Schedule resources.
- `Resolver`: the intrinsics these templates use (Ref, Fn::Sub, Fn::If, Fn::GetAtt,
  Fn::Equals, Fn::Not, Condition), against parameter values and made-up physical ids
  named as CloudFormation names them (<stack>-<logical id>-<suffix>). AWS::NoValue
  disappears from the lists and mappings that hold it, as in CloudFormation. Anything
  else raises rather than being guessed.
- `iam_match`: an IAM Action or Resource pattern against a value.
"""

from __future__ import annotations

import copy
import functools
import os
import re
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent.parent
sys.path.insert(0, str(REPO / "tests" / "workflow"))

from template_policies import load  # noqa: E402

TEMPLATE = REPO / "template.yaml"
CI_TEMPLATE = REPO / "deploy" / "github-oidc-role.yaml"
BASIC_EXECUTION_ROLE = "arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole"


@functools.lru_cache(maxsize=None)
def _transformed() -> dict:
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    from samtranslator.translator.transform import transform

    class ManagedPolicies:
        def load(self) -> dict[str, str]:
            return {"AWSLambdaBasicExecutionRole": BASIC_EXECUTION_ROLE}

    template = load(TEMPLATE)
    for resource in template["Resources"].values():
        if resource["Type"] == "AWS::Serverless::Function":
            resource["Properties"]["CodeUri"] = "s3://qkr-artifacts/bootstrap.zip"
        elif resource["Type"] == "AWS::Serverless::StateMachine":
            resource["Properties"]["DefinitionUri"] = {"Bucket": "qkr-artifacts", "Key": "rotation.asl.json"}
    return transform(template, {}, ManagedPolicies())


def transformed() -> dict:
    """template.yaml after the SAM transform (a fresh copy each call)."""
    return copy.deepcopy(_transformed())


def raw() -> dict:
    return load(TEMPLATE)


def ci() -> dict:
    return load(CI_TEMPLATE)


NO_VALUE = object()


class ResolveError(AssertionError):
    pass


class Resolver:
    """Resolves a template's intrinsics for one set of parameter values."""

    def __init__(
        self,
        doc: dict,
        parameters: dict[str, str] | None = None,
        stack_name: str = "qovery-key-rotator",
        account_id: str = "123456789012",
        region: str = "us-east-1",
    ):
        self.doc = doc
        self.pseudo = {
            "AWS::Partition": "aws",
            "AWS::Region": region,
            "AWS::AccountId": account_id,
            "AWS::StackName": stack_name,
            "AWS::URLSuffix": "amazonaws.com",
        }
        self.parameters: dict[str, str] = {}
        for name, spec in doc.get("Parameters", {}).items():
            if parameters and name in parameters:
                self.parameters[name] = str(parameters[name])
            elif "Default" in spec:
                self.parameters[name] = str(spec["Default"])
        unknown = set(parameters or {}) - set(doc.get("Parameters", {}))
        if unknown:
            raise ResolveError(f"no such parameters: {sorted(unknown)}")
        self.refs: dict[str, str] = {}
        self.attrs: dict[tuple[str, str], str] = {}
        self._physical_ids()

    # ------------------------------------------------------------ made-up physical ids

    def _physical_ids(self) -> None:
        # A name may refer to another resource (a log group named after its function):
        # rounds until every resource has its ids.
        pending = dict(self.doc.get("Resources", {}))
        while pending:
            progress = False
            for logical, res in list(pending.items()):
                try:
                    self._physical_id(logical, res)
                except ResolveError:
                    continue
                del pending[logical]
                progress = True
            if not progress:
                raise ResolveError(f"cannot name {sorted(pending)}")

    def _physical_id(self, logical: str, res: dict) -> None:
        stack, region, account = self.pseudo["AWS::StackName"], self.pseudo["AWS::Region"], self.pseudo["AWS::AccountId"]
        arn = f"arn:aws:{{}}:{region}:{account}:{{}}"
        kind = res.get("Type", "")
        generated = f"{stack}-{logical}-ABCDEFGH1234"
        props = res.get("Properties", {})

        def named(prop: str) -> str:
            return self.resolve(props[prop]) if prop in props else generated

        if kind == "AWS::Lambda::Function":
            name = named("FunctionName")
            self.refs[logical] = name
            self.attrs[(logical, "Arn")] = arn.format("lambda", f"function:{name}")
        elif kind == "AWS::IAM::Role":
            self.refs[logical] = generated
            self.attrs[(logical, "Arn")] = f"arn:aws:iam::{account}:role/{generated}"
        elif kind == "AWS::IAM::ManagedPolicy":
            name = named("ManagedPolicyName")
            self.refs[logical] = f"arn:aws:iam::{account}:policy/{name}"
        elif kind == "AWS::SNS::Topic":
            self.refs[logical] = arn.format("sns", generated)
            self.attrs[(logical, "TopicName")] = generated
        elif kind == "AWS::SQS::Queue":
            self.refs[logical] = f"https://sqs.{region}.amazonaws.com/{account}/{generated}"
            self.attrs[(logical, "Arn")] = arn.format("sqs", generated)
            self.attrs[(logical, "QueueName")] = generated
        elif kind == "AWS::StepFunctions::StateMachine":
            name = named("StateMachineName")
            self.refs[logical] = arn.format("states", f"stateMachine:{name}")
            self.attrs[(logical, "Name")] = name
        elif kind == "AWS::SecretsManager::Secret":
            self.refs[logical] = arn.format("secretsmanager", f"secret:{named('Name')}-AbCdEf")
        elif kind == "AWS::DynamoDB::Table":
            self.refs[logical] = named("TableName")
        elif kind == "AWS::Logs::LogGroup":
            name = named("LogGroupName")
            self.refs[logical] = name
            self.attrs[(logical, "Arn")] = arn.format("logs", f"log-group:{name}:*")
        elif kind == "AWS::CloudWatch::Alarm":
            self.refs[logical] = generated
            self.attrs[(logical, "Arn")] = arn.format("cloudwatch", f"alarm:{generated}")
        elif kind == "AWS::Events::Rule":
            self.refs[logical] = generated
            self.attrs[(logical, "Arn")] = arn.format("events", f"rule/{generated}")
        elif kind == "AWS::Scheduler::Schedule":
            name = named("Name")
            self.refs[logical] = name
            self.attrs[(logical, "Arn")] = arn.format("scheduler", f"schedule/default/{name}")
        elif kind == "AWS::S3::Bucket":
            self.refs[logical] = generated.lower()
            self.attrs[(logical, "Arn")] = f"arn:aws:s3:::{generated.lower()}"
        elif kind == "AWS::IAM::OIDCProvider":
            self.refs[logical] = f"arn:aws:iam::{account}:oidc-provider/token.actions.githubusercontent.com"
        else:
            self.refs[logical] = generated

    # ------------------------------------------------------------ intrinsics

    def ref(self, name: str) -> Any:
        if name == "AWS::NoValue":
            return NO_VALUE
        for table in (self.pseudo, self.parameters, self.refs):
            if name in table:
                return table[name]
        raise ResolveError(f"!Ref {name}: no such parameter, pseudo parameter or resource")

    def getatt(self, logical: str, attribute: str) -> str:
        try:
            return self.attrs[(logical, attribute)]
        except KeyError:
            raise ResolveError(f"!GetAtt {logical}.{attribute} is not resolved here") from None

    def condition(self, name: str) -> bool:
        try:
            node = self.doc["Conditions"][name]
        except KeyError:
            raise ResolveError(f"no condition {name}") from None
        return self._truth(node)

    def _truth(self, node: Any) -> bool:
        (key, arg), = node.items()
        if key == "Fn::Equals":
            a, b = (self.resolve(v) for v in arg)
            return str(a) == str(b)
        if key == "Fn::Not":
            return not self._truth(arg[0])
        if key == "Fn::And":
            return all(self._truth(v) for v in arg)
        if key == "Fn::Or":
            return any(self._truth(v) for v in arg)
        if key == "Condition":
            return self.condition(arg)
        raise ResolveError(f"condition {node!r} is not resolved here")

    def resolve(self, node: Any) -> Any:
        if isinstance(node, list):
            items = [self.resolve(v) for v in node]
            return [v for v in items if v is not NO_VALUE]
        if not isinstance(node, dict):
            return node
        if len(node) == 1:
            (key, arg), = node.items()
            if key == "Ref":
                return self.ref(arg)
            if key == "Fn::GetAtt":
                logical, attribute = arg if isinstance(arg, list) else arg.split(".", 1)
                return self.getatt(logical, attribute)
            if key == "Fn::Sub":
                return self._sub(arg)
            if key == "Fn::If":
                cond, yes, no = arg
                return self.resolve(yes if self.condition(cond) else no)
            if key.startswith("Fn::"):
                raise ResolveError(f"{key} is not resolved here")
        out = {}
        for k, v in node.items():
            value = self.resolve(v)
            if value is not NO_VALUE:
                out[k] = value
        return out

    def _sub(self, arg: Any) -> str:
        text, variables = (arg, {}) if isinstance(arg, str) else (arg[0], arg[1])

        def one(m: re.Match) -> str:
            name = m.group(1)
            if name.startswith("!"):
                return "${" + name[1:] + "}"
            if name in variables:
                value = self.resolve(variables[name])
            elif "." in name and not name.startswith("AWS::"):
                value = self.getatt(*name.split(".", 1))
            else:
                value = self.ref(name)
            if not isinstance(value, str):
                raise ResolveError(f"${{{name}}} is not a string: {value!r}")
            return value

        return re.sub(r"\$\{([^}]+)\}", one, text)


def as_list(value: Any) -> list:
    return value if isinstance(value, list) else [value]


def iam_match(pattern: str, value: str, ignore_case: bool = False) -> bool:
    """An IAM Action or Resource pattern: '*' any run of characters, '?' exactly one."""
    body = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.fullmatch(body, value, re.IGNORECASE | re.DOTALL if ignore_case else re.DOTALL) is not None


def statements(doc: dict) -> list[dict]:
    return as_list(doc.get("Statement", []))


def roles(template: dict) -> dict[str, dict]:
    return {k: r for k, r in template["Resources"].items() if r["Type"] == "AWS::IAM::Role"}
