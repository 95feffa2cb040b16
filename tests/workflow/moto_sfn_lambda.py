"""Lets moto's own Step Functions engine (its port of LocalStack's ASL interpreter, on with
moto's `execute_state_machine` config) run the real step binaries.

moto's engine invokes a Task's Lambda through moto's Lambda API, which would run the
function in Docker. This routes those invocations to cargo lambda's Invoke API instead,
where the prebuilt binaries of the local stack answer: the function name moto's
CloudFormation gave (`<stack>-PreflightFunction-<suffix>`) maps to the binary named by
the template's BuildProperties (`preflight`). A function error (cargo lambda: HTTP 500
with the runtime's error document) comes back as Lambda reports it, FunctionError
"Unhandled" with the document as payload, so the ASL's Retry and Catch see the
function's errorType, as on AWS.

The routes file (JSON, written by by_hand.py once the stack exists):
    {"invoke_url": "http://127.0.0.1:PORT", "functions": {"PreflightFunction": "preflight", ...}}
"""

from __future__ import annotations

import io
import json
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from moto.stepfunctions.parser.asl.component.state.exec.state_task import lambda_eval_utils


class LocalLambda:
    """The one Lambda client method moto's engine calls: invoke."""

    def __init__(self, routes_file: Path):
        self.routes_file = routes_file

    def _route(self, function_name: str) -> tuple[str, str]:
        routes = json.loads(self.routes_file.read_text())
        name = function_name.rsplit(":", 1)[-1] if function_name.startswith("arn:") else function_name
        for logical_id, binary in routes["functions"].items():
            if f"-{logical_id}-" in name or name == binary:
                return routes["invoke_url"], binary
        raise RuntimeError(f"moto_sfn_lambda: no route for Lambda function {function_name}")

    def invoke(self, FunctionName: str, Payload: Any = b"{}", **_: Any) -> dict:  # noqa: N803
        url, binary = self._route(FunctionName)
        body = Payload.encode() if isinstance(Payload, str) else bytes(Payload)
        request = urllib.request.Request(
            f"{url}/2015-03-31/functions/{binary}/invocations", data=body, method="POST",
            headers={"content-type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=180) as response:
                return {"StatusCode": 200, "Payload": io.BytesIO(response.read())}
        except urllib.error.HTTPError as e:
            if e.code != 500:
                raise
            return {"StatusCode": 200, "FunctionError": "Unhandled", "Payload": io.BytesIO(e.read())}


def install(routes_file: str) -> None:
    local = LocalLambda(Path(routes_file))
    original = lambda_eval_utils.boto_client_for

    def boto_client_for(region: str, service: str, state_credentials: Any = None) -> Any:
        if service == "lambda":
            return local
        return original(region=region, service=service, state_credentials=state_credentials)

    if not hasattr(lambda_eval_utils, "boto_client_for"):
        sys.exit("moto_sfn_lambda.py: moto's lambda_eval_utils.boto_client_for is gone; update this patch")
    lambda_eval_utils.boto_client_for = boto_client_for  # type: ignore[assignment]
