"""A fresh moto server for each handler test in a few milliseconds, forked from one
process that has already imported moto.

Each Rust handler test (crates/rotation/tests) wants its own moto server: its own IAM
user, keys and ledger table, and its own count of unsigned requests
(INITIAL_NO_AUTH_ACTION_COUNT). Starting `moto_server` costs about a second of CPU, most
of it importing moto, and a test binary starts dozens: that was most of the handler
tests' time, and `make mutants` runs them once per mutant. This process imports moto
(with moto_atomic.py's DynamoDB patch, and moto_trust.py's trust policies and, when
QKR_MOTO_QOVERY_PRINCIPAL asks for it, its Qovery principal, which every fork inherits)
and answers one call of each service the tests use, then forks a server per request:

    python moto_forkserver.py
        prints the port it listens on (127.0.0.1), then serves until its stdin closes
        (the test binary that started it has ended).

    A request is one line on a new connection: "<port> <initial_no_auth_action_count>\n".
    The fork answers "ok\n" once it listens on <port>, and lives until that connection
    closes: the test drops its `Moto` (also when it panics) or its process ends.

Each fork also takes one fault from its test (FAULT_PATH, below).
"""

from __future__ import annotations

import io
import os
import select
import signal
import socket
import sys
import threading

import moto_atomic  # noqa: F401  (DynamoDB's conditional writes applied atomically)
import moto_trust  # noqa: F401  (sts:AssumeRole checked against trust policies; the Qovery principal)
from moto import settings
from moto.core.authorization import ActionAuthenticatorMixin
from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from werkzeug.serving import make_server
from werkzeug.test import Client

# A read-only call to each service the handler tests use, answered once before any fork:
# moto loads the service's model, builds its app and its account's backend on a first
# call (most of a fresh server's CPU), and every fork inherits them.
WARM_UP = {
    "iam": ("Action=ListUsers&Version=2010-05-08", None),
    "sts": ("Action=GetCallerIdentity&Version=2011-06-15", None),
    "secretsmanager": ("{}", "secretsmanager.ListSecrets"),
    "dynamodb": ("{}", "DynamoDB_20120810.ListTables"),
    "states": ("{}", "AWSStepFunctions.ListStateMachines"),
}


def _warm_up(app: DomainDispatcherApplication) -> None:
    client = Client(app)
    for service, (body, target) in WARM_UP.items():
        headers = {
            "Authorization": "AWS4-HMAC-SHA256 Credential=AKIAWARMUPWARMUPWARM/20260101/"
            f"us-east-1/{service}/aws4_request, SignedHeaders=host, Signature=0",
            "Content-Type": "application/x-amz-json-1.0"
            if target
            else "application/x-www-form-urlencoded",
        }
        if target:
            headers["X-Amz-Target"] = target
        answer = client.post("/", data=body, headers=headers)
        if answer.status_code != 200:
            sys.exit(f"moto_forkserver.py: warming up {service} failed: {answer.status_code}")
    # The warm-up's calls must not count as the fork's unsigned ones.
    ActionAuthenticatorMixin.request_count = 0


FAULT_PATH = "/_test/fail_dynamodb_writes_containing"
INJECTED = (
    b'{"__type":"com.amazonaws.dynamodb.v20120810#ValidationException",'
    b'"message":"a failure injected by the test"}'
)


def _with_faults(app: DomainDispatcherApplication) -> object:
    """The app, plus one fault a test can ask its own server for: `POST FAULT_PATH` with
    a text makes the next DynamoDB PutItem whose body contains that text fail (400, not
    retried), as a ledger write can fail between two others."""
    texts: list[bytes] = []

    def wsgi(environ: dict, start_response: object) -> list[bytes]:
        length = int(environ.get("CONTENT_LENGTH") or 0)
        if environ.get("PATH_INFO") == FAULT_PATH:
            texts.append(environ["wsgi.input"].read(length))
            start_response("204 No Content", [])  # type: ignore[operator]
            return []
        if texts and environ.get("HTTP_X_AMZ_TARGET", "").endswith(".PutItem"):
            body = environ["wsgi.input"].read(length)
            environ["wsgi.input"] = io.BytesIO(body)
            hit = next((text for text in texts if text in body), None)
            if hit is not None:
                texts.remove(hit)
                start_response(  # type: ignore[operator]
                    "400 Bad Request",
                    [
                        ("Content-Type", "application/x-amz-json-1.0"),
                        ("Content-Length", str(len(INJECTED))),
                    ],
                )
                return [INJECTED]
        return app(environ, start_response)

    return wsgi


def _serve_one(
    app: DomainDispatcherApplication,
    connection: socket.socket,
    port: int,
    unsigned_requests: float,
) -> None:
    """In the fork: a moto server on `port` until `connection` closes."""
    settings.INITIAL_NO_AUTH_ACTION_COUNT = unsigned_requests
    server = make_server(
        "127.0.0.1", port, _with_faults(app), True, request_handler=MotoRequestHandler
    )
    threading.Thread(target=server.serve_forever, daemon=True).start()
    connection.sendall(b"ok\n")
    # Blocks until the test closes its end; nothing is ever sent on it.
    while connection.recv(64):
        pass
    os._exit(0)


def main() -> None:
    app = DomainDispatcherApplication(create_backend_app)
    _warm_up(app)
    # Forks end on their own; the kernel reaps them.
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    print(listener.getsockname()[1], flush=True)
    while True:
        ready, _, _ = select.select([listener, sys.stdin], [], [])
        if sys.stdin in ready and not os.read(sys.stdin.fileno(), 64):
            return
        if listener in ready:
            connection, _ = listener.accept()
            request = connection.makefile("r").readline().split()
            if os.fork() == 0:
                listener.close()
                port, unsigned_requests = int(request[0]), float(request[1])
                _serve_one(app, connection, port, unsigned_requests)
            connection.close()


if __name__ == "__main__":
    assert threading.active_count() == 1, "fork before any thread starts"
    main()
