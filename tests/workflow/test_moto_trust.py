"""moto_trust.py against a real moto server: moto_resources.py, started as stack.py
starts it (INITIAL_NO_AUTH_ACTION_COUNT=3, an admin seeded by the unsigned calls), with
the Qovery principal (QKR_MOTO_QOVERY_PRINCIPAL), and boto3 as the client.

    .venv/bin/python tests/workflow/test_moto_trust.py -v
    .venv/bin/python -m unittest discover -s tests/workflow -t tests/workflow -v

Plain unittest (pytest collects it too). The servers run under this interpreter, so it
must be the one with moto (the repo's .venv).
"""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import sys
import tempfile
import time
import unittest
import uuid
from pathlib import Path
from typing import Any

import boto3
import botocore.config
import botocore.exceptions

HERE = Path(__file__).resolve().parent
REGION = "us-east-1"
ACCOUNT = "123456789012"  # moto's default: the customer's
QOVERY_ACCOUNT = "999999999999"
QOVERY_ROOT = f"arn:aws:iam::{QOVERY_ACCOUNT}:root"
ASSUME = "sts:AssumeRole"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def client(url: str, service: str, key: tuple[str, str], token: str | None = None) -> Any:
    return boto3.client(service, endpoint_url=url, region_name=REGION, aws_access_key_id=key[0],
                        aws_secret_access_key=key[1], aws_session_token=token,
                        # One attempt: a 500 (moto crashing) must show, not be retried.
                        config=botocore.config.Config(retries={"max_attempts": 1}))


def trust(*statements: dict) -> dict:
    return {"Version": "2012-10-17", "Statement": list(statements)}


def allow(principal: Any, **extra: Any) -> dict:
    return {"Effect": "Allow", "Principal": principal, "Action": ASSUME, **extra}


