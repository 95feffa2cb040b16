"""Renders an EventBridge input transformer (InputPathsMap + InputTemplate) against an
event, following the rules of the EventBridge user guide ("Transforming target input":
its examples and its "Common issues" list):

  - each InputPathsMap entry is a JSON path into the event (dot notation and array
    indices); a path that does not exist in the event creates no variable, and the
    variable does not appear in the output: its placeholder is replaced by nothing;
  - a placeholder outside quotes gets the value as JSON: a string with its quotes
    ("Simple JSON" example: "instance" : <instance> gives "i-0123456789"), null as
    null, numbers and objects as themselves;
  - a placeholder inside a quoted string gets the value's text as it is: EventBridge
    does not escape values extracted by InputPath, so a quote in the value ends the
    string early;
  - the predefined variables aws.events.rule-arn, aws.events.rule-name and
    aws.events.event.ingestion-time are strings.

What EventBridge does with a template that renders to invalid JSON is not documented;
the tests require valid JSON for every event the rule can match.
"""

from __future__ import annotations

import json
import re
from typing import Any

_MISSING = object()
_PLACEHOLDER = re.compile(r"<([A-Za-z0-9_.\-]+)>")
_PATH_PART = re.compile(r"\.([A-Za-z0-9_\-]+)|\[(\d+)\]")


def json_path(event: Any, path: str) -> Any:
    """The value at path ($.a.b[0]), or _MISSING."""
    if not path.startswith("$"):
        raise ValueError(f"unsupported JSON path {path!r}")
    rest, value = path[1:], event
    while rest:
        m = _PATH_PART.match(rest)
        if m is None:
            raise ValueError(f"unsupported JSON path {path!r}")
        key, index = m.group(1), m.group(2)
        if key is not None:
            if not isinstance(value, dict) or key not in value:
                return _MISSING
            value = value[key]
        else:
            if not isinstance(value, list) or int(index) >= len(value):
                return _MISSING
            value = value[int(index)]
        rest = rest[m.end():]
    return value


def _inside_string(template: str, end: int) -> bool:
    """Whether position `end` of the template lies inside a JSON string literal."""
    inside, i = False, 0
    while i < end:
        c = template[i]
        if inside and c == "\\":
            i += 2
            continue
        if c == '"':
            inside = not inside
        i += 1
    return inside


def render(input_paths: dict[str, str], template: str, event: dict, *, rule_name: str = "rule",
           rule_arn: str = "arn:aws:events:us-east-1:012345678912:rule/rule",
           ingestion_time: str = "2019-02-26T19:42:22Z") -> str:
    variables: dict[str, Any] = {
        "aws.events.rule-name": rule_name,
        "aws.events.rule-arn": rule_arn,
        "aws.events.event.ingestion-time": ingestion_time,
    }
    for name, path in input_paths.items():
        value = json_path(event, path)
        if value is not _MISSING:
            variables[name] = value

    def replace(m: re.Match) -> str:
        name = m.group(1)
        if name not in variables:
            return ""
        value = variables[name]
        if _inside_string(template, m.start()):
            return value if isinstance(value, str) else json.dumps(value)
        return json.dumps(value)

    return _PLACEHOLDER.sub(replace, template)


def placeholders(template: str) -> set[str]:
    return set(_PLACEHOLDER.findall(template))
