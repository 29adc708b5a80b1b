"""Fixtures for end-to-end tests: a scratch copy of the sample and a real server subprocess.

The pytest-lsp client gets what real editors have and its defaults lack: a
`workspace/applyEdit` handler that applies edits to the client's own buffers and answers
with didChange, a `delegation/taskUpdated` collector, and a structure hook so a CodeAction
that carries a command is not decoded as a bare Command (lsprotocol 2025.0.0).

Real editors and browsers that come as Debian packages (Emacs with eglot, Chromium) are
installed here with apt-get, so a fresh machine running `make test` exercises them instead
of skipping.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import pytest_lsp
from lsprotocol import types
from pygls import uris
from pygls.protocol import default_converter
from pytest_lsp import ClientServerConfig, LanguageClient, client_capabilities
from pytest_lsp.client import DEFAULT_CLIENT_FEATURES, register_lsp_features

from tests.system_packages import install_debian_packages

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "samples" / "inventory"
SERVER_COMMAND = [sys.executable, "-m", "delegation_machine.server", "serve"]
CLIENTS = ["visual-studio-code", "neovim", "emacs"]
EMACS_PACKAGES = ["emacs-nox", "elpa-eglot"]
DEBIAN_ELPA = "/usr/share/emacs/site-lisp/elpa"


def copy_sample(destination: Path) -> Path:
    workspace = destination / "inventory"
    shutil.copytree(SAMPLE, workspace, ignore=shutil.ignore_patterns(".delegation", "__pycache__"))
    return workspace


def apply_text_edits(text: str, edits: list[types.TextEdit]) -> str:
    """Apply LSP edits (UTF-16 positions) to `text`, last edit first."""
    lines = text.split("\n")

    def offset(position: types.Position) -> int:
        before = sum(len(line) + 1 for line in lines[: position.line])
        line = lines[position.line] if position.line < len(lines) else ""
        units, chars = 0, 0
        for char in line:
            if units >= position.character:
                break
            units += 2 if ord(char) > 0xFFFF else 1
            chars += 1
        return before + chars

    ordered = sorted(edits, key=lambda e: (e.range.start.line, e.range.start.character))
    for edit in reversed(ordered):
        start, end = offset(edit.range.start), offset(edit.range.end)
        text = text[:start] + edit.new_text + text[end:]
        lines = text.split("\n")
    return text


class EditorState:
    """The test client's buffers, task updates and waiters, like a small editor."""

    def __init__(self, client: LanguageClient) -> None:
        self.client = client
        self.buffers: dict[str, tuple[str, int]] = {}
        self.task_updates: list[dict[str, Any]] = []
        self.applied_edits: list[types.ApplyWorkspaceEditParams] = []
        self.diagnostic_history: list[types.Diagnostic] = []
        self.message_requests: list[types.ShowMessageRequestParams] = []
        self.code_lens_refreshes = 0  # workspace/codeLens/refresh requests answered
        self.answer_message_request: str | None = None  # the title the "user" clicks
        self.changed = asyncio.Condition()

    async def notify_changed(self) -> None:
        async with self.changed:
            self.changed.notify_all()

    async def wait_until(self, predicate: Callable[[], Any], timeout: float = 120) -> Any:
        async def wait() -> Any:
            async with self.changed:
                while not (result := predicate()):
                    await self.changed.wait()
                return result

        return await asyncio.wait_for(wait(), timeout)

    def open(self, path: Path) -> str:
        uri = uris.from_fs_path(str(path))
        assert uri is not None
        text = path.read_text(encoding="utf-8")
        self.buffers[uri] = (text, 1)
        self.client.text_document_did_open(
            types.DidOpenTextDocumentParams(
                text_document=types.TextDocumentItem(
                    uri=uri, language_id="python", version=1, text=text
                )
            )
        )
        return uri

    def text(self, uri: str) -> str:
        return self.buffers[uri][0]

    def type_text(self, uri: str, line: int, character: int, new_text: str) -> None:
        """The user types: a didChange with an incremental edit."""
        text, version = self.buffers[uri]
        position = types.Position(line, character)
        edit = types.TextEdit(types.Range(position, position), new_text)
        self.buffers[uri] = (apply_text_edits(text, [edit]), version + 1)
        self.client.text_document_did_change(
            types.DidChangeTextDocumentParams(
                text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=version + 1),
                content_changes=[
                    types.TextDocumentContentChangePartial(range=edit.range, text=new_text)
                ],
            )
        )

    def diagnostics(self, uri: str) -> list[types.Diagnostic]:
        return list(self.client.diagnostics.get(uri, []))

    def task_state(self, task_id: str) -> str | None:
        states = [u["state"] for u in self.task_updates if u["taskId"] == task_id]
        return states[-1] if states else None


