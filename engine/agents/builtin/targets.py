"""Which files a built-in agent works on, and the texts it works against.

Owns the choice: the task's own files (`work.files`) when there are any, else every matching
file the workspace lists (read through `work.read_file`, so the agent sees live buffers).
Invariant: an agent only builds Mutations against the (text, version) pairs returned here.
"""

from __future__ import annotations

from collections.abc import Iterable

from delegation_machine.engine.agents.base import AgentWork, FileVersion

PYTHON_SUFFIXES = (".py", ".pyi")


def is_python_path(rel: str) -> bool:
    return rel.endswith(PYTHON_SUFFIXES)


def python_targets(work: AgentWork) -> dict[str, FileVersion]:
    """The Python files to work on, sorted by path."""
    if work.files:
        return {rel: work.files[rel] for rel in sorted(work.files) if is_python_path(rel)}
    if work.list_workspace_files is None or work.read_file is None:
        return {}
    listed: Iterable[str] = work.list_workspace_files()
    return {rel: work.read_file(rel) for rel in sorted(listed) if is_python_path(rel)}


def skipped_non_python(work: AgentWork) -> list[str]:
    return sorted(rel for rel in work.files if not is_python_path(rel))
