"""Back-dated IAM access keys in moto's server, for the audit scenarios (issue 13).

moto stamps an access key's CreateDate with the moment CreateAccessKey ran, and offers
no way to change it, so every key of the local stack is minutes old. The audit judges
the age of the key Qovery holds (`KeyTooOld` past `max_key_age_days`): a test of it
needs a key created, say, 60 days ago.

Loaded into moto's server by moto_resources.py when QKR_MOTO_KEY_AGES names a file
(stack.py always sets it, to `<log dir>/key-ages.json`). The file is JSON, written by
the tests (`Stack.backdate_key`), never by the code under test:

    {"AKIA...": "2026-01-05T07:00:00Z", ...}     access key id -> its CreateDate

Whenever ListAccessKeys lists a key named there, the key's CreateDate becomes that
date (for good, as if IAM had created it then); every other key keeps moto's. The file
is read on each call, so a scenario back-dates a key it made a moment ago without
restarting anything. Only the key's date changes: its id, secret, status and user stay
as they are, and it signs requests as before.
"""

from __future__ import annotations

import datetime as dt
import json
import sys
from pathlib import Path
from typing import Any

from moto.iam.models import IAMBackend


def _dates(path: Path) -> dict[str, dt.datetime]:
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    # moto keeps CreateDate as a naive UTC datetime (moto.core.utils.utcnow).
    return {key_id: dt.datetime.fromisoformat(when.replace("Z", "+00:00")).astimezone(dt.timezone.utc).replace(tzinfo=None)
            for key_id, when in raw.items()}


def install(ages_file: str) -> None:
    path = Path(ages_file)
    original = IAMBackend.list_access_keys

    def list_access_keys(self: IAMBackend, user_name: str) -> Any:
        keys = original(self, user_name)
        dates = _dates(path)
        for key in keys:
            when = dates.get(key.access_key_id)
            if when is not None and key.create_date != when:
                key.create_date = when
                print(f"[moto_key_age] {key.access_key_id} of {user_name}: CreateDate {when.isoformat()}Z",
                      file=sys.stderr, flush=True)
        return keys

    IAMBackend.list_access_keys = list_access_keys  # type: ignore[method-assign]
