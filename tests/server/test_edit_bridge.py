"""EditBridge: agent edits reach the editor as versioned applyEdits and buffers converge.

Part 1 drives the bridge with an in-process editor whose buffer is pygls's own TextDocument
(its position codec is independent of ours), applying edits version-checked the way VS Code
and Neovim do and echoing them as didChange. Part 2 starts a real pygls server subprocess
(this file run as a script: WorkspaceState + EditBridge behind didOpen/didChange) and a
pytest-lsp client with the Neovim and VS Code capability sets.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from lsprotocol import types
from pygls import uris
from pygls.lsp.server import LanguageServer
from pygls.workspace import PositionCodec, TextDocument

from delegation_machine.engine.protocol import Mutation, TextEdit
from delegation_machine.engine.state import FileRefused, WorkspaceState
from delegation_machine.server.edit_bridge import EditBridge, expressible_edits
from delegation_machine.server.positions import normalize_encoding

PATH = "doc.txt"


class Editor:
    """A client editor: a pygls TextDocument, version-checked applyEdit, didChange echoes."""

    def __init__(self, root: Path, encoding: str, refuse_all: bool = False) -> None:
        self.root = root
        self.encoding = encoding
        self.refuse_all = refuse_all
        self.bridge: EditBridge | None = None
        self.document: TextDocument | None = None
        self.hold: asyncio.Event | None = None  # set by a test to delay applying
        self.received = 0

    def uri_for(self, rel: str) -> str:
        return (self.root / rel).as_uri()

    def open(self, text: str) -> None:
        self.document = TextDocument(
            self.uri_for(PATH), text, version=1, position_codec=PositionCodec(self.encoding)
        )
        assert self.bridge is not None
        self.bridge.on_did_open(PATH, text, 1)

    @property
    def text(self) -> str:
        assert self.document is not None
        return self.document.source

    async def apply_edit(
        self, params: types.ApplyWorkspaceEditParams
    ) -> types.ApplyWorkspaceEditResult:
        self.received += 1
        if self.hold is not None:
            await self.hold.wait()
        assert self.document is not None and params.edit.document_changes is not None
        (document_edit,) = params.edit.document_changes
        assert isinstance(document_edit, types.TextDocumentEdit)
        if self.refuse_all or document_edit.text_document.version != self.document.version:
            return types.ApplyWorkspaceEditResult(applied=False, failure_reason="version moved")
        # apply back to front so each range is still valid when it is applied
        edits = sorted(
            document_edit.edits,
            key=lambda e: (e.range.start.line, e.range.start.character),
            reverse=True,
        )
        changes = [
            types.TextDocumentContentChangePartial(range=e.range, text=e.new_text) for e in edits
        ]
        self.send_changes(changes)
        return types.ApplyWorkspaceEditResult(applied=True)

    def type(self, offset: int, text: str, delete: int = 0) -> None:
        assert self.document is not None
        start = self.document.client_position_at_offset(offset)
        end = self.document.client_position_at_offset(offset + delete)
        self.send_changes(
            [types.TextDocumentContentChangePartial(range=types.Range(start, end), text=text)]
        )

    def send_changes(self, changes: Sequence[types.TextDocumentContentChangePartial]) -> None:
        assert self.document is not None and self.bridge is not None
        for change in changes:
            self.document.apply_change(change)
        self.document.version = (self.document.version or 0) + 1
        self.bridge.on_did_change(PATH, changes, self.document.version)


def bridged(send: object, state: WorkspaceState, uri_for: object, encoding: object) -> EditBridge:
    """A bridge over a bare WorkspaceState, told of its changes (the swarm's notice stream
    does that in the server)."""
    bridge = EditBridge(send, state, uri_for, encoding)  # type: ignore[arg-type]
    state.subscribe(bridge.on_text_changed)
    return bridge


def make(
    root: Path, text: str, encoding: str = "utf-16", **kwargs: bool
) -> tuple[WorkspaceState, Editor, EditBridge]:
    (root / PATH).write_text(text, encoding="utf-8", newline="")
    state = WorkspaceState(root, persist=False)
    editor = Editor(root, encoding, **kwargs)
    bridge = bridged(editor.apply_edit, state, editor.uri_for, encoding)
    editor.bridge = bridge
    editor.open(text)
    return state, editor, bridge


def agent_edit(
    state: WorkspaceState, task: str, edits: list[TextEdit], base: int | None = None
) -> None:
    _text, version = state.read(PATH)
    lease = state.lease_files([PATH], f"agent:a1/task:{task}")
    state.apply_mutation(
        Mutation(task, "a1", PATH, version if base is None else base, tuple(edits)), lease
    )
    state.release(lease)


@pytest.mark.parametrize("encoding", ["utf-16", "utf-8", "utf-32"])
async def test_agent_edit_reaches_the_editor_once(tmp_path: Path, encoding: str) -> None:
    text = "a😀b\r\n中文 e\u0301\r\nlast line 🎉\n"
    state, editor, bridge = make(tmp_path, text, encoding)
    version_before = state.read(PATH)[1]
    agent_edit(
        state,
        "t1",
        [
            TextEdit(text.index("中"), text.index("文") + 1, "漢字😀"),
            TextEdit(len(text), len(text), "tail\r\n"),
        ],
    )
    await bridge.wait_idle()
    assert editor.text == state.read(PATH)[0]
    assert "漢字😀" in editor.text and editor.text.endswith("tail\r\n")
    # the echo (didChange of our own edit) did not change the CRDT again
    assert state.read(PATH)[1] == version_before + 1
    assert bridge.statistics.echoes == 1 and bridge.statistics.applied == 1


async def test_user_typing_while_our_edit_is_in_flight(tmp_path: Path) -> None:
    text = "line one\nline two\nline three\n"
    state, editor, bridge = make(tmp_path, text)
    editor.hold = asyncio.Event()
    agent_edit(state, "t1", [TextEdit(text.index("two"), text.index("two") + 3, "2")])
    while editor.received == 0:  # the applyEdit is on its way; the user types meanwhile
        await asyncio.sleep(0)
    editor.type(len("line one"), "!")
    editor.type(text.index("two") + 4, "?")  # right after the word the agent replaces
    editor.hold.set()
    await bridge.wait_idle()
    assert editor.text == state.read(PATH)[0] == "line one!\nline 2?\nline three\n"
    assert bridge.statistics.refused >= 1  # the first edit was for an old version


async def test_open_pushes_unsaved_agent_edits(tmp_path: Path) -> None:
    root = tmp_path
    (root / PATH).write_text("x = 1\n")
    state = WorkspaceState(root, persist=False)
    agent_edit(state, "t1", [TextEdit(0, 0, "# agent\n")])  # file closed: CRDT only
    editor = Editor(root, "utf-16")
    bridge = bridged(editor.apply_edit, state, editor.uri_for, "utf-16")
    editor.bridge = bridge
    editor.open("x = 1\n")  # the editor shows the disk text
    await bridge.wait_idle()
    assert editor.text == "# agent\nx = 1\n" == state.read(PATH)[0]


async def test_reject_reaches_the_editor(tmp_path: Path) -> None:
    state, editor, bridge = make(tmp_path, "alpha\nbeta\n")
    agent_edit(state, "t1", [TextEdit(0, 0, "# one\n")])
    await bridge.wait_idle()
    editor.type(0, "U")
    state.reject_task("t1")
    await bridge.wait_idle()
    assert editor.text == state.read(PATH)[0] == "Ualpha\nbeta\n"


async def test_a_client_that_refuses_everything_is_given_up_on(tmp_path: Path) -> None:
    state, editor, bridge = make(tmp_path, "abc\n", refuse_all=True)
    agent_edit(state, "t1", [TextEdit(0, 0, "X")])
    await bridge.wait_idle()
    assert bridge.statistics.gave_up == 1
    assert editor.text == "abc\n" and state.read(PATH)[0] == "Xabc\n"


def test_edits_at_a_crlf_midpoint_are_widened_to_be_expressible() -> None:
    text = "ab\r\ncd"
    assert expressible_edits(text, [TextEdit(3, 3, "X")]) == [TextEdit(2, 4, "\rX\n")]
    assert expressible_edits(text, [TextEdit(1, 3, "")]) == [TextEdit(1, 4, "\n")]
    assert expressible_edits(text, [TextEdit(0, 1, "A"), TextEdit(1, 2, "B")]) == [
        TextEdit(0, 2, "AB")
    ]


async def test_a_refused_file_is_not_tracked(tmp_path: Path) -> None:
    (tmp_path / "big.log").write_text("x" * 100)
    state = WorkspaceState(tmp_path, persist=False, max_file_bytes=10)
    editor = Editor(tmp_path, "utf-16")
    bridge = bridged(editor.apply_edit, state, editor.uri_for, "utf-16")
    with pytest.raises(FileRefused, match="over the limit"):
        bridge.on_did_open("big.log", "x" * 100, 1)
    assert bridge.client_text("big.log") is None
    assert bridge.on_did_change("big.log", [], 2) is None
    assert not state.is_open("big.log")


async def test_full_sync_change_is_merged(tmp_path: Path) -> None:
    state, editor, bridge = make(tmp_path, "abc\n")
    assert editor.document is not None
    editor.document.version = 2
    bridge.on_did_change(PATH, [types.TextDocumentContentChangeWholeDocument(text="abcd\n")], 2)
    assert state.read(PATH)[0] == "abcd\n"


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["agent", "agent-replace", "user", "user-delete", "deliver"]),
            st.floats(0, 1),
            st.integers(1, 3),
        ),
        min_size=1,
        max_size=30,
    ),
    st.sampled_from(["utf-16", "utf-8", "utf-32"]),
)
def test_random_races_converge_without_losing_keystrokes(
    ops: list[tuple[str, float, int]], encoding: str
) -> None:
    async def scenario(folder: Path) -> None:
        state, editor, bridge = make(folder, "😀 start 中\r\nend\n", encoding)
        editor.hold = asyncio.Event()
        typed: list[str] = []
        deleted_by_user: set[str] = set()
        fresh = (chr(0x4E00 + n) for n in range(10_000))
        for step, (kind, where, n) in enumerate(ops):
            text = state.read(PATH)[0]
            if kind == "agent":
                position = int(where * len(text))
                agent_edit(state, f"t{step}", [TextEdit(position, position, "a" * n)])
            elif kind == "agent-replace":
                # an agent rewrites a span of its snapshot that holds none of the user's text
                start = int(where * len(text))
                end = min(len(text), start + n)
                while end > start and set(text[start:end]) & set(typed):
                    end -= 1
                agent_edit(state, f"t{step}", [TextEdit(start, end, "b" * n)])
            elif kind == "user-delete" and editor.text:
                offset = min(int(where * len(editor.text)), len(editor.text) - 1)
                if editor.text[offset : offset + 2] == "\r\n" or editor.text[offset] == "\n":
                    continue
                deleted_by_user.add(editor.text[offset])
                editor.type(offset, "", delete=1)
            elif kind == "user":
                chars = "".join(next(fresh) for _ in range(n))
                typed.extend(chars)
                offset = int(where * len(editor.text))
                if editor.text[offset - 1 : offset + 1] == "\r\n":
                    offset -= 1  # an editor cursor is never between CR and LF
                editor.type(offset, chars)
            else:
                editor.hold.set()
                await asyncio.sleep(0)
                editor.hold.clear()
            await asyncio.sleep(0)
        editor.hold.set()
        await bridge.wait_idle()
        final = state.read(PATH)[0]
        assert editor.text == final
        assert all(char in final for char in typed if char not in deleted_by_user)
        bridge.close()

    with tempfile.TemporaryDirectory() as folder:
        asyncio.run(scenario(Path(folder)))


# --- part 2: a real pygls server and a pytest-lsp client ---------------------------------------

AGENT_EDIT = "bridgeTest.agentEdit"
SETTLE = "bridgeTest.settle"


def build_server() -> LanguageServer:
    """A minimal pygls server: WorkspaceState + EditBridge behind the document handlers."""
    server = LanguageServer("bridge-test", "0.1")
    session: dict[str, object] = {}

    def bridge() -> EditBridge:
        found = session.get("bridge")
        if found is None:
            root = Path(uris.to_fs_path(server.workspace.root_uri) or ".")
            state = session["state"] = WorkspaceState(root, persist=False)
            found = bridged(
                server.workspace_apply_edit_async,
                state,
                lambda rel: uris.from_fs_path(str(root / rel)) or "",
                server.workspace.position_encoding,
            )
            session["bridge"] = found
        assert isinstance(found, EditBridge)
        return found

    def state() -> WorkspaceState:
        bridge()
        found = session["state"]
        assert isinstance(found, WorkspaceState)
        return found

    def rel_of(uri: str) -> str:
        return state().resolve(uris.to_fs_path(uri) or "")

    @server.feature(types.TEXT_DOCUMENT_DID_OPEN)
    def did_open(ls: LanguageServer, params: types.DidOpenTextDocumentParams) -> None:
        document = params.text_document
        bridge().on_did_open(rel_of(document.uri), document.text, document.version)

    @server.feature(types.TEXT_DOCUMENT_DID_CHANGE)
    def did_change(ls: LanguageServer, params: types.DidChangeTextDocumentParams) -> None:
        document = params.text_document
        bridge().on_did_change(rel_of(document.uri), params.content_changes, document.version)

    @server.command(AGENT_EDIT)
    def agent_edit_command(ls: LanguageServer, args: dict) -> int:  # type: ignore[type-arg]
        shared = state()
        rel = shared.resolve(args["path"])
        _, version = shared.read(rel)
        lease = shared.lease_files([rel], f"agent:a1/task:{args['task']}")
        edits = tuple(TextEdit(s, e, t) for s, e, t in args["edits"])
        shared.apply_mutation(
            Mutation(args["task"], "a1", rel, args.get("base", version), edits), lease
        )
        shared.release(lease)
        return shared.read(rel)[1]

    @server.command(SETTLE)
    async def settle(ls: LanguageServer, args: dict) -> dict:  # type: ignore[type-arg]
        await bridge().wait_idle()
        rel = state().resolve(args["path"])
        return {"text": state().read(rel)[0], "encoding": bridge().position_encoding}

    return server


class ClientEditor:
    """The pytest-lsp client's buffer: applies workspace/applyEdit like an editor does."""

    def __init__(self, client: object, uri: str, text: str, encoding: str) -> None:
        self.client = client
        self.document = TextDocument(uri, text, version=1, position_codec=PositionCodec(encoding))

    def apply(self, params: types.ApplyWorkspaceEditParams) -> types.ApplyWorkspaceEditResult:
        assert params.edit.document_changes is not None
        (document_edit,) = params.edit.document_changes
        assert isinstance(document_edit, types.TextDocumentEdit)
        if document_edit.text_document.version != self.document.version:
            return types.ApplyWorkspaceEditResult(applied=False)
        edits = sorted(
            document_edit.edits,
            key=lambda e: (e.range.start.line, e.range.start.character),
            reverse=True,
        )
        changes = [
            types.TextDocumentContentChangePartial(range=e.range, text=e.new_text) for e in edits
        ]
        self.send(changes)
        return types.ApplyWorkspaceEditResult(applied=True)

    def send(self, changes: list[types.TextDocumentContentChangePartial]) -> None:
        for change in changes:
            self.document.apply_change(change)
        self.document.version = (self.document.version or 0) + 1
        self.client.text_document_did_change(  # type: ignore[attr-defined]
            types.DidChangeTextDocumentParams(
                text_document=types.VersionedTextDocumentIdentifier(
                    uri=self.document.uri, version=self.document.version
                ),
                content_changes=changes,
            )
        )


