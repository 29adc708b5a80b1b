"""The subprocess wrapper the tool agents share: missing tools and hung tools fail clearly."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from delegation_machine.engine.agents.base import AgentFailure
from delegation_machine.engine.agents.builtin.tools import locate_tool, run_tool


def test_a_missing_tool_says_how_to_install_it() -> None:
    with pytest.raises(AgentFailure, match=r"no-such-tool-dm is not installed: .*checks"):
        locate_tool("no-such-tool-dm")


def test_tools_are_found_beside_the_interpreter_first() -> None:
    assert locate_tool("ruff") == str(Path(sys.executable).parent / "ruff")


async def test_stdin_reaches_the_tool_and_stdout_comes_back(tmp_path: Path) -> None:
    script = "import sys; sys.stdout.write(sys.stdin.read().upper())"
    done = await run_tool([sys.executable, "-c", script], cwd=tmp_path, stdin_text="grüße 📦")
    assert (done.returncode, done.stdout) == (0, "GRÜSSE 📦")


async def test_a_hung_tool_is_stopped_at_its_deadline(tmp_path: Path) -> None:
    blocks_forever = "import threading; threading.Event().wait()"
    with pytest.raises(AgentFailure, match=r"did not finish within 0.5 s and was stopped"):
        await run_tool([sys.executable, "-c", blocks_forever], cwd=tmp_path, timeout_s=0.5)
