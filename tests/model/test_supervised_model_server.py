"""The editor server supervises vLLM (`[model_server] supervise = true`); it is killed mid-task.

The session's own server is stopped first (one vLLM at a time on this machine). The language
server starts vLLM as its child and says when it answers; a delegation starts, and while vLLM
is generating the test kills its whole process group with SIGKILL. The task must end with the
reason (the ledger records the model failure), the file as it was; the supervisor restarts
vLLM and the next delegation reaches the model again. Shutting the language server down
stops its vLLM.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sqlite3
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_lsp
from lsprotocol import types
from pygls import uris
from pytest_lsp import ClientServerConfig, LanguageClient, client_capabilities

from delegation_machine.engine.inference.model_server import free_port
from delegation_machine.engine.protocol import TaskState
from tests.e2e.conftest import delegate_instruction, make_editor_client
from tests.model.conftest import MAX_MODEL_LEN, ServedModel

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

TARGET = "inventory/money.py"
# Every state a task can end in (or wait in for a person): not queued, waiting, running, checking.
TERMINAL = {s.value for s in TaskState} - {"queued", "waiting", "running", "checking"}
PORT = free_port()


def vllm_processes(port: int) -> list[int]:
    """Process ids of the vLLM API server listening on `port` (from /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"vllm.entrypoints.openai.api_server" in argv and str(port).encode() in argv:
            found.append(int(entry.name))
    return found


async def requests_running(base_url: str) -> float:
    """vLLM's own gauge of requests being generated (its /metrics)."""
    root = base_url.removesuffix("/v1")

    def read() -> float:
        import urllib.request

        with urllib.request.urlopen(f"{root}/metrics", timeout=5) as response:
            text = response.read().decode()
        values = re.findall(r"^vllm:num_requests_running\{[^}]*\} ([0-9.]+)$", text, re.M)
        return sum(float(v) for v in values)

    return await asyncio.to_thread(read)


@pytest.fixture
def no_session_server(vllm: ServedModel) -> None:
    vllm.stop()  # live_vllm starts it again for any test that runs after this one


@pytest_lsp.fixture(
    config=ClientServerConfig(
        server_command=[sys.executable, "-m", "delegation_machine.server", "serve"],
        client_factory=make_editor_client,
    ),
)
async def supervising_lsp(
    lsp_client: LanguageClient, workspace: Path, no_session_server: None
) -> AsyncIterator[None]:
    root_uri = uris.from_fs_path(str(workspace))
    base_url = f"http://127.0.0.1:{PORT}/v1"
    delegation = {
        "agents": 2,
        "modelServer": {"supervise": True, "port": PORT, "maxModelLen": MAX_MODEL_LEN},
        "inference": {
            "provider": "openai",
            "baseUrl": base_url,
            "model": "SmolLM2-135M-Instruct",
            "blockSize": 32,
            "maxOutputTokens": 200,
            "maxTurns": 4,
            "timeoutS": 120,
            "maxRetries": 1,
            "backoffS": 0.2,
        },
    }
    await lsp_client.initialize_session(
        types.InitializeParams(
            capabilities=client_capabilities("visual-studio-code"),
            root_uri=root_uri,
            workspace_folders=[types.WorkspaceFolder(uri=root_uri, name="inventory")],
            initialization_options={"delegation": delegation},
        )
    )
    yield
    await lsp_client.shutdown_session()


def said(client: LanguageClient, text: str) -> list[str]:
    return [m.message for m in client.messages if text in m.message]


async def test_vllm_killed_mid_task_fails_the_task_with_the_reason_and_is_restarted(
    supervising_lsp: LanguageClient, workspace: Path
) -> None:
    client, editor = supervising_lsp, supervising_lsp.editor
    editor.answer_message_request = "Abandon"
    base_url = f"http://127.0.0.1:{PORT}/v1"
    await editor.wait_until(lambda: said(client, f"answers at {base_url}"), timeout=300)
    uri = editor.open(workspace / TARGET)
    original = editor.text(uri)

    task_id = await delegate_instruction(client, uri, "add a docstring to format_money")
    while await requests_running(base_url) < 1:  # vLLM is generating for the task
        assert editor.task_state(task_id) not in TERMINAL, editor.task_updates
        await asyncio.sleep(0.05)
    pids = vllm_processes(PORT)
    assert len(pids) == 1, pids
    os.killpg(pids[0], signal.SIGKILL)  # the API server and its engine core, at once

    final = await editor.wait_until(
        lambda: editor.task_state(task_id) in TERMINAL and editor.task_state(task_id),
        timeout=300,
    )
    updates = [u for u in editor.task_updates if u["taskId"] == task_id]
    if final != "verified":  # the supervisor may have vLLM back before a fresh agent tries
        assert updates[-1]["message"], updates
        await editor.wait_until(lambda: editor.text(uri) == original)  # nothing lost
    ledger = workspace / ".delegation" / "ledger.sqlite3"
    with sqlite3.connect(ledger) as db:
        failures = db.execute(
            "SELECT json_extract(payload, '$.reason') FROM events"
            " WHERE kind = 'model.failed' AND task_id LIKE ?",
            (f"{task_id}%",),
        ).fetchall()
    assert failures, "the killed server's failure is not in the ledger"
    assert any(base_url in str(message) for (message,) in failures), failures

    # The supervisor saw the crash and started vLLM again; the next request works.
    await editor.wait_until(lambda: said(client, "exited"), timeout=60)
    await editor.wait_until(lambda: len(said(client, f"answers at {base_url}")) >= 2, timeout=300)
    assert len(vllm_processes(PORT)) == 1
    second = await delegate_instruction(client, uri, "add a docstring to format_money")
    await editor.wait_until(
        lambda: editor.task_state(second) in TERMINAL and editor.task_state(second),
        timeout=300,
    )
    status = await client.workspace_execute_command_async(
        types.ExecuteCommandParams(command="delegation.status", arguments=[{}])
    )
    asked = [t for t in status["tokens"]["tasks"] if t["task_id"].startswith(second)]
    assert sum(t["prompt_tokens"] for t in asked) > 0, status["tokens"]  # the restarted vLLM
