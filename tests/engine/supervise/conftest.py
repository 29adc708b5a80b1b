"""Fixtures for the supervision tests: a scratch workspace and test-only semgrep rules."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from delegation_machine.engine.supervise.checks import CheckRunner
from delegation_machine.engine.supervise.semgrep import semgrep_executable

RULES = Path(__file__).parent / "rules"

needs_semgrep = pytest.mark.skipif(semgrep_executable() is None, reason="semgrep not installed")


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    root = tmp_path / "ws"
    root.mkdir()
    return root


@pytest.fixture
def runner(workspace: Path) -> Iterator[CheckRunner]:
    checks = CheckRunner(workspace, rule_paths=[RULES], semgrep_timeout_s=60)
    yield checks
    checks.close()


def write(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        target = root / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
