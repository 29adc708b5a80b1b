"""A delegation from the editor's code action, through the real language server, to vLLM.

The editor (pytest-lsp's client with the e2e editor behaviour) asks for code actions on a
function, runs "Delegate: document this module", and the task must end in an honest state:
verified with the edit in the editor's buffer, or failed/escalated/no-change with a reason
and the buffer as it was.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_lsp
from lsprotocol import types
from pygls import uris
from pytest_lsp import ClientServerConfig, LanguageClient, client_capabilities

from delegation_machine.engine.protocol import TaskState
from tests.e2e.conftest import make_editor_client, run_code_action
from tests.model.conftest import ServedModel

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

TARGET = "inventory/money.py"
SIGNATURE = 'def format_money(amount: Decimal, currency: str = "EUR") -> str:'
# Every state a task can end in (or wait in for a person): not queued, waiting, running, checking.
TERMINAL = {s.value for s in TaskState} - {"queued", "waiting", "running", "checking"}


@pytest_lsp.fixture(
    config=ClientServerConfig(
        server_command=[sys.executable, "-m", "delegation_machine.server", "serve"],
        client_factory=make_editor_client,
    ),
)
async def real_model_lsp(
    lsp_client: LanguageClient, workspace: Path, live_vllm: ServedModel
) -> AsyncIterator[None]:
    root_uri = uris.from_fs_path(str(workspace))
    await lsp_client.initialize_session(
        types.InitializeParams(
            capabilities=client_capabilities("visual-studio-code"),
            root_uri=root_uri,
            workspace_folders=[types.WorkspaceFolder(uri=root_uri, name="inventory")],
            initialization_options={
                "delegation": {"agents": 2, "inference": live_vllm.inference_settings()}
            },
        )
    )
    yield
    await lsp_client.shutdown_session()


async def test_a_code_action_delegation_reaches_vllm_and_ends_honestly(
    real_model_lsp: LanguageClient, workspace: Path
) -> None:
    client, editor = real_model_lsp, real_model_lsp.editor
    editor.answer_message_request = "Abandon"  # an escalation is answered as a user would
    uri = editor.open(workspace / TARGET)
    original = editor.text(uri)
    line = original.splitlines().index(SIGNATURE)
    task_id = await run_code_action(client, uri, line, "Delegate: document this module")
    final = await editor.wait_until(
        lambda: editor.task_state(task_id) in TERMINAL and editor.task_state(task_id),
        timeout=400,
    )
    updates = [u for u in editor.task_updates if u["taskId"] == task_id]
    said = [(u["state"], u["message"], u["tokens"]) for u in updates]
    status = await client.workspace_execute_command_async(
        types.ExecuteCommandParams(command="delegation.status", arguments=[{}])
    )
    asked = [t for t in status["tokens"]["tasks"] if t["task_id"].startswith(task_id)]
    assert sum(t["prompt_tokens"] for t in asked) > 0, (said, status["tokens"])  # vLLM answered
    if final == "verified":
        assert editor.text(uri) != original  # the edit landed in the editor's buffer
        assert SIGNATURE in editor.text(uri)
    else:
        assert updates[-1]["message"], said  # the editor is told why
        await editor.wait_until(lambda: editor.text(uri) == original)  # nothing left behind
