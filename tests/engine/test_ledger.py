"""The append-only ledger: order, immutability, filters, secrets."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from delegation_machine.engine.ledger import Ledger
from delegation_machine.engine.protocol import Event


def test_sequence_numbers_are_assigned_in_append_order(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "l.sqlite3")
    first = ledger.append(Event(kind="a", payload={"n": 1}))
    second = ledger.record("b", task_id="t1", n=2)
    assert (first.seq, second.seq) == (1, 2)
    assert [e.kind for e in ledger.events()] == ["a", "b"]
    assert ledger.events(task_id="t1")[0].payload == {"n": 2}
    assert [e.seq for e in ledger.events(since=1)] == [2]
    assert [e.seq for e in ledger.events(until=1)] == [1]
    assert ledger.last_seq() == 2


def test_events_cannot_be_changed_or_deleted(tmp_path: Path) -> None:
    path = tmp_path / "l.sqlite3"
    Ledger(path).record("a", n=1)
    connection = sqlite3.connect(path)
    with pytest.raises(sqlite3.IntegrityError, match="immutable"):
        connection.execute("UPDATE events SET kind = 'b'")
    with pytest.raises(sqlite3.IntegrityError, match="immutable"):
        connection.execute("DELETE FROM events")


def test_events_survive_reopening(tmp_path: Path) -> None:
    path = tmp_path / "l.sqlite3"
    ledger = Ledger(path)
    ledger.record("a", n=1)
    ledger.close()
    again = Ledger(path)
    assert again.record("b").seq == 2
    assert [e.kind for e in again.events()] == ["a", "b"]


def test_secret_values_from_the_environment_never_reach_the_ledger(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-0123456789abcdef")
    ledger = Ledger(tmp_path / "l.sqlite3")
    ledger.record(
        "request",
        prompt="use key sk-test-0123456789abcdef please",
        nested={"headers": ["Bearer sk-test-0123456789abcdef"]},
    )
    raw = (tmp_path / "l.sqlite3").read_bytes() + (tmp_path / "l.sqlite3-wal").read_bytes()
    assert b"sk-test-0123456789abcdef" not in raw
    assert "[redacted]" in ledger.events()[0].payload["prompt"]


@settings(max_examples=20, deadline=None)
@given(st.lists(st.integers(min_value=1, max_value=20), min_size=2, max_size=4))
def test_concurrent_appends_get_a_total_order_without_gaps(counts: list[int]) -> None:
    ledger = Ledger(":memory:")

    def append(writer: int, count: int) -> None:
        for n in range(count):
            ledger.record("w", writer=writer, n=n)

    threads = [threading.Thread(target=append, args=(i, c)) for i, c in enumerate(counts)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    events = ledger.events()
    assert [e.seq for e in events] == list(range(1, sum(counts) + 1))
    for writer, count in enumerate(counts):
        assert [e.payload["n"] for e in events if e.payload["writer"] == writer] == list(
            range(count)
        )
