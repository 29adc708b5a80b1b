"""The semgrep rules Delegation Machine ships with (`semgrep/*.yaml`, languages: python).

Owns the rule files and the mapping from semgrep's reported `check_id` back to a stable rule
id. Invariant: every bundled rule id starts with `dm-` and never changes once released, so
diagnostics codes (`semgrep:<rule-id>`) and ledger entries stay comparable across versions.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

BUNDLED_RULE_PREFIX = "dm-"
_RULES_DIRECTORY = Path(__file__).resolve().parent / "semgrep"


def bundled_semgrep_rules() -> list[Path]:
    """Absolute paths of the bundled rule files, sorted; pass each as `--config PATH`."""
    return sorted(_RULES_DIRECTORY.glob("*.yaml"))


def bundled_rules_directory() -> Path:
    return _RULES_DIRECTORY


def bundled_rule_id(check_id: str) -> str:
    """The stable rule id inside semgrep's `check_id`.

    semgrep prefixes a rule's id with the dotted path of its config file
    (`engine.rules.semgrep.dm-weak-hash`); rule ids themselves contain no dots.
    """
    return check_id.rsplit(".", 1)[-1]


def workspace_semgrep_rules(root: Path, extra: Sequence[str] = ()) -> list[Path]:
    """The rules a workspace is checked with: the bundled ones, then the workspace's own in
    `.delegation/semgrep/`, then the configured `semgrep_rules` (workspace-relative)."""
    paths = bundled_semgrep_rules()
    own = root / ".delegation" / "semgrep"
    if own.is_dir():
        paths.extend(sorted(own.glob("*.y*ml")))
    paths.extend(root / p for p in extra)
    return paths
