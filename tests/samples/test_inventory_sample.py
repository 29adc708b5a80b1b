"""The inventory sample workspace is what samples/README.md says it is.

Checks, on a copy: its own test suite passes; ruff reports exactly the seeded lint problems;
the symbol index sees exactly the listed occurrences of the symbol worth renaming.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from delegation_machine.engine.memory.symbols import SymbolIndex

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "samples" / "inventory"
README = REPO / "samples" / "README.md"


def readme_rows(section: str) -> list[tuple[str, int, str, str]]:
    text = README.read_text(encoding="utf-8").split(f"### {section}", 1)[1].split("\n### ", 1)[0]
    pattern = r"^\| `([^`:]+):(\d+)` \| ([^|]+?) \|(.*)$"
    return [
        (m.group(1), int(m.group(2)), m.group(3).strip("` "), m.group(4))
        for m in re.finditer(pattern, text, re.MULTILINE)
    ]


@pytest.fixture
def sample_copy(tmp_path: Path) -> Path:
    target = tmp_path / "inventory"
    shutil.copytree(SAMPLE, target, ignore=shutil.ignore_patterns("__pycache__", ".*cache"))
    return target


def test_the_sample_is_a_real_package_with_its_own_passing_tests(sample_copy: Path) -> None:
    modules = sorted(p.name for p in (sample_copy / "inventory").glob("*.py"))
    assert len(modules) >= 10
    assert (sample_copy / "pyproject.toml").is_file()
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"],
        cwd=sample_copy,
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stdout[-3000:]
    passed = int(re.search(r"(\d+) passed", done.stdout).group(1))  # type: ignore[union-attr]
    assert passed >= 10


def test_ruff_reports_exactly_the_seeded_lint_problems(sample_copy: Path) -> None:
    ruff = Path(sys.executable).parent / "ruff"
    done = subprocess.run(
        [str(ruff), "check", "--no-cache", "--output-format", "json", "--exit-zero", "."],
        cwd=sample_copy,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    found = {
        (
            Path(item["filename"]).relative_to(sample_copy).as_posix(),
            item["location"]["row"],
            item["code"],
        )
        for item in json.loads(done.stdout)
    }
    listed = {(path, line, rule) for path, line, rule, _ in readme_rows("Seeded ruff problems")}
    assert found == listed
    safe = {
        (path, rule) for path, _, rule, fix in readme_rows("Seeded ruff problems") if "yes" in fix
    }
    assert {"F401", "F541", "E713", "I001", "UP006", "UP045"} <= {rule for _, rule in safe}


def test_the_rename_table_matches_the_symbol_index() -> None:
    index = SymbolIndex(SAMPLE)
    index.build()
    occurrences = {(o.path, o.span.start.line + 1, o.kind) for o in index.occurrences("calc_total")}
    listed = {
        (path, line, kind.split(" ")[0])
        for path, line, kind, _ in readme_rows("A symbol worth renaming")
    }
    assert occurrences == listed
    modules_using_it = {path for path, _, _ in listed if path.startswith("inventory/")}
    assert len(modules_using_it) >= 3
    text = README.read_text(encoding="utf-8")
    for kept in ("inventory/reports.py:25", "inventory/reports.py:56", "inventory/cli.py:22"):
        path, line = kept.split(":")
        assert kept in text
        assert (
            "calc_total" in (SAMPLE / path).read_text(encoding="utf-8").splitlines()[int(line) - 1]
        )
