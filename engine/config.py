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


class ScaleConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """`[scale]`: agent workers on other hosts through Redis Streams (docs/scale-out.md)."""

    redis: str = ""  # redis:// or rediss:// URL, no password in it; "" (and no --redis): off
    kinds: tuple[str, ...] = ("fix", "format")  # task kinds sent to the remote workers
    slots: int = 8  # remote tasks in flight at once (beside the local workers)
    lease_s: float = 30.0  # a worker silent this long loses its task (XAUTOCLAIM), re-issued
    task_timeout_s: float = 600.0  # an attempt with no result by then fails, like a local one
    namespace: str = "dm"  # key prefix shared by one host and its workers
    events_max: int = 10_000  # the ledger's mirror stream keeps about this many events

    def __post_init__(self) -> None:
        if self.slots < 1 or self.lease_s <= 0 or self.task_timeout_s <= 0:
            raise ValueError("scale: slots must be at least 1, lease_s and task_timeout_s > 0")
        if not self.kinds:
            raise ValueError("scale: kinds must name at least one task kind")


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
    model_server: dict[str, Any] = {}  # [model_server]: a local model server serve supervises
    scale: ScaleConfig = msgspec.field(default_factory=ScaleConfig)

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
