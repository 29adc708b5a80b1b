"""Fixtures for the LLM agent tests: a small workspace, its symbol index, work items."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest

from delegation_machine.engine.a2a import package_for_task
from delegation_machine.engine.agents.base import AgentWork, FileVersion
from delegation_machine.engine.memory.symbols import SymbolIndex
from delegation_machine.engine.protocol import DelegationRequest, Point, Span, Verdict
from delegation_machine.engine.supervise.checks import syntax_verdict

CALC = '''def add(a, b):
    """Sum of a and b."""
    return a - b


def double(x):
    return add(x, x)
'''


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    (tmp_path / "calc.py").write_text(CALC, encoding="utf-8")
    (tmp_path / "notes.py").write_text("VALUE = 1\n", encoding="utf-8")
    return tmp_path


@pytest.fixture
def index(workspace: Path) -> SymbolIndex:
    built = SymbolIndex(workspace)
    built.build()
    return built


def make_work(
    root: Path,
    index: SymbolIndex | None,
    *,
    task_id: str = "p1.1",
    instruction: str = "fix add: it subtracts",
    version: int = 7,
    files: Mapping[str, str] | None = None,
) -> AgentWork:
    texts = dict(files) if files is not None else {"calc.py": (root / "calc.py").read_text()}
    request = DelegationRequest(
        instruction=instruction, path="calc.py", span=Span(Point(2, 4), Point(2, 16))
    )
    package = package_for_task(
        task_id=task_id,
        plan_id=task_id.split(".")[0],
        kind="llm",
        instruction=instruction,
        request=request,
        workspace_version=version,
        paths=sorted(texts),
        inputs=[f"file:{p}" for p in sorted(texts)],
        outputs=[f"file:{p}" for p in sorted(texts)],
    )
    return AgentWork(
        task_id=task_id,
        package=package,
        request=request,
        files={p: FileVersion(t, 3) for p, t in texts.items()},
        workspace_root=root,
        index=index,
    )


async def syntax_checker(files: Mapping[str, str], changed: Sequence[str]) -> list[Verdict]:
    """The real tree-sitter syntax check of engine.supervise (no semgrep: keeps tests fast)."""
    return [syntax_verdict(files, changed, None)]
