"""Issue 18, server side: the real server process, driven byte by byte over stdio.

One test per finding: bad frames never make the server deaf; a configuration error answers
every request and a corrected one recovers; every begun progress ends; the LSP lifecycle and
invalid-params error codes; a buffer closed without saving never reaches the disk; a huge
didOpen is refused at once with bounded memory and journal replay pushes nothing unasked;
a literal secret never reaches the log.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from tests.server.raw_lsp import RawServer, frame, notification, request

REQUEST_FAILED = -32803
PARSE_ERROR = -32700
INVALID_PARAMS = -32602
SERVER_NOT_INITIALIZED = -32002
SAMPLE = Path(__file__).resolve().parents[2] / "samples" / "inventory"
STATUS = {"command": "delegation.status", "arguments": [{}]}
FAST = {"delegation": {"agents": 2, "checkDebounceMs": 50}}
SOURCE = "def total(items):\n    return sum(items)\n"


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    root = tmp_path / "ws"
    root.mkdir()
    (root / "calc.py").write_text(SOURCE, encoding="utf-8")
    return root


@pytest.fixture
def servers() -> Any:
    started: list[RawServer] = []

    def start(root: Path, **kwargs: Any) -> RawServer:
        server = RawServer(root, **kwargs)
        started.append(server)
        return server

    yield start
    for server in started:
        server.close()


def did_open(server: RawServer, path: Path, text: str, version: int = 1) -> None:
    server.send(
        notification(
            "textDocument/didOpen",
            {
                "textDocument": {
                    "uri": path.as_uri(),
                    "languageId": "python",
                    "version": version,
                    "text": text,
                }
            },
        )
    )


def type_at_end(server: RawServer, path: Path, text: str, typed: str, version: int) -> None:
    lines = text.split("\n")
    at = {"line": len(lines) - 1, "character": len(lines[-1])}
    server.send(
        notification(
            "textDocument/didChange",
            {
                "textDocument": {"uri": path.as_uri(), "version": version},
                "contentChanges": [{"range": {"start": at, "end": at}, "text": typed}],
            },
        )
    )


def status(server: RawServer, *, timeout: float = 60) -> dict[str, Any]:
    return server.call("workspace/executeCommand", STATUS, timeout=timeout)


# --- 1. framing ---------------------------------------------------------------------------

BODY = json.dumps(request(5, "workspace/executeCommand", STATUS)).encode()
BAD_FRAMES = {
    "missing Content-Length": b"Content-Type: application/vscode-jsonrpc\r\n\r\n" + BODY,
    "non-numeric Content-Length": b"Content-Length: abc\r\n\r\n" + BODY,
    "negative Content-Length": b"Content-Length: -5\r\n\r\n" + BODY,
    "short Content-Length": b"Content-Length: %d\r\n\r\n" % (len(BODY) - 5) + BODY,
    "long Content-Length": b"Content-Length: %d\r\n\r\n" % (len(BODY) + 7) + BODY,
    "LF-only headers": b"Content-Length: %d\n\n" % len(BODY) + BODY,
}


@pytest.mark.parametrize("name", sorted(BAD_FRAMES))
def test_a_bad_frame_does_not_make_the_server_deaf(
    servers: Any, workspace: Path, name: str
) -> None:
    server = servers(workspace)
    server.initialize(initializationOptions=FAST)
    server.send_bytes(BAD_FRAMES[name])
    assert "result" in status(server)  # the next request is answered
    assert "result" in server.call("shutdown")  # shutdown included
    server.send(notification("exit"))
    assert server.wait_exit() == 0


def test_a_body_that_is_not_json_is_answered_with_a_parse_error(
    servers: Any, workspace: Path
) -> None:
    server = servers(workspace)
    server.initialize(initializationOptions=FAST)
    server.send_bytes(frame(b'{"jsonrpc": "2.0", "id": 9, "method": '))
    error = server.wait_for(lambda m: m.get("error", {}).get("code") == PARSE_ERROR)
    assert error["id"] is None
    assert "result" in status(server)


# --- 2. a configuration error at start-up -------------------------------------------------


def test_a_configuration_error_answers_every_request_and_a_fix_recovers(
    servers: Any, workspace: Path
) -> None:
    config = workspace / ".delegation" / "config.toml"
    config.parent.mkdir()
    config.write_text("agents = [unclosed\n", encoding="utf-8")
    server = servers(workspace)
    server.initialize(initializationOptions=FAST)
    shown = server.wait_for(
        lambda m: (
            m.get("method") == "window/showMessage" and "could not start" in m["params"]["message"]
        )
    )
    assert "config.toml" in shown["params"]["message"]
    for _ in range(2):  # answered, every time, with the reason
        error = status(server, timeout=30)["error"]
        assert error["code"] == REQUEST_FAILED and "config.toml" in error["message"]
    actions = server.call(
        "textDocument/codeAction",
        {
            "textDocument": {"uri": (workspace / "calc.py").as_uri()},
            "range": {"start": {"line": 0, "character": 0}, "end": {"line": 0, "character": 0}},
            "context": {"diagnostics": []},
        },
        timeout=30,
    )
    assert actions["error"]["code"] == REQUEST_FAILED
    delegated = server.call(
        "workspace/executeCommand",
        {"command": "delegation.delegate", "arguments": [{"instruction": "fix"}]},
        timeout=30,
    )
    assert delegated["error"]["code"] == REQUEST_FAILED

    config.write_text("agents = 2\n", encoding="utf-8")
    server.send(notification("textDocument/didSave", {"textDocument": {"uri": config.as_uri()}}))
    recovered = status(server)
    assert recovered["result"]["workspace"] == str(workspace.resolve())


# --- 3. progress --------------------------------------------------------------------------


FINISHED = ("verified", "failed", "cancelled", "escalated", "accepted", "rejected", "done")


def test_every_begun_progress_ends_even_when_the_task_finishes_first(
    servers: Any, tmp_path: Path
) -> None:
    """The client answers each progress-token request once no task of it is still running
    (at once when none exists yet): a server that submits before creating the token has
    its task finish before the token exists, and (before the fix) never ended it."""
    root = tmp_path / "inventory"
    shutil.copytree(SAMPLE, root, ignore=shutil.ignore_patterns(".delegation", "__pycache__"))
    server = servers(root)
    server.initialize(
        initializationOptions=FAST, capabilities={"window": {"workDoneProgress": True}}
    )
    target = next(p for p in sorted(root.rglob("*.py")) if "tests" not in p.parts)
    arguments = [{"uri": target.as_uri(), "kind": "check", "instruction": "check"}]

    def updates() -> list[dict[str, Any]]:
        return [u["params"] for u in server.notifications("delegation/taskUpdated")]

    def unfinished_plans() -> set[str]:
        states: dict[str, str] = {}
        for update in updates():
            if not update["taskId"].startswith("edit."):
                states[update["taskId"]] = update["state"]
        return {t for t, state in states.items() if state not in FINISHED}

    task_ids = []
    for n in range(4):
        msg_id = server.new_id()
        server.send(
            request(
                msg_id,
                "workspace/executeCommand",
                {"command": "delegation.delegate", "arguments": arguments},
            )
        )
        server.wait_for(
            lambda _m, n=n: len(server.requests_from_server("window/workDoneProgress/create")) > n,
            timeout=60,
        )
        create = server.requests_from_server("window/workDoneProgress/create")[n]
        server.wait_for(lambda _m: not unfinished_plans(), timeout=120)
        server.send({"jsonrpc": "2.0", "id": create["id"], "result": None})
        task_ids.append(server.wait_response(msg_id, timeout=60)["result"]["taskId"])

    for task_id in task_ids:
        server.wait_for(
            lambda _m, t=task_id: any(
                u["taskId"] == t and u["state"] in FINISHED for u in updates()
            ),
            timeout=120,
        )
    tokens = [
        r["params"]["token"] for r in server.requests_from_server("window/workDoneProgress/create")
    ]

    def kinds(token: str) -> list[str]:
        return [
            p["params"]["value"]["kind"]
            for p in server.notifications("$/progress")
            if p["params"]["token"] == token
        ]

    status(server)  # every $/progress sent so far has arrived before this answer
    for token in tokens:
        sequence = kinds(token)
        assert sequence, f"token {token} was never begun"
        assert sequence[0] == "begin" and sequence[-1] == "end", sequence
        assert sequence.count("begin") == 1 and sequence.count("end") == 1, sequence


# --- 4. lifecycle and invalid params ------------------------------------------------------


def test_requests_before_initialize_are_refused_not_queued(servers: Any, workspace: Path) -> None:
    server = servers(workspace)
    delegate = {
        "command": "delegation.delegate",
        "arguments": [
            {"uri": (workspace / "calc.py").as_uri(), "kind": "check", "instruction": "check"}
        ],
    }
    early = server.call("workspace/executeCommand", delegate, timeout=30)
    assert early["error"]["code"] == SERVER_NOT_INITIALIZED
    server.initialize(initializationOptions=FAST)
    assert status(server)["result"]["plans"] == []  # the refused delegation never ran
    ledger = workspace / ".delegation" / "ledger.sqlite3"
    assert "plan.submitted" not in _ledger_kinds(ledger)


def _ledger_kinds(ledger: Path) -> set[str]:
    with sqlite3.connect(ledger) as connection:
        return {row[0] for row in connection.execute("SELECT kind FROM events")}


def test_params_of_the_wrong_types_are_answered_with_invalid_params(
    servers: Any, workspace: Path
) -> None:
    server = servers(workspace)
    server.initialize(initializationOptions=FAST)
    code_action = server.call(
        "textDocument/codeAction",
        {"textDocument": {"uri": 42}, "range": "everywhere", "context": {}},
        timeout=30,
    )
    assert code_action["error"]["code"] == INVALID_PARAMS
    assert "textDocument/codeAction" in code_action["error"]["message"]
    command = server.call("workspace/executeCommand", {"command": 5, "arguments": "x"}, timeout=30)
    assert command["error"]["code"] == INVALID_PARAMS
    assert "result" in status(server)


# --- 5. a buffer closed without saving -----------------------------------------------------


def test_closing_without_saving_never_writes_the_discarded_text(
    servers: Any, workspace: Path
) -> None:
    path = workspace / "calc.py"
    server = servers(workspace)
    server.initialize(initializationOptions=FAST)
    did_open(server, path, SOURCE)
    type_at_end(server, path, SOURCE, "DISCARDED = 1\n", 2)
    server.send(notification("textDocument/didClose", {"textDocument": {"uri": path.as_uri()}}))
    assert "result" in status(server)
    assert server.shutdown() == 0
    assert path.read_text(encoding="utf-8") == SOURCE
    restarted = servers(workspace)  # nor on the next start, from the journal
    restarted.initialize(initializationOptions=FAST)
    assert "result" in status(restarted)
    assert restarted.shutdown() == 0
    assert path.read_text(encoding="utf-8") == SOURCE


def test_a_saved_buffer_keeps_its_text_after_closing(servers: Any, workspace: Path) -> None:
    path = workspace / "calc.py"
    server = servers(workspace)
    server.initialize(initializationOptions=FAST)
    did_open(server, path, SOURCE)
    type_at_end(server, path, SOURCE, "KEPT = 1\n", 2)
    path.write_text(SOURCE + "KEPT = 1\n", encoding="utf-8")  # the editor saves
    server.send(notification("textDocument/didSave", {"textDocument": {"uri": path.as_uri()}}))
    server.send(notification("textDocument/didClose", {"textDocument": {"uri": path.as_uri()}}))
    assert "result" in status(server)
    assert server.shutdown() == 0
    assert path.read_text(encoding="utf-8") == SOURCE + "KEPT = 1\n"


# --- 8. huge documents and journal replay -------------------------------------------------


def _peak_rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM in /proc status")


def test_a_huge_did_open_is_refused_at_once_with_bounded_memory(
    servers: Any, workspace: Path
) -> None:
    huge = workspace / "huge.py"
    server = servers(workspace)
    server.initialize(initializationOptions=FAST)
    assert "result" in status(server)
    text = "x = 1  # padding\n" * 620_000  # about 10 MB
    did_open(server, huge, text)
    shown = server.wait_for(
        lambda m: (
            m.get("method") == "window/showMessage" and "over the limit" in m["params"]["message"]
        ),
        timeout=60,
    )
    assert "huge.py" in shown["params"]["message"]
    assert "result" in status(server, timeout=60)
    assert _peak_rss_bytes(server.process.pid) < 1_000_000_000
    assert not huge.exists()


def test_journal_replay_pushes_nothing_the_user_did_not_ask_for(
    servers: Any, workspace: Path
) -> None:
    path = workspace / "calc.py"
    first = servers(workspace)
    first.initialize(initializationOptions=FAST)
    did_open(first, path, SOURCE)
    type_at_end(first, path, SOURCE, "UNSAVED = 'typed, never saved'\n", 2)
    assert "result" in status(first)
    first.close()  # killed: the editor and its unsaved buffer are gone with it
    for capabilities in ({}, {"workspace": {"applyEdit": True}}):
        server = servers(workspace)
        server.initialize(initializationOptions=FAST, capabilities=capabilities)
        did_open(server, path, SOURCE)
        assert "result" in status(server)  # the didOpen's push, if any, went out before this
        assert server.requests_from_server("workspace/applyEdit") == []
        assert server.shutdown() == 0
        assert path.read_text(encoding="utf-8") == SOURCE


# --- 12. secrets in the log ---------------------------------------------------------------


def test_a_literal_api_key_never_reaches_the_log(servers: Any, workspace: Path) -> None:
    secret = "sk-literal-0123456789abcdef"
    server = servers(workspace, args=("--log-level", "DEBUG"))
    options = {"delegation": {**FAST["delegation"], "inference": {"api_key": secret}}}
    server.initialize(initializationOptions=options)
    status(server, timeout=60)  # answered either way: refused, or started without it
    assert server.shutdown() == 0
    log = server.stderr_text
    assert "Language server initialized" in log and "[redacted]" in log
    assert secret not in log
