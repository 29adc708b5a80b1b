"""Affected-test selection through the import graph, and the sandboxed pytest run."""

from __future__ import annotations

from pathlib import Path

import pytest

from delegation_machine.engine.protocol import Point
from delegation_machine.engine.supervise.affected import (
    AffectedTests,
    imported_modules,
    module_names,
)

from .conftest import write

PROJECT = {
    "pkg/__init__.py": "",
    "pkg/core.py": "def add(a, b):\n    return a + b\n",
    "pkg/api.py": "from .core import add\n\ndef total(xs):\n    return sum(xs)\n",
    "pkg/other.py": "VALUE = 3\n",
    "tests/test_core.py": (
        "from pkg.core import add\n\n\ndef test_add():\n    assert add(2, 2) == 4\n"
    ),
    "tests/test_api.py": "import pkg.api\n\n\ndef test_total():\n    assert pkg.api.total([1]) == 1\n",
    "tests/test_other.py": "from pkg import other\n\n\ndef test_value():\n    assert other.VALUE == 3\n",
    "tests/conftest.py": "",
}


@pytest.fixture
def project(workspace: Path) -> Path:
    write(workspace, PROJECT)
    return workspace


def test_module_names_and_relative_imports() -> None:
    assert module_names("pkg/__init__.py") == ["pkg"]
    assert module_names("src/lib/mod.py") == ["src.lib.mod", "lib.mod"]
    assert imported_modules("pkg/sub/m.py", "from ..core import add\nimport os.path\n") == {
        "pkg.core",
        "pkg.core.add",
        "os.path",
    }
    assert imported_modules("bad.py", "def (:") == set()


def test_selects_direct_and_transitive_importers_only(project: Path) -> None:
    tests = AffectedTests(project)
    assert tests.select({}, ["pkg/core.py"]) == ["tests/test_api.py", "tests/test_core.py"]
    assert tests.select({}, ["pkg/other.py"]) == ["tests/test_other.py"]
    assert tests.select({}, ["tests/test_core.py"]) == ["tests/test_core.py"]
    assert tests.select({}, ["tests/conftest.py"]) == [
        "tests/test_api.py",
        "tests/test_core.py",
        "tests/test_other.py",
    ]


def test_selection_follows_the_crdt_text_not_the_disk(project: Path) -> None:
    tests = AffectedTests(project)
    # In the CRDT, test_other now imports pkg.core too.
    changed_test = "from pkg import core\n\n\ndef test_value():\n    assert core.add(1, 2) == 3\n"
    selected = tests.select({"tests/test_other.py": changed_test}, ["pkg/core.py"])
    assert "tests/test_other.py" in selected


async def test_failing_affected_test_is_reported_with_its_node_id(project: Path) -> None:
    tests = AffectedTests(project, timeout_s=60)
    broken = {"pkg/core.py": "def add(a, b):\n    return a - b\n"}
    verdict = await tests.run(broken, ["pkg/core.py"], task_id="t7")
    assert verdict.kind == "failed", verdict.reason
    assert verdict.paths == ("tests/test_api.py", "tests/test_core.py")
    (finding,) = verdict.findings
    assert finding.code == "test:tests/test_core.py::test_add"
    assert finding.path == "tests/test_core.py"
    assert finding.span.start == Point(3, 0)
    assert (project / "pkg/core.py").read_text() == PROJECT["pkg/core.py"]


async def test_passing_change_passes(project: Path) -> None:
    tests = AffectedTests(project, timeout_s=60)
    verdict = await tests.run({"pkg/other.py": "VALUE = 1 + 2\n"}, ["pkg/other.py"])
    assert verdict.kind == "passed" and verdict.paths == ("tests/test_other.py",)
