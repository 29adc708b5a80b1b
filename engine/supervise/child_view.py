"""What a sandboxed child sees of the file system: private temp folders, no root-only homes.

Owns `ChildView`, computed in the parent and applied in the forked child inside its new mount
namespace (before it drops privileges). The shared temp folders (`/tmp`, `/var/tmp`,
`/dev/shm`) and `/root` become empty private tmpfs mounts, so what a test writes there stays
private and vanishes with it; each folder the child must reach (its shadow copy, the
interpreter) is bind-mounted back at its own path, writable where it was, so argv and
environment paths need no translation. Where an unprivileged child could not pass a folder on
the way (a 0700 home), that folder is hidden the same way and the path rebuilt through it.
Invariant: a folder the parent protected read-only stays read-only in the child.
"""

from __future__ import annotations

import ctypes
import os
import stat
from collections.abc import Iterable
from pathlib import Path

SHARED_TEMP_FOLDERS = ("/tmp", "/var/tmp", "/dev/shm")
HIDDEN_HOMES = ("/root",)
STAGE = "/dev/shm"  # a fresh tmpfs first holds the reachable folders, then becomes /dev/shm

_MS_BIND = 4096
_MS_MOVE = 8192
_MS_REC = 16384


def _searchable_by(uid: int, gid: int, folder: str) -> bool:
    try:
        info = os.stat(folder)
    except OSError:
        return False
    if info.st_uid == uid:
        return bool(info.st_mode & stat.S_IXUSR)
    if info.st_gid == gid:
        return bool(info.st_mode & stat.S_IXGRP)
    return bool(info.st_mode & stat.S_IXOTH)


def _inside(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip("/") + "/")


def _outermost(paths: Iterable[str]) -> list[str]:
    """`paths` without those inside another of them, shortest first."""
    kept: list[str] = []
    for path in sorted(set(paths), key=len):
        if not any(_inside(path, outer) for outer in kept):
            kept.append(path)
    return kept


class ChildView:
    """The mounts that give a child private temp folders and only the folders it needs."""

    def __init__(
        self,
        reachable: Iterable[str],
        *,
        protected: Iterable[str] = (),
        child_uid: int | None = None,
        child_gid: int | None = None,
    ) -> None:
        self.reachable = _outermost(os.path.realpath(p) for p in reachable if os.path.isdir(p))
        hidden = [p for p in (*SHARED_TEMP_FOLDERS, *HIDDEN_HOMES) if os.path.isdir(p)]
        if child_uid is not None:  # an unprivileged child must pass every folder on the way
            for path in self.reachable:
                hidden.extend(self._first_closed_folder(path, child_uid, child_gid or child_uid))
        self.hidden = [p for p in _outermost(hidden) if p != STAGE]
        protected = [os.path.realpath(p) for p in protected]
        # Staged before the read-only remounts: a shadow inside a protected workspace stays
        # writable. Staged after: a protected folder inside a reachable one stays read-only.
        self.early = [p for p in self.reachable if any(_inside(p, q) for q in protected)]
        self.late = [p for p in self.reachable if p not in self.early]
        self.available = os.path.isdir(STAGE) and not any(_inside(p, STAGE) for p in self.reachable)

    @staticmethod
    def _first_closed_folder(path: str, uid: int, gid: int) -> list[str]:
        parts = Path(path).parts
        for depth in range(2, len(parts) + 1):
            folder = str(Path(*parts[:depth]))
            if not _searchable_by(uid, gid, folder):
                return [folder]
        return []

    # --- in the child, after unshare(CLONE_NEWNS) and making every mount private ---------

    def stage(self, libc: ctypes.CDLL, *, early: bool) -> None:
        if early:
            _mount(libc, b"tmpfs", STAGE, b"tmpfs", 0, b"mode=1777")
        for index, path in enumerate(self.reachable):
            if path in (self.early if early else self.late):
                target = f"{STAGE}/.dm-view-{index}"
                os.mkdir(target, 0o755)
                _mount(libc, path.encode(), target, None, _MS_BIND | _MS_REC, None)

    def hide_and_restore(self, libc: ctypes.CDLL) -> None:
        for folder in self.hidden:
            mode = b"mode=1777" if folder in SHARED_TEMP_FOLDERS else b"mode=0755"
            _mount(libc, b"tmpfs", folder, b"tmpfs", 0, mode)
        for index, path in enumerate(self.reachable):
            staged = f"{STAGE}/.dm-view-{index}"
            os.makedirs(path, 0o755, exist_ok=True)
            _mount(libc, staged.encode(), path, None, _MS_MOVE, None)
            os.rmdir(staged)


def _mount(
    libc: ctypes.CDLL,
    source: bytes,
    target: str,
    kind: bytes | None,
    flags: int,
    options: bytes | None,
) -> None:
    if libc.mount(source, target.encode(), kind, flags, options) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"mounting {target} for the sandbox failed: {os.strerror(errno)}")
