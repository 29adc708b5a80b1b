"""Child processes never outlive the engine: each one is killed when its parent dies.

Owns `die_with_parent`, a `preexec_fn` that asks the kernel (Linux `PR_SET_PDEATHSIG`) to send
SIGKILL to the child when the thread that started it ends, so a `run` or `serve` killed with
kill -9 leaves no semgrep, ruff or test process behind. Children are started from the event
loop thread, which lives as long as the process. Elsewhere (no prctl) it does nothing, and
`PARENT_DEATH_SIGNAL` says so.

A `preexec_fn` forces a full fork of the engine and Python code in the child before exec
(about 25 ms per start, on the event loop); a short-lived tool started per file pays that
hundreds of times. `tied_to_parent(argv)` starts such a tool through util-linux `setpriv
--pdeathsig KILL` instead, which sets the same signal and execs the tool, so Python spawns
it with vfork (a few ms). Where `setpriv` is missing it falls back to the `preexec_fn`.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import os
import shutil
import signal
import sys
from collections.abc import Callable, Sequence

_PR_SET_PDEATHSIG = 1


@functools.cache
def _prctl() -> Callable[..., int] | None:
    name = ctypes.util.find_library("c")
    if name is None or not sys.platform.startswith("linux"):
        return None
    function: Callable[..., int] = ctypes.CDLL(name, use_errno=True).prctl
    return function


PARENT_DEATH_SIGNAL = _prctl() is not None  # False: children may outlive a killed parent


def die_with_parent_of(parent_pid: int) -> Callable[[], None]:
    """A `preexec_fn` for a child of `parent_pid` (computed in the parent, before the fork)."""
    prctl = _prctl()

    def in_child() -> None:
        if prctl is None:
            return
        prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
        if os.getppid() != parent_pid:  # the parent died before prctl took effect
            os._exit(1)

    return in_child


def die_with_parent() -> Callable[[], None]:
    """A `preexec_fn` that ties the child's life to this process."""
    return die_with_parent_of(os.getpid())


@functools.cache
def _setpriv() -> str | None:
    return shutil.which("setpriv") if _prctl() is not None else None


def tied_to_parent(argv: Sequence[str]) -> tuple[list[str], Callable[[], None] | None]:
    """(argv, preexec_fn) that start `argv` killed with this process: through `setpriv`
    where there is one (no preexec_fn, a cheap spawn), else with `die_with_parent()`.

    setpriv cannot check that the parent is still alive after setting the signal, so a tool
    started in the instant its parent dies runs on until its own timeout ends it."""
    setpriv = _setpriv()
    if setpriv is None:
        return list(argv), die_with_parent()
    return [setpriv, "--pdeathsig", "KILL", "--", *argv], None
