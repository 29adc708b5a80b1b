"""ruff as a text-to-text function: safe lint fixes and formatting of one file's text.

Owns the ruff command lines. ruff reads the text on stdin and finds the workspace's own
configuration from `--stdin-filename` (run with the workspace root as cwd), so the user's
rule selection, line length and exclusions apply. Only safe fixes: `--unsafe-fixes` is
never passed (a workspace may opt in through its own config).
"""

from __future__ import annotations

from pathlib import Path

from delegation_machine.engine.agents.base import AgentFailure
from delegation_machine.engine.agents.builtin.tools import last_lines, locate_tool, run_tool
from delegation_machine.engine.supervise.python_parse import parse_python


class UnparsableFile(AgentFailure):
    """The file is not valid Python, so a tool refused it; `path` names it."""

    def __init__(self, path: str, detail: str) -> None:
        super().__init__(f"{path} is not valid Python, so it was left unchanged: {detail}")
        self.path = path


def parses_as_python(text: str) -> bool:
    return parse_python(text) is not None


async def ruff_safe_fixes(text: str, rel: str, root: Path, timeout_s: float = 60.0) -> str:
    """`text` with ruff's safe fixes applied (the workspace's rule selection)."""
    argv = [locate_tool("ruff"), "check", "--fix-only", "--exit-zero", "--no-cache"]
    argv += ["--force-exclude", "--stdin-filename", rel, "-"]
    done = await run_tool(argv, cwd=root, stdin_text=text, timeout_s=timeout_s)
    if done.returncode != 0:
        raise AgentFailure(f"ruff check failed on {rel}: {last_lines(done.stderr)}")
    # ruff echoes excluded files unchanged, so an empty answer means "everything was removed".
    return done.stdout


async def ruff_format(text: str, rel: str, root: Path, timeout_s: float = 60.0) -> str:
    """`text` formatted by `ruff format` with the workspace's settings."""
    argv = [locate_tool("ruff"), "format", "--no-cache", "--force-exclude"]
    argv += ["--stdin-filename", rel, "-"]
    done = await run_tool(argv, cwd=root, stdin_text=text, timeout_s=timeout_s)
    if done.returncode == 2 and "parse" in done.stderr.lower():
        raise UnparsableFile(rel, last_lines(done.stderr, 2))
    if done.returncode != 0:
        raise AgentFailure(f"ruff format failed on {rel}: {last_lines(done.stderr)}")
    return done.stdout
