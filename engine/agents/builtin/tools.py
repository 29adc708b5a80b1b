"""Runs the command-line tools the built-in agents wrap (ruff, semgrep) as subprocesses.

Owns locating a tool (next to the running interpreter first, then PATH) and one bounded,
killable subprocess run that feeds text on stdin. Invariant: a tool that is missing, times out
or fails says so as an `AgentFailure` naming the tool and what to do; it never hangs the loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from delegation_machine.engine.agents.base import AgentFailure
from delegation_machine.engine.state.scratch import scratch_folder
from delegation_machine.engine.supervise.lifetime import tied_to_parent

DEFAULT_TIMEOUT_S = 120.0


@dataclass(frozen=True)
class ToolRun:
    returncode: int
    stdout: str
    stderr: str


def locate_tool(name: str) -> str:
    """The tool's executable: beside sys.executable (the venv), else on PATH."""
    beside = Path(sys.executable).parent / name
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    found = shutil.which(name)
    if found is None:
        raise AgentFailure(
            f"{name} is not installed: it was found neither next to {sys.executable} nor on "
            f"PATH; install the `checks` extra (pip install 'delegation-machine[checks]')"
        )
    return found


async def run_tool(
    argv: Sequence[str],
    *,
    cwd: Path,
    stdin_text: str | None = None,
    env: Mapping[str, str] | None = None,
    timeout_s: float = DEFAULT_TIMEOUT_S,
) -> ToolRun:
    """Run `argv` in `cwd`, feeding `stdin_text` (UTF-8); kill it after `timeout_s`. Its temp
    files go to a private scratch folder, removed when it ends (never the system's)."""
    with tempfile.TemporaryDirectory(prefix="dm-tool-", dir=scratch_folder()) as temp:
        private = {"TMPDIR": temp, "TEMP": temp, "TMP": temp}
        return await _run_tool(
            argv, cwd, stdin_text, {**os.environ, **private, **(env or {})}, timeout_s
        )


async def _run_tool(
    argv: Sequence[str],
    cwd: Path,
    stdin_text: str | None,
    env: Mapping[str, str],
    timeout_s: float,
) -> ToolRun:
    command, preexec = tied_to_parent(argv)  # killed with us: a kill -9 leaves no tool running
    process = await asyncio.create_subprocess_exec(
        *command,
        cwd=cwd,
        env=env,
        stdin=asyncio.subprocess.PIPE if stdin_text is not None else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        preexec_fn=preexec,
    )
    payload = stdin_text.encode("utf-8") if stdin_text is not None else None
    try:
        async with asyncio.timeout(timeout_s):
            stdout, stderr = await process.communicate(payload)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        await process.wait()
        raise AgentFailure(
            f"{Path(argv[0]).name} did not finish within {timeout_s:g} s and was stopped"
        ) from None
    except asyncio.CancelledError:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        await process.wait()
        raise
    return ToolRun(
        process.returncode if process.returncode is not None else -1,
        stdout.decode("utf-8", errors="replace"),
        stderr.decode("utf-8", errors="replace"),
    )


def last_lines(text: str, count: int = 5) -> str:
    """The tail of a tool's stderr, for an error message a user can read."""
    return "\n".join(text.strip().splitlines()[-count:])
