"""Fixtures for the CodeCRDT tests: a temporary workspace and a virtual clock."""

from __future__ import annotations

from pathlib import Path

import pytest

from delegation_machine.engine.protocol import Event
from delegation_machine.engine.state import WorkspaceState


class VirtualClock:
    """An injectable monotonic clock that only moves when a test advances it."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> VirtualClock:
    return VirtualClock()


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    root = tmp_path / "ws"
    root.mkdir()
    (root / "pkg").mkdir()
    (root / "pkg" / "mod.py").write_text("def f():\n    return 1\n\n\ndef g():\n    return 2\n")
    return root


@pytest.fixture
def events() -> list[Event]:
    return []


@pytest.fixture
def state(workspace: Path, clock: VirtualClock, events: list[Event]) -> WorkspaceState:
    def record(event: Event) -> None:
        events.append(
            Event(
                event.kind, event.payload, event.task_id, event.agent_id, event.ts, len(events) + 1
            )
        )

    return WorkspaceState(workspace, record=record, clock=clock)