class MotoTrust(unittest.TestCase):
    moto: subprocess.Popen
    tmp: tempfile.TemporaryDirectory

    @classmethod
    def setUpClass(cls) -> None:
        cls.tmp = tempfile.TemporaryDirectory(prefix="moto-trust-")
        tmp = Path(cls.tmp.name)
        cls.log_path = tmp / "moto.log"
        cls.principal_path = tmp / "qovery-principal.json"
        port = free_port()
        cls.url = f"http://127.0.0.1:{port}"
        env = {**os.environ, "INITIAL_NO_AUTH_ACTION_COUNT": "3", "QKR_MOTO_QOVERY_PRINCIPAL": str(cls.principal_path)}
        env.pop("MOTO_ACCOUNT_ID", None)  # would put every request in one account
        with open(cls.log_path, "wb") as log:
            cls.moto = subprocess.Popen([sys.executable, str(HERE / "moto_resources.py"), "-H", "127.0.0.1", "-p", str(port)],
                                        env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            cls._wait_for(port)
            # As stack.py seeds its admin: the only three unsigned calls.
            unsigned = cls.client("iam", ("unsigned", "unsigned"))
            unsigned.create_user(UserName="admin")
            unsigned.put_user_policy(UserName="admin", PolicyName="admin", PolicyDocument=json.dumps(
                {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}))
            key = unsigned.create_access_key(UserName="admin")["AccessKey"]
            cls.admin_key = (key["AccessKeyId"], key["SecretAccessKey"])
            cls.iam = cls.client("iam", cls.admin_key)
            cls.principal = json.loads(cls.principal_path.read_text())
            cls.qovery_key = (cls.principal["access_key_id"], cls.principal["secret_access_key"])
            cls.qovery_sts = cls.client("sts", cls.qovery_key)
        except BaseException:
            cls.tearDownClass()
            raise

    @classmethod
    def tearDownClass(cls) -> None:
        cls.moto.terminate()
        cls.moto.wait(10)
        cls.tmp.cleanup()

    @classmethod
    def _wait_for(cls, port: int) -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if cls.moto.poll() is not None:
                raise RuntimeError(f"moto_resources.py exited ({cls.moto.returncode}):\n{cls.log_path.read_text()}")
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    return
            time.sleep(0.05)
        raise RuntimeError("moto_resources.py did not listen within 30 s")

    @classmethod
    def client(cls, service: str, key: tuple[str, str], token: str | None = None) -> Any:
        return client(cls.url, service, key, token)

    def role(self, policy: dict) -> str:
        """A new role in the customer's account (moto's default), made by the admin."""
        name = f"trust-{uuid.uuid4().hex[:12]}"
        return self.iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(policy))["Role"]["Arn"]

    def log_mark(self) -> int:
        return self.log_path.stat().st_size

    def log_since(self, mark: int) -> str:
        with open(self.log_path, "rb") as f:
            f.seek(mark)
            return f.read().decode(errors="replace")

    def assume(self, role_arn: str, sts: Any = None, **kwargs: Any) -> dict:
        return (sts or self.qovery_sts).assume_role(RoleArn=role_arn, RoleSessionName="qovery-test", **kwargs)

    def assert_denied_by_trust(self, role_arn: str, sts: Any = None, caller: str | None = None, **kwargs: Any) -> str:
        """AccessDenied with AWS's message, parsed by boto3, logged as moto_trust's; returns the log."""
        caller = caller or self.principal["arn"]
        mark = self.log_mark()
        with self.assertRaises(botocore.exceptions.ClientError) as denied:
            self.assume(role_arn, sts, **kwargs)
        error = denied.exception.response["Error"]
        self.assertEqual(denied.exception.response["ResponseMetadata"]["HTTPStatusCode"], 403)
        self.assertEqual(error["Code"], "AccessDenied")
        message = f"User: {caller} is not authorized to perform: sts:AssumeRole on resource: {role_arn}"
        self.assertEqual(error["Message"], message)
        log = self.log_since(mark)
        self.assertIn(f"[moto_trust] DENIED {message} (", log)
        self.assertNotIn("[moto_resources] DENIED", log)
        return log

    def test_the_principal_file(self) -> None:
        self.assertEqual(set(self.principal), {"account_id", "user_name", "arn", "access_key_id", "secret_access_key"})
        self.assertEqual(self.principal["account_id"], QOVERY_ACCOUNT)
        self.assertEqual(self.principal["arn"], f"arn:aws:iam::{QOVERY_ACCOUNT}:user/qovery-engine")
        self.assertEqual(stat.S_IMODE(self.principal_path.stat().st_mode), 0o600)
        # Requests signed with its key are the user's, in Qovery's account.
        me = self.qovery_sts.get_caller_identity()
        self.assertEqual((me["Account"], me["Arn"]), (QOVERY_ACCOUNT, self.principal["arn"]))
        self.assertNotIn(self.principal["secret_access_key"], self.log_path.read_text())

    def test_no_principal_without_the_variable(self) -> None:
        env = {k: v for k, v in os.environ.items() if k != "QKR_MOTO_QOVERY_PRINCIPAL"}
        check = ("import moto_trust; from moto.iam.models import iam_backends; "
                 f"print({QOVERY_ACCOUNT!r} in iam_backends)")
        out = subprocess.run([sys.executable, "-c", check], cwd=HERE, env=env, capture_output=True, text=True, check=True)
        self.assertEqual(out.stdout.strip(), "False")

    def test_role_trusting_qovery_account_is_assumable_and_its_credentials_work(self) -> None:
        for principal in (QOVERY_ROOT, QOVERY_ACCOUNT, self.principal["arn"], ["arn:aws:iam::111111111111:root", QOVERY_ROOT]):
            with self.subTest(principal=principal):
                role_arn = self.role(trust(allow({"AWS": principal})))
                answer = self.assume(role_arn)
                creds = answer["Credentials"]
                assumed = self.client("sts", (creds["AccessKeyId"], creds["SecretAccessKey"]), creds["SessionToken"])
                me = assumed.get_caller_identity()
                self.assertEqual(me["Account"], ACCOUNT)
                self.assertEqual(me["Arn"], f"arn:aws:sts::{ACCOUNT}:assumed-role/{role_arn.split('/')[-1]}/qovery-test")
                self.assertEqual(me["Arn"], answer["AssumedRoleUser"]["Arn"])

    def test_role_trusting_another_account_is_not(self) -> None:
        for principal in ("111111111111", "arn:aws:iam::111111111111:root", "arn:aws:iam::111111111111:user/qovery-engine",
                          # moto compared by substring: a longer ARN containing the caller's.
                          f"{self.principal['arn']}-other"):
            with self.subTest(principal=principal):
                self.assert_denied_by_trust(self.role(trust(allow({"AWS": principal}))))

    def test_missing_role(self) -> None:
        for role_arn in (f"arn:aws:iam::{ACCOUNT}:role/no-such-role", "arn:aws:iam::222222222222:role/no-such-account"):
            with self.subTest(role_arn=role_arn):
                log = self.assert_denied_by_trust(role_arn)
                self.assertIn("(no such role)", log)

    def test_external_id(self) -> None:
        role_arn = self.role(trust(allow({"AWS": QOVERY_ROOT}, Condition={"StringEquals": {"sts:ExternalId": "ext-123"}})))
        self.assert_denied_by_trust(role_arn)
        self.assert_denied_by_trust(role_arn, ExternalId="ext-999")
        self.assertIn("Credentials", self.assume(role_arn, ExternalId="ext-123"))

    def test_string_like_and_principal_keys(self) -> None:
        cases = [
            ({"StringLike": {"aws:PrincipalArn": f"arn:aws:iam::{QOVERY_ACCOUNT}:user/qovery-*"}}, True),
            ({"StringLike": {"aws:PrincipalArn": f"arn:aws:iam::{QOVERY_ACCOUNT}:user/qovery-engin?"}}, True),
            ({"StringLike": {"aws:PrincipalArn": f"arn:aws:iam::{QOVERY_ACCOUNT}:user/qovery-?"}}, False),
            ({"StringEquals": {"aws:PrincipalAccount": QOVERY_ACCOUNT}}, True),
            ({"StringEquals": {"aws:PrincipalAccount": ["111111111111", QOVERY_ACCOUNT]}}, True),
            ({"StringEquals": {"aws:PrincipalAccount": "111111111111"}}, False),
            # Every key must hold.
            ({"StringEquals": {"aws:PrincipalAccount": QOVERY_ACCOUNT, "sts:ExternalId": "x"}}, False),
        ]
        for condition, allowed in cases:
            with self.subTest(condition=condition):
                role_arn = self.role(trust(allow("*", Condition=condition)))
                if allowed:
                    self.assertIn("Credentials", self.assume(role_arn))
                else:
                    self.assert_denied_by_trust(role_arn)

    def test_deny_wins(self) -> None:
        role_arn = self.role(trust(allow({"AWS": QOVERY_ROOT}),
                                   {"Effect": "Deny", "Principal": {"AWS": self.principal["arn"]}, "Action": "sts:*"}))
        log = self.assert_denied_by_trust(role_arn)
        self.assertIn("explicit Deny", log)

    def test_any_principal(self) -> None:
        for principal in ("*", {"AWS": "*"}):
            with self.subTest(principal=principal):
                self.assertIn("Credentials", self.assume(self.role(trust(allow(principal)))))

    def test_action_must_match(self) -> None:
        self.assertIn("Credentials", self.assume(self.role(trust(allow("*", Action="*")))))
        self.assert_denied_by_trust(self.role(trust(allow("*", Action="sts:AssumeRoleWithWebIdentity"))))

    def test_service_only_trust_denies_a_user_without_crashing(self) -> None:
        role_arn = self.role(trust(allow({"Service": "lambda.amazonaws.com"})))
        self.assert_denied_by_trust(role_arn)
        # In the role's own account, where moto's own check raised TypeError (a 500).
        admin_sts = self.client("sts", self.admin_key)
        self.assert_denied_by_trust(role_arn, admin_sts, caller=f"arn:aws:iam::{ACCOUNT}:user/admin")

    def test_same_account_root_is_understood(self) -> None:
        # moto's own same-account check did not read an account's :root.
        admin_sts = self.client("sts", self.admin_key)
        self.assertIn("Credentials", self.assume(self.role(trust(allow({"AWS": f"arn:aws:iam::{ACCOUNT}:root"}))), admin_sts))
        self.assert_denied_by_trust(self.role(trust(allow({"AWS": QOVERY_ROOT}))), admin_sts,
                                    caller=f"arn:aws:iam::{ACCOUNT}:user/admin")

    def test_unsupported_operator_denies_and_says_so(self) -> None:
        role_arn = self.role(trust(allow({"AWS": QOVERY_ROOT}, Condition={"StringNotEquals": {"sts:ExternalId": "nope"}})))
        log = self.assert_denied_by_trust(role_arn)
        self.assertIn(f"[moto_trust] UNSUPPORTED condition StringNotEquals on sts:ExternalId in the trust policy of {role_arn}", log)
        # In a Deny, what is not understood holds: the Deny applies.
        role_arn = self.role(trust(allow({"AWS": QOVERY_ROOT}),
                                   {"Effect": "Deny", "Principal": "*", "Action": ASSUME,
                                    "Condition": {"IpAddress": {"aws:SourceIp": "10.0.0.0/8"}}}))
        log = self.assert_denied_by_trust(role_arn)
        self.assertIn("[moto_trust] UNSUPPORTED condition IpAddress on aws:SourceIp", log)

    def test_the_callers_own_policy_is_still_required(self) -> None:
        # A user of the role's account, trusted by the role, but allowed nothing itself.
        self.iam.create_user(UserName="no-assume")
        key = self.iam.create_access_key(UserName="no-assume")["AccessKey"]
        sts = self.client("sts", (key["AccessKeyId"], key["SecretAccessKey"]))
        role_arn = self.role(trust(allow("*")))
        mark = self.log_mark()
        # moto_resources.py answers an STS denial in STS's XML, as AWS does.
        with self.assertRaises(botocore.exceptions.ClientError) as denied:
            self.assume(role_arn, sts)
        self.assertEqual(denied.exception.response["Error"]["Code"], "AccessDenied")
        log = self.log_since(mark)
        # Denied by moto's identity-policy check (moto_resources logs it), before any trust check.
        self.assertIn(f"[moto_resources] DENIED User: arn:aws:iam::{ACCOUNT}:user/no-assume is not authorized to perform: "
                      f"sts:AssumeRole on resource: {role_arn}", log)
        self.assertNotIn("[moto_trust]", log)


