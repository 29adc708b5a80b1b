"""Fixtures for the built-in agents' tests: a fresh copy of the inventory sample per test."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from .support import SAMPLE, run_sample_tests, run_semgrep, tool


@pytest.fixture
def sample_copy(tmp_path: Path) -> Path:
    target = tmp_path / "inventory"
    shutil.copytree(SAMPLE, target, ignore=shutil.ignore_patterns("__pycache__", ".*cache"))
    return target


@pytest.fixture
def semgrep_scan() -> Callable[[list[Path], Path], dict[str, Any]]:
    """`semgrep_scan(paths, cwd) -> report`: real semgrep, bundled rules, offline."""
    tool("semgrep")
    return run_semgrep


@pytest.fixture
def sample_tests() -> Callable[[Path], Any]:
    """`sample_tests(root) -> CompletedProcess`: the sample's own pytest suite on a copy."""
    return run_sample_tests
