"""Every LSP handler of the server, registered in one place and kept thin.

Owns the LSP contract of DESIGN.md §4: document sync into the CRDT, code actions titled
`Delegate: …`, the `delegation.*` commands, the per-hunk review's `Accept | Reject` code
lenses, configuration. Each handler converts, calls the
session or the engine, and converts back; errors become clear JSON-RPC errors (and a
`window/showMessage` where the user should see them) and the server keeps serving.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from lsprotocol import types
from pygls import uris
from pygls.exceptions import JsonRpcException, JsonRpcInvalidParams

from delegation_machine.engine.config import STATE_DIR_NAME
from delegation_machine.engine.protocol import DelegationError
from delegation_machine.engine.secrets import remember_secrets_in
from delegation_machine.engine.supervise.diagnostics import TASK_ACTIONS
from delegation_machine.engine.swarm import Swarm
from delegation_machine.server import commands, convert
from delegation_machine.server.server import DelegationServer, WorkspaceError

log = logging.getLogger(__name__)

REFACTOR_DELEGATE = "refactor.delegate"
QUICKFIX_DELEGATE = "quickfix.delegate"
REQUEST_FAILED = -32803
CONFIG_FILE = f"{STATE_DIR_NAME}/config.toml"


class DelegationFailed(JsonRpcException):
    """The request was valid but the swarm could not take it (LSP RequestFailed)."""

    CODE = REQUEST_FAILED


def _settings_from(options: Any) -> dict[str, Any]:
    if isinstance(options, dict):
        inner = options.get("delegation", options)
        return dict(inner) if isinstance(inner, dict) else {}
    return {}


def create_server() -> DelegationServer:
    server = DelegationServer()
    _register_lifecycle(server)
    _register_document_sync(server)
    _register_code_actions(server)
    _register_commands(server)
    _register_hunk_review(server)
    return server


async def _running_swarm(ls: DelegationServer) -> Swarm:
    """The swarm, started (or its start retried) if need be; a start that fails answers the
    request with the reason instead of leaving it waiting."""
    try:
        return await ls.ready_swarm()
    except WorkspaceError as exc:
        raise DelegationFailed(message=str(exc), code=REQUEST_FAILED) from None


# --- lifecycle ------------------------------------------------------------------------------


def _register_lifecycle(server: DelegationServer) -> None:
    @server.feature(types.INITIALIZE)
    def initialize(ls: DelegationServer, params: types.InitializeParams) -> None:
        ls.settings = _settings_from(params.initialization_options)
        remember_secrets_in(ls.settings)  # a literal key is refused, and never logged

    @server.feature(types.INITIALIZED)
    async def initialized(ls: DelegationServer, params: types.InitializedParams) -> None:
        ls.initialized = True
        # a failure is said to the user; the next request, a settings change or a save retries
        with contextlib.suppress(WorkspaceError):
            await ls.start_swarm(ls.settings)

    @server.feature(types.SHUTDOWN)
    async def shutdown(ls: DelegationServer, params: None) -> None:
        await ls.stop_swarm()

    @server.feature(types.WORKSPACE_DID_CHANGE_CONFIGURATION)
    def did_change_configuration(
        ls: DelegationServer, params: types.DidChangeConfigurationParams
    ) -> None:
        settings = _settings_from(params.settings)
        remember_secrets_in(settings)
        if ls.swarm is None:
            if settings:
                ls.settings = settings
            _retry_start(ls, "settings changed")
        elif settings:
            try:
                ls.swarm.update_settings(settings)
            except Exception as exc:
                ls.show_message(f"Delegation Machine settings: {exc}", types.MessageType.Error)


def _retry_start(ls: DelegationServer, why: str) -> None:
    """Start the swarm again after a failed start (a corrected configuration recovers)."""
    if ls.swarm is not None or not ls.initialized:
        return
    log.info("retrying the swarm's start: %s", why)

    async def retry() -> None:
        with contextlib.suppress(WorkspaceError):  # the new reason was shown
            await ls.ready_swarm()

    ls.run_task(retry(), name="retry-start")


# --- document sync --------------------------------------------------------------------------


def _guard(ls: DelegationServer, what: str, call: Callable[[], Any]) -> None:
    """Document notifications have no response: report refusals to the user, keep serving.
    Before the swarm runs they are skipped: pygls's workspace keeps every open buffer, and
    the swarm opens them all when it starts."""
    if ls.swarm is None:
        log.debug("%s before the swarm runs: taken from the workspace when it starts", what)
        return
    try:
        call()
    except WorkspaceError as exc:
        log.info("%s ignored: %s", what, exc)
    except Exception as exc:
        log.warning("%s refused: %s", what, exc)
        ls.show_message(f"Delegation Machine: {exc}", types.MessageType.Warning)


def _is_config_file(ls: DelegationServer, uri: str) -> bool:
    fs_path = uris.to_fs_path(uri)
    return fs_path is not None and Path(fs_path).resolve() == ls.workspace_root() / CONFIG_FILE


def _register_document_sync(server: DelegationServer) -> None:
    """One engine entry per event: the bridge models the buffer and hands the change on."""

    @server.feature(types.TEXT_DOCUMENT_DID_OPEN)
    def did_open(ls: DelegationServer, params: types.DidOpenTextDocumentParams) -> None:
        document = params.text_document
        _guard(
            ls,
            f"didOpen {document.uri}",
            lambda: ls.require_bridge().on_did_open(
                ls.rel_path(document.uri), document.text, document.version
            ),
        )

    @server.feature(types.TEXT_DOCUMENT_DID_CHANGE)
    def did_change(ls: DelegationServer, params: types.DidChangeTextDocumentParams) -> None:
        document = params.text_document
        _guard(
            ls,
            f"didChange {document.uri}",
            lambda: ls.require_bridge().on_did_change(
                ls.rel_path(document.uri), params.content_changes, document.version
            ),
        )

    @server.feature(types.TEXT_DOCUMENT_DID_SAVE)
    def did_save(ls: DelegationServer, params: types.DidSaveTextDocumentParams) -> None:
        uri = params.text_document.uri
        if _is_config_file(ls, uri):
            _retry_start(ls, f"{CONFIG_FILE} saved")
            return
        _guard(ls, "didSave", lambda: ls.require_swarm().documents.saved(ls.rel_path(uri)))

    @server.feature(types.TEXT_DOCUMENT_DID_CLOSE)
    def did_close(ls: DelegationServer, params: types.DidCloseTextDocumentParams) -> None:
        _guard(
            ls,
            "didClose",
            lambda: ls.require_bridge().on_did_close(ls.rel_path(params.text_document.uri)),
        )


# --- code actions ---------------------------------------------------------------------------


def _delegate_action(
    title: str,
    kind: str,
    arguments: dict[str, Any],
    diagnostics: list[types.Diagnostic] | None = None,
) -> types.CodeAction:
    return types.CodeAction(
        title=f"Delegate: {title}",
        kind=kind,
        diagnostics=diagnostics,
        command=types.Command(
            title=f"Delegate: {title}", command=commands.DELEGATE, arguments=[arguments]
        ),
    )


def _range_json(range_: types.Range) -> dict[str, Any]:
    return {
        "start": {"line": range_.start.line, "character": range_.start.character},
        "end": {"line": range_.end.line, "character": range_.end.character},
    }


def _task_actions(task_id: str, diagnostic: types.Diagnostic) -> list[types.CodeAction]:
    """Retry / Escalate / Show task, on a finding a task's change introduced."""
    return [
        types.CodeAction(
            title=f"{title} task {task_id}",
            kind=types.CodeActionKind.QuickFix,
            diagnostics=[diagnostic],
            command=types.Command(
                title=title,
                command=commands.TASK_ACTION_COMMANDS[action],
                arguments=[{"taskId": task_id}],
            ),
        )
        for title, action in TASK_ACTIONS
    ]


