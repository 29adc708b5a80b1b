"""FormatAgent with real `ruff format`, using the workspace's own settings."""

from __future__ import annotations

from pathlib import Path

import pytest

from delegation_machine.engine.agents.base import AgentFailure, AgentResult, AgentWork
from delegation_machine.engine.agents.builtin import FormatAgent

from .support import apply_mutations, make_work, pin_ruff_config, python_files, snapshot_tree


async def run_format(
    root: Path, paths: list[str], **kwargs: object
) -> tuple[AgentWork, AgentResult]:
    work = make_work(root, paths, kind="format", instruction="format", **kwargs)  # type: ignore[arg-type]
    return work, await FormatAgent("builtin:format-1", workspace_root=root).run(work)


async def test_format_rewraps_the_long_signature_and_nothing_else(sample_copy: Path) -> None:
    paths = python_files(sample_copy)
    before = snapshot_tree(sample_copy)
    work, result = await run_format(sample_copy, paths)
    assert snapshot_tree(sample_copy) == before, "an agent must never write files"
    assert [m.path for m in result.mutations] == ["inventory/pricing.py"]
    fixed = apply_mutations(sample_copy, work, result.mutations)
    assert fixed["inventory/pricing.py"] == work.files["inventory/pricing.py"].text.replace(
        'def calc_total(lines: list[OrderLine], tax_rate: str = "0", discount: Decimal = '
        'Decimal("0")) -> Decimal:\n',
        "def calc_total(\n"
        '    lines: list[OrderLine], tax_rate: str = "0", discount: Decimal = Decimal("0")\n'
        ") -> Decimal:\n",
    )
    assert result.mutations[0].description == "ruff format"


async def test_format_is_idempotent(tmp_path: Path) -> None:
    pin_ruff_config(tmp_path)
    (tmp_path / "messy.py").write_text(
        "import os\nx = {  'a':1,'b' :[1,2,\n3]}\ndef f( a,b ):\n  return a+b\n",
        encoding="utf-8",
    )
    work, first = await run_format(tmp_path, ["messy.py"])
    formatted = apply_mutations(tmp_path, work, first.mutations)["messy.py"]
    assert formatted == (
        'import os\n\nx = {"a": 1, "b": [1, 2, 3]}\n\n\ndef f(a, b):\n    return a + b\n'
    )
    _, second = await run_format(tmp_path, ["messy.py"])
    assert second.mutations == ()


async def test_workspace_settings_apply(tmp_path: Path) -> None:
    (tmp_path / "ruff.toml").write_text("line-length = 40\n[format]\nquote-style = 'single'\n")
    (tmp_path / "m.py").write_text('VALUE = call_something("first", "second", "third")\n')
    work, result = await run_format(tmp_path, ["m.py"])
    assert apply_mutations(tmp_path, work, result.mutations)["m.py"] == (
        "VALUE = call_something(\n    'first', 'second', 'third'\n)\n"
    )


async def test_unparsable_file_is_named_and_left_alone(tmp_path: Path) -> None:
    pin_ruff_config(tmp_path)
    (tmp_path / "broken.py").write_text("def f(:\n  pass\n")
    (tmp_path / "ok.py").write_text("x=1\n")
    _, result = await run_format(tmp_path, ["broken.py", "ok.py"])
    assert [m.path for m in result.mutations] == ["ok.py"]
    assert "broken.py is not valid Python" in result.notes
    with pytest.raises(AgentFailure, match=r"nothing was formatted: broken\.py is not valid"):
        await run_format(tmp_path, ["broken.py"])


async def test_non_python_files_are_skipped(tmp_path: Path) -> None:
    (tmp_path / "a.js").write_text("let  x=1\n")
    _, result = await run_format(tmp_path, ["a.js"])
    assert result.mutations == ()
    assert "skipped (not Python): a.js" in result.notes
