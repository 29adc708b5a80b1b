"""`delegation-machine acp` attached to the `serve` hosting its workspace: one shared state.

A real `delegation-machine serve` runs over stdio on a scratch copy of samples/inventory,
driven by a byte-level LSP client; then the real `delegation-machine acp`, started in that
folder and driven by the ACP SDK's client, attaches to it through the workspace's socket
instead of opening the workspace itself (which the owner lock would refuse). A `fix` of
inventory/storage.py prompted over ACP streams its plan and tool call and asks permission,
while the LSP client is told about the same task; after allow the fix is kept. A session on
another folder is refused naming the served one, and closing the ACP connection leaves
`serve` answering.
"""

from __future__ import annotations

import asyncio
import os
import socket
import stat
import tempfile
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from acp import RequestError, resource_link_block, spawn_agent_process, text_block
from acp.client.connection import ClientSideConnection

from delegation_machine.engine.swarm import Swarm
from delegation_machine.server.acp.attach import AcpListener, connect, socket_path
from tests.acp.acp_client import AGENT, RecordingClient
from tests.server.raw_lsp import RawServer, notification

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]
TARGET = "inventory/storage.py"  # the fix removes `import sys` and makes yaml.load safe
TASK_UPDATED = "delegation/taskUpdated"
STATUS = {"command": "delegation.status", "arguments": [{}]}
WORKSPACE_UNAVAILABLE = -32010