def code_actions_for(
    ls: DelegationServer, params: types.CodeActionParams
) -> list[types.CodeAction]:
    uri = params.text_document.uri
    rel = ls.rel_path(uri)
    where = _range_json(params.range)
    actions: list[types.CodeAction] = []
    ours = [d for d in params.context.diagnostics if d.source == convert.SOURCE]
    for diagnostic in ours:
        code = str(diagnostic.code or "finding")
        arguments = {
            "uri": uri,
            "range": _range_json(diagnostic.range),
            "kind": "fix",
            "instruction": f"fix {code}",
        }
        actions.append(_delegate_action(f"fix {code}", QUICKFIX_DELEGATE, arguments, [diagnostic]))
    if params.range.start != params.range.end:  # a selection: fix only those lines
        actions.append(
            _delegate_action(
                "fix the selection",
                REFACTOR_DELEGATE,
                {"uri": uri, "range": where, "kind": "fix", "instruction": "fix"},
            )
        )
    actions.append(
        _delegate_action(
            f"fix {rel}",
            REFACTOR_DELEGATE,
            {"uri": uri, "kind": "fix", "instruction": "fix"},
        )
    )
    actions.append(
        _delegate_action(
            f"format {rel}",
            REFACTOR_DELEGATE,
            {"uri": uri, "kind": "format", "instruction": "format"},
        )
    )
    actions.append(
        _delegate_action(
            f"check {rel}",
            REFACTOR_DELEGATE,
            {"uri": uri, "kind": "check", "instruction": "check"},
        )
    )
    swarm = ls.require_swarm()
    if swarm.backend is not None:
        for template in swarm.model_templates():
            actions.append(
                _delegate_action(
                    template,
                    REFACTOR_DELEGATE,
                    {"uri": uri, "range": where, "instruction": template},
                )
            )
    for diagnostic in ours:
        task_id = diagnostic.data.get("taskId") if isinstance(diagnostic.data, dict) else None
        if task_id:
            actions.extend(_task_actions(task_id, diagnostic))
    only = params.context.only
    if only:
        actions = [a for a in actions if any(str(a.kind).startswith(str(k)) for k in only)]
    return actions


