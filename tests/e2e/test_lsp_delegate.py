"""End to end through a real server subprocess: open -> diagnostics -> code action ->
delegate -> workspace/applyEdit -> verified -> refreshed diagnostics, for several clients."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from lsprotocol import types
from pygls import uris
from pygls.exceptions import JsonRpcException

from tests.e2e.conftest import EditorState


def find_seeded_file(workspace: Path, needle: str) -> Path:
    for path in sorted(workspace.rglob("*.py")):
        if needle in path.read_text(encoding="utf-8") and "tests" not in path.parts:
            return path
    raise AssertionError(f"the sample has no file containing {needle!r}")


def yaml_findings(editor: EditorState, uri: str) -> list[types.Diagnostic]:
    return [
        d
        for d in editor.diagnostics(uri)
        if str(d.code).startswith("semgrep:") and "yaml" in str(d.code)
    ]


async def test_delegate_fix_from_a_code_action_lands_live_and_verified(
    lsp, workspace: Path
) -> None:
    client, editor = lsp, lsp.editor
    path = find_seeded_file(workspace, "yaml.load(")
    uri = editor.open(path)

    findings = await editor.wait_until(lambda: yaml_findings(editor, uri))
    diagnostic = findings[0]
    assert diagnostic.source == "delegation-machine"

    actions = await client.text_document_code_action_async(
        types.CodeActionParams(
            text_document=types.TextDocumentIdentifier(uri=uri),
            range=diagnostic.range,
            context=types.CodeActionContext(diagnostics=[diagnostic]),
        )
    )
    assert actions, "no code actions offered"
    assert all(a.title.startswith("Delegate: ") for a in actions)
    quickfix = next(a for a in actions if a.kind == "quickfix.delegate")
    assert any(a.kind == "refactor.delegate" for a in actions)

    result = await client.workspace_execute_command_async(
        types.ExecuteCommandParams(
            command=quickfix.command.command, arguments=quickfix.command.arguments
        )
    )
    task_id = result["taskId"]

    final = await editor.wait_until(
        lambda: (
            editor.task_state(task_id) in ("verified", "failed", "escalated", "cancelled")
            and editor.task_state(task_id)
        )
    )
    assert final == "verified", editor.task_updates
    assert editor.applied_edits, "the edit never reached the editor through applyEdit"
    assert "yaml.safe_load(" in editor.text(uri)
    await editor.wait_until(lambda: not yaml_findings(editor, uri))

    window = client.capabilities.window if client.capabilities else None
    if window is not None and window.work_done_progress:  # $/progress for this request
        kinds = [
            [type(v).__name__ for v in reports] for reports in client.progress_reports.values()
        ]
        assert any(k and k[0] == "WorkDoneProgressBegin" for k in kinds), kinds
        await editor.wait_until(
            lambda: any(
                r and type(r[-1]).__name__ == "WorkDoneProgressEnd"
                for r in client.progress_reports.values()
            )
        )
    states = [u["state"] for u in editor.task_updates if u["taskId"] == task_id]
    assert states[0] in ("queued", "waiting", "running")
    ledger = sqlite3.connect(workspace / ".delegation" / "ledger.sqlite3")
    kinds = {
        row[0]
        for row in ledger.execute("SELECT kind FROM events WHERE task_id LIKE ?", (f"{task_id}%",))
    }
    assert {"plan.submitted", "agent.result", "task.checked", "plan.finished"} <= kinds


async def test_status_reports_tasks_and_agents(lsp, workspace: Path) -> None:
    client = lsp
    status = await client.workspace_execute_command_async(
        types.ExecuteCommandParams(command="delegation.status", arguments=[{}])
    )
    assert status["workspace"] == str(workspace.resolve())
    assert "dispatcher" in status and "workers" in status["dispatcher"]


async def test_bad_requests_get_clear_errors_and_the_server_keeps_serving(
    lsp, workspace: Path
) -> None:
    client = lsp
    outside = uris.from_fs_path(str(workspace.parent / "elsewhere.py"))
    binary = workspace / "logo.bin"
    binary.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\xff\xfe")
    cases = [
        ("delegation.nonsense", [{}], "not defined"),
        ("delegation.delegate", [{"instruction": 42}], "$.instruction"),
        ("delegation.delegate", [], "exactly one object argument"),
        ("delegation.delegate", [{"instruction": "fix", "uri": outside}], "outside"),
        (
            "delegation.delegate",
            [{"instruction": "fix", "uri": uris.from_fs_path(str(binary))}],
            "binary",
        ),
        ("delegation.cancel", [{"taskId": "t-missing"}], "no task"),
        ("delegation.delegate", [{"instruction": "make it faster please"}], "fix"),
    ]
    for command, arguments, expected in cases:
        with pytest.raises(JsonRpcException) as error:
            await client.workspace_execute_command_async(
                types.ExecuteCommandParams(command=command, arguments=arguments)
            )
        assert expected in str(error.value), (command, str(error.value))
    shown = " ".join(m.message for m in client.messages)
    assert "outside" in shown
    status = await client.workspace_execute_command_async(
        types.ExecuteCommandParams(command="delegation.status", arguments=[{}])
    )
    assert status["workspace"] == str(workspace.resolve())
