"""Swarm configuration: `.delegation/config.toml` merged with the editor's `delegation` settings.

Owns `SwarmConfig` and the per-workspace folder `.delegation/` (created on first use, with a
`.gitignore` so it is never committed, checked or indexed). Editor settings override the file;
an invalid value raises `ConfigError` naming the key.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import msgspec

STATE_DIR_NAME = ".delegation"


class ConfigError(ValueError):
    """A configuration value is invalid; the message names the key and the source."""


class SwarmConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    agents: int = 0  # 0: choose from the CPU count
    max_file_bytes: int = 5_000_000
    lease_ttl_s: float = 120.0
    check_debounce_ms: int = 300
    # "auto": keystroke checks quick, a task's change gets the full checks (its affected tests
    # run) before it is committed when the workspace has tests; "quick"/"full": always that.
    check_level: Literal["auto", "quick", "full"] = "auto"
    # A task that edits what judges it (tests, fixtures, conftest, check configuration) is
    # held for an explicit accept unless this is true (the CLI's --allow-test-changes).
    allow_test_changes: bool = False
    semgrep_rules: tuple[str, ...] = ()  # extra rule files or folders, workspace-relative
    watch: bool = True
    inference: dict[str, Any] = {}
    economy: dict[str, Any] = {}

    def worker_count(self) -> int:
        if self.agents > 0:
            return self.agents
        return max(2, min(8, (os.cpu_count() or 2) * 2))


def state_dir(root: Path) -> Path:
    """The workspace's `.delegation/` folder, created with a `.gitignore` on first use."""
    folder = root / STATE_DIR_NAME
    if not folder.exists():
        folder.mkdir(parents=True, exist_ok=True)
        (folder / ".gitignore").write_text("*\n", encoding="utf-8")
    return folder


def _camel_to_snake(key: str) -> str:
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in key)


def normalise_keys(settings: Mapping[str, Any]) -> dict[str, Any]:
    """Editor settings use camelCase; the configuration file and SwarmConfig snake_case."""
    return {_camel_to_snake(k): v for k, v in settings.items()}


def load_config(root: Path, editor_settings: Mapping[str, Any] | None = None) -> SwarmConfig:
    """Read `.delegation/config.toml` (if any) and overlay the editor's settings."""
    merged: dict[str, Any] = {}
    config_file = root / STATE_DIR_NAME / "config.toml"
    if config_file.is_file():
        try:
            merged.update(normalise_keys(tomllib.loads(config_file.read_text(encoding="utf-8"))))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{config_file}: {exc}") from None
    if editor_settings:
        merged.update(normalise_keys(editor_settings))
    return parse_config(merged, source=str(config_file) if config_file.is_file() else "settings")


def parse_config(values: Mapping[str, Any], *, source: str = "settings") -> SwarmConfig:
    try:
        return msgspec.convert(dict(values), type=SwarmConfig)
    except msgspec.ValidationError as exc:
        raise ConfigError(f"invalid delegation configuration in {source}: {exc}") from None
