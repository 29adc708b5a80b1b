"""`delegation-machine acp` against a second implementation of the protocol: the TypeScript
ACP SDK's client (`@zed-industries/agent-client-protocol`, pinned in package.json) under node.

The SDK is installed with npm into a cache folder once (`DM_ACP_NODE_CACHE`, default
~/.cache/delegation-machine/acp-typescript-client), then `ts_client.mjs` drives the real agent:
initialize, session/new, an unknown session refused, a `fix` prompt on a scratch copy of the
inventory sample, the permission answered "allow once", the result. This test checks what the
node client saw and that the file is fixed on disk. Skips only when node or npm is absent.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.acp.acp_client import AGENT, BROKEN_CALL, FIXED_CALL, TARGET

HERE = Path(__file__).parent
SDK = "@zed-industries/agent-client-protocol"
CACHE = Path(
    os.environ.get(
        "DM_ACP_NODE_CACHE",
        Path.home() / ".cache" / "delegation-machine" / "acp-typescript-client",
    )
)

pytestmark = [pytest.mark.node, pytest.mark.slow, pytest.mark.timeout(400)]


def sdk_modules() -> Path:
    """The node_modules holding the pinned SDK, installed by npm on first use."""
    modules = CACHE / "node_modules"
    wanted = json.loads((HERE / "package.json").read_text())["dependencies"][SDK]
    installed = modules / SDK / "package.json"
    if installed.exists() and json.loads(installed.read_text())["version"] == wanted:
        return modules
    if shutil.which("npm") is None or shutil.which("node") is None:
        pytest.skip("node and npm are needed for the TypeScript ACP client")
    CACHE.mkdir(parents=True, exist_ok=True)
    shutil.copy(HERE / "package.json", CACHE / "package.json")
    done = subprocess.run(
        ["npm", "install", "--no-audit", "--no-fund", "--prefix", str(CACHE)],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, f"npm install {SDK}@{wanted} failed: {done.stderr[-2000:]}"
    return modules


def test_the_typescript_sdk_client_runs_a_fix_end_to_end(workspace: Path) -> None:
    modules = sdk_modules()
    target = workspace / TARGET
    before = target.read_text()
    done = subprocess.run(
        ["node", str(HERE / "ts_client.mjs"), str(AGENT), str(workspace), str(target)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "ACP_NODE_MODULES": str(modules)},
    )
    assert done.returncode == 0, done.stderr[-4000:]
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["protocolVersion"] == 1
    assert seen["agentCapabilities"]["loadSession"] is False
    assert seen["agentCapabilities"]["promptCapabilities"]["embeddedContext"] is True
    assert seen["unknownSession"]["code"] == -32602
    assert "unknown session" in seen["unknownSession"]["message"]
    assert seen["stopReason"] == "end_turn"
    kinds = seen["updateKinds"]
    assert kinds[0] == "plan" and "tool_call" in kinds and kinds[-1] == "agent_message_chunk"
    (call,) = seen["toolCalls"]
    assert call["kind"] == "edit" and call["locations"] == [{"path": str(target)}]
    (diff,) = seen["diffs"]
    assert diff["path"] == str(target) and diff["oldText"] == before
    assert seen["permissionOptions"] == [["allow_once", "allow_always", "reject_once"]]
    assert seen["permissionToolCalls"] == [call["toolCallId"]]
    assert seen["exitCode"] == 0  # the agent stops cleanly when the client closes stdin
    fixed = target.read_text()
    assert fixed == diff["newText"]
    assert FIXED_CALL in fixed and BROKEN_CALL not in fixed
