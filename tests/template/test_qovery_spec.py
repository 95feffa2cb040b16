"""tools/qovery_spec.py: where the workflow tests get Qovery's spec, and that a fetched
copy is kept only when its sha256 is the pinned one.

This machine cannot reach GitHub, so the fetch is exercised against a local HTTP server
and file:// URLs serving a stand-in file (the spec itself is never committed); the
pinned URL is only checked for its form.
"""

from __future__ import annotations

import hashlib
import http.server
import sys
import tempfile
import threading
import unittest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tools"))

import qovery_spec  # noqa: E402

BODY = b"openapi: 3.0.0\ninfo: {title: stand-in, version: '0'}\npaths: {}\n"
BODY_SHA = hashlib.sha256(BODY).hexdigest()


class Server:
    """A loopback HTTP server answering every GET with `body`, stopped on exit."""

    def __init__(self, body: bytes):
        handler_body = body

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                self.send_response(200)
                self.send_header("content-length", str(len(handler_body)))
                self.end_headers()
                self.wfile.write(handler_body)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = http.server.HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/openapi.yaml"

    def __enter__(self) -> "Server":
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class QoverySpecTest(unittest.TestCase):
    def setUp(self) -> None:
        self.tmp = Path(tempfile.mkdtemp())
        self.cache = self.tmp / "cache" / "spec.yaml"
        self.missing = self.tmp / "no-shared" / "qovery-openapi.yaml"

    def test_the_pinned_url_names_the_commit(self) -> None:
        self.assertIn(f"/Qovery/qovery-openapi-spec/{qovery_spec.COMMIT}/openapi.yaml", qovery_spec.URL)
        self.assertEqual(len(qovery_spec.SHA256), 64)

    def test_fetch_keeps_a_copy_with_the_pinned_hash(self) -> None:
        with Server(BODY) as server:
            path = qovery_spec.find({}, shared=self.missing, cache=self.cache, url=server.url, sha256=BODY_SHA)
        self.assertEqual(path, self.cache)
        self.assertEqual(self.cache.read_bytes(), BODY)

    def test_fetch_refuses_a_copy_with_another_hash(self) -> None:
        with Server(BODY + b"# changed\n") as server:
            path = qovery_spec.find({}, shared=self.missing, cache=self.cache, url=server.url, sha256=BODY_SHA)
        self.assertIsNone(path)
        self.assertFalse(self.cache.exists())

    def test_no_copy_to_be_had_means_none(self) -> None:
        url = (self.tmp / "nowhere.yaml").as_uri()
        self.assertIsNone(qovery_spec.find({}, shared=self.missing, cache=self.cache, url=url, sha256=BODY_SHA))

    def test_a_good_cached_copy_is_used_without_fetching(self) -> None:
        self.cache.parent.mkdir(parents=True)
        self.cache.write_bytes(BODY)
        url = (self.tmp / "nowhere.yaml").as_uri()
        self.assertEqual(qovery_spec.find({}, shared=self.missing, cache=self.cache, url=url, sha256=BODY_SHA), self.cache)

    def test_a_tampered_cached_copy_is_fetched_again(self) -> None:
        self.cache.parent.mkdir(parents=True)
        self.cache.write_bytes(b"tampered")
        source = self.tmp / "spec.yaml"
        source.write_bytes(BODY)
        path = qovery_spec.find({}, shared=self.missing, cache=self.cache, url=source.as_uri(), sha256=BODY_SHA)
        self.assertEqual(path, self.cache)
        self.assertEqual(self.cache.read_bytes(), BODY)

    def test_the_environment_and_shared_copy_come_first(self) -> None:
        shared = self.tmp / "shared.yaml"
        shared.write_bytes(BODY)
        url = (self.tmp / "nowhere.yaml").as_uri()
        given = {"QOVERY_OPENAPI_SPEC": "/somewhere/spec.yaml"}
        self.assertEqual(qovery_spec.find(given, shared=shared, cache=self.cache, url=url, sha256=BODY_SHA),
                         Path("/somewhere/spec.yaml"))
        self.assertEqual(qovery_spec.find({}, shared=shared, cache=self.cache, url=url, sha256=BODY_SHA), shared)
        self.assertFalse(self.cache.exists())


if __name__ == "__main__":
    unittest.main()