def install_editor_handlers(client: LanguageClient, editor: EditorState) -> None:
    converter = client.protocol._converter

    def structure_code_action(obj: Any, _: Any) -> types.CodeAction | types.Command:
        if isinstance(obj.get("command"), str):
            return converter.structure(obj, types.Command)
        return converter.structure(obj, types.CodeAction)

    converter.register_structure_hook(types.CodeAction | types.Command, structure_code_action)

    @client.feature(types.WORKSPACE_APPLY_EDIT)
    async def apply_edit(params: types.ApplyWorkspaceEditParams) -> types.ApplyWorkspaceEditResult:
        editor.applied_edits.append(params)
        for change in params.edit.document_changes or []:
            if not isinstance(change, types.TextDocumentEdit):
                continue
            uri = change.text_document.uri
            if uri not in editor.buffers:
                return types.ApplyWorkspaceEditResult(applied=False, failure_reason="not open")
            text, version = editor.buffers[uri]
            if change.text_document.version not in (None, version):
                return types.ApplyWorkspaceEditResult(
                    applied=False, failure_reason="version mismatch"
                )
            edits = [e for e in change.edits if isinstance(e, types.TextEdit)]
            new_text = apply_text_edits(text, edits)
            editor.buffers[uri] = (new_text, version + 1)
            client.text_document_did_change(
                types.DidChangeTextDocumentParams(
                    text_document=types.VersionedTextDocumentIdentifier(
                        uri=uri, version=version + 1
                    ),
                    content_changes=[
                        types.TextDocumentContentChangePartial(range=e.range, text=e.new_text)
                        for e in reversed(
                            sorted(
                                edits, key=lambda e: (e.range.start.line, e.range.start.character)
                            )
                        )
                    ],
                )
            )
        await editor.notify_changed()
        return types.ApplyWorkspaceEditResult(applied=True)

    @client.feature("delegation/taskUpdated")
    async def task_updated(params: Any) -> None:
        # pygls hands unknown notifications' params over as namedtuples
        payload = params._asdict() if hasattr(params, "_asdict") else dict(params)
        editor.task_updates.append(payload)
        await editor.notify_changed()

    @client.feature(types.TEXT_DOCUMENT_PUBLISH_DIAGNOSTICS)
    async def publish_diagnostics(params: types.PublishDiagnosticsParams) -> None:
        client.diagnostics[params.uri] = params.diagnostics
        editor.diagnostic_history.extend(params.diagnostics)
        await editor.notify_changed()

    @client.feature(types.WINDOW_SHOW_MESSAGE_REQUEST)
    async def show_message_request(
        params: types.ShowMessageRequestParams,
    ) -> types.MessageActionItem | None:
        editor.message_requests.append(params)
        await editor.notify_changed()
        choice = editor.answer_message_request
        titles = [a.title for a in params.actions or []]
        return types.MessageActionItem(title=choice) if choice in titles else None

    @client.feature(types.WORKSPACE_CODE_LENS_REFRESH)
    async def code_lens_refresh(params: None) -> None:
        # An editor that advertises refreshSupport answers this (VS Code re-requests lenses).
        editor.code_lens_refreshes += 1
        await editor.notify_changed()

    record_progress = DEFAULT_CLIENT_FEATURES[types.PROGRESS]

    @client.feature(types.PROGRESS)
    async def progress(params: types.ProgressParams) -> None:
        record_progress(client, params)  # pytest-lsp's own bookkeeping, then wake waiters
        await editor.notify_changed()

    @client.feature(types.WINDOW_SHOW_MESSAGE)
    async def show_message(params: types.ShowMessageParams) -> None:
        client.messages.append(params)
        await editor.notify_changed()


