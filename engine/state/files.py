"""Reading and listing workspace files: regular files only, every other entry skipped with a reason.

Owns the one way the engine opens a workspace file for its text (`read_regular_file`) and lists
a workspace's files (`list_files`). A FIFO named `*.py` would block a reader for ever, a device
would stream without end and a symlink loop makes `resolve()` raise: each is refused before any
byte is read, with a reason a user can act on (`Unreadable`). Invariant: nothing here blocks on
a special file and nothing here follows a symlink out of the folder it lists.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Callable, Collection
from pathlib import Path
from typing import NamedTuple


class Unreadable(Exception):
    """The entry is not a regular file we can read; `reason` says what it is instead."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class SkippedEntry(NamedTuple):
    """A workspace entry the listing left out, and why."""

    path: str
    reason: str


def describe_mode(mode: int) -> str:
    """What a non-regular file is, in words."""
    if stat.S_ISDIR(mode):
        return "a folder, not a file"
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe), not a regular file"
    if stat.S_ISSOCK(mode):
        return "a socket, not a regular file"
    if stat.S_ISCHR(mode):
        return "a character device, not a regular file"
    if stat.S_ISBLK(mode):
        return "a block device, not a regular file"
    return "not a regular file"


def _reason_of(exc: OSError, path: Path) -> str:
    if exc.errno == errno.ELOOP:
        return "a symlink loop (too many levels of symbolic links)"
    if exc.errno == errno.ENOENT:
        return "a symlink to a missing file" if os.path.islink(path) else "no such file"
    if exc.errno in (errno.EACCES, errno.EPERM):
        return "permission denied"
    return f"unreadable: {exc.strerror or exc}"


def regular_file_size(path: Path) -> int:
    """The size of `path` if it is (a symlink to) a regular file; `Unreadable` otherwise."""
    try:
        info = os.stat(path)
    except OSError as exc:
        raise Unreadable(_reason_of(exc, path)) from None
    if not stat.S_ISREG(info.st_mode):
        raise Unreadable(describe_mode(info.st_mode))
    return info.st_size


def read_regular_file(path: Path, *, max_bytes: int) -> bytes:
    """The bytes of a regular file of at most `max_bytes`; `Unreadable` for anything else.

    The kind is checked before opening (a FIFO is never opened) and again on the open
    descriptor (the entry may have been swapped in between); the descriptor is non-blocking,
    and at most `max_bytes + 1` bytes are read, so a file growing meanwhile cannot flood us.
    """
    regular_file_size(path)
    try:
        descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError as exc:
        raise Unreadable(_reason_of(exc, path)) from None
    try:
        info = os.fstat(descriptor)
        if not stat.S_ISREG(info.st_mode):
            raise Unreadable(describe_mode(info.st_mode))
        if info.st_size > max_bytes:
            raise Unreadable(f"{info.st_size} bytes is over the limit of {max_bytes} bytes")
        chunks: list[bytes] = []
        kept = 0
        while kept <= max_bytes:
            chunk = os.read(descriptor, min(1 << 20, max_bytes + 1 - kept))
            if not chunk:
                break
            chunks.append(chunk)
            kept += len(chunk)
        if kept > max_bytes:
            raise Unreadable(f"grew over the limit of {max_bytes} bytes while being read")
        return b"".join(chunks)
    except OSError as exc:
        raise Unreadable(_reason_of(exc, path)) from None
    finally:
        os.close(descriptor)


def real_path(path: Path) -> Path:
    """`path` with every symlink resolved; `Unreadable` for a symlink loop."""
    try:
        return path.resolve()
    except RuntimeError:  # Python < 3.13 raises RuntimeError("Symlink loop from ...")
        raise Unreadable("a symlink loop (too many levels of symbolic links)") from None
    except OSError as exc:  # Python >= 3.13 raises OSError(ELOOP)
        raise Unreadable(_reason_of(exc, path)) from None


def list_files(
    root: Path,
    *,
    skipped_folders: Collection[str],
    wanted: Callable[[str], bool],
    skip_folder: Callable[[str], bool] | None = None,
) -> tuple[list[str], list[SkippedEntry]]:
    """The regular files under `root` whose relative POSIX path passes `wanted`, sorted, and
    the wanted entries that were left out with their reasons (special files, symlink loops,
    dangling symlinks, symlinks out of `root`). Symlinked folders are not entered (no loops);
    folders named in `skipped_folders` or passing `skip_folder` are pruned."""
    root = Path(root).resolve()
    found: list[str] = []
    skipped: list[SkippedEntry] = []
    for folder, subfolders, names in os.walk(root):
        relative_folder = Path(folder).relative_to(root).as_posix()
        prefix = "" if relative_folder == "." else f"{relative_folder}/"
        subfolders[:] = sorted(
            name
            for name in subfolders
            if name not in skipped_folders
            and not (skip_folder is not None and skip_folder(prefix + name))
        )
        for name in names:
            rel = prefix + name
            if not wanted(rel):
                continue
            path = Path(folder) / name
            try:
                regular_file_size(path)
                if path.is_symlink() and not real_path(path).is_relative_to(root):
                    raise Unreadable("a symlink that leads outside the workspace")
            except Unreadable as refused:
                skipped.append(SkippedEntry(rel, refused.reason))
                continue
            found.append(rel)
    found.sort()
    skipped.sort()
    return found, skipped
