"""The running swarm's symbol index and whether its first build has finished.

Owns the `SymbolIndex` of one workspace as the swarm uses it: built once in a worker thread at
start, then kept current file by file by the index tasks that edits publish. Until the first
build is done, `files()` walks the workspace for Python sources instead, so planning a
workspace-wide task never waits for the index.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from delegation_machine.engine.memory.symbols import SymbolIndex

SKIPPED_FOLDERS = frozenset(
    {".delegation", ".git", ".venv", "node_modules", "__pycache__", ".mypy_cache"}
)


class WorkspaceIndex:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.symbols = SymbolIndex(root)
        self._ready = asyncio.Event()

    @property
    def ready(self) -> bool:
        return self._ready.is_set()

    async def build(self) -> None:
        """The first full build (in a thread); `wait_ready` returns once it ends, even failed."""
        try:
            await asyncio.to_thread(self.symbols.build)
        finally:
            self._ready.set()

    async def wait_ready(self) -> None:
        await self._ready.wait()

    def files(self) -> list[str]:
        """Indexed files once the index is built, else the workspace's Python files."""
        if self.ready:
            return self.symbols.files()
        found = []
        for path in self.root.rglob("*.py"):
            rel = path.relative_to(self.root)
            if not SKIPPED_FOLDERS.intersection(rel.parts):
                found.append(rel.as_posix())
        return sorted(found)
