"""Fixtures of the ACP tests: a scratch copy of samples/inventory to delegate on."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    """A scratch copy of samples/inventory with the quick checks (fast, still real semgrep)."""
    target = tmp_path / "inventory"
    shutil.copytree(
        ROOT / "samples" / "inventory",
        target,
        ignore=shutil.ignore_patterns(".delegation", "__pycache__"),
    )
    (target / ".delegation").mkdir()
    (target / ".delegation" / "config.toml").write_text('check_level = "quick"\n')
    return target
