"""Diagnostics are published only once the client holds the text they were computed on,
and are placed on the client's buffer (decision 007).

The server session is the real `DelegationServer`; the editor is the in-process one of
test_edit_bridge.py (pygls's own TextDocument, version-checked applyEdit, didChange echoes).
Only the outgoing publishDiagnostics is captured instead of written to a stream.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st
from lsprotocol import types

from delegation_machine.engine.notices import DiagnosticsNotice
from delegation_machine.engine.protocol import Finding, Point, Span, TextEdit
from delegation_machine.engine.state import WorkspaceState
from delegation_machine.server import convert
from delegation_machine.server.server import DelegationServer

from .test_edit_bridge import PATH, Editor, agent_edit, bridged, make

TEXT = "import os\nx = eval(data)\n"
EVAL = Finding(PATH, Span(Point(1, 4), Point(1, 14)), "eval of input", "semgrep:dm-eval")


class CapturingServer(DelegationServer):
    """The session with its transport replaced by a list of what it would publish."""

    def __init__(self, root: Path) -> None:
        super().__init__()
        self.root = root
        self.published: list[types.PublishDiagnosticsParams] = []

    @property
    def position_encoding(self) -> str:
        return "utf-16"

    def uri_for(self, rel: str) -> str:
        return (self.root / rel).as_uri()

    def text_document_publish_diagnostics(self, params: types.PublishDiagnosticsParams) -> None:
        self.published.append(params)


def flagged_text(editor_text: str, diagnostic: types.Diagnostic) -> str:
    line = editor_text.splitlines()[diagnostic.range.start.line]
    return line[diagnostic.range.start.character : diagnostic.range.end.character]


async def test_findings_on_an_agent_edit_wait_for_the_edit_to_reach_the_client(
    tmp_path: Path,
) -> None:
    state, editor, bridge = make(tmp_path, TEXT)
    server = CapturingServer(tmp_path)
    server.bridge = bridge
    editor.hold = asyncio.Event()  # the client is slow to apply what it is sent
    agent_edit(state, "t1", [TextEdit(0, 0, "# one\n# two\n")])
    while editor.received == 0:
        await asyncio.sleep(0)
    checked = state.read(PATH)[0]
    moved = Finding(PATH, Span(Point(3, 4), Point(3, 14)), EVAL.message, EVAL.code)
    server.on_notice(DiagnosticsNotice(PATH, "semgrep", (moved,), checked))
    assert server.published == []  # the edit the finding refers to is still on its way
    editor.hold.set()
    await bridge.wait_idle()
    (published,) = server.published
    (diagnostic,) = published.diagnostics
    assert editor.text == checked
    assert flagged_text(editor.text, diagnostic) == "eval(data)"


async def test_findings_follow_typing_the_check_did_not_see(tmp_path: Path) -> None:
    state, editor, bridge = make(tmp_path, TEXT)
    server = CapturingServer(tmp_path)
    server.bridge = bridge
    editor.type(0, "# typed after the check started\n")  # the user is a step ahead
    server.on_notice(DiagnosticsNotice(PATH, "semgrep", (EVAL,), TEXT))
    (published,) = server.published  # nothing on its way to the client: published at once
    (diagnostic,) = published.diagnostics
    assert diagnostic.range.start.line == 2
    assert flagged_text(editor.text, diagnostic) == "eval(data)"
    assert state.read(PATH)[0] == editor.text


async def test_a_newer_notice_replaces_one_still_waiting(tmp_path: Path) -> None:
    state, editor, bridge = make(tmp_path, TEXT)
    server = CapturingServer(tmp_path)
    server.bridge = bridge
    editor.hold = asyncio.Event()
    agent_edit(state, "t1", [TextEdit(0, 0, "\n")])
    while editor.received == 0:
        await asyncio.sleep(0)
    checked = state.read(PATH)[0]
    server.on_notice(DiagnosticsNotice(PATH, "semgrep", (EVAL,), TEXT))  # stale by now
    server.on_notice(DiagnosticsNotice(PATH, "semgrep", (), checked))  # fixed meanwhile
    editor.hold.set()
    await bridge.wait_idle()
    assert [p.diagnostics for p in server.published] == [[]]


def test_a_closed_file_is_published_against_the_checked_text(tmp_path: Path) -> None:
    (tmp_path / PATH).write_text(TEXT)
    server = CapturingServer(tmp_path)
    server.bridge = bridged(
        Editor(tmp_path, "utf-16").apply_edit, WorkspaceState(tmp_path), server.uri_for, "utf-16"
    )
    server.on_notice(DiagnosticsNotice(PATH, "semgrep", (EVAL,), TEXT))
    (published,) = server.published
    (diagnostic,) = published.diagnostics
    assert flagged_text(TEXT, diagnostic) == "eval(data)"


@given(
    before=st.text(alphabet="ab\n😀é", max_size=30),
    after=st.text(alphabet="ab\n😀é", max_size=30),
    inserted=st.text(alphabet="cd\n😀", max_size=10),
    where=st.sampled_from(["before", "after"]),
)
def test_a_relocated_finding_still_covers_its_text(
    before: str, after: str, inserted: str, where: str
) -> None:
    marker = "MARK"
    checked = before + marker + after
    if where == "before":
        client = inserted + before + marker + after
    else:
        client = before + marker + after + inserted
    lines = checked[: checked.index(marker)].split("\n")
    start = Point(len(lines) - 1, len(lines[-1]))
    end = Point(start.line, start.column + len(marker))
    finding = Finding("f.py", Span(start, end), "m", "c")
    ((_, placed),) = convert.relocate_findings((finding,), checked, client)
    client_lines = client.split("\n")
    line = client_lines[placed.span.start.line]
    assert line[placed.span.start.column : placed.span.end.column] == marker
