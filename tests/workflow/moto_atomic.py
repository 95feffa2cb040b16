"""moto's DynamoDB made to apply a conditional write atomically, as DynamoDB does.

moto's server answers requests on several threads, and its DynamoDB backend checks a
write's condition and then writes, without a lock: two conditional PutItems at the same
moment can both find no item and both succeed. The rotation lock rests on exactly that
condition (ledger.rs), so its tests need the real guarantee. Importing this module
wraps each DynamoDB write in one process-wide lock; reads are left alone.

Loaded by moto_resources.py (the workflow stack) and by moto_forkserver.py (the Rust
handler tests' servers), or run on its own:

    python moto_atomic.py -H 127.0.0.1 -p PORT      (moto_server's arguments)
"""

from __future__ import annotations

import functools
import sys
import threading
from typing import Any, Callable

from moto.dynamodb.models import DynamoDBBackend
from moto.server import main as moto_main

WRITES = ("put_item", "update_item", "delete_item", "transact_write_items")
_lock = threading.RLock()


def _atomic(write: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(write)
    def locked(*args: Any, **kwargs: Any) -> Any:
        with _lock:
            return write(*args, **kwargs)

    locked.__qkr_atomic__ = True  # type: ignore[attr-defined]
    return locked


for _name in WRITES:
    _write = getattr(DynamoDBBackend, _name, None)
    if _write is None:
        sys.exit(f"moto_atomic.py: moto's DynamoDBBackend.{_name} is gone; update this patch")
    if not getattr(_write, "__qkr_atomic__", False):
        setattr(DynamoDBBackend, _name, _atomic(_write))

if __name__ == "__main__":
    moto_main(sys.argv[1:])
