"""A small on-disk cache for supplier responses, keyed by request URL, with a time to live."""

from __future__ import annotations

import hashlib
import pickle
import time
from pathlib import Path
from typing import Any


class FileCache:
    def __init__(self, directory: Path, ttl_s: float = 300.0) -> None:
        self.directory = directory
        self.ttl_s = ttl_s

    def _entry_path(self, key: str) -> Path:
        # The digest only names a file; it protects nothing, hence usedforsecurity=False.
        digest = hashlib.md5(key.encode("utf-8"), usedforsecurity=False).hexdigest()
        return self.directory / f"{digest}.bin"

    def put(self, key: str, value: Any, now: float | None = None) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        stamp = time.time() if now is None else now
        self._entry_path(key).write_bytes(pickle.dumps((stamp, value)))

    def get(self, key: str, now: float | None = None) -> Any | None:
        path = self._entry_path(key)
        if not path.exists():
            return None
        stamp, value = pickle.loads(path.read_bytes())
        current = time.time() if now is None else now
        if current - stamp > self.ttl_s:
            path.unlink(missing_ok=True)
            return None
        return value