class ForkServer(unittest.TestCase):
    """moto_forkserver.py (the handler tests' servers) loads moto_trust.py too, and its
    forks inherit the Qovery principal."""

    def test_a_fork_checks_trust_with_the_principal(self) -> None:
        with tempfile.TemporaryDirectory(prefix="moto-trust-fork-") as tmp:
            principal_path = Path(tmp) / "qovery-principal.json"
            env = {**os.environ, "QKR_MOTO_QOVERY_PRINCIPAL": str(principal_path)}
            env.pop("MOTO_ACCOUNT_ID", None)
            server = subprocess.Popen([sys.executable, str(HERE / "moto_forkserver.py")], env=env,
                                      stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
            try:
                assert server.stdout is not None
                forkserver_port = int(server.stdout.readline())
                port = free_port()
                # Two unsigned calls: the roles, made by nobody in particular.
                with socket.create_connection(("127.0.0.1", forkserver_port)) as fork:
                    fork.sendall(f"{port} 2\n".encode())
                    self.assertEqual(fork.makefile("r").readline(), "ok\n")
                    principal = json.loads(principal_path.read_text())
                    url = f"http://127.0.0.1:{port}"
                    unsigned = client(url, "iam", ("unsigned", "unsigned"))
                    trusted, other = (
                        unsigned.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(trust(allow({"AWS": who}))))["Role"]["Arn"]
                        for name, who in (("trusted", QOVERY_ROOT), ("other", "111111111111"))
                    )
                    sts = client(url, "sts", (principal["access_key_id"], principal["secret_access_key"]))
                    self.assertIn("Credentials", sts.assume_role(RoleArn=trusted, RoleSessionName="qovery-test"))
                    with self.assertRaises(botocore.exceptions.ClientError) as denied:
                        sts.assume_role(RoleArn=other, RoleSessionName="qovery-test")
                    self.assertEqual(denied.exception.response["Error"]["Code"], "AccessDenied")
            finally:
                assert server.stdin is not None and server.stdout is not None
                server.stdin.close()  # the fork server ends when its stdin closes
                server.wait(10)
                server.stdout.close()


if __name__ == "__main__":
    unittest.main()
