"""`delegation-machine plan-kv`: the parser, text and JSON output, errors, the real console script."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from delegation_machine.server.cli import main

LLAMA3_8B = ["--layers", "32", "--heads", "32", "--kv-heads", "8", "--head-dim", "128"]


def test_json_plan_for_a_swarm_that_does_not_fit(capsys: pytest.CaptureFixture[str]):
    argv = [
        "plan-kv",
        *LLAMA3_8B,
        "--gpu-mem-gib", "80",
        "--weights-gib", "16",
        "--agents", "8",
        "--context", "131072",
        "--shared-prefix", "8192",
        "--json",
    ]  # fmt: skip
    assert main(argv) == 0
    plan = json.loads(capsys.readouterr().out)
    assert plan["bytes_per_token"] == 131072
    assert plan["capacity_tokens"] == 458_752
    assert plan["fits"] is False
    assert plan["concurrent_full_context"] == 3
    assert len(plan["pyramid_budgets"]) == 32
    assert sum(len(agents) for agents in plan["offload"].values()) == 8


def test_text_plan_names_the_options(capsys: pytest.CaptureFixture[str]):
    argv = ["plan-kv", *LLAMA3_8B, "--gpu-mem-gib", "24", "--agents", "4", "--context", "32768"]
    assert main([*argv, "--weights-gib", "16", "--dtype", "fp8"]) == 0
    out = capsys.readouterr().out
    assert "64.0 KiB of K+V" in out
    assert "does NOT fit" in out and "PyramidKV" in out and "offload" in out


def test_out_of_range_input_is_a_usage_error(capsys: pytest.CaptureFixture[str]):
    argv = ["plan-kv", *LLAMA3_8B, "--gpu-mem-gib", "16", "--weights-gib", "16"]
    assert main([*argv, "--agents", "2", "--context", "100"]) == 2
    assert "leave no KV memory" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exited:
        main(["plan-kv", "--layers", "32"])  # required options missing
    assert exited.value.code == 2


def test_console_script_runs_plan_kv():
    script = Path(sys.executable).parent / "delegation-machine"
    command = [str(script)] if script.exists() else [shutil.which("delegation-machine") or "false"]
    completed = subprocess.run(
        [
            *command,
            "plan-kv",
            *LLAMA3_8B,
            "--gpu-mem-gib",
            "80",
            "--agents",
            "2",
            "--context",
            "8192",
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    assert json.loads(completed.stdout)["fits"] is True
