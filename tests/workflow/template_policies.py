"""What template.yaml gives each function, resolved for the local stack: its IAM
policies, its environment, and the names the policies point at.

The template is read as written, short-form tags included (`!Sub`, `!Ref`, `!If`...).
Only the intrinsics these values use are resolved, against a `LocalWorld` (pseudo
parameters, parameters, and the local value of each resource a `Ref` names); anything
else raises `TemplateError` rather than being guessed.

    python template_policies.py [IAM_USER]   prints the resolved policies
"""

from __future__ import annotations

import copy
import json
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

TEMPLATE = Path(__file__).resolve().parent.parent.parent / "template.yaml"


# What !Ref AWS::NoValue resolves to: removed from the list that holds it.
_NO_VALUE = object()

class TemplateError(RuntimeError):
    pass


class _CfnLoader(yaml.SafeLoader):
    """YAML with CloudFormation's short-form tags, turned into their long form."""


def _short_form(loader: _CfnLoader, suffix: str, node: yaml.Node) -> dict:
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    if suffix == "Ref":
        return {"Ref": value}
    if suffix == "Condition":
        return {"Condition": value}
    if suffix == "GetAtt" and isinstance(value, str):
        value = value.split(".", 1)
    return {f"Fn::{suffix}": value}


_CfnLoader.add_multi_constructor("!", _short_form)


def load(path: Path = TEMPLATE) -> dict:
    return yaml.load(path.read_text(), Loader=_CfnLoader)


@dataclass
class LocalWorld:
    """What the template's references mean in the local stack."""

    stack_name: str
    account_id: str = "123456789012"
    region: str = "us-east-1"
    partition: str = "aws"
    parameters: dict[str, str] = field(default_factory=dict)
    # The value of `!Ref <logical id>` for the resources the stack makes locally.
    resources: dict[str, str] = field(default_factory=dict)

    def pseudo(self) -> dict[str, str]:
        return {
            "AWS::Partition": self.partition,
            "AWS::Region": self.region,
            "AWS::AccountId": self.account_id,
            "AWS::StackName": self.stack_name,
        }


