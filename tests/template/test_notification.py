"""The failure notification (RotationFailedRule's input transformer in template.yaml),
rendered as EventBridge renders it against the documented Step Functions events for
every status the rule matches, and against events that do carry an error and a cause.

GIVEN the rule's InputPathsMap and InputTemplate as written in template.yaml
WHEN an execution of each matched status is rendered
THEN the message is valid JSON with the execution, its status, the error and cause
     where the event has them (an empty list where it has not), and a console link.
"""

from __future__ import annotations

import json
import sys
import unittest
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "workflow"))

from template_policies import load  # noqa: E402

from tests.template.eventbridge_transformer import placeholders, render  # noqa: E402

EVENTS = HERE / "events"


def rule() -> dict:
    return load()["Resources"]["RotationFailedRule"]["Properties"]


def transformer() -> dict:
    (target,) = rule()["Targets"]
    return target["InputTransformer"]


def event(name: str) -> dict:
    return json.loads((EVENTS / name).read_text())


def message(ev: dict) -> dict:
    t = transformer()
    text = render(t["InputPathsMap"], t["InputTemplate"], ev)
    try:
        return json.loads(text)
    except ValueError as e:
        raise AssertionError(f"the notification is not valid JSON ({e}):\n{text}") from None


class NotificationTest(unittest.TestCase):
    def assert_message(self, ev: dict, error: list, cause: list) -> None:
        d = ev["detail"]
        m = message(ev)
        self.assertEqual(m["status"], d["status"])
        self.assertEqual(m["execution"], d["executionArn"])
        self.assertEqual(m["time"], ev["time"])
        self.assertEqual(m["error"], error)
        self.assertEqual(m["cause"], cause)
        self.assertIn(f"execution {d['name']} ended with status {d['status']}.", m["summary"])
        self.assertEqual(
            m["console"],
            f"https://{ev['region']}.console.aws.amazon.com/states/home?region={ev['region']}"
            f"#/v2/executions/details/{d['executionArn']}",
        )
        # Never the execution's input or output.
        self.assertNotIn("input", m)
        self.assertNotIn("output", m)

    def test_documented_events_of_every_matched_status(self) -> None:
        statuses = set(rule()["EventPattern"]["detail"]["status"])
        self.assertEqual(statuses, {"FAILED", "TIMED_OUT", "ABORTED"})
        seen = set()
        for name in ("documented-failed.json", "documented-timed-out.json", "documented-aborted.json"):
            with self.subTest(name):
                ev = event(name)
                self.assertNotIn("error", ev["detail"])  # as documented: no error, no cause
                self.assert_message(ev, error=[], cause=[])
                seen.add(ev["detail"]["status"])
        self.assertEqual(seen, statuses)

    def test_an_error_and_a_cause_full_of_quotes_arrive_intact(self) -> None:
        ev = event("failed-with-error-and-cause.json")
        self.assert_message(ev, error=["ClusterDeployFailed"], cause=[ev["detail"]["cause"]])
        self.assertEqual(json.loads(message(ev)["cause"][0])["errorType"], "ClusterDeployFailed")

    def test_null_error_and_cause(self) -> None:
        self.assert_message(event("timed-out-with-null-error.json"), error=[None], cause=[None])

    def test_every_placeholder_is_a_defined_variable(self) -> None:
        t = transformer()
        self.assertEqual(placeholders(t["InputTemplate"]), set(t["InputPathsMap"]))


class RendererTest(unittest.TestCase):
    """The renderer fails what EventBridge would render badly: proof the test above can fail."""

    def test_an_unquoted_missing_path_breaks_the_json(self) -> None:
        text = render({"error": "$.detail.error"}, '{"error": <error>}', event("documented-failed.json"))
        self.assertEqual(text, '{"error": }')
        with self.assertRaises(ValueError):
            json.loads(text)

    def test_a_quoted_value_is_not_escaped(self) -> None:
        ev = event("failed-with-error-and-cause.json")
        text = render({"cause": "$.detail.cause"}, '{"cause": "<cause>"}', ev)
        with self.assertRaises(ValueError):
            json.loads(text)

    def test_documented_examples(self) -> None:
        ec2 = {"time": "2015-11-11T21:29:54Z", "detail": {"instance-id": "i-0123456789", "state": "RUNNING"}}
        paths = {"instance": "$.detail.instance-id", "state": "$.detail.state"}
        self.assertEqual(render(paths, '"instance <instance> is in <state>"', ec2), '"instance i-0123456789 is in RUNNING"')
        self.assertEqual(
            json.loads(render(paths, '{"instance" : <instance>, "state": [ 9, <state>, true ]}', ec2)),
            {"instance": "i-0123456789", "state": [9, "RUNNING", True]},
        )
        self.assertEqual(
            json.loads(render(paths, '{"state": "<state>", "s": "instance \\"<instance>\\" is in <state>"}', ec2)),
            {"state": "RUNNING", "s": 'instance "i-0123456789" is in RUNNING'},
        )


if __name__ == "__main__":
    unittest.main()