def _register_code_actions(server: DelegationServer) -> None:
    @server.feature(
        types.TEXT_DOCUMENT_CODE_ACTION,
        types.CodeActionOptions(code_action_kinds=[REFACTOR_DELEGATE, QUICKFIX_DELEGATE]),
    )
    async def code_action(
        ls: DelegationServer, params: types.CodeActionParams
    ) -> list[types.CodeAction] | None:
        await _running_swarm(ls)
        try:
            return code_actions_for(ls, params)
        except WorkspaceError as exc:
            log.info("no code actions: %s", exc)
            return None


# --- commands -------------------------------------------------------------------------------


def _invalid(ls: DelegationServer, message: str) -> JsonRpcInvalidParams:
    ls.show_message(f"Delegation Machine: {message}", types.MessageType.Error)
    return JsonRpcInvalidParams(message=message)


def _failed(ls: DelegationServer, message: str) -> DelegationFailed:
    ls.show_message(f"Delegation Machine: {message}", types.MessageType.Error)
    return DelegationFailed(message=message, code=REQUEST_FAILED)


def _register_commands(server: DelegationServer) -> None:
    @server.command(commands.DELEGATE)
    async def delegate(ls: DelegationServer, *arguments: Any) -> dict[str, Any]:
        swarm = await _running_swarm(ls)
        try:
            args = commands.single_argument(
                commands.DELEGATE, arguments, commands.DelegateArguments
            )
            rel = ls.rel_path(args.uri) if args.uri else None
            text = ls.text_of(rel) if rel is not None else None
        except (commands.CommandArgumentError, WorkspaceError) as exc:
            raise _invalid(ls, str(exc)) from None
        except Exception as exc:  # binary, huge, non-UTF-8: refused with the reason
            raise _invalid(ls, f"{args.uri}: {exc}") from None
        request = convert.delegate_request(args, rel, text, ls.position_encoding)
        task_id = await _submit_with_progress(
            ls, lambda: swarm.submit(request), f"Delegate: {request.instruction}"
        )
        return {"taskId": task_id}

    for name, method in (
        (commands.CANCEL, "cancel"),
        (commands.ACCEPT, "accept"),
        (commands.REJECT, "reject"),
    ):
        _register_task_command(server, name, method)

    @server.command(commands.RETRY)
    async def retry(ls: DelegationServer, *arguments: Any) -> dict[str, Any]:
        args = await _task_arguments(ls, commands.RETRY, arguments)
        swarm = ls.require_swarm()
        task_id = await _submit_with_progress(
            ls, lambda: swarm.retry(args.task_id), f"Retry {args.task_id}"
        )
        return {"taskId": task_id, "retryOf": args.task_id}

    @server.command(commands.ESCALATE)
    async def escalate(ls: DelegationServer, *arguments: Any) -> dict[str, Any]:
        args = await _task_arguments(ls, commands.ESCALATE, arguments)
        try:
            ls.require_swarm().escalate(args.task_id)
        except (DelegationError, WorkspaceError) as exc:
            raise _failed(ls, str(exc)) from None
        return {"taskId": args.task_id}

    @server.command(commands.SHOW_TASK)
    async def show_task(ls: DelegationServer, *arguments: Any) -> dict[str, Any]:
        args = await _task_arguments(ls, commands.SHOW_TASK, arguments)
        try:
            text = ls.require_swarm().describe_attempts(args.task_id)
        except (DelegationError, WorkspaceError) as exc:
            raise _failed(ls, str(exc)) from None
        ls.show_message(text)
        return {"taskId": args.task_id, "text": text}

    @server.command(commands.STATUS)
    async def status(ls: DelegationServer, *arguments: Any) -> dict[str, Any]:
        return convert.status_payload((await _running_swarm(ls)).status())


