"""`:DelegateReview` in real headless Neovim against the real server: the pending hunks in
the quickfix list, the user's typing inside a hunk kept when it is rejected from the list,
the other hunk accepted and the task settled."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.e2e.test_nvim import PLUGIN, SAMPLE, TARGET, run_nvim, server_command

pytestmark = pytest.mark.nvim


def test_delegate_review_rejects_and_accepts_hunks_from_the_quickfix_list(
    tmp_path: Path,
) -> None:
    workspace = tmp_path / "inventory"
    shutil.copytree(SAMPLE, workspace, ignore=shutil.ignore_patterns(".delegation", "__pycache__"))
    result = run_nvim(
        PLUGIN / "test" / "review_e2e.lua",
        tmp_path,
        {
            "DELEGATION_SERVER_CMD": json.dumps(server_command()),
            "DELEGATION_TEST_FILE": str(workspace / TARGET),
        },
        workspace,
    )
    assert result["ok"], f"{result['error']}\nsteps: {result['steps']}\n{result['_stderr']}"
    entries = result["entries"]
    assert len(entries) == 2 and all(e["bufnr_matches"] for e in entries)
    assert all(e["user_data"]["taskId"] == result["task_id"] for e in entries)
    assert any("removed: import sys" in e["text"] for e in entries)
    assert result["decision"]["state"] == "verified"  # one hunk left: not settled yet
    rejected = result["buffer_rejected"]
    assert "yaml.load(handle, Loader=yaml.Loader)" in rejected.replace("  # mine", "")
    assert "  # mine" in rejected  # the user's typing inside the rejected hunk survives
    assert "import sys" not in rejected  # the other hunk is untouched
    assert result["buffer_final"] == rejected
    assert result["_exit"] == 0
