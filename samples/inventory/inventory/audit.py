"""Append-only audit trail of business events, one JSON object per line."""

from __future__ import annotations

import time
import json
from pathlib import Path


class AuditLog:
    def __init__(self, path: Path) -> None:
        self.path = path

    def record(self, event: str, **fields: str) -> None:
        entry = {"event": event, "at": round(time.time(), 3), **fields}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(entry, sort_keys=True) + "\n")

    def entries(self, event: str | None = None) -> list[dict]:
        if not self.path.exists():
            return []
        rows = [json.loads(line) for line in self.path.read_text().splitlines() if line]
        return [row for row in rows if event is None or row["event"] == event]
