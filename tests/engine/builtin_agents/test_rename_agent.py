"""RenameAgent on the tree-sitter index: definitions, imports and references, never text."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from delegation_machine.engine.agents.base import AgentFailure, AgentResult, AgentWork
from delegation_machine.engine.agents.builtin import RenameAgent, RenameRefused
from delegation_machine.engine.memory.symbols import SymbolIndex

from .support import apply_mutations, make_work, readme_rows, snapshot_tree

OLD, NEW = "calc_total", "compute_order_total"


async def run_rename(
    root: Path, arguments: dict[str, Any], paths: list[str] | None = None, **kwargs: Any
) -> tuple[AgentWork, AgentResult]:
    work = make_work(root, paths or [], kind="rename", arguments=arguments, **kwargs)
    return work, await RenameAgent("builtin:rename-1", workspace_root=root).run(work)


def lines_with(root: Path, word: str) -> set[tuple[str, int]]:
    pattern = re.compile(rf"\b{word}\b")
    found = set()
    for path in root.rglob("*.py"):
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if pattern.search(line):
                found.add((path.relative_to(root).as_posix(), number))
    return found


@pytest.mark.parametrize("with_shared_index", [False, True])
async def test_rename_across_modules_matches_the_readme_and_keeps_tests_green(
    sample_copy: Path, sample_tests: Callable[[Path], Any], with_shared_index: bool
) -> None:
    expected = {(path, line) for path, line, _, _ in readme_rows("A symbol worth renaming")}
    index = None
    if with_shared_index:
        index = SymbolIndex(sample_copy)
        index.build()
    before = snapshot_tree(sample_copy)
    work, result = await run_rename(
        sample_copy, {"old": OLD, "new": NEW}, ["inventory/pricing.py"], index=index
    )
    assert snapshot_tree(sample_copy) == before, "an agent must never write files"
    assert len(result.mutations) == len({path for path, _ in expected})
    assert sum(len(m.edits) for m in result.mutations) == len(expected)
    assert all(e.new_text == NEW for m in result.mutations for e in m.edits)
    apply_mutations(sample_copy, work, result.mutations)

    assert lines_with(sample_copy, NEW) == expected
    # What is left of the old name: strings, comments and other identifiers only.
    assert lines_with(sample_copy, OLD) == {
        ("inventory/reports.py", 25),
        ("inventory/reports.py", 56),
        ("inventory/cli.py", 22),
        ("tests/test_reports_and_cli.py", 38),
    }
    assert "def test_calc_total_adds_tax" in (sample_copy / "tests/test_pricing.py").read_text()
    outcome = sample_tests(sample_copy)
    assert outcome.returncode == 0, outcome.stdout[-3000:]


async def test_rename_uses_live_buffers_beyond_the_task_files(sample_copy: Path) -> None:
    orders = (sample_copy / "inventory/orders.py").read_text(encoding="utf-8")
    buffer = orders.replace(
        "    def revenue(self)",
        "    def quote(self, lines):\n        return calc_total(lines)\n\n    def revenue(self)",
    )
    work, result = await run_rename(
        sample_copy, {"old": OLD, "new": NEW}, overrides={"inventory/orders.py": buffer}
    )
    by_path = {m.path: m for m in result.mutations}
    assert by_path["inventory/orders.py"].base_version == 7
    assert len(by_path["inventory/orders.py"].edits) == 4
    renamed = apply_mutations(sample_copy, work, result.mutations)["inventory/orders.py"]
    assert "        return compute_order_total(lines)\n" in renamed


PACKAGE = {
    "pkg/__init__.py": "",
    "pkg/core.py": (
        "def helper(x):\n"
        "    return x\n"
        "\n"
        "\n"
        "class Box:\n"
        "    size = 1\n"
        "\n"
        "    def grow(self):\n"
        "        return helper(self.size)\n"
        "\n"
        "\n"
        "def uses_local():\n"
        "    helper = 3  # a local that shadows the function\n"
        "    return helper\n"
    ),
    "pkg/a.py": (
        "import pkg.core\n"
        "import pkg.core as c\n"
        "from pkg import core\n"
        "from pkg.core import helper as h\n"
        "from .core import helper\n"
        "from . import core as cc\n"
        "\n"
        "\n"
        "def f(helper=2):\n"
        '    """Calls helper five ways."""\n'
        "    return pkg.core.helper(1) + c.helper(2) + core.helper(3) + h(4) + helper + cc.helper(5)\n"
        "\n"
        "\n"
        "def g():\n"
        "    return helper(6)\n"
        "\n"
        "\n"
        "print(f(helper=1), 'helper')\n"
    ),
    "pkg/b.py": ("from pkg.core import Box\n\n\ndef helper():\n    return Box().grow()\n"),
}


@pytest.fixture
def package(tmp_path: Path) -> Path:
    for rel, text in PACKAGE.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text, encoding="utf-8")
    return tmp_path


async def test_imports_aliases_qualifiers_and_shadowing(package: Path) -> None:
    work, result = await run_rename(
        package, {"old": "helper", "new": "assist", "path": "pkg/core.py"}
    )
    texts = apply_mutations(package, work, result.mutations)
    assert set(texts) == {"pkg/core.py", "pkg/a.py"}  # b.py's own `helper` is another symbol
    assert texts["pkg/core.py"] == PACKAGE["pkg/core.py"].replace(
        "def helper(x)", "def assist(x)"
    ).replace("return helper(self.size)", "return assist(self.size)")
    assert texts["pkg/a.py"] == (
        PACKAGE["pkg/a.py"]
        .replace("from pkg.core import helper as h", "from pkg.core import assist as h")
        .replace("from .core import helper", "from .core import assist")
        .replace(
            "pkg.core.helper(1) + c.helper(2) + core.helper(3)",
            "pkg.core.assist(1) + c.assist(2) + core.assist(3)",
        )
        .replace("cc.helper(5)", "cc.assist(5)")
        .replace("    return helper(6)", "    return assist(6)")
    )


async def test_ambiguous_module_symbol_needs_a_path(package: Path) -> None:
    with pytest.raises(
        RenameRefused, match=r"defined at module level in 2 files .*pkg/b\.py:4.*pkg/core\.py:1"
    ):
        await run_rename(package, {"old": "helper", "new": "assist"})
    # The editor selection's file disambiguates too.
    _, result = await run_rename(
        package, {"old": "helper", "new": "assist"}, request_path="pkg/b.py"
    )
    assert [(m.path, len(m.edits)) for m in result.mutations] == [("pkg/b.py", 1)]


async def test_method_rename_follows_attribute_uses(package: Path) -> None:
    work, result = await run_rename(package, {"old": "grow", "new": "expand"})
    texts = apply_mutations(package, work, result.mutations)
    assert texts == {
        "pkg/core.py": PACKAGE["pkg/core.py"].replace("def grow(self)", "def expand(self)"),
        "pkg/b.py": PACKAGE["pkg/b.py"].replace("Box().grow()", "Box().expand()"),
    }


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"old": OLD, "new": "1total"}, r"new name '1total' is not a valid Python identifier"),
        ({"old": OLD, "new": "order-total"}, r"not a valid Python identifier"),
        ({"old": OLD, "new": "class"}, r"new name 'class' is a Python keyword"),
        ({"old": OLD, "new": "None"}, r"is a Python keyword"),
        ({"old": OLD}, r'rename needs string arguments \{"old"'),
        ({"old": OLD, "new": OLD}, r"nothing to rename"),
        ({"old": "no_such_symbol", "new": "x"}, r"no definition of `no_such_symbol`"),
        (
            {"old": OLD, "new": "discount_for"},
            r"would collide with the existing `discount_for` at inventory/\w+\.py:\d+",
        ),
        ({"old": OLD, "new": "to_money"}, r"would collide with the existing `to_money`"),
        (
            {"old": OLD, "new": "sum"},
            r"would capture the existing use of `sum` at inventory/\w+\.py:\d+",
        ),
        (
            {"old": OLD, "new": "lines"},
            r"would collide with the existing `lines` at inventory/\w+\.py:\d+ \(in ",
        ),
    ],
)
async def test_bad_arguments_are_refused_with_a_clear_message(
    sample_copy: Path, arguments: dict[str, Any], message: str
) -> None:
    before = snapshot_tree(sample_copy)
    with pytest.raises(AgentFailure, match=message):
        await run_rename(sample_copy, arguments, ["inventory/pricing.py"])
    assert snapshot_tree(sample_copy) == before
