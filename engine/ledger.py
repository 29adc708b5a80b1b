"""The append-only event ledger of one workspace.

Owns `.delegation/ledger.sqlite3` (SQLite in WAL mode). Events are immutable (triggers refuse
UPDATE and DELETE) and totally ordered by `seq`, which the ledger assigns. Secrets are
redacted before anything is written. Thread-safe: one connection guarded by a lock.
`unfinished_plans` finds the plans a killed process left behind: `plan.submitted` with neither
`plan.finished` nor `plan.abandoned` after it.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import msgspec

from delegation_machine.engine.protocol import Event
from delegation_machine.engine.secrets import redact

_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    ts REAL NOT NULL,
    kind TEXT NOT NULL,
    task_id TEXT,
    agent_id TEXT,
    payload TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_task ON events(task_id);
CREATE INDEX IF NOT EXISTS events_kind ON events(kind);
CREATE TRIGGER IF NOT EXISTS events_no_update BEFORE UPDATE ON events
BEGIN SELECT RAISE(ABORT, 'ledger events are immutable'); END;
CREATE TRIGGER IF NOT EXISTS events_no_delete BEFORE DELETE ON events
BEGIN SELECT RAISE(ABORT, 'ledger events are immutable'); END;
"""

EventListener = Callable[[Event], None]
PLAN_ENDINGS = ("plan.finished", "plan.abandoned")


class UnfinishedPlan(msgspec.Struct, frozen=True):
    """A plan the ledger shows submitted and never ended, with each task's last state."""

    plan_id: str
    kind: str
    instruction: str
    seq: int
    ts: float
    task_states: dict[str, str]  # task id -> its last recorded state ("queued" if none)


class Ledger:
    """Append-only log; `append` returns the stored event with its sequence number."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        if str(path) != ":memory:":
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._connection = sqlite3.connect(str(path), check_same_thread=False)
        self._connection.execute("PRAGMA journal_mode=WAL")
        self._connection.execute("PRAGMA synchronous=NORMAL")
        self._connection.executescript(_SCHEMA)
        self._listeners: list[EventListener] = []

    def append(self, event: Event) -> Event:
        payload = redact(msgspec.to_builtins(event.payload))
        encoded = json.dumps(payload, separators=(",", ":"), default=str)
        with self._lock:
            cursor = self._connection.execute(
                "INSERT INTO events (ts, kind, task_id, agent_id, payload) VALUES (?, ?, ?, ?, ?)",
                (event.ts, event.kind, event.task_id, event.agent_id, encoded),
            )
            self._connection.commit()
            seq = int(cursor.lastrowid or 0)
        stored = msgspec.structs.replace(event, seq=seq, payload=payload)
        for listener in list(self._listeners):
            listener(stored)
        return stored

    def record(
        self,
        kind: str,
        /,
        *,
        task_id: str | None = None,
        agent_id: str | None = None,
        **payload: Any,
    ) -> Event:
        """Append an event of `kind`; keyword arguments form its payload (`kind` included)."""
        return self.append(Event(kind=kind, task_id=task_id, agent_id=agent_id, payload=payload))

    def events(
        self,
        since: int = 0,
        *,
        until: int | None = None,
        task_id: str | None = None,
        kinds: Iterable[str] | None = None,
        limit: int | None = None,
    ) -> list[Event]:
        """Events with `since < seq <= until`, in sequence order."""
        clauses, params = ["seq > ?"], [since]
        if until is not None:
            clauses.append("seq <= ?")
            params.append(until)
        if task_id is not None:
            clauses.append("task_id = ?")
            params.append(task_id)  # type: ignore[arg-type]
        kind_list = list(kinds) if kinds is not None else None
        if kind_list:
            clauses.append(f"kind IN ({','.join('?' * len(kind_list))})")
            params.extend(kind_list)  # type: ignore[arg-type]
        sql = "SELECT seq, ts, kind, task_id, agent_id, payload FROM events WHERE "
        sql += " AND ".join(clauses) + " ORDER BY seq"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        with self._lock:
            rows = self._connection.execute(sql, params).fetchall()
        return [
            Event(
                seq=row[0],
                ts=row[1],
                kind=row[2],
                task_id=row[3],
                agent_id=row[4],
                payload=json.loads(row[5]),
            )
            for row in rows
        ]

    def unfinished_plans(self) -> list[UnfinishedPlan]:
        """Plans submitted and never finished nor abandoned, oldest first."""
        endings = ",".join("?" * len(PLAN_ENDINGS))
        sql = (
            "SELECT seq, ts, task_id, payload FROM events WHERE kind = 'plan.submitted' "
            f"AND task_id NOT IN (SELECT task_id FROM events WHERE kind IN ({endings}) "
            "AND task_id IS NOT NULL) ORDER BY seq"
        )
        with self._lock:
            rows = self._connection.execute(sql, PLAN_ENDINGS).fetchall()
        plans = []
        for seq, ts, plan_id, encoded in rows:
            payload = json.loads(encoded)
            task_ids = [str(t.get("task_id")) for t in payload.get("tasks", ()) if "task_id" in t]
            states = dict.fromkeys(task_ids, "queued")
            for event in self.events(seq, kinds=["task.state"]):
                if event.task_id in states:
                    states[event.task_id] = str(event.payload.get("state", "queued"))
            plans.append(
                UnfinishedPlan(
                    plan_id=plan_id,
                    kind=str(payload.get("kind", "")),
                    instruction=str(payload.get("instruction", "")),
                    seq=seq,
                    ts=ts,
                    task_states=states,
                )
            )
        return plans

    def last_seq(self) -> int:
        with self._lock:
            row = self._connection.execute("SELECT MAX(seq) FROM events").fetchone()
        return int(row[0] or 0)

    def subscribe(self, listener: EventListener) -> Callable[[], None]:
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener)

    def close(self) -> None:
        with self._lock:
            self._connection.close()