@pytest.mark.parametrize("client_spec", ["neovim", "visual-studio-code"])
async def test_real_pygls_server_and_pytest_lsp_client_converge(
    tmp_path: Path, client_spec: str
) -> None:
    from pytest_lsp import ClientServerConfig, client_capabilities

    text = "héllo 😀\r\nsecond 中文 line\r\n"
    (tmp_path / PATH).write_text(text, encoding="utf-8", newline="")
    config = ClientServerConfig(server_command=[sys.executable, __file__])
    client = await config.start()
    try:
        capabilities = client_capabilities(client_spec)
        result = await client.initialize_session(
            types.InitializeParams(
                capabilities=capabilities, root_uri=tmp_path.as_uri(), workspace_folders=None
            )
        )
        encoding = normalize_encoding(result.capabilities.position_encoding)
        uri = (tmp_path / PATH).as_uri()
        editor = ClientEditor(client, uri, text, encoding)
        client.feature(types.WORKSPACE_APPLY_EDIT)(lambda params: editor.apply(params))
        client.text_document_did_open(
            types.DidOpenTextDocumentParams(
                types.TextDocumentItem(uri=uri, language_id="plaintext", version=1, text=text)
            )
        )
        start = text.index("中")
        await client.workspace_execute_command_async(
            types.ExecuteCommandParams(
                command=AGENT_EDIT,
                arguments=[{"path": PATH, "task": "t1", "edits": [[start, start + 2, "漢字🎉"]]}],
            )
        )
        # the user types on the first line, against the buffer the client has
        position = editor.document.client_position_at_offset(len("héllo 😀"))
        editor.send(
            [
                types.TextDocumentContentChangePartial(
                    range=types.Range(position, position), text="!"
                )
            ]
        )
        settled = await client.workspace_execute_command_async(
            types.ExecuteCommandParams(command=SETTLE, arguments=[{"path": PATH}])
        )
        expected = "héllo 😀!\r\nsecond 漢字🎉 line\r\n"
        assert settled["text"] == expected
        assert editor.document.source == expected
        assert settled["encoding"] == encoding
    finally:
        await client.shutdown_session()
        await client.stop()


if __name__ == "__main__":
    build_server().start_io()
