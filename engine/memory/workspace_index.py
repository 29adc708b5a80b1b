"""The running swarm's symbol index and whether its first build has finished.

Owns the `SymbolIndex` of one workspace as the swarm uses it: built once in a worker thread at
start, then kept current file by file by the index tasks that edits publish. Until the first
build is done, `files()` walks the workspace for Python sources instead, so planning a
workspace-wide task never waits for the index. Either way only regular files are listed: a
FIFO, a device, a symlink loop or a symlink out of the workspace is left out, and each such
entry is reported once through `warn` with its reason (never silently dropped).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from pathlib import Path

from delegation_machine.engine.memory.symbols import SkippedFile, SymbolIndex
from delegation_machine.engine.state.files import list_files
from delegation_machine.engine.supervise.affected import is_test_file

REPORTED_AT_ONCE = 10  # skipped files named in one warning; the rest are counted

SKIPPED_FOLDERS = frozenset(
    {".delegation", ".git", ".venv", "node_modules", "__pycache__", ".mypy_cache"}
)


class WorkspaceIndex:
    def __init__(self, root: Path, *, warn: Callable[[str], None] | None = None) -> None:
        self.root = root
        self.symbols = SymbolIndex(root)
        self._ready = asyncio.Event()
        self._warn = warn
        self._reported: set[str] = set()
        self._tests_known: tuple[int, bool] | None = None  # (index generation, has tests)

    @property
    def ready(self) -> bool:
        return self._ready.is_set()

    async def build(self) -> None:
        """The first full build (in a thread); `wait_ready` returns once it ends, even failed."""
        try:
            await asyncio.to_thread(self.symbols.build)
        finally:
            self._ready.set()
        self._report(self.symbols.skipped)

    async def wait_ready(self) -> None:
        await self._ready.wait()

    def has_tests(self) -> bool:
        """Whether the workspace has test files, computed once per index generation (once in
        all until the first build is done)."""
        key = self.symbols.generation if self.ready else -1
        if self._tests_known is None or self._tests_known[0] != key:
            self._tests_known = (key, any(is_test_file(rel) for rel in self.files()))
        return self._tests_known[1]

    def files(self) -> list[str]:
        """Indexed files once the index is built, else the workspace's regular Python files."""
        if self.ready:
            return self.symbols.files()
        found, skipped = list_files(
            self.root, skipped_folders=SKIPPED_FOLDERS, wanted=lambda rel: rel.endswith(".py")
        )
        self._report(SkippedFile(entry.path, entry.reason) for entry in skipped)
        return found

    def _report(self, skipped: Iterable[SkippedFile]) -> None:
        """One warning naming the files left out since the last one, with their reasons."""
        new = [s for s in skipped if s.path not in self._reported]
        if not new or self._warn is None:
            return
        self._reported.update(s.path for s in new)
        named = "; ".join(f"{s.path} ({s.reason})" for s in new[:REPORTED_AT_ONCE])
        more = f"; and {len(new) - REPORTED_AT_ONCE} more" if len(new) > REPORTED_AT_ONCE else ""
        self._warn(f"{len(new)} file(s) left out of the workspace index: {named}{more}")
