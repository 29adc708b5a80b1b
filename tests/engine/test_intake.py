"""Document intake: editor and disk changes into the CRDT, settled changes into ring tasks."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

import pytest

from delegation_machine.engine.intake import EDIT_PLAN, DocumentIntake
from delegation_machine.engine.ledger import Ledger
from delegation_machine.engine.memory.workspace_index import WorkspaceIndex
from delegation_machine.engine.notices import DiagnosticsCleared, Notice, NoticeStream
from delegation_machine.engine.plan.graph import TaskSpec
from delegation_machine.engine.protocol import Mutation, TextEdit
from delegation_machine.engine.ring import RingBuffer
from delegation_machine.engine.state import TextChange, WorkspaceState

PATH = "pkg/mod.py"


class Harness:
    def __init__(self, root: Path, *, debounce_s: float = 0.0) -> None:
        self.state = WorkspaceState(root)
        self.ring: RingBuffer[TaskSpec] = RingBuffer(64)
        self.consumer = self.ring.add_consumer("test")
        self.ledger = Ledger(root / ".delegation" / "ledger.sqlite3")
        self.notices = NoticeStream()
        self.seen: list[Notice] = []
        self.notices.subscribe(self.seen.append)
        self.state.subscribe(self.notices.emit)
        self.publishing: set[asyncio.Task[Any]] = set()
        self.intake = DocumentIntake(
            self.state,
            WorkspaceIndex(root),
            self.ring,
            self.ledger,
            self.notices,
            debounce_s=debounce_s,
            spawn=self.spawn,
        )

    def spawn(self, coroutine: Coroutine[Any, Any, Any], name: str) -> None:
        task = asyncio.get_running_loop().create_task(coroutine, name=name)
        self.publishing.add(task)

    async def next_tasks(self) -> list[TaskSpec]:
        batch = await asyncio.wait_for(self.consumer.next_batch(), 10)
        return [spec for _, spec in batch]


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    (tmp_path / "pkg").mkdir()
    (tmp_path / PATH).write_text("def f():\n    return 1\n")
    return tmp_path


async def test_a_burst_of_typing_publishes_one_index_and_one_check_task(
    workspace: Path,
) -> None:
    h = Harness(workspace, debounce_s=0.05)
    h.intake.open_document(PATH, "def f():\n    return 1\n", 1)
    opened = await h.next_tasks()
    for n in range(5):  # five keystrokes inside the debounce window
        h.intake.apply_user_change(PATH, [TextEdit(0, 0, "#")], n + 2)
    typed = await h.next_tasks()
    assert [(t.kind, t.plan_id, t.paths) for t in opened] == [
        ("index", EDIT_PLAN, (PATH,)),
        ("check", EDIT_PLAN, (PATH,)),
    ]
    assert [t.kind for t in typed] == ["index", "check"]
    assert h.state.read(PATH)[0].startswith("#####def f")
    assert h.intake.workspace_version == 5
    h.ledger.close()


async def test_an_external_edit_is_merged_but_our_own_flush_is_not(workspace: Path) -> None:
    h = Harness(workspace)
    _, version = h.state.read(PATH)
    lease = h.state.lease_files([PATH], "agent:a1/task:t1")
    h.state.apply_mutation(
        Mutation("t1", "a1", PATH, version, (TextEdit(0, 0, "# agent\n"),)), lease
    )
    h.state.release(lease)
    h.intake.start_watching()
    try:
        h.state.flush(PATH)  # our own write: must not come back
        (workspace / PATH).write_text("# agent\n# external\ndef f():\n    return 1\n")
        tasks = await h.next_tasks()  # the external change is re-checked and re-indexed
    finally:
        h.intake.close()
    origins = [n.origin for n in h.seen if isinstance(n, TextChange)]
    assert origins == ["agent:a1/task:t1", "disk"]
    assert h.state.read(PATH)[0] == "# agent\n# external\ndef f():\n    return 1\n"
    assert [t.kind for t in tasks] == ["index", "check"]
    assert [e.payload["path"] for e in h.ledger.events(kinds=("file.external_change",))] == [PATH]
    h.ledger.close()


async def test_a_deleted_file_clears_its_diagnostics(workspace: Path) -> None:
    h = Harness(workspace)
    h.intake.on_disk_change(PATH, "deleted")
    assert h.seen == [DiagnosticsCleared(PATH)]
    h.ledger.close()
