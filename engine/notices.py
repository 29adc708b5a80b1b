"""The one ordered stream of what the editor must be shown, and its notice types.

Owns `NoticeStream`: every text change of the CodeCRDT, every task update, every set of
findings and every message leaves the engine through it, in the order they happened on the
event loop. A listener (the server, the CLI) therefore sees a file's text change before the
diagnostics computed on that text. Each `DiagnosticsNotice` carries the text its positions
refer to, so a listener can place them on whatever text its client holds. No LSP names here:
the server turns these into LSP messages.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import msgspec

from delegation_machine.engine.protocol import Finding, TaskUpdate
from delegation_machine.engine.state.types import TextChange
from delegation_machine.engine.supervise.diagnostics import TaskDiagnostic

log = logging.getLogger(__name__)


class DiagnosticsNotice(msgspec.Struct, frozen=True):
    """The current findings of one check on one file (replaces earlier ones of that check).

    `text` is the file's text the check saw: finding positions refer to it. `blamed` are the
    findings a task's change introduced, with the task and agent they are about.
    """

    path: str
    check: str
    findings: tuple[Finding, ...]
    text: str
    blamed: tuple[TaskDiagnostic, ...] = ()


class DiagnosticsCleared(msgspec.Struct, frozen=True):
    """The file is gone: every check's findings on it are void."""

    path: str


class MessageNotice(msgspec.Struct, frozen=True):
    """Something the user should read; with `choices`, a question about task `task_id`."""

    level: str  # "error" | "warning" | "info"
    text: str
    task_id: str | None = None
    choices: tuple[str, ...] = ()


Notice = TaskUpdate | TextChange | DiagnosticsNotice | DiagnosticsCleared | MessageNotice
NoticeListener = Callable[[Notice], None]


class NoticeStream:
    """Fan-out of notices to listeners, synchronously and in emission order."""

    def __init__(self) -> None:
        self._listeners: list[NoticeListener] = []

    def subscribe(self, listener: NoticeListener) -> Callable[[], None]:
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener)

    def emit(self, notice: Notice) -> None:
        for listener in list(self._listeners):
            try:
                listener(notice)
            except Exception:  # a listener is outside the engine; one failing must not stop
                log.exception("notice listener failed on %s", type(notice).__name__)
