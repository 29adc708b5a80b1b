"""Per-hunk review through the Swarm on a scratch copy of the sample: a real fix plan, one
hunk rejected with the user's typing inside it, the other accepted, and the plan settled."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from delegation_machine.engine.protocol import DelegationRequest, TaskState, TextEdit
from delegation_machine.engine.swarm import DelegationError, Swarm

ROOT = Path(__file__).resolve().parents[3]
SAMPLE = ROOT / "samples" / "inventory"
STORAGE = "inventory/storage.py"  # the fix removes `import sys` and makes yaml.load safe
CONFIG = "inventory/config.py"  # the fix makes one yaml.load safe


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    target = tmp_path / "inventory"
    shutil.copytree(SAMPLE, target, ignore=shutil.ignore_patterns(".delegation", "__pycache__"))
    return target


async def test_hunks_are_decided_one_by_one_and_the_plan_settles(workspace: Path) -> None:
    original = (workspace / STORAGE).read_text(encoding="utf-8")
    swarm = Swarm(workspace, watch=False)
    await swarm.start()
    try:
        swarm.documents.open_document(STORAGE, original, 1)
        plan_id = await swarm.submit(DelegationRequest(instruction="fix", path=STORAGE))
        assert await swarm.wait(plan_id, timeout=120) == TaskState.VERIFIED
        imports, loads = swarm.hunks(plan_id)
        assert imports.task_id == plan_id and imports.before == "import sys\n"
        # only the characters the fix changed: typing beside them on the line is not the hunk's
        assert (loads.before, loads.after) == (
            "load(handle, Loader=yaml.Loader",
            "safe_load(handle",
        )
        assert swarm.hunks(path=STORAGE) == [imports, loads]  # every reviewable plan's hunks

        # the user types inside the yaml hunk, then rejects it
        text = swarm.state.read(STORAGE)[0]
        inside = text.index("safe_load") + len("safe")
        swarm.documents.apply_user_change(STORAGE, [TextEdit(inside, inside, "  # mine")], 2)
        assert await swarm.reject_hunk(plan_id, loads.hunk_id) == TaskState.VERIFIED
        text = swarm.state.read(STORAGE)[0]
        assert "  # mine" in text  # typed inside the agent's text: kept where that text was
        assert "yaml.load(handle, Loader=yaml.Loader)" in text.replace("  # mine", "")
        assert "import sys\n" not in text  # the other hunk is untouched
        assert [h.hunk_id for h in swarm.hunks(plan_id)] == [imports.hunk_id]

        with pytest.raises(DelegationError, match="no pending hunk"):
            await swarm.accept_hunk(plan_id, loads.hunk_id)  # decided already
        assert await swarm.accept_hunk(plan_id, imports.hunk_id) == TaskState.ACCEPTED
        assert swarm.hunks(plan_id) == []
        with pytest.raises(DelegationError, match="accepted already"):
            await swarm.reject_hunk(plan_id, imports.hunk_id)

        # a plan whose every hunk is rejected is rejected
        other = await swarm.submit(DelegationRequest(instruction="fix", path=CONFIG))
        assert await swarm.wait(other, timeout=120) == TaskState.VERIFIED
        (only,) = swarm.hunks(other)
        assert await swarm.reject_hunk(other, only.hunk_id) == TaskState.REJECTED
        kinds = [e.kind for e in swarm.events(task_id=plan_id)] + [
            e.kind for e in swarm.events(task_id=other)
        ]
    finally:
        await swarm.stop()
    assert "yaml.load(text, Loader=yaml.FullLoader)" in (workspace / CONFIG).read_text()
    for kind in ("hunk.rejected", "hunk.accepted", "plan.accepted", "plan.rejected"):
        assert kind in kinds
