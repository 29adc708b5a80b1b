"""Issue 18, finding 6 in the editor: `serve` on a workspace another process owns.

The real server process, over stdio, on a workspace whose owner lock a second real process
holds (as a `run` would): the editor is told which process owns it, every request is answered
with that reason (the server neither crashes nor writes the workspace), and once the owner
exits the next request starts the swarm.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.server.raw_lsp import RawServer

REQUEST_FAILED = -32803
STATUS = {"command": "delegation.status", "arguments": [{}]}
HOLD_THE_LOCK = """
import sys
from pathlib import Path
from delegation_machine.engine.state import WorkspaceState
WorkspaceState(Path(sys.argv[1])).claim_owner("delegation-machine run ws --task fix")
print("owner", flush=True)
sys.stdin.read()
"""


@pytest.fixture
def owned_workspace(tmp_path: Path) -> Iterator[tuple[Path, subprocess.Popen[str]]]:
    root = tmp_path / "ws"
    root.mkdir()
    (root / "calc.py").write_text("def total(items):\n    return sum(items)\n")
    owner = subprocess.Popen(
        [sys.executable, "-c", HOLD_THE_LOCK, str(root)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert owner.stdout is not None and owner.stdout.readline().strip() == "owner"
    yield root, owner
    if owner.poll() is None:
        owner.kill()
        owner.wait()


def test_serve_on_a_workspace_owned_by_a_run_says_so_and_recovers_when_it_ends(
    owned_workspace: tuple[Path, subprocess.Popen[str]],
) -> None:
    root, owner = owned_workspace
    server = RawServer(root)
    try:
        server.initialize(initializationOptions={"delegation": {"agents": 1}})
        shown = server.wait_for(
            lambda m: (
                m.get("method") == "window/showMessage"
                and "could not start" in m["params"]["message"]
            )
        )
        assert f"in use by process {owner.pid}" in shown["params"]["message"]
        assert "--task fix" in shown["params"]["message"]
        assert "config.toml" not in shown["params"]["message"]  # not a configuration error
        for _ in range(2):  # every request is answered with the reason, none hangs
            error = server.call("workspace/executeCommand", STATUS, timeout=30)["error"]
            assert error["code"] == REQUEST_FAILED
            assert f"process {owner.pid}" in error["message"]
        assert owner.stdin is not None
        owner.stdin.close()  # the run ends: its lock is released
        owner.wait(timeout=30)
        recovered = server.call("workspace/executeCommand", STATUS, timeout=60)
        assert recovered["result"]["workspace"] == str(root.resolve()), recovered
    finally:
        server.close()
