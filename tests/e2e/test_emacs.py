"""Real headless Emacs with eglot and editor-clients/emacs/delegation-machine.el.

Starts the real server through eglot on a copy of samples/inventory, delegates a seeded
semgrep finding with `delegation-machine-delegate` and checks what Emacs saw (the Lua-free
twin of test_nvim.py). The `emacs_with_eglot` fixture (tests/e2e/conftest.py) installs
Debian's emacs-nox and elpa-eglot when they are missing, so a fresh machine runs this test
rather than skipping it; the script waits with `accept-process-output` and a deadline.
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
EMACS_CLIENT = ROOT / "editor-clients" / "emacs"
SAMPLE = ROOT / "samples" / "inventory"
TARGET = "inventory/storage.py"

pytestmark = pytest.mark.slow


def server_command() -> list[str]:
    script = Path(sys.executable).parent / "delegation-machine"
    if script.exists():
        return [str(script), "serve"]
    return [sys.executable, "-m", "delegation_machine.server", "serve"]


# The first run on a fresh machine installs Emacs (apt-get) before the 280 s Emacs run.
@pytest.mark.timeout(900)
def test_delegate_fix_in_emacs_eglot(tmp_path: Path, emacs_with_eglot: str) -> None:
    emacs = emacs_with_eglot
    workspace = tmp_path / "inventory"
    shutil.copytree(SAMPLE, workspace, ignore=shutil.ignore_patterns(".delegation", "__pycache__"))
    result_file = tmp_path / "result.json"
    env = {
        **os.environ,
        "HOME": str(tmp_path),
        "SEMGREP_ENABLE_VERSION_CHECK": "0",
        "SEMGREP_SEND_METRICS": "off",
        "DELEGATION_SERVER_CMD": json.dumps(server_command()),
        "DELEGATION_TEST_FILE": str(workspace / TARGET),
        "DELEGATION_RESULT": str(result_file),
        "DELEGATION_STEP_MS": "60000",
    }
    completed = subprocess.run(
        [emacs, "--batch", "-Q", "-l", str(EMACS_CLIENT / "test" / "delegate-e2e.el")],
        cwd=workspace,
        env=env,
        capture_output=True,
        text=True,
        timeout=280,
        check=False,
    )
    assert result_file.exists(), f"emacs wrote no result:\n{completed.stderr[-4000:]}"
    result: dict[str, Any] = json.loads(result_file.read_text())
    assert result["ok"] is True, (
        f"{result.get('error')}\nsteps: {result['steps']}\n{completed.stderr[-3000:]}"
    )

    assert result["code"].startswith("semgrep:")
    states = [u["state"] for u in result["updates"] if u["taskId"] == result["task_id"]]
    assert states[0] == "queued", states
    assert result["final_state"] == "verified"
    assert states.index("verified") < states.index("accepted"), states

    # eglot applied the agent's edit to the buffer; the finding's line is gone and so is
    # the diagnostic.
    line = result["finding_line_before"]
    assert result["buffer_after"] != result["buffer_before"]
    assert result["buffer_after"].count(line) < result["buffer_before"].count(line)
    assert result["count_after"] < result["count_before"]
    assert result["buffer_final"] == result["buffer_after"]
