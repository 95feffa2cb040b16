"""docs/by-hand.md, "Run a rotation by hand", against the local stack: the AWS CLI talks to
moto, where template.yaml is deployed as a CloudFormation stack and moto's own Step
Functions engine runs statemachine/rotation.asl.json, invoking the real step binaries.

On top of the local stack (stack.py: moto, the fake Qovery behind Prism, cargo lambda
and the six binaries, each signing with its template policies):
  - template.yaml, turned into plain CloudFormation by the SAM translator (the code and
    the definition uploaded to moto's S3), is created as the stack `qovery-key-rotator`
    with the fake's organization and credentials, so describe-stacks gives its real
    Outputs (ExecutionInput, StateMachineArn, ...);
  - moto's execution engine is on (`execute_state_machine`), and moto_sfn_lambda.py
    routes its Lambda invocations to the binaries; Waits and Retry pauses take their
    real time;
  - the seeded world is demo.py's: an IAM user with one key held by Qovery credentials
    used by two clusters, and by each cluster's mirroring container registry.

What moto does not emulate: the functions' CloudWatch logs, the state machine's log
delivery, EventBridge (the failure notification), EventBridge Scheduler (the rotation
and audit schedules) and the console. moto's CloudFormation creates the stack without
the resource types it does not implement, with a warning each: AWS::Scheduler::Schedule,
AWS::CloudWatch::Alarm, AWS::SNS::TopicPolicy and AWS::SecretsManager::Secret (the token
secret is stack.py's; ExistingQoveryTokenSecretArn points at it). Nothing the README's
commands use refers to them; tests/template/test_schedule.py checks the schedules, their
roles and dead-letter queue, the alarm and the topic policy in the transformed template.

    python by_hand.py                      prints the environment for the AWS CLI, runs until Ctrl-C
    python by_hand.py --run SCRIPT         runs `bash SCRIPT` in that environment, then stops
    python by_hand.py --qovery-rejects-token ...   Qovery answers 401 to the stored token
    python by_hand.py --check-doc          runs docs/by-hand.md, "Run a rotation by hand" (make test-by-hand)

--check-doc takes the ```sh blocks of that page (all but those after an
`<!-- aws only: ... -->` line) and runs them in one bash, in order, every command required
to succeed, in two worlds: a healthy one (the dry run succeeds, the rotation starts and is
under way when the stack stops) and one where Qovery refuses the token (the dry run fails with
QoveryUnauthorized, read by the FAILED block). Then it checks the executions in moto.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
import zipfile
from pathlib import Path

from stack import ACCOUNT, REGION, REPO, STACK_NAME, Stack, StackError, log
from worlds import registry_seed
from template_policies import load

USER = "qovery-deployer"
CLUSTERS = ["production", "staging"]
BUCKET = "qkr-local-artifacts"


def sam_transform(template: dict) -> dict:
    """template.yaml as plain CloudFormation, as the SAM transform makes it on AWS."""
    os.environ.setdefault("AWS_DEFAULT_REGION", REGION)
    from samtranslator.translator.transform import transform

    class ManagedPolicies:
        def load(self) -> dict[str, str]:
            return {"AWSLambdaBasicExecutionRole": "arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole"}

    for resource in template["Resources"].values():
        if resource["Type"] == "AWS::Serverless::Function":
            resource["Properties"]["CodeUri"] = f"s3://{BUCKET}/bootstrap.zip"
        elif resource["Type"] == "AWS::Serverless::StateMachine":
            resource["Properties"]["DefinitionUri"] = {"Bucket": BUCKET, "Key": "rotation.asl.json"}
    return transform(template, {}, ManagedPolicies())


def deploy_template(stack: Stack, parameters: dict[str, str]) -> dict[str, str]:
    """Creates the CloudFormation stack in moto; returns logical id -> binary of each function."""
    template = load()
    binaries = {
        logical: r["Metadata"]["BuildProperties"]["Binary"]
        for logical, r in template["Resources"].items()
        if r["Type"] == "AWS::Serverless::Function"
    }
    s3 = stack._client("s3")
    s3.create_bucket(Bucket=BUCKET)
    code = io.BytesIO()
    with zipfile.ZipFile(code, "w") as z:  # moto only stores it: the binaries run outside
        z.writestr("bootstrap", "#!/bin/sh\n")
    s3.put_object(Bucket=BUCKET, Key="bootstrap.zip", Body=code.getvalue())
    s3.put_object(Bucket=BUCKET, Key="rotation.asl.json", Body=(REPO / "statemachine" / "rotation.asl.json").read_bytes())
    # stack.py made a state machine and a ledger table of the template's names for its
    # own runs; the CloudFormation stack makes them now.
    stack.sfn.delete_state_machine(stateMachineArn=stack.state_machine_arn)
    stack.ddb.delete_table(TableName=stack.ledger_table)
    cfn = stack._client("cloudformation")
    cfn.create_stack(
        StackName=STACK_NAME,
        TemplateBody=json.dumps(sam_transform(template)),
        Capabilities=["CAPABILITY_IAM"],
        Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in parameters.items()],
    )
    deadline = time.monotonic() + 60
    while True:
        status = cfn.describe_stacks(StackName=STACK_NAME)["Stacks"][0]["StackStatus"]
        if status == "CREATE_COMPLETE":
            break
        if not status.endswith("_IN_PROGRESS") or time.monotonic() > deadline:
            raise StackError(f"moto's CloudFormation: stack {STACK_NAME} is {status}")
        time.sleep(0.2)
    return binaries


def substitutions(stack: Stack) -> dict[str, str]:
    """DefinitionSubstitutions of the state machine, resolved against the stack in moto:
    !GetAtt <function>.Arn, !Ref <resource> (its physical id: a topic's ARN) and
    !Ref <parameter> (the stack's value)."""
    template = load()
    subs = template["Resources"]["RotationStateMachine"]["Properties"]["DefinitionSubstitutions"]
    cfn = stack._client("cloudformation")
    summaries = cfn.list_stack_resources(StackName=STACK_NAME)["StackResourceSummaries"]
    physical = {r["LogicalResourceId"]: r["PhysicalResourceId"] for r in summaries}
    parameters = {p["ParameterKey"]: p["ParameterValue"] for p in cfn.describe_stacks(StackName=STACK_NAME)["Stacks"][0]["Parameters"]}
    out = {}
    for key, value in subs.items():
        if "Fn::GetAtt" in value and value["Fn::GetAtt"][1] == "Arn" and value["Fn::GetAtt"][0] in physical:
            out[key] = f"arn:aws:lambda:{REGION}:{stack.world.account_id}:function:{physical[value['Fn::GetAtt'][0]]}"
        elif "Ref" in value and value["Ref"] in template["Resources"] and value["Ref"] in physical:
            out[key] = physical[value["Ref"]]
        elif "Ref" in value and value["Ref"] in parameters:
            out[key] = parameters[value["Ref"]]
        else:
            raise StackError(f"DefinitionSubstitutions {key}: {value} is not resolved here")
    return out


DOC = REPO / "docs" / "by-hand.md"
TITLE = "# Run a rotation by hand"


def doc_blocks() -> list[str]:
    """The runnable ```sh blocks of docs/by-hand.md, in order."""
    text = DOC.read_text()
    if not text.startswith(TITLE + "\n"):
        raise StackError(f"{DOC.relative_to(REPO)}: expected it to start with {TITLE!r}")
    lines = text.splitlines()
    blocks, current, skip, previous = [], None, False, ""
    for line in lines:
        if current is None and line.strip() == "```sh":
            current, skip = [], previous.startswith("<!-- aws only")
        elif current is not None and line.strip() == "```":
            if not skip:
                blocks.append("\n".join(current))
            current = None
        elif current is not None:
            current.append(line)
        if line.strip():
            previous = line.strip()
    return blocks


def check_script(blocks: list[str], which: list[int]) -> str:
    """One bash script running the chosen blocks in order; any failing command fails it."""
    parts = ["set -Eeuo pipefail", "trap 'echo \"FAILED: $BASH_COMMAND\" >&2' ERR"]
    for i in which:
        parts.append(f"echo '### docs/by-hand.md block {i + 1}' >&2")
        parts.append(blocks[i])
    return "\n".join(parts) + "\n"


def block_index(blocks: list[str], marker: str) -> int:
    (index,) = [i for i, b in enumerate(blocks) if marker in b]
    return index


def executions(stack: Stack) -> dict[str, dict]:
    """name -> description of every execution of the stack's state machine."""
    out = {}
    for e in stack.sfn.list_executions(stateMachineArn=stack.state_machine_arn)["executions"]:
        out[e["name"]] = stack.sfn.describe_execution(executionArn=e["executionArn"])
    return out


def check_doc() -> int:
    blocks = doc_blocks()
    first = block_index(blocks, "STATE_MACHINE=$(output StateMachineArn)")
    dry = block_index(blocks, "jq -c '.dry_run = true'")
    failed = block_index(blocks, "--query cause")
    if not first < dry < failed:
        raise StackError("docs/by-hand.md: the outputs, the dry run and the FAILED blocks are not in that order")
    worlds = [
        ("healthy", False, list(range(len(blocks)))),
        ("Qovery refuses the token", True, [first, dry, failed]),
    ]
    problems = check_migrate_to_role()
    for name, rejects, which in worlds:
        log(f"docs/by-hand.md check, {name}: blocks {', '.join(str(i + 1) for i in which)} of {len(blocks)}")
        script = Path(tempfile.mkdtemp()) / "by-hand.sh"
        script.write_text(check_script(blocks, which))
        code, runs, lock = session(rejects, str(script))
        if code != 0:
            problems.append(f"{name}: the commands of docs/by-hand.md failed (exit {code})")
            continue
        dry_runs = [e for n, e in runs.items() if n.startswith("dry-run-")]
        rotations = [e for n, e in runs.items() if n.startswith("by-hand-")]
        if len(dry_runs) != 1:
            problems.append(f"{name}: expected one dry run, found {sorted(runs)}")
            continue
        dry_run = dry_runs[0]
        if rejects:
            if (dry_run["status"], dry_run.get("error")) != ("FAILED", "QoveryUnauthorized"):
                problems.append(f"{name}: dry run {dry_run['status']} {dry_run.get('error')}, expected FAILED QoveryUnauthorized")
        else:
            if dry_run["status"] != "SUCCEEDED" or "report" not in json.loads(dry_run["output"]):
                problems.append(f"{name}: dry run {dry_run['status']}, expected SUCCEEDED with a report")
            # Still running: its Waits take their real time (the drain, two hours).
            if [e["status"] for e in rotations] != ["RUNNING"]:
                problems.append(f"{name}: expected one rotation, RUNNING; found {[e['status'] for e in rotations]}")
            # ... and it holds the user's rotation lock in the stack's ledger table.
            elif not lock or lock.get("execution_id") != rotations[0]["executionArn"]:
                problems.append(f"{name}: the ledger should name the running rotation {rotations[0]['executionArn']}; it has {lock}")
        if rejects and lock is not None:
            problems.append(f"{name}: a dry run that failed left a ledger item: {lock}")
    for problem in problems:
        print(f"by_hand: {problem}", file=sys.stderr)
    print(f"docs/by-hand.md \"Run a rotation by hand\" and make migrate-to-role: {len(worlds) + 1 - len(problems)} "
          f"passed, {len(problems)} failed")
    return 1 if problems else 0


def check_migrate_to_role() -> list[str]:
    """`make migrate-to-role ROLE_ARN=...` (tools/migrate-to-role.sh, a dry run) against the
    deployed stack, with QoveryRoleName set and a role that trusts Qovery's principal."""
    name = "move to a role (make migrate-to-role, a dry run)"
    log(f"{name}: tools/migrate-to-role.sh")
    code, runs, lock = session(False, str(REPO / "tools" / "migrate-to-role.sh"), role=ROLE_NAME)
    if code != 0:
        return [f"{name}: tools/migrate-to-role.sh failed (exit {code})"]
    dry_runs = [e for n, e in runs.items() if n.startswith("migration-dry-run-")]
    if [e["status"] for e in dry_runs] != ["SUCCEEDED"]:
        return [f"{name}: expected one migration dry run, SUCCEEDED; found {[e['status'] for e in dry_runs]}"]
    migration = json.loads(dry_runs[0]["output"])["report"].get("migration") or {}
    problems = []
    if migration.get("role_arn") != role_arn(ROLE_NAME) or not migration.get("holders"):
        problems.append(f"{name}: the dry run's report.migration is {migration}")
    if lock is not None:
        problems.append(f"{name}: a dry run left a ledger item: {lock}")
    return problems


# The role of the migration check, trusting Qovery's principal (moto_trust.py).
ROLE_NAME = "qovery-engine"


def role_arn(name: str) -> str:
    return f"arn:aws:iam::{ACCOUNT}:role/{name}"


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", metavar="SCRIPT", help="run `bash SCRIPT` with the AWS CLI pointed at the stack, then stop")
    p.add_argument("--qovery-rejects-token", action="store_true", help="the fake Qovery answers 401 to the stored token")
    p.add_argument("--check-doc", action="store_true", help="run docs/by-hand.md's commands in two worlds and check the outcome")
    args = p.parse_args(argv)
    if args.check_doc:
        return check_doc()
    code, _, _ = session(args.qovery_rejects_token, args.run)
    return code


def session(qovery_rejects_token: bool, script: str | None,
            role: str | None = None) -> tuple[int, dict[str, dict], dict | None]:
    """Brings the stack up with template.yaml deployed; runs `bash script` in the AWS CLI's
    environment (or waits for Ctrl-C). Returns its exit code, the executions after it, and
    the user's rotation record in the stack's ledger table (None: no item)."""
    stack = Stack()
    routes = stack.log_dir / "lambda-routes.json"
    stack.extra_moto_env["QKR_MOTO_LAMBDA_ROUTES"] = str(routes)
    with stack:
        (key_id, secret), = stack.create_user(USER, 1)
        if role:
            trust = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
                                                              "Principal": {"AWS": "arn:aws:iam::999999999999:root"}}]}
            stack.iam.create_role(RoleName=role, AssumeRolePolicyDocument=json.dumps(trust))
        stack.deploy(USER, qovery_role_name=role or "")
        org, creds = str(uuid.uuid4()), str(uuid.uuid4())
        clusters = [{"id": str(uuid.uuid4()), "name": n, "credentials_id": creds} for n in CLUSTERS]
        stack.fake.seed({
            "token": "qovtok_not_the_stored_one" if qovery_rejects_token else stack.token,
            "organization_id": org,
            "credentials": [{"id": creds, "name": "aws-production", "access_key_id": key_id, "secret_access_key": secret}],
            "clusters": clusters,
            # As in Qovery (and the demo), each AWS cluster's mirroring registry holds the key too.
            "container_registries": [
                registry_seed("container", "key", f"{c['name']}-mirror", (key_id, secret), cluster_id=c["id"]) for c in clusters
            ],
        })
        binaries = deploy_template(stack, {
            "IamUserName": USER,
            "QoveryOrganizationId": org,
            "QoveryCredentialsId": creds,
            "ExistingQoveryTokenSecretArn": stack.token_secret_arn,
            **({"QoveryRoleName": role} if role else {}),
        })
        # moto's CloudFormation makes the state machine without reading its definition
        # from S3, and moto keeps the state machines its engine runs apart from those
        # CloudFormation made. So the engine gets the stack's state machine as
        # CloudFormation would make it: same name and role, the ASL with its
        # DefinitionSubstitutions resolved (the stack's function ARNs, its topic...).
        made = stack.sfn.describe_state_machine(stateMachineArn=stack.state_machine_arn)
        definition = (REPO / "statemachine" / "rotation.asl.json").read_text()
        for key, value in substitutions(stack).items():
            definition = definition.replace("${" + key + "}", value)
        request = urllib.request.Request(
            f"{stack.moto_url}/moto-api/config", method="POST",
            data=json.dumps({"stepfunctions": {"execute_state_machine": True}}).encode(),
            headers={"content-type": "application/json"},
        )
        urllib.request.urlopen(request, timeout=10).read()
        stack.sfn.create_state_machine(name=made["name"], definition=definition, roleArn=made["roleArn"], type="STANDARD")
        routes.write_text(json.dumps({"invoke_url": stack.invoke_url, "functions": binaries}))

        env = {
            "AWS_ENDPOINT_URL": stack.moto_url,
            "AWS_ACCESS_KEY_ID": stack.admin_key[0],
            "AWS_SECRET_ACCESS_KEY": stack.admin_key[1],
            "AWS_REGION": REGION,
            "AWS_DEFAULT_REGION": REGION,
            "AWS_CONFIG_FILE": str(stack.log_dir / "aws-config"),
            "AWS_SHARED_CREDENTIALS_FILE": str(stack.log_dir / "aws-credentials"),
            "AWS_PAGER": "",
            "STACK": STACK_NAME,
            **({"ROLE_ARN": role_arn(role)} if role else {}),
        }
        exports = "".join(f"export {k}={shlex.quote(v)}\n" for k, v in env.items())
        (stack.log_dir / "aws-env.sh").write_text(exports)
        log(f"stack {STACK_NAME} deployed in moto's CloudFormation; moto runs its executions")
        if script:
            path = os.pathsep.join([str(REPO / ".venv-sam" / "bin"), os.environ.get("PATH", "")])
            marks = stack.log_marks()
            done = subprocess.run(["bash", script], env={**os.environ, **env, "PATH": path})
            # A call the template's policies deny, even one the code only logs, fails the run.
            denials = stack.denials_since(marks)
            for denial in denials:
                log(f"moto denied: {denial}")
            return (done.returncode or (1 if denials else 0)), executions(stack), stack.ledger(USER)
        print(f"# The AWS CLI against the local stack: source {stack.log_dir / 'aws-env.sh'}, or paste:")
        print(exports, end="")
        print("# Ctrl-C stops everything.", flush=True)
        stack.serve_until_interrupted()
    return 0, {}, None


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except StackError as e:
        print(f"by_hand: {e}", file=sys.stderr)
        sys.exit(1)
