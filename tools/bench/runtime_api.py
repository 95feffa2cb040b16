"""A minimal Lambda Runtime API (2018-06-01): enough for lambda_runtime to poll for
events and post results, with a timestamp on each exchange.

The function's client keeps its connection alive. Python's http.server writes the
headers and the body in two writes; with Nagle's algorithm on, the second write waits
for the ACK of the first, which the client delays by 40 ms. So every response goes out
in one write, and Nagle is off anyway: a warm invocation near 40 ms means the harness
is lying, not the code.
"""

from __future__ import annotations

import json
import queue
import threading
import time
import uuid
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

PREFIX = "/2018-06-01/runtime"


@dataclass
class Result:
    request_id: str
    sent_ns: int  # the event left the harness (the /next response was written)
    done_ns: int  # the function's /response or /error was read in full
    ok: bool
    body: Any


class RuntimeApi:
    """Serves one function process, on a port of its own: `wait_ready()` waits for its
    first /next, `invoke()` hands it an event and waits for the result."""

    def __init__(self, function_arn: str):
        self.function_arn = function_arn
        self._events: queue.Queue = queue.Queue()
        self._results: queue.Queue = queue.Queue()
        self._ready = threading.Event()
        self.ready_ns = 0
        self._sent: dict[str, int] = {}
        self.init_error: Any = None
        api = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True

            def log_message(self, *args: Any) -> None:
                pass

            def reply(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
                head = [f"HTTP/1.1 {status} {self.responses.get(status, ('',))[0]}",
                        "Content-Type: application/json", f"Content-Length: {len(body)}"]
                head += [f"{k}: {v}" for k, v in (headers or {}).items()]
                self.wfile.write(("\r\n".join(head) + "\r\n\r\n").encode() + body)

            def do_GET(self) -> None:
                if self.path != f"{PREFIX}/invocation/next":
                    self.reply(404, b'{"errorType":"NotFound"}')
                    return
                if not api._ready.is_set():
                    api.ready_ns = time.perf_counter_ns()
                    api._ready.set()
                item = api._events.get()
                if item is None:  # shutting down: leave the function waiting
                    return
                request_id, payload = item
                deadline_ms = int(time.time() * 1000) + 60_000
                body = json.dumps(payload).encode()
                headers = {
                    "Lambda-Runtime-Aws-Request-Id": request_id,
                    "Lambda-Runtime-Deadline-Ms": str(deadline_ms),
                    "Lambda-Runtime-Invoked-Function-Arn": api.function_arn,
                    "Lambda-Runtime-Trace-Id": f"Root=1-{uuid.uuid4().hex[:8]}-{uuid.uuid4().hex[:24]};Sampled=0",
                }
                api._sent[request_id] = time.perf_counter_ns()
                self.reply(200, body, headers)

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                done = time.perf_counter_ns()
                parts = self.path[len(PREFIX):].strip("/").split("/")
                if parts == ["init", "error"]:
                    api.init_error = raw.decode(errors="replace")
                    api._ready.set()
                    self.reply(202, b'{"status":"OK"}')
                    return
                if len(parts) == 3 and parts[0] == "invocation" and parts[2] in ("response", "error"):
                    request_id = parts[1]
                    try:
                        body = json.loads(raw) if raw else None
                    except ValueError:
                        body = raw.decode(errors="replace")
                    self.reply(202, b'{"status":"OK"}')
                    api._results.put(Result(request_id, api._sent.pop(request_id, done), done, parts[2] == "response", body))
                    return
                self.reply(404, b'{"errorType":"NotFound"}')

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request: Any, client_address: Any) -> None:
                pass  # the function was stopped while its connection was open

        self.server = Server(("127.0.0.1", 0), Handler)
        self.address = f"127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def wait_ready(self, timeout: float) -> bool:
        return self._ready.wait(timeout) and self.init_error is None

    def invoke(self, payload: Any, timeout: float) -> Result:
        request_id = str(uuid.uuid4())
        self._events.put((request_id, payload))
        result = self._results.get(timeout=timeout)
        if result.request_id != request_id:
            raise RuntimeError(f"got the result of {result.request_id} while waiting for {request_id}")
        return result

    def close(self) -> None:
        # Unblocks a /next that waits for an event no one will send.
        self._events.put(None)
        self.server.shutdown()
        self.server.server_close()
