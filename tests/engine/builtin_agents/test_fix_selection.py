"""A fix with a non-empty selection (or a diagnostic's range) changes only those lines."""

from __future__ import annotations

from pathlib import Path

import msgspec

from delegation_machine.engine.agents.base import apply_edits
from delegation_machine.engine.agents.builtin import FixAgent
from delegation_machine.engine.protocol import DelegationRequest, Point, Span

from .support import make_work

TARGET = "inventory/storage.py"


def line_of(text: str, needle: str) -> int:
    return next(n for n, line in enumerate(text.splitlines()) if needle in line)


async def test_a_selection_limits_the_fix_to_its_lines(sample_copy: Path) -> None:
    text = (sample_copy / TARGET).read_text(encoding="utf-8")
    yaml_line = line_of(text, "yaml.load(handle")
    work = make_work(sample_copy, [TARGET], kind="fix", instruction="fix", request_path=TARGET)
    selected = Span(Point(yaml_line, 0), Point(yaml_line + 1, 0))
    work = msgspec.structs.replace(
        work, request=msgspec.structs.replace(work.request, span=selected)
    )
    agent = FixAgent("builtin:fix-1", workspace_root=sample_copy)
    (mutation,) = (await agent.run(work)).mutations
    fixed = apply_edits(text, mutation.edits)
    assert "yaml.safe_load(handle)" in fixed
    assert "import sys\n" in fixed  # ruff's fix of the unused import is outside the selection
    whole = make_work(sample_copy, [TARGET], kind="fix", instruction="fix")
    assert isinstance(whole.request, DelegationRequest) and whole.request.span is None
    (everything,) = (await agent.run(whole)).mutations
    assert "import sys\n" not in apply_edits(text, everything.edits)