@pytest.fixture
def runtime_dir(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A private XDG_RUNTIME_DIR for this test and the processes it starts, short (a socket
    path has at most 107 bytes)."""
    with tempfile.TemporaryDirectory(prefix="dm-") as folder:
        monkeypatch.setenv("XDG_RUNTIME_DIR", folder)
        yield Path(folder)


def task_updates(server: RawServer) -> list[dict[str, Any]]:
    return [m["params"] for m in server.notifications(TASK_UPDATED)]


async def start_serving(workspace: Path) -> RawServer:
    """The real `serve` on `workspace`, its swarm running (so its ACP socket listens)."""
    server = RawServer(workspace)
    server.initialize(initializationOptions={"delegation": {"agents": 1}})
    status = await asyncio.to_thread(server.call, "workspace/executeCommand", STATUS, timeout=120)
    assert status["result"]["workspace"] == str(workspace.resolve()), server.stderr_text[-3000:]
    return server


@asynccontextmanager
async def attached_agent(
    client: RecordingClient, root: Path, log: Path
) -> AsyncIterator[tuple[ClientSideConnection, asyncio.subprocess.Process]]:
    """The real `delegation-machine acp`, started in `root` as an editor starts it."""
    with log.open("wb") as stderr:
        async with spawn_agent_process(
            client,
            str(AGENT),
            "acp",
            env=dict(os.environ),
            cwd=str(root),
            transport_kwargs={"stderr": stderr.fileno(), "shutdown_timeout": 60.0},
        ) as (conn, process):
            await asyncio.wait_for(
                conn.initialize(protocol_version=1, client_capabilities=client.capabilities), 60
            )
            yield conn, process


async def prompt_fix(conn: ClientSideConnection, root: Path, target: Path, log: Path) -> str:
    """A `fix` of `target` in a new session on `root`; the session's id."""
    session = await asyncio.wait_for(conn.new_session(cwd=str(root)), 60)
    link = resource_link_block(name=target.name, uri=target.as_uri())
    response = await asyncio.wait_for(
        conn.prompt(session_id=session.session_id, prompt=[text_block("fix"), link]), 150
    )
    assert response.stop_reason == "end_turn", log.read_text()[-3000:]
    return session.session_id


async def test_acp_attaches_to_serve_and_both_clients_share_one_swarm(
    workspace: Path, tmp_path: Path, runtime_dir: Path
) -> None:
    root = workspace.resolve()
    target = root / TARGET
    before = target.read_text()
    sock = socket_path(root)
    assert sock.parent == runtime_dir
    server = await start_serving(workspace)
    try:
        assert stat.S_IMODE(sock.stat().st_mode) == 0o600  # listening once the swarm runs

        client = RecordingClient(answer="allow-once")
        seen_by_lsp_when_asked: list[list[dict[str, Any]]] = []
        disk_when_asked: list[str] = []
        client.on_permission.append(lambda: seen_by_lsp_when_asked.append(task_updates(server)))
        client.on_permission.append(lambda: disk_when_asked.append(target.read_text()))
        log = tmp_path / "acp.log"
        async with attached_agent(client, root, log) as (conn, process):
            # The workspace is owned by `serve`: only an attached agent gets a session.
            await prompt_fix(conn, root, target, log)

            other = tmp_path / "elsewhere"
            other.mkdir()
            with pytest.raises(RequestError) as refused:
                await asyncio.wait_for(conn.new_session(cwd=str(other)), 60)
            assert refused.value.code == WORKSPACE_UNAVAILABLE
            assert str(root) in str(refused.value) and str(other) in str(refused.value)
        assert process.returncode is not None

        # (a) the ACP side saw the plan and the task's tool call, and was asked permission.
        assert client.of_kind("plan")
        calls = client.of_kind("tool_call")
        assert len(calls) == 1 and [loc.path for loc in calls[0].locations] == [str(target)]
        task_id = calls[0].tool_call_id
        assert [asked.tool_call_id for asked, _ in client.permissions] == [task_id]
        assert disk_when_asked == [before]  # nothing kept before the answer

        # (b) the LSP client knows the same task: `serve`'s status lists it (its board is the
        # one the ACP turn ran on), and it was told of the task's delegation, verified, before
        # the ACP client was asked.
        assert server.process.poll() is None  # the ACP connection closed; `serve` runs on
        status = await asyncio.to_thread(
            server.call, "workspace/executeCommand", STATUS, timeout=60
        )
        tasks = {t["task_id"]: t for t in status["result"]["tasks"]}
        assert task_id in tasks, status
        plan_id = tasks[task_id]["plan_id"]
        assert [u["state"] for u in seen_by_lsp_when_asked[0] if u["taskId"] == plan_id][-1] == (
            "verified"
        ), (task_id, seen_by_lsp_when_asked)
        # (c) after allow the change is kept: the LSP client is told it was accepted, the
        # disk has the fix.
        states = [u["state"] for u in task_updates(server) if u["taskId"] == plan_id]
        assert states[-1] == "accepted", states
        plans = {p["taskId"]: p for p in status["result"]["plans"]}
        assert plans[plan_id]["state"] == "accepted", plans[plan_id]
        fixed = target.read_text()
        assert "yaml.safe_load" in fixed and "yaml.load(" not in fixed
        assert "import sys\n" in before and "import sys\n" not in fixed
        assert server.shutdown() == 0
        assert not sock.exists()  # removed on shutdown
    finally:
        server.close()


async def test_a_file_open_in_the_lsp_editor_stays_the_editors_through_an_acp_turn(
    workspace: Path, tmp_path: Path, runtime_dir: Path
) -> None:
    """The ACP session neither takes over nor closes the editor's document: after the kept
    fix the editor goes on typing in it (before, the session's release closed it in the
    state, and the editor's next didChange was refused as "not open")."""
    root = workspace.resolve()
    target = root / TARGET
    before = target.read_text()
    uri = target.as_uri()
    server = await start_serving(workspace)
    try:
        opened = {"uri": uri, "languageId": "python", "version": 1, "text": before}
        server.send(notification("textDocument/didOpen", {"textDocument": opened}))
        client = RecordingClient(answer="allow-once")
        log = tmp_path / "acp.log"
        async with attached_agent(client, root, log) as (conn, _):
            await prompt_fix(conn, root, target, log)
        assert len(client.permissions) == 1
        messages = "".join(u.content.text for u in client.of_kind("agent_message_chunk"))
        assert f"Kept the changes to {TARGET}" in messages
        assert target.read_text() == before  # the editor's buffer has it; the editor saves
        typed = {"textDocument": {"uri": uri, "version": 2}, "contentChanges": [{"text": "#\n"}]}
        server.send(notification("textDocument/didChange", typed))
        status = await asyncio.to_thread(
            server.call, "workspace/executeCommand", STATUS, timeout=60
        )
        assert [p["state"] for p in status["result"]["plans"]] == ["accepted"], status
        warnings = [m["params"]["message"] for m in server.notifications("window/showMessage")]
        assert warnings == [], warnings
        assert server.shutdown() == 0
    finally:
        server.close()


def test_the_socket_path_is_short_and_one_per_workspace(runtime_dir: Path) -> None:
    deep = Path("/") / "/".join(["a-rather-long-folder-name"] * 12)
    path = socket_path(deep)
    assert path.parent == runtime_dir
    assert len(os.fsencode(path)) < 108  # sun_path, with its terminating NUL
    assert socket_path(deep) == path and socket_path(deep.parent) != path


async def test_a_stale_socket_is_not_attached_to_and_is_replaced_by_the_listener(
    workspace: Path, runtime_dir: Path
) -> None:
    path = socket_path(workspace.resolve())
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(path))  # a `serve` that died: the file stays, nobody listens
    stale.close()
    assert await connect(path) is None  # so `acp` serves locally, as before
    listener = AcpListener(Swarm(workspace))  # not started: only its root is used here
    await listener.start()
    try:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        connection = await connect(path)
        assert connection is not None
        connection[1].close()
    finally:
        await listener.close()
    assert not path.exists()
    assert list(runtime_dir.iterdir()) == []  # the staging folder is gone too
