"""Every model failure is a clean, recorded outcome from the command line.

A real local HTTP server (the scripted OpenAI-compatible server) misbehaves on purpose:
unreachable, HTTP 401, HTTP 500, context overflow, a malformed stream, a server killed in the
middle of its reply, a timeout. Through the real `delegation-machine run` the user gets one
clear line naming what failed, where and what to do, exit code 1, no traceback; the ledger
records the failure; no edit is applied to the workspace.
"""

from __future__ import annotations

import json
import shutil
import socket
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from delegation_machine.engine.inference.scripted import ScriptedServer, ScriptedTurn

ROOT = Path(__file__).resolve().parents[2]
CLI = [sys.executable, "-m", "delegation_machine.server"]
TARGET = "inventory/money.py"


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    target = tmp_path / "inventory"
    shutil.copytree(
        ROOT / "samples" / "inventory",
        target,
        ignore=shutil.ignore_patterns(".delegation", "__pycache__"),
    )
    return target


def configure(workspace: Path, base_url: str, **extra: object) -> None:
    lines = ["[inference]", 'provider = "openai"', f'base_url = "{base_url}"', 'model = "m"']
    lines += [f"{key} = {json.dumps(value)}" for key, value in extra.items()]
    (workspace / ".delegation").mkdir(exist_ok=True)
    (workspace / ".delegation" / "config.toml").write_text("\n".join(lines) + "\n")


def run_cli(workspace: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, "run", str(workspace), *args], capture_output=True, text=True, timeout=300
    )


def ledger_events(workspace: Path, kind: str) -> list[dict[str, object]]:
    with sqlite3.connect(workspace / ".delegation" / "ledger.sqlite3") as db:
        rows = db.execute("SELECT payload FROM events WHERE kind = ?", (kind,)).fetchall()
    return [json.loads(row[0]) for row in rows]


def snapshot(workspace: Path) -> dict[str, str]:
    return {
        str(p.relative_to(workspace)): p.read_text()
        for p in sorted(workspace.rglob("*.py"))
        if ".delegation" not in p.parts
    }


def assert_clean_failure(result: subprocess.CompletedProcess[str], *needles: str) -> str:
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert "Traceback" not in output
    reasons = [line for line in output.splitlines() if line.startswith(("error:", "failed:"))]
    assert len(reasons) == 1, output
    for needle in needles:
        assert needle in reasons[0], reasons[0]
    return reasons[0]


@pytest.fixture
def free_port() -> Iterator[int]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    yield port


def test_unreachable_server_while_planning(workspace: Path, free_port: int) -> None:
    url = f"http://127.0.0.1:{free_port}/v1"
    configure(workspace, url, max_retries=1, backoff_s=0.05)
    before = snapshot(workspace)
    result = run_cli(workspace, "--task", "tidy up the error handling everywhere")
    line = assert_clean_failure(result, "not reachable", url, "Is the server running")
    assert line.startswith("error:")
    refused = ledger_events(workspace, "plan.refused")
    assert len(refused) == 1 and "not reachable" in str(refused[0]["reason"])
    assert snapshot(workspace) == before


@pytest.mark.parametrize(
    ("turns", "server_options", "settings", "needles"),
    [
        pytest.param(
            [ScriptedTurn(status=401, error="invalid api key")],
            {},
            {},
            ("HTTP 401", "api_key_env"),
            id="401",
        ),
        pytest.param(
            [ScriptedTurn(status=500, error="engine crashed")] * 2,
            {},
            {"max_retries": 1, "backoff_s": 0.05},
            ("HTTP 500", "engine crashed", "log"),
            id="500",
        ),
        pytest.param(
            [ScriptedTurn(content="never")],
            {"max_model_len": 600, "context_source": "none"},
            {},  # the window is neither reported nor configured: the server's 400 decides
            ("context window", "--max-model-len"),
            id="context-overflow",
        ),
        pytest.param(
            [ScriptedTurn(content='{"tool": "finish"', chunk_chars=4, fault="malformed")],
            {},
            {},
            ("not JSON", "OpenAI-compatible"),
            id="malformed-stream",
        ),
        pytest.param(
            [ScriptedTurn(content="x" * 80, chunk_chars=4, fault="die", hold_after_chunks=3)] * 2,
            {},
            {"max_retries": 1, "backoff_s": 0.05},
            ("broke off its reply", "see its log"),
            id="killed-mid-stream",
        ),
        pytest.param(
            [ScriptedTurn(hold="before_headers")],
            {},
            {"max_retries": 0, "timeout_s": 0.5},
            ("did not answer within 0.5 s", "inference.timeout_s"),
            id="timeout",
        ),
    ],
)
def test_agent_model_failures_fail_the_task_cleanly(
    workspace: Path,
    turns: list[ScriptedTurn],
    server_options: dict[str, object],
    settings: dict[str, object],
    needles: tuple[str, ...],
) -> None:
    with ScriptedServer(turns, **server_options) as server:  # type: ignore[arg-type]
        configure(workspace, server.base_url, **settings)
        before = snapshot(workspace)
        result = run_cli(workspace, "--file", TARGET, "--task", "add type hints")
        server.release()
    line = assert_clean_failure(result, server.base_url, *needles)
    assert line.startswith("failed:")
    failures = ledger_events(workspace, "model.failed")
    assert len(failures) == 1
    assert server.base_url in str(failures[0]["reason"])
    finished = ledger_events(workspace, "plan.finished")
    assert [f["state"] for f in finished] == ["failed"]
    assert snapshot(workspace) == before
