"""A natural-language delegation through a real server subprocess and a model backend.

The backend is the scripted OpenAI-compatible HTTP server (a real local server that replays
turns), standing in for vLLM or a hosted API, which cannot run here. The flow is the editor's:
code action -> delegate -> planner template -> LLM agent with multi-turn tool calls -> edit
through workspace/applyEdit -> checks -> verified. The API key lives only in the server's
environment and must never reach the ledger.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import pytest_lsp
from lsprotocol import types
from pygls import uris
from pytest_lsp import ClientServerConfig, LanguageClient, client_capabilities

from delegation_machine.engine.inference.scripted import ScriptedServer, ScriptedTurn
from tests.e2e.conftest import make_editor_client, run_code_action

SECRET = "sk-scripted-secret-0123456789"
TARGET = "inventory/money.py"
SIGNATURE = 'def format_money(amount: Decimal, currency: str = "EUR") -> str:\n'
DOCSTRING = (
    '    """Format an amount with two decimals and thousands separators, then the currency."""\n'
)


def action(tool: str, **fields: object) -> ScriptedTurn:
    return ScriptedTurn(content=json.dumps({"tool": tool, **fields}))


GOOD_TURNS = [
    action("read_file", path=TARGET),
    action(
        "propose_edit",
        path=TARGET,
        old=SIGNATURE,
        new=SIGNATURE + DOCSTRING,
        description="document format_money",
        uses=[1],
    ),
    action("finish", summary="format_money is documented", uses=[2]),
]
HOSTILE_LINE = "    rate = eval(input())\n"
HOSTILE_ATTEMPT = [
    action(
        "propose_edit",
        path=TARGET,
        old=SIGNATURE,
        new=SIGNATURE + HOSTILE_LINE,
        description="read the rate",
    ),
    action("finish", summary="done", uses=[1]),
]


@pytest.fixture
def turns() -> list[ScriptedTurn]:
    return GOOD_TURNS


@pytest.fixture
def model_server(turns: list[ScriptedTurn]) -> Iterator[ScriptedServer]:
    server = ScriptedServer(turns).start()
    yield server
    server.stop()


@pytest_lsp.fixture(
    config=ClientServerConfig(
        server_command=[sys.executable, "-m", "delegation_machine.server", "serve"],
        client_factory=make_editor_client,
        server_env={**os.environ, "DM_TEST_API_KEY": SECRET},
    ),
)
async def model_lsp(
    lsp_client: LanguageClient, workspace: Path, model_server: ScriptedServer
) -> AsyncIterator[None]:
    root_uri = uris.from_fs_path(str(workspace))
    inference = {
        "provider": "scripted",
        "baseUrl": model_server.base_url,
        "model": "m",
        "apiKeyEnv": "DM_TEST_API_KEY",
    }
    await lsp_client.initialize_session(
        types.InitializeParams(
            capabilities=client_capabilities("visual-studio-code"),
            root_uri=root_uri,
            workspace_folders=[types.WorkspaceFolder(uri=root_uri, name="inventory")],
            initialization_options={"delegation": {"agents": 2, "inference": inference}},
        )
    )
    yield
    await lsp_client.shutdown_session()


async def test_natural_language_delegation_runs_the_llm_agent(
    model_lsp: LanguageClient, workspace: Path, model_server: ScriptedServer
) -> None:
    client, editor = model_lsp, model_lsp.editor
    uri = editor.open(workspace / TARGET)
    line = editor.text(uri).splitlines().index(SIGNATURE.rstrip("\n"))
    task_id = await run_code_action(client, uri, line, "Delegate: document this module")
    final = await editor.wait_until(
        lambda: (
            editor.task_state(task_id) in ("verified", "failed", "escalated", "cancelled")
            and editor.task_state(task_id)
        ),
        timeout=300,
    )
    assert final == "verified", editor.task_updates
    assert SIGNATURE + DOCSTRING in editor.text(uri)
    last = [u for u in editor.task_updates if u["taskId"] == task_id][-1]
    assert last["tokens"] > 0
    # "Done" is a verdict the editor sees: the docstring is there and no code changed.
    verdicts = [v._asdict() if hasattr(v, "_asdict") else dict(v) for v in last["verdicts"]]
    assert any(v["check"] == "acceptance" and v["kind"] == "passed" for v in verdicts)
    assert len(model_server.requests) == 3  # one request per scripted turn

    status = await client.workspace_execute_command_async(
        types.ExecuteCommandParams(command="delegation.status", arguments=[{}])
    )
    assert status["tokens"]["prompt_tokens"] > 0
    assert any(a["agent_id"].startswith("llm") for a in status["economy"])
    ledger = workspace / ".delegation" / "ledger.sqlite3"
    recorded = b"".join(p.read_bytes() for p in ledger.parent.glob("ledger.sqlite3*"))
    assert SECRET.encode() not in recorded
    import sqlite3

    turns = (
        sqlite3.connect(ledger)
        .execute(
            "SELECT json_extract(payload, '$.role'), json_extract(payload, '$.tool') FROM events"
            " WHERE kind = 'agent.turn' AND task_id LIKE ? ORDER BY seq",
            (f"{task_id}%",),
        )
        .fetchall()
    )
    assert turns == [
        ("assistant", "read_file"),
        ("tool", "read_file"),
        ("assistant", "propose_edit"),
        ("tool", "propose_edit"),
        ("assistant", "finish"),
    ]  # the trajectory, for time travel


@pytest.mark.parametrize("turns", [HOSTILE_ATTEMPT * 3])  # first try, targeted fix, fresh agent
async def test_a_change_that_keeps_failing_is_escalated_attributed_and_rolled_back(
    model_lsp: LanguageClient, workspace: Path, turns: list[ScriptedTurn]
) -> None:
    client, editor = model_lsp, model_lsp.editor
    editor.answer_message_request = "Show the diff"
    uri = editor.open(workspace / TARGET)
    original = editor.text(uri)
    result = await client.workspace_execute_command_async(
        types.ExecuteCommandParams(
            command="delegation.delegate",
            arguments=[{"uri": uri, "instruction": "document this module"}],
        )
    )
    task_id = result["taskId"]
    final = await editor.wait_until(
        lambda: (
            editor.task_state(task_id) in ("verified", "failed", "escalated", "cancelled")
            and editor.task_state(task_id)
        ),
        timeout=300,
    )
    assert final == "escalated", editor.task_updates
    request = (await editor.wait_until(lambda: editor.message_requests))[0]
    assert {"Retry with another agent", "Show the diff", "Abandon"} <= {
        a.title for a in request.actions or []
    }
    shown = await editor.wait_until(
        lambda: [m for m in client.messages if "dm-eval-exec-nonliteral" in m.message]
    )
    assert task_id in shown[0].message  # the user chose "Show the diff"
    await editor.wait_until(lambda: editor.text(uri) == original)  # rolled back, live

    blamed = [
        d
        for d in editor.diagnostic_history
        if isinstance(d.data, dict) and d.data.get("taskId", "").startswith(task_id)
    ]
    assert blamed and "eval" in str(blamed[0].code)
    related = blamed[0].related_information[0].message
    assert "task" in related and "agent llm" in related
    actions = await client.text_document_code_action_async(
        types.CodeActionParams(
            text_document=types.TextDocumentIdentifier(uri=uri),
            range=blamed[0].range,
            context=types.CodeActionContext(diagnostics=[blamed[0]]),
        )
    )
    by_command = {a.command.command: a for a in actions if a.command is not None}
    assert {"delegation.retry", "delegation.escalate", "delegation.showTask"} <= set(by_command)
    show = by_command["delegation.showTask"].command
    text = await client.workspace_execute_command_async(
        types.ExecuteCommandParams(command=show.command, arguments=show.arguments)
    )
    assert "dm-eval-exec-nonliteral" in text["text"]
    await editor.wait_until(
        lambda: not [d for d in editor.diagnostics(uri) if "eval" in str(d.code)]
    )  # the restored file was re-checked: the agent's finding is gone
