"""One owner per workspace across processes: an exclusive lock on `.delegation/owner.lock`.

Owns `OwnerLock`. The process that holds it (a `run`, a `serve`) is the only one writing the
workspace's files, journal and ledger; a second one is refused with `WorkspaceBusy`, which
names the owner (pid, command line, start time) from the record the owner wrote into the lock
file. The lock is `flock(2)` on a descriptor opened close-on-exec: the kernel drops it when the
owner exits however it exits (kill -9 included), and no child process inherits it.
"""

from __future__ import annotations

import fcntl
import json
import os
import shlex
import sys
import time
from pathlib import Path

from delegation_machine.engine.secrets import redact_text
from delegation_machine.engine.state.types import StateError

LOCK_NAME = "owner.lock"


class WorkspaceBusy(StateError):
    """Another process owns the workspace; `owner` is what it recorded about itself."""

    def __init__(self, reason: str, owner: dict[str, object]) -> None:
        super().__init__(reason)
        self.owner = owner


def this_command() -> str:
    """This process's command line, as the owner record shows it (secrets blanked)."""
    return redact_text(shlex.join(sys.argv))


class OwnerLock:
    """The workspace owner lock. `acquire` raises WorkspaceBusy while another process holds it."""

    def __init__(self, folder: Path) -> None:
        self.path = Path(folder) / LOCK_NAME
        self._descriptor: int | None = None

    @property
    def held(self) -> bool:
        return self._descriptor is not None

    def acquire(self, command: str | None = None) -> None:
        if self._descriptor is not None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = _read_record(descriptor)
            os.close(descriptor)
            raise WorkspaceBusy(_busy_reason(self.path.parent.parent, owner), owner) from None
        except BaseException:
            os.close(descriptor)
            raise
        record = {
            "pid": os.getpid(),
            "command": command if command is not None else this_command(),
            "started": time.time(),
        }
        os.ftruncate(descriptor, 0)
        os.pwrite(descriptor, json.dumps(record).encode("utf-8"), 0)
        os.fsync(descriptor)
        self._descriptor = descriptor

    def release(self) -> None:
        descriptor, self._descriptor = self._descriptor, None
        if descriptor is None:
            return
        os.ftruncate(descriptor, 0)  # a later reader finds no stale owner named
        fcntl.flock(descriptor, fcntl.LOCK_UN)
        os.close(descriptor)


def read_owner(folder: Path) -> dict[str, object]:
    """The record of the process that owns (or last owned) the workspace; {} if none."""
    try:
        descriptor = os.open(Path(folder) / LOCK_NAME, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return {}
    try:
        return _read_record(descriptor)
    finally:
        os.close(descriptor)


def _read_record(descriptor: int) -> dict[str, object]:
    try:
        data = os.pread(descriptor, 65536, 0)
        record = json.loads(data) if data else {}
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}


def _busy_reason(workspace: Path, owner: dict[str, object]) -> str:
    if not owner:
        return f"the workspace {workspace} is in use by another process (it is starting)"
    started = owner.get("started")
    since = (
        time.strftime(" since %Y-%m-%d %H:%M:%S", time.localtime(started))
        if isinstance(started, int | float)
        else ""
    )
    return (
        f"the workspace {workspace} is in use by process {owner.get('pid', '?')} "
        f"({owner.get('command', '?')}){since}; wait for it to finish or stop it, "
        "then try again"
    )