# --- per-hunk review -----------------------------------------------------------------------


def _hunk_payloads(ls: DelegationServer, swarm: Swarm, query: commands.HunkQuery) -> list[Any]:
    rel = ls.rel_path(query.uri) if query.uri else None
    texts: dict[str, str] = {}
    payloads = []
    for hunk in swarm.hunks(query.task_id, rel):
        text = texts.setdefault(hunk.path, ls.text_of(hunk.path))
        payloads.append(
            convert.hunk_payload(hunk, text, ls.position_encoding, ls.uri_for(hunk.path))
        )
    return payloads


def _register_hunk_review(server: DelegationServer) -> None:
    @server.feature(types.TEXT_DOCUMENT_CODE_LENS, types.CodeLensOptions(resolve_provider=False))
    async def code_lens(
        ls: DelegationServer, params: types.CodeLensParams
    ) -> list[types.CodeLens] | None:
        swarm = await _running_swarm(ls)
        try:
            rel = ls.rel_path(params.text_document.uri)
            hunks = swarm.hunks(path=rel)
            text = ls.text_of(rel) if hunks else ""
        except (WorkspaceError, DelegationError) as exc:
            log.info("no code lenses: %s", exc)
            return None
        return [
            lens
            for hunk in hunks
            for lens in convert.hunk_code_lenses(hunk, text, ls.position_encoding)
        ]

    for name, method in (
        (commands.ACCEPT_HUNK, "accept_hunk"),
        (commands.REJECT_HUNK, "reject_hunk"),
    ):
        _register_hunk_command(server, name, method)

    @server.command(commands.HUNKS)
    async def hunks(ls: DelegationServer, *arguments: Any) -> dict[str, Any]:
        swarm = await _running_swarm(ls)
        try:
            query = commands.single_argument(commands.HUNKS, arguments or ({},), commands.HunkQuery)
        except commands.CommandArgumentError as exc:
            raise _invalid(ls, str(exc)) from None
        try:
            return {"hunks": _hunk_payloads(ls, swarm, query)}
        except WorkspaceError as exc:
            raise _invalid(ls, str(exc)) from None
        except DelegationError as exc:
            raise _failed(ls, str(exc)) from None


def _register_hunk_command(server: DelegationServer, name: str, method: str) -> None:
    @server.command(name)
    async def hunk_command(ls: DelegationServer, *arguments: Any) -> dict[str, Any]:
        swarm = await _running_swarm(ls)
        try:
            args = commands.single_argument(name, arguments, commands.HunkArguments)
        except commands.CommandArgumentError as exc:
            raise _invalid(ls, str(exc)) from None
        try:
            state = await getattr(swarm, method)(args.task_id, args.hunk_id)
        except DelegationError as exc:
            raise _failed(ls, str(exc)) from None
        ls.refresh_code_lenses()
        return {"taskId": args.task_id, "hunkId": args.hunk_id, "state": state.value}


async def _submit_with_progress(
    ls: DelegationServer, submit: Callable[[], Awaitable[str]], title: str
) -> str:
    """Create the progress token first, then submit: every update of the task reaches the
    token (early ones are buffered), and a progress is begun only for a task that exists."""
    token = await ls.create_progress_token()
    task_id: str | None = None
    try:
        task_id = await submit()
    except (DelegationError, WorkspaceError) as exc:
        raise _failed(ls, str(exc)) from None
    finally:
        ls.begin_progress(task_id, title, token)
    return task_id


async def _task_arguments(
    ls: DelegationServer, name: str, arguments: tuple[Any, ...]
) -> commands.TaskArguments:
    await _running_swarm(ls)
    try:
        return commands.single_argument(name, arguments, commands.TaskArguments)  # type: ignore[no-any-return]
    except commands.CommandArgumentError as exc:
        raise _invalid(ls, str(exc)) from None


def _register_task_command(server: DelegationServer, name: str, method: str) -> None:
    @server.command(name)
    async def task_command(ls: DelegationServer, *arguments: Any) -> dict[str, Any]:
        await _running_swarm(ls)
        try:
            args = commands.single_argument(name, arguments, commands.TaskArguments)
        except commands.CommandArgumentError as exc:
            raise _invalid(ls, str(exc)) from None
        try:
            state = await getattr(ls.require_swarm(), method)(args.task_id)
        except (DelegationError, WorkspaceError) as exc:
            raise _failed(ls, str(exc)) from None
        return {"taskId": args.task_id, "state": state.value}
