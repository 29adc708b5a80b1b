"""Fixtures for the memory tests: a fresh copy of the fixture repository per test."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

FIXTURE_REPO = Path(__file__).resolve().parents[2] / "fixtures" / "memory_repo"


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A writable copy of tests/fixtures/memory_repo."""
    target = tmp_path / "memory_repo"
    shutil.copytree(FIXTURE_REPO, target)
    return target
