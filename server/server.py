"""The language server's session: one Swarm per workspace, owned by the server's event loop.

Owns the `DelegationServer` (a pygls LanguageServer), the mapping between URIs and
workspace paths, the published diagnostics, the work-done progress of each delegation and
the bridge that carries agent edits to the editor. The swarm's notices arrive in one ordered
stream: text changes go to the bridge, and the diagnostics computed on a text are published
once the client holds that text, placed on the client's buffer. Handlers (in `handlers.py`)
stay thin: they call into this session. Every background coroutine is owned by `run_task`.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Coroutine, Mapping
from pathlib import Path
from typing import Any

from lsprotocol import types
from pygls import uris
from pygls.lsp.server import LanguageServer

from delegation_machine.engine.notices import (
    DiagnosticsCleared,
    DiagnosticsNotice,
    MessageNotice,
    Notice,
)
from delegation_machine.engine.protocol import TaskState, TaskUpdate
from delegation_machine.engine.state import StateError, TextChange
from delegation_machine.engine.swarm import Swarm
from delegation_machine.server import convert
from delegation_machine.server.commands import TASK_UPDATED
from delegation_machine.server.diagnostics import DiagnosticStore
from delegation_machine.server.edit_bridge import EditBridge

log = logging.getLogger(__name__)

VERSION = "0.1.0"


class WorkspaceError(Exception):
    """A request named something outside the served workspace, or before it is ready."""


class DelegationServer(LanguageServer):
    def __init__(self) -> None:
        super().__init__("delegation-machine", VERSION)
        self.swarm: Swarm | None = None
        self.bridge: EditBridge | None = None
        self.diagnostics = DiagnosticStore()
        self.settings: dict[str, Any] = {}
        self.swarm_ready = asyncio.Event()
        self._owned_tasks: set[asyncio.Task[Any]] = set()
        self._progress_tokens: dict[str, types.ProgressToken] = {}
        # the newest findings of each (path, check), waiting for their text to reach the client
        self._unpublished: dict[tuple[str, str], DiagnosticsNotice] = {}

    # --- ownership of background work --------------------------------------------------------

    def run_task(self, coroutine: Coroutine[Any, Any, Any], *, name: str) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coroutine, name=name)
        self._owned_tasks.add(task)
        task.add_done_callback(self._owned_tasks.discard)
        task.add_done_callback(self._report_failure)
        return task

    def _report_failure(self, task: asyncio.Task[Any]) -> None:
        if task.cancelled() or task.exception() is None:
            return
        log.error("background task %s failed", task.get_name(), exc_info=task.exception())
        self.show_message(
            f"Delegation Machine: {task.get_name()} failed: {task.exception()}",
            types.MessageType.Error,
        )

    # --- workspace and positions -------------------------------------------------------------

    @property
    def position_encoding(self) -> str:
        encoding = self.workspace.position_encoding
        return str(getattr(encoding, "value", encoding) or "utf-16")

    def workspace_root(self) -> Path:
        root = self.workspace.root_path
        if root:
            return Path(root).resolve()
        folders = list(self.workspace.folders.values())
        if folders:
            return Path(uris.to_fs_path(folders[0].uri) or ".").resolve()
        return Path.cwd().resolve()

    def require_swarm(self) -> Swarm:
        if self.swarm is None:
            raise WorkspaceError("the swarm is not running yet: the server is still starting")
        return self.swarm

    def require_bridge(self) -> EditBridge:
        if self.bridge is None:
            raise WorkspaceError("the swarm is not running yet: the server is still starting")
        return self.bridge

    def rel_path(self, uri: str) -> str:
        """The workspace-relative path of a file URI; WorkspaceError for anything else."""
        swarm = self.require_swarm()
        fs_path = uris.to_fs_path(uri)
        if not uri.startswith("file:") or fs_path is None:
            raise WorkspaceError(f"only file: URIs are served, not {uri}")
        try:
            return swarm.state.resolve(fs_path)
        except StateError as exc:
            raise WorkspaceError(f"{uri}: {exc}") from None

    def uri_for(self, rel: str) -> str:
        root = self.swarm.root if self.swarm else self.workspace_root()
        return uris.from_fs_path(str(root / rel)) or f"file://{root / rel}"

    def text_of(self, rel: str) -> str:
        return self.require_swarm().state.read(rel)[0]

    # --- start and stop ----------------------------------------------------------------------

    async def start_swarm(self, settings: Mapping[str, Any]) -> None:
        self.settings = dict(settings)
        swarm = Swarm(self.workspace_root(), editor_settings=self.settings)
        self.bridge = EditBridge(
            send_apply_edit=self.workspace_apply_edit_async,
            documents=swarm.documents,
            uri_for=self.uri_for,
            position_encoding=self.position_encoding,
        )
        swarm.subscribe(self.on_notice)
        await swarm.start()
        self.swarm = swarm
        self.swarm_ready.set()
        log.info("swarm started on %s", swarm.root)

    async def stop_swarm(self) -> None:
        if self.bridge is not None:
            self.bridge.close()
        if self.swarm is not None:
            swarm, self.swarm = self.swarm, None
            await swarm.stop()
        for task in list(self._owned_tasks):
            task.cancel()

    # --- notices from the swarm, in the order they happened ----------------------------------

    def on_notice(self, notice: Notice) -> None:
        if isinstance(notice, TextChange):
            if self.bridge is not None:
                self.bridge.on_text_changed(notice)
        elif isinstance(notice, TaskUpdate):
            self._on_task_update(notice)
        elif isinstance(notice, DiagnosticsNotice):
            self._on_diagnostics(notice)
        elif isinstance(notice, DiagnosticsCleared):
            self._clear_diagnostics(notice.path)
        elif isinstance(notice, MessageNotice):
            self._on_message(notice)

    def _on_task_update(self, update: TaskUpdate) -> None:
        self.protocol.notify(TASK_UPDATED, convert.task_updated_payload(update))
        token = self._progress_tokens.get(update.task_id)
        if token is None:
            return
        message = f"{update.state.value}: {update.message}"
        if update.state.finished:
            self._progress_tokens.pop(update.task_id, None)
            self.work_done_progress.end(token, types.WorkDoneProgressEnd(message=message))
        else:
            self.work_done_progress.report(token, types.WorkDoneProgressReport(message=message))

    def _on_diagnostics(self, notice: DiagnosticsNotice) -> None:
        """Publish once the client holds the text the findings were computed on (edits ahead
        of them are still on their way otherwise); a newer notice replaces a waiting one."""
        key = (notice.path, notice.check)
        self._unpublished[key] = notice
        self.require_bridge().when_delivered(
            notice.path, lambda client_text: self._publish_diagnostics(key, client_text)
        )

    def _publish_diagnostics(self, key: tuple[str, str], client_text: str | None) -> None:
        notice = self._unpublished.pop(key, None)
        if notice is None:
            return  # a newer notice of the same check was published already
        text = notice.text if client_text is None else client_text
        uri = self.uri_for(notice.path)
        blame = {b.finding: b for b in notice.blamed}
        diagnostics = [
            convert.finding_to_diagnostic(
                placed, text, self.position_encoding, uri=uri, blame=blame.get(original)
            )
            for original, placed in convert.relocate_findings(notice.findings, notice.text, text)
        ]
        merged = self.diagnostics.replace(uri, notice.check, diagnostics)
        self.text_document_publish_diagnostics(
            types.PublishDiagnosticsParams(uri=uri, diagnostics=merged)
        )

    def _clear_diagnostics(self, rel: str) -> None:
        for key in [k for k in self._unpublished if k[0] == rel]:
            del self._unpublished[key]
        uri = self.uri_for(rel)
        self.diagnostics.clear(uri)
        self.text_document_publish_diagnostics(
            types.PublishDiagnosticsParams(uri=uri, diagnostics=[])
        )

    def _on_message(self, notice: MessageNotice) -> None:
        kind = {"error": types.MessageType.Error, "warning": types.MessageType.Warning}.get(
            notice.level, types.MessageType.Info
        )
        if notice.choices and notice.task_id:
            self.run_task(self._ask(notice, kind), name=f"ask-{notice.task_id}")
        else:
            self.show_message(notice.text, kind)

    async def _ask(self, notice: MessageNotice, kind: types.MessageType) -> None:
        """Escalation: let the user choose what happens to a task the checks keep failing."""
        answer = await self.window_show_message_request_async(
            types.ShowMessageRequestParams(
                type=kind,
                message=notice.text,
                actions=[types.MessageActionItem(title=c) for c in notice.choices],
            )
        )
        if answer is None or self.swarm is None or notice.task_id is None:
            return
        await self.swarm.resolve_escalation(notice.task_id, answer.title)

    def show_message(self, text: str, kind: types.MessageType = types.MessageType.Info) -> None:
        self.window_show_message(types.ShowMessageParams(type=kind, message=text))

    # --- progress ----------------------------------------------------------------------------

    async def begin_progress(
        self, task_id: str, title: str, token: types.ProgressToken | None
    ) -> None:
        """Work-done progress for one delegation (client- or server-initiated token)."""
        if token is None:
            capabilities = self.client_capabilities.window
            if capabilities is None or not capabilities.work_done_progress:
                return
            token = f"delegation-{uuid.uuid4().hex[:12]}"
            try:
                await self.work_done_progress.create_async(token)
            except Exception as exc:  # the client's answer: an error reply or a lost link
                log.info("client refused a progress token: %s", exc)
                return
        self._progress_tokens[task_id] = token
        self.work_done_progress.begin(
            token,
            types.WorkDoneProgressBegin(
                title=title, cancellable=False, message=TaskState.QUEUED.value
            ),
        )
