"""Finds Qovery's OpenAPI spec for the Prism check of the workflow tests, and prints its
path (or an empty line when there is none; the tests then skip the check loudly, or
fail with CI=true).

In order: $QOVERY_OPENAPI_SPEC as given; ../shared/qovery-openapi.yaml beside the
checkout; the pinned copy in .cache/ (fetched before, hash checked again); a fresh
fetch of the pinned file from GitHub into .cache/, kept only if its sha256 matches.
The spec is never committed (.cache/ is ignored).

    python tools/qovery_spec.py          prints the path, reasons on stderr
"""

from __future__ import annotations

import hashlib
import os
import sys
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
# The spec the fake Qovery follows: Qovery/qovery-openapi-spec, openapi.yaml, version 1.0.4.
COMMIT = "651aed53ce272a6fb6ec695a68b06dcd55170092"
SHA256 = "ce9dcf6946a28de814ddefd9961d195b6f393df38a75b69caa701c8043621aac"
URL = f"https://raw.githubusercontent.com/Qovery/qovery-openapi-spec/{COMMIT}/openapi.yaml"
SHARED = REPO.parent / "shared" / "qovery-openapi.yaml"
CACHE = REPO / ".cache" / f"qovery-openapi-{COMMIT[:12]}.yaml"
TIMEOUT_S = 30


class SpecError(RuntimeError):
    pass


def note(msg: str) -> None:
    print(f"[qovery-spec] {msg}", file=sys.stderr, flush=True)


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def fetch(url: str, dest: Path, sha256: str, timeout: float = TIMEOUT_S) -> Path:
    """Downloads url to dest only if its sha256 is the expected one; raises SpecError
    (and leaves dest untouched) otherwise."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            body = response.read()
    except (urllib.error.URLError, OSError, ValueError) as e:
        raise SpecError(f"cannot fetch {url}: {e}") from None
    got = hashlib.sha256(body).hexdigest()
    if got != sha256:
        raise SpecError(f"{url} has sha256 {got}, expected {sha256}: not used")
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=dest.parent, delete=False) as tmp:
        tmp.write(body)
    os.replace(tmp.name, dest)
    return dest


def find(env: dict[str, str], shared: Path = SHARED, cache: Path = CACHE, url: str = URL,
         sha256: str = SHA256) -> Path | None:
    given = env.get("QOVERY_OPENAPI_SPEC")
    if given:
        return Path(given)
    if shared.is_file():
        if sha256_of(shared) != sha256:
            note(f"{shared} is not the pinned spec (sha256 differs); using it anyway")
        return shared
    if cache.is_file():
        if sha256_of(cache) == sha256:
            return cache
        note(f"{cache} does not match the pinned sha256; fetching again")
        cache.unlink()
    try:
        path = fetch(url, cache, sha256)
    except SpecError as e:
        note(f"{e}; no spec for the Prism check")
        return None
    note(f"fetched the pinned spec into {path}")
    return path


def main() -> int:
    path = find(dict(os.environ))
    print(path or "")
    return 0


if __name__ == "__main__":
    sys.exit(main())
