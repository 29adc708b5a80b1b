"""Model failures seen from the editor: a real server subprocess, a pytest-lsp client, and the
scripted OpenAI-compatible server misbehaving on purpose.

The task ends `failed` with the reason on the task itself (its `delegation/taskUpdated`
message, the progress end, the status' plan), the ledger records a model.failed event, the
buffer is untouched; a transient fault (the server killed mid-reply) is asked again and the
delegation still lands. The prompt that cannot fit the server's window is never sent.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from lsprotocol import types
from pytest_lsp import LanguageClient

from delegation_machine.engine.inference.scripted import ScriptedServer, ScriptedTurn
from tests.e2e.conftest import delegate_instruction
from tests.e2e.test_lsp_model_delegate import DOCSTRING, GOOD_TURNS, SIGNATURE, TARGET, model_lsp

__all__ = ["model_lsp"]  # the editor fixture, with this module's model server

FINAL = ("verified", "failed", "escalated", "cancelled")


@pytest.fixture
def window() -> int | None:
    return None


@pytest.fixture
def model_server(turns: list[ScriptedTurn], window: int | None) -> Iterator[ScriptedServer]:
    server = ScriptedServer(turns, max_model_len=window).start()
    yield server
    server.stop()


def model_failures(workspace: Path) -> list[str]:
    with sqlite3.connect(workspace / ".delegation" / "ledger.sqlite3") as db:
        rows = db.execute(
            "SELECT json_extract(payload, '$.reason') FROM events WHERE kind = 'model.failed'"
        ).fetchall()
    return [str(r[0]) for r in rows]


@pytest.mark.parametrize(
    ("turns", "window", "needles"),
    [
        pytest.param(
            [ScriptedTurn(status=401, error="invalid api key")],
            None,
            ("HTTP 401", "api_key_env"),
            id="401",
        ),
        pytest.param(
            [ScriptedTurn(content='{"tool": "finish"', chunk_chars=4, fault="malformed")],
            None,
            ("not JSON", "OpenAI-compatible"),
            id="malformed-stream",
        ),
        pytest.param(
            [ScriptedTurn(content="never")],
            400,
            ("does not fit the model's context window of 400 tokens", "Nothing was sent"),
            id="context-overflow",
        ),
    ],
)
async def test_a_model_failure_is_shown_on_the_task(
    model_lsp: LanguageClient,
    workspace: Path,
    model_server: ScriptedServer,
    needles: tuple[str, ...],
    window: int | None,
) -> None:
    client, editor = model_lsp, model_lsp.editor
    uri = editor.open(workspace / TARGET)
    original = editor.text(uri)
    task_id = await delegate_instruction(client, uri, "document format_money")
    final = await editor.wait_until(
        lambda: editor.task_state(task_id) in FINAL and editor.task_state(task_id), timeout=300
    )
    assert final == "failed", editor.task_updates
    last = [u for u in editor.task_updates if u["taskId"] == task_id][-1]
    for needle in needles:
        assert needle in last["message"], last["message"]
    status = await client.workspace_execute_command_async(
        types.ExecuteCommandParams(command="delegation.status", arguments=[{}])
    )
    (plan,) = [p for p in status["plans"] if p["taskId"] == task_id]
    assert plan["state"] == "failed" and needles[0] in plan["message"]
    ends = [
        report.message
        for reports in client.progress_reports.values()
        for report in reports
        if isinstance(report, types.WorkDoneProgressEnd)
    ]
    assert any(m and m.startswith("failed:") and needles[0] in m for m in ends), ends
    assert editor.text(uri) == original
    (reason,) = model_failures(workspace)
    assert needles[0] in reason
    if window is not None:
        assert model_server.requests == []


@pytest.mark.parametrize(
    "turns",
    [
        [
            ScriptedTurn(content="x" * 60, chunk_chars=4, fault="die", hold_after_chunks=2),
            *GOOD_TURNS,
        ]
    ],
)
async def test_a_server_killed_mid_reply_is_asked_again_and_the_edit_lands(
    model_lsp: LanguageClient, workspace: Path, model_server: ScriptedServer
) -> None:
    client, editor = model_lsp, model_lsp.editor
    uri = editor.open(workspace / TARGET)
    task_id = await delegate_instruction(client, uri, "document format_money")
    final = await editor.wait_until(
        lambda: editor.task_state(task_id) in FINAL and editor.task_state(task_id), timeout=300
    )
    assert final == "verified", editor.task_updates
    assert SIGNATURE + DOCSTRING in editor.text(uri)
    assert len(model_server.requests) == 1 + len(GOOD_TURNS)  # the broken reply, asked again
    assert model_failures(workspace) == []
