"""Our CRDT updates are standard Yjs v1 updates: sync with the reference `yjs` under node.

The test installs `yjs` (pinned in package.json) into a cache folder with npm if it is not
there yet, starts `yjs_peer.cjs` under node, and syncs one document in both directions while
both sides make concurrent edits (emoji and CJK included, since Yjs counts UTF-16 units and
yrs UTF-8 bytes).
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from delegation_machine.engine.protocol import Mutation, TextEdit
from delegation_machine.engine.state import WorkspaceState

HERE = Path(__file__).parent
CACHE = Path(
    os.environ.get("DM_NODE_CACHE", Path.home() / ".cache" / "delegation-machine" / "yjs-interop")
)

pytestmark = pytest.mark.node


def yjs_modules() -> Path:
    modules = CACHE / "node_modules"
    if (modules / "yjs" / "package.json").exists():
        return modules
    if shutil.which("npm") is None or shutil.which("node") is None:
        pytest.skip("node and npm are needed for the Yjs interop test")
    CACHE.mkdir(parents=True, exist_ok=True)
    shutil.copy(HERE / "package.json", CACHE / "package.json")
    done = subprocess.run(
        ["npm", "install", "--no-audit", "--no-fund", "--prefix", str(CACHE)],
        capture_output=True,
        text=True,
        timeout=240,
    )
    if done.returncode != 0:
        pytest.skip(f"npm install yjs failed (offline?): {done.stderr[-400:]}")
    return modules


class YjsPeer:
    def __init__(self, modules: Path) -> None:
        self.process = subprocess.Popen(
            ["node", str(HERE / "yjs_peer.cjs")],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env={**os.environ, "NODE_PATH": str(modules)},
        )

    def call(self, **request: Any) -> dict[str, Any]:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(json.dumps(request) + "\n")
        self.process.stdin.flush()
        reply: dict[str, Any] = json.loads(self.process.stdout.readline())
        assert "error" not in reply, reply.get("error")
        return reply

    def close(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()
        self.process.wait(timeout=10)


@pytest.fixture
def peer() -> Iterator[YjsPeer]:
    running = YjsPeer(yjs_modules())
    yield running
    running.close()


def utf16_index(text: str, code_points: int) -> int:
    return len(text[:code_points].encode("utf-16-le")) // 2


def test_sync_both_ways_with_concurrent_edits(tmp_path: Path, peer: YjsPeer) -> None:
    (tmp_path / "m.py").write_text("name = 'wörld 😀'\nprint(name)\n", encoding="utf-8")
    state = WorkspaceState(tmp_path, persist=False)
    text, version = state.read("m.py")

    # initial sync python -> node
    peer.call(op="apply", update=base64.b64encode(state.encode_update("m.py")).decode())
    assert peer.call(op="state")["text"] == text
    node_sv = base64.b64decode(peer.call(op="state")["stateVector"])
    python_sv = state.encode_state_vector("m.py")

    # concurrent edits: node's user types after the emoji and deletes "print";
    # an agent and the user edit on the python side
    after_emoji = text.index("😀") + 1
    peer.call(op="insert", index=utf16_index(text, after_emoji), text=" 中文")
    node_text = peer.call(op="state")["text"]
    peer.call(op="delete", index=utf16_index(node_text, node_text.index("print")), length=5)
    peer.call(op="insert", index=utf16_index(node_text, node_text.index("print")), text="echo")
    lease = state.lease_files(["m.py"], "agent:a1/task:t1")
    state.apply_mutation(Mutation("t1", "a1", "m.py", version, (TextEdit(0, 4, "title"),)), lease)
    state.open_document("m.py", state.read("m.py")[0], 1)
    state.apply_user_change(
        "m.py", [TextEdit(len(state.read("m.py")[0]), len(state.read("m.py")[0]), "# 🎉\n")], 2
    )

    # exchange: each side sends what the other lacks
    from_node = base64.b64decode(
        peer.call(op="diff", stateVector=base64.b64encode(python_sv).decode())["update"]
    )
    to_node = state.encode_update("m.py", node_sv)
    state.apply_remote_update("m.py", from_node, "peer:yjs")
    peer.call(op="apply", update=base64.b64encode(to_node).decode())

    merged = state.read("m.py")[0]
    assert peer.call(op="state")["text"] == merged
    assert merged == "title = 'wörld 😀 中文'\necho(name)\n# 🎉\n"


def test_node_edits_reach_subscribers_as_code_point_edits(tmp_path: Path, peer: YjsPeer) -> None:
    (tmp_path / "u.txt").write_text("😀😀\n", encoding="utf-8")
    state = WorkspaceState(tmp_path, persist=False)
    seen = []
    state.subscribe(seen.append)
    peer.call(op="apply", update=base64.b64encode(state.encode_update("u.txt")).decode())
    sv = state.encode_state_vector("u.txt")
    peer.call(op="insert", index=2, text="中")  # between the emoji: UTF-16 index 2
    update = base64.b64decode(
        peer.call(op="diff", stateVector=base64.b64encode(sv).decode())["update"]
    )
    state.apply_remote_update("u.txt", update, "peer:yjs")
    assert state.read("u.txt")[0] == "😀中😀\n"
    (change,) = seen
    assert change.origin == "peer:yjs"
    assert [(e.start, e.end, e.new_text) for e in change.edits] == [(1, 1, "中")]