class Template:
    def __init__(self, path: Path = TEMPLATE):
        self.path = path
        self.doc = load(path)

    # ------------------------------------------------------------ what the stack needs

    def function_resource(self, binary: str) -> str:
        """The logical id of the function built from `binary`."""
        found = [
            name
            for name, res in self.doc["Resources"].items()
            if res.get("Type") == "AWS::Serverless::Function"
            and res.get("Metadata", {}).get("BuildProperties", {}).get("Binary") == binary
        ]
        if len(found) != 1:
            raise TemplateError(f"{self.path.name}: expected one function built from binary {binary}, found {found}")
        return found[0]

    def function_policies(self, binary: str, world: LocalWorld) -> dict[str, dict]:
        """The function's inline policies, resolved, by the name SAM would give them
        (<Function>RolePolicy<n>)."""
        logical = self.function_resource(binary)
        policies = self.doc["Resources"][logical]["Properties"].get("Policies", [])
        out = {}
        for i, policy in enumerate(policies):
            where = f"Resources.{logical}.Properties.Policies[{i}]"
            if not (isinstance(policy, dict) and "Statement" in policy):
                # A SAM policy template or a managed policy: SAM expands those, not us.
                raise TemplateError(f"{where} is not an inline policy document; the local stack cannot apply it")
            out[f"{logical}RolePolicy{i}"] = self.resolve(policy, world, where)
        return out

    def function_env(self, binary: str, world: LocalWorld) -> dict[str, str]:
        """Globals.Function.Environment.Variables and the function's own, resolved."""
        logical = self.function_resource(binary)
        env: dict[str, Any] = {}
        for where, source in (
            ("Globals.Function", self.doc.get("Globals", {}).get("Function", {})),
            (f"Resources.{logical}.Properties", self.doc["Resources"][logical]["Properties"]),
        ):
            variables = source.get("Environment", {}).get("Variables", {})
            env.update({k: (v, f"{where}.Environment.Variables.{k}") for k, v in variables.items()})
        return {k: str(self.resolve(v, world, where)) for k, (v, where) in env.items()}

    def parameter_default(self, name: str) -> str:
        try:
            return str(self.doc["Parameters"][name]["Default"])
        except KeyError:
            raise TemplateError(f"{self.path.name} has no parameter {name} with a default") from None

    def resource_property(self, logical: str, prop: str, world: LocalWorld) -> Any:
        try:
            value = self.doc["Resources"][logical]["Properties"][prop]
        except KeyError:
            raise TemplateError(f"{self.path.name} has no Resources.{logical}.Properties.{prop}") from None
        return self.resolve(value, world, f"Resources.{logical}.Properties.{prop}")

    # ------------------------------------------------------------ intrinsics

    def resolve(self, node: Any, world: LocalWorld, where: str) -> Any:
        if isinstance(node, list):
            # AWS::NoValue (the "else" of an !If) disappears from a list, as in CloudFormation.
            items = [self.resolve(v, world, f"{where}[{i}]") for i, v in enumerate(node)]
            return [v for v in items if v is not _NO_VALUE]
        if not isinstance(node, dict):
            return node
        if node == {"Ref": "AWS::NoValue"}:
            return _NO_VALUE
        if len(node) == 1:
            (key, arg), = node.items()
            if key == "Ref":
                return self._ref(arg, world, where)
            if key == "Fn::Sub":
                return self._sub(arg, world, where)
            if key == "Fn::If":
                cond, yes, no = arg
                return self.resolve(yes if self.condition(cond, world) else no, world, where)
            if key.startswith("Fn::") or key == "Condition":
                raise TemplateError(f"{where}: {key} is not resolved locally")
        return {k: self.resolve(v, world, f"{where}.{k}") for k, v in node.items()}

    def condition(self, name: str, world: LocalWorld) -> bool:
        try:
            node = self.doc["Conditions"][name]
        except KeyError:
            raise TemplateError(f"{self.path.name} has no condition {name}") from None
        return self._truth(node, world, f"Conditions.{name}")

    def _truth(self, node: Any, world: LocalWorld, where: str) -> bool:
        if isinstance(node, dict) and len(node) == 1:
            (key, arg), = node.items()
            if key == "Fn::Equals":
                a, b = (self.resolve(v, world, where) for v in arg)
                return str(a) == str(b)
            if key == "Fn::Not":
                return not self._truth(arg[0], world, where)
            if key == "Condition":
                return self.condition(arg, world)
        raise TemplateError(f"{where}: condition {node!r} is not resolved locally")

    def _ref(self, name: str, world: LocalWorld, where: str) -> Any:
        pseudo = world.pseudo()
        if name in pseudo:
            return pseudo[name]
        if name in self.doc.get("Parameters", {}):
            spec = self.doc["Parameters"][name]
            if name in world.parameters:
                value = world.parameters[name]
            elif "Default" in spec:
                value = spec["Default"]
            else:
                raise TemplateError(f"{where}: parameter {name} has no default and no local value")
            if spec.get("Type") == "CommaDelimitedList":
                return str(value).split(",")
            return str(value)
        if name in self.doc.get("Resources", {}):
            if name not in world.resources:
                raise TemplateError(f"{where}: !Ref {name} (a resource) has no local value")
            return world.resources[name]
        raise TemplateError(f"{where}: !Ref {name}: no such parameter, pseudo parameter or resource")

    def _sub(self, arg: Any, world: LocalWorld, where: str) -> str:
        text, variables = (arg, {}) if isinstance(arg, str) else (arg[0], arg[1])

        def one(m: re.Match) -> str:
            name = m.group(1)
            if name.startswith("!"):  # ${!Literal} is the text ${Literal}
                return "${" + name[1:] + "}"
            if name in variables:
                value = self.resolve(variables[name], world, f"{where}.{name}")
            elif "." in name:
                raise TemplateError(f"{where}: ${{{name}}} (an attribute) is not resolved locally")
            else:
                value = self._ref(name, world, where)
            if not isinstance(value, str):
                raise TemplateError(f"{where}: ${{{name}}} is not a string: {value!r}")
            return value

        return re.sub(r"\$\{([^}]+)\}", one, text)


def without_action(policies: dict[str, dict], action: str) -> dict[str, dict]:
    """A copy of resolved policies in which no statement allows `action`."""
    out = copy.deepcopy(policies)
    found = False
    for doc in out.values():
        kept = []
        for st in doc["Statement"]:
            actions = st["Action"] if isinstance(st["Action"], list) else [st["Action"]]
            if action in actions:
                found = True
                actions = [a for a in actions if a != action]
                if not actions:
                    continue
                st = {**st, "Action": actions}
            kept.append(st)
        doc["Statement"] = kept
    if not found:
        raise TemplateError(f"no statement allows {action}")
    return out


if __name__ == "__main__":
    user = sys.argv[1] if len(sys.argv) > 1 else "qovery"
    world = LocalWorld(
        stack_name="qovery-key-rotator",
        parameters={"IamUserName": user},
        resources={"QoveryTokenSecret": "arn:aws:secretsmanager:us-east-1:123456789012:secret:qovery-key-rotator/qovery-api-token-AbCdEf"},
    )
    t = Template()
    for binary in ["preflight", "create-key", "update-qovery", "deploy-cluster", "check-status", "delete-key"]:
        print(f"# {binary}: {t.function_resource(binary)}")
        print(json.dumps(t.function_policies(binary, world), indent=2))