def make_editor_client() -> LanguageClient:
    """pytest-lsp's client with our editor behaviour in place of two of its defaults."""
    client = LanguageClient(converter_factory=default_converter)
    ours = (types.TEXT_DOCUMENT_PUBLISH_DIAGNOSTICS, types.WINDOW_SHOW_MESSAGE, types.PROGRESS)
    register_lsp_features(
        client, {m: f for m, f in DEFAULT_CLIENT_FEATURES.items() if m not in ours}
    )
    client.editor = EditorState(client)  # type: ignore[attr-defined]
    install_editor_handlers(client, client.editor)  # type: ignore[attr-defined]
    return client


async def delegate_instruction(client: LanguageClient, uri: str, instruction: str) -> str:
    """`delegation.delegate` on the file at `uri` with a plain-language instruction; its id."""
    result = await client.workspace_execute_command_async(
        types.ExecuteCommandParams(
            command="delegation.delegate",
            arguments=[{"uri": uri, "instruction": instruction}],
        )
    )
    return str(result["taskId"])


async def run_code_action(client: LanguageClient, uri: str, line: int, title: str) -> str:
    """Ask for the code actions at `line` of `uri`, run the one titled `title`; the task id."""
    position = types.Position(line=line, character=4)
    actions = await client.text_document_code_action_async(
        types.CodeActionParams(
            text_document=types.TextDocumentIdentifier(uri=uri),
            range=types.Range(position, position),
            context=types.CodeActionContext(diagnostics=[]),
        )
    )
    chosen = next(a for a in actions or [] if a.title == title)
    assert isinstance(chosen, types.CodeAction) and chosen.command is not None, chosen
    result = await client.workspace_execute_command_async(
        types.ExecuteCommandParams(
            command=chosen.command.command, arguments=chosen.command.arguments
        )
    )
    return str(result["taskId"])


def emacs_eglot_probe(emacs: str) -> subprocess.CompletedProcess[str]:
    """`(require 'eglot)` in a bare Emacs with Debian's elpa folders on the load-path."""
    return subprocess.run(
        [
            emacs,
            "--batch",
            "-Q",
            "--eval",
            f'(progn (dolist (d (and (file-directory-p "{DEBIAN_ELPA}")'
            f' (directory-files "{DEBIAN_ELPA}" t "^[a-z]")))'
            " (add-to-list 'load-path d)) (require 'eglot))",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.fixture(scope="session")
def emacs_with_eglot() -> str:
    """The path of an Emacs that loads eglot, installing emacs-nox and elpa-eglot if needed."""
    emacs = shutil.which("emacs")
    if emacs is None or emacs_eglot_probe(emacs).returncode != 0:
        install_debian_packages(EMACS_PACKAGES)
        emacs = shutil.which("emacs")
    assert emacs is not None, f"{EMACS_PACKAGES} installed but no emacs on PATH"
    probe = emacs_eglot_probe(emacs)
    assert probe.returncode == 0, f"emacs cannot load eglot:\n{probe.stderr[-2000:]}"
    return emacs


@pytest.fixture(scope="session")
def chromium() -> str:
    """The path of Debian's headless-capable Chromium, installing the package if needed."""
    found = shutil.which("chromium")
    if found is None:
        install_debian_packages(["chromium"])
        found = shutil.which("chromium")
    assert found is not None, "the chromium package is installed but no chromium is on PATH"
    return found


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    return copy_sample(tmp_path)


@pytest_lsp.fixture(
    config=ClientServerConfig(server_command=SERVER_COMMAND, client_factory=make_editor_client),
    params=CLIENTS,
)
async def lsp(
    request: pytest.FixtureRequest, lsp_client: LanguageClient, workspace: Path
) -> AsyncIterator[None]:
    root_uri = uris.from_fs_path(str(workspace))
    await lsp_client.initialize_session(
        types.InitializeParams(
            capabilities=client_capabilities(request.param),
            root_uri=root_uri,
            workspace_folders=[types.WorkspaceFolder(uri=root_uri, name="inventory")],
            initialization_options={"delegation": {"agents": 2, "checkDebounceMs": 50}},
        )
    )
    yield
    await lsp_client.shutdown_session()
