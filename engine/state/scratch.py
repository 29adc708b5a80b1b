"""Where the engine puts its temporary copies of workspace source: `.delegation/tmp/`.

Owns the process's scratch folder. Shadow workspaces, semgrep mirrors and fix-agent copies
hold the user's source, so they never go to the shared system temp folder: the workspace owner
(`WorkspaceState.claim_owner`) points the scratch folder at its own `.delegation/tmp/` and
empties what a killed owner left there; every copy is made with `make_scratch_dir` and deleted
by whoever made it. Without an owner (a component used on its own, a unit test) copies go to
the system temp folder, as `tempfile` would put them.
"""

from __future__ import annotations

import shutil
import tempfile
import threading
from pathlib import Path

SCRATCH_NAME = "tmp"

_lock = threading.Lock()
_owners: list[Path] = []  # claimed scratch folders, the latest is current


def scratch_folder() -> Path | None:
    """The current owner's scratch folder; None when no workspace is owned here."""
    with _lock:
        return _owners[-1] if _owners else None


def make_scratch_dir(prefix: str) -> Path:
    """A new private folder for temporary files, in the scratch folder."""
    return Path(tempfile.mkdtemp(prefix=prefix, dir=scratch_folder()))


def claim_scratch(private_folder: Path) -> list[str]:
    """Make `<private_folder>/tmp` the scratch folder; empty it first (the caller owns the
    workspace, so anything left there belongs to a dead process). Returns what was removed."""
    folder = private_folder / SCRATCH_NAME
    removed = []
    if folder.is_dir():
        for entry in sorted(folder.iterdir()):
            removed.append(entry.name)
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)
    folder.mkdir(parents=True, exist_ok=True)
    with _lock:
        _owners.append(folder)
    return removed


def release_scratch(private_folder: Path) -> None:
    folder = private_folder / SCRATCH_NAME
    with _lock:
        if folder in _owners:
            _owners.remove(folder)
