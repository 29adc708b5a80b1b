"""The language server's session: one Swarm per workspace, owned by the server's event loop.

Owns the `DelegationServer` (a pygls LanguageServer), the mapping between URIs and
workspace paths, the swarm's start (retried after a failure, so a corrected configuration
recovers), the published diagnostics, the work-done progress of each delegation and
the bridge that carries agent edits to the editor. It reads its input through
`server.framing` (a bad frame is skipped, never leaving the server deaf). The swarm's notices arrive in one ordered
stream: text changes go to the bridge, and the diagnostics computed on a text are published
once the client holds that text, placed on the client's buffer. Handlers (in `handlers.py`)
stay thin: they call into this session. Every background coroutine is owned by `run_task`. A progress token is created before the task
it reports on exists; updates that arrive before it is registered are buffered, and every
begun progress ends (with the task, or when the server stops).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
import threading
import uuid
from collections.abc import Coroutine, Mapping
from pathlib import Path
from typing import Any, BinaryIO

from lsprotocol import types
from pygls import uris
from pygls.io_ import StdoutWriter
from pygls.lsp.server import LanguageServer

from delegation_machine.engine.config import ConfigError
from delegation_machine.engine.inference.model_server import (
    ModelServerSupervisor,
    load_supervised_server_config,
    supervisor_for,
)
from delegation_machine.engine.notices import (
    DiagnosticsCleared,
    DiagnosticsNotice,
    MessageNotice,
    Notice,
)
from delegation_machine.engine.protocol import TaskState, TaskUpdate
from delegation_machine.engine.state import StateError, TextChange
from delegation_machine.engine.state.owner import WorkspaceBusy
from delegation_machine.engine.swarm import Swarm
from delegation_machine.server import convert
from delegation_machine.server.acp.attach import AcpListener
from delegation_machine.server.commands import TASK_UPDATED
from delegation_machine.server.diagnostics import DiagnosticStore
from delegation_machine.server.edit_bridge import EditBridge
from delegation_machine.server.framing import read_frames
from delegation_machine.server.rpc import DelegationProtocol

log = logging.getLogger(__name__)

VERSION = "0.1.0"
READ_CHUNK_BYTES = 1 << 16
MAX_EARLY_UPDATES = 256  # task updates kept per delegation whose progress is being set up


class WorkspaceError(Exception):
    """A request named something outside the served workspace, or before it is ready."""


class SwarmUnavailable(WorkspaceError):
    """The swarm could not start (e.g. a bad configuration); the message says how to fix it."""


class DelegationServer(LanguageServer):
    protocol: DelegationProtocol

    def __init__(self) -> None:
        super().__init__("delegation-machine", VERSION, protocol_cls=DelegationProtocol)
        self.swarm: Swarm | None = None
        self.bridge: EditBridge | None = None
        self.diagnostics = DiagnosticStore()
        self.settings: dict[str, Any] = {}
        self.initialized = False  # the client sent `initialized`: the swarm may start
        self.start_error: str | None = None  # why the last start failed
        self._starting: asyncio.Task[Swarm] | None = None
        self._stopping = False
        self.acp_listener: AcpListener | None = None  # ACP clients attach to the swarm here
        self.model_supervisor: ModelServerSupervisor | None = None  # [model_server] supervise
        self._owned_tasks: set[asyncio.Task[Any]] = set()
        self._progress_tokens: dict[str, types.ProgressToken] = {}
        self._progress_setups = 0  # delegations whose token exists but whose task id does not
        self._early_updates: dict[str, list[TaskUpdate]] = {}
        # the newest findings of each (path, check), waiting for their text to reach the client
        self._unpublished: dict[tuple[str, str], DiagnosticsNotice] = {}

    # --- reading the client's input -----------------------------------------------------------

    def start_io(self, stdin: BinaryIO | None = None, stdout: BinaryIO | None = None) -> None:
        """Serve over stdio, reading frames with `server.framing` (pygls's own reader goes
        deaf for good after one bad Content-Length)."""
        source = stdin or sys.stdin.buffer
        read_some = getattr(source, "read1", source.read)
        self._stop_event = threading.Event()
        self.protocol.set_writer(StdoutWriter(stdout or sys.stdout.buffer))

        async def read_chunk() -> bytes:
            loop = asyncio.get_running_loop()
            return bytes(await loop.run_in_executor(self.thread_pool, read_some, READ_CHUNK_BYTES))

        try:
            asyncio.run(self._serve_frames(read_chunk))
        except BrokenPipeError:
            log.error("the connection to the client is lost; stopping")
        except (KeyboardInterrupt, SystemExit):
            pass
        finally:
            self.shutdown()  # type: ignore[no-untyped-call]

    def start_tcp(self, host: str, port: int) -> None:
        """Serve one client at a time over TCP, through the same framing layer."""
        self._stop_event = threading.Event()

        async def connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self.protocol.set_writer(writer)  # type: ignore[arg-type]
            await self._serve_frames(lambda: reader.read(READ_CHUNK_BYTES))
            self.shutdown()  # type: ignore[no-untyped-call]

        async def serve() -> None:
            server = await asyncio.start_server(connection, host, port)
            self._server = server
            log.info("serving on %s:%d", host, port)
            async with server:
                await server.serve_forever()

        try:
            asyncio.run(serve())
        except asyncio.CancelledError:
            log.debug("the TCP server was cancelled")

    async def _serve_frames(self, read_chunk: Any) -> None:
        stop = self._stop_event
        await read_frames(
            read_chunk,
            self.protocol.handle_decoded,
            max_body_bytes=self.protocol.max_message_bytes,
            should_stop=lambda: stop is not None and stop.is_set(),
        )

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
            raise SwarmUnavailable(
                self.start_error or "the swarm is not running yet: the server is still starting"
            )
        return self.swarm

    def require_bridge(self) -> EditBridge:
        if self.bridge is None:
            raise SwarmUnavailable(
                self.start_error or "the swarm is not running yet: the server is still starting"
            )
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
        """Start (or retry starting) the swarm with these editor settings; raises
        SwarmUnavailable with the reason if it cannot start."""
        self.settings = dict(settings)
        await self.ready_swarm(retry=True)

    async def ready_swarm(self, *, retry: bool = True) -> Swarm:
        """The running swarm. While it starts, wait for it; after a failed start, try again
        (the configuration may have been corrected) when `retry`. Never waits on a start
        that is not happening: a failure raises SwarmUnavailable at once."""
        if self.swarm is not None:
            return self.swarm
        if self._stopping:
            raise SwarmUnavailable("the server is shutting down")
        if not self.initialized:
            raise WorkspaceError("the swarm is not running yet: the server is still starting")
        if self._starting is None:
            if self.start_error is not None and not retry:
                raise SwarmUnavailable(self.start_error)
            self._starting = asyncio.get_running_loop().create_task(
                self._start_once(), name="start-swarm"
            )
            self._starting.add_done_callback(self._start_finished)
        return await asyncio.shield(self._starting)

    async def _start_once(self) -> Swarm:
        swarm: Swarm | None = None
        try:
            swarm = Swarm(self.workspace_root(), editor_settings=self.settings)
            bridge = EditBridge(
                send_apply_edit=self._send_apply_edit,
                documents=swarm.documents,
                uri_for=self.uri_for,
                position_encoding=self.position_encoding,
                can_push=self.client_applies_edits,
            )
            swarm.subscribe(self.on_notice)
            await swarm.start()
        except Exception as exc:  # a bad configuration, an unusable workspace: said, retried
            if swarm is not None:
                await swarm.stop()  # what the half-started swarm opened is released
            advice = (
                "when it ends, the next request retries"
                if isinstance(exc, WorkspaceBusy)
                else "fix it, then save .delegation/config.toml or change the settings; the "
                "next request retries"
            )
            reason = f"Delegation Machine could not start: {exc}. {advice[0].upper()}{advice[1:]}."
            if reason != self.start_error:
                log.error("%s", reason)
                self.show_message(reason, types.MessageType.Error)
            self.start_error = reason
            raise SwarmUnavailable(reason) from None
        if self._stopping:
            await swarm.stop()
            raise SwarmUnavailable("the server is shutting down")
        self.swarm, self.bridge, self.start_error = swarm, bridge, None
        self._open_known_documents(bridge)
        log.info("swarm started on %s", swarm.root)
        await self._listen_for_acp(swarm)
        self._supervise_model_server(swarm)
        return swarm

    def _supervise_model_server(self, swarm: Swarm) -> None:
        """`[model_server] supervise = true`: run the local model server as our child."""
        if self.model_supervisor is not None:
            return
        try:
            config = load_supervised_server_config(swarm.config.model_server)
        except ConfigError as exc:
            self.show_message(f"Delegation Machine: {exc}", types.MessageType.Error)
            return

        loop = asyncio.get_running_loop()

        def said(message: str) -> None:  # also called from the set-up thread
            log.info("%s", message)
            loop.call_soon_threadsafe(self.show_message, f"Delegation Machine: {message}")

        self.model_supervisor = supervisor_for(config, on_event=said)
        if self.model_supervisor is not None:
            self.model_supervisor.start()

    async def _listen_for_acp(self, swarm: Swarm) -> None:
        """`delegation-machine acp` in this workspace attaches here (decision 057)."""
        listener = AcpListener(swarm)
        try:
            await listener.start()
        except OSError as exc:  # LSP goes on; an `acp` started here is refused, naming us
            log.warning("ACP clients cannot attach at %s: %s", listener.path, exc)
            return
        self.acp_listener = listener

    def _start_finished(self, task: asyncio.Task[Swarm]) -> None:
        self._starting = None
        if not task.cancelled():
            task.exception()  # retrieved: the failure was reported and is raised to waiters

    def _open_known_documents(self, bridge: EditBridge) -> None:
        """Buffers the editor opened before the swarm ran (pygls's workspace kept them)."""
        for document in list(self.workspace.text_documents.values()):
            try:
                bridge.on_did_open(
                    self.rel_path(document.uri), document.source, document.version or 0
                )
            except WorkspaceError as exc:
                log.info("not tracking %s: %s", document.uri, exc)
            except StateError as exc:
                self.show_message(f"Delegation Machine: {exc}", types.MessageType.Warning)

    async def _send_apply_edit(
        self, params: types.ApplyWorkspaceEditParams
    ) -> types.ApplyWorkspaceEditResult:
        return await self.workspace_apply_edit_async(params)

    def client_applies_edits(self) -> bool:
        workspace = self.client_capabilities.workspace
        return bool(workspace is not None and workspace.apply_edit)

    async def stop_swarm(self) -> None:
        self._stopping = True
        if self._starting is not None:
            with contextlib.suppress(SwarmUnavailable):
                await asyncio.shield(self._starting)
        self._end_all_progress("the server stopped")
        if self.acp_listener is not None:
            listener, self.acp_listener = self.acp_listener, None
            await listener.close()
        if self.model_supervisor is not None:
            supervisor, self.model_supervisor = self.model_supervisor, None
            await supervisor.aclose()
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
        if update.state.finished:  # its hunks became reviewable, or were settled
            self.refresh_code_lenses()
        token = self._progress_tokens.get(update.task_id)
        if token is None:
            if self._progress_setups:  # its progress may be being set up: keep it for that
                early = self._early_updates.setdefault(update.task_id, [])
                if len(early) < MAX_EARLY_UPDATES or update.state.finished:
                    early.append(update)
            return
        self._report_progress(update.task_id, token, update)

    def _report_progress(
        self, task_id: str, token: types.ProgressToken, update: TaskUpdate
    ) -> None:
        message = f"{update.state.value}: {update.message}"
        if update.state.finished:
            self._progress_tokens.pop(task_id, None)
            self.work_done_progress.end(token, types.WorkDoneProgressEnd(message=message))
        else:
            self.work_done_progress.report(token, types.WorkDoneProgressReport(message=message))

    def _end_all_progress(self, message: str) -> None:
        tokens, self._progress_tokens = self._progress_tokens, {}
        for token in tokens.values():
            self.work_done_progress.end(token, types.WorkDoneProgressEnd(message=message))

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

    def refresh_code_lenses(self) -> None:
        """Ask the client to re-request code lenses (the hunks changed), where it can."""
        workspace = self.client_capabilities.workspace
        lenses = workspace.code_lens if workspace is not None else None
        if lenses is None or not lenses.refresh_support or self._stopping:
            return
        self.run_task(self._refresh_code_lenses(), name="code-lens-refresh")

    async def _refresh_code_lenses(self) -> None:
        try:
            await self.workspace_code_lens_refresh_async(None)
        except Exception as exc:  # the client's answer: an error reply or a lost link
            log.info("client refused a code lens refresh: %s", exc)

    def show_message(self, text: str, kind: types.MessageType = types.MessageType.Info) -> None:
        self.window_show_message(types.ShowMessageParams(type=kind, message=text))

    # --- progress ----------------------------------------------------------------------------

    async def create_progress_token(self) -> types.ProgressToken | None:
        """A server-initiated progress token, created before the work it will report on
        (None: the client does not support progress, or refused the token). While any
        token waits for its task, task updates are buffered (see `begin_progress`)."""
        capabilities = self.client_capabilities.window
        if capabilities is None or not capabilities.work_done_progress:
            return None
        token = f"delegation-{uuid.uuid4().hex[:12]}"
        try:
            await self.work_done_progress.create_async(token)
        except Exception as exc:  # the client's answer: an error reply or a lost link
            log.info("client refused a progress token: %s", exc)
            return None
        self._progress_setups += 1
        return token

    def begin_progress(
        self, task_id: str | None, title: str, token: types.ProgressToken | None
    ) -> None:
        """Begin `token`'s progress for `task_id` (None: the task was never created) and
        replay the updates that arrived before; a task already finished ends it at once."""
        if token is None:
            return
        self._progress_setups -= 1
        early = self._early_updates.pop(task_id, []) if task_id is not None else []
        if not self._progress_setups:
            self._early_updates.clear()
        if task_id is None or self._stopping:
            return  # nothing begun: nothing to end
        self._progress_tokens[task_id] = token
        self.work_done_progress.begin(
            token,
            types.WorkDoneProgressBegin(
                title=title, cancellable=False, message=TaskState.QUEUED.value
            ),
        )
        for update in early:
            if self._progress_tokens.get(task_id) is token:
                self._report_progress(task_id, token, update)
