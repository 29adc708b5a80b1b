"""Recognises the instructions a built-in tool agent can carry out without a model.

Owns the small grammar: "fix", "format", "check" (each optionally followed by words that only
narrow the scope, e.g. "fix security findings") and "rename OLD NEW" / "rename OLD to NEW".
Invariant: anything else returns None, so "fix the rounding bug" goes to a model, never to a
tool that cannot do it.
"""

from __future__ import annotations

import re
from typing import Any

_PREFIX = re.compile(r"^\s*(?:delegate\s*:\s*)?", re.IGNORECASE)

# Words that may follow the verb without changing what the tool does.
_SCOPE_WORDS = frozenset(
    {
        "a",
        "all",
        "and",
        "any",
        "auto",
        "autofix",
        "autofixable",
        "code",
        "diagnostic",
        "diagnostics",
        "file",
        "files",
        "finding",
        "findings",
        "fixable",
        "fixes",
        "here",
        "in",
        "it",
        "issue",
        "issues",
        "lint",
        "linter",
        "linting",
        "my",
        "of",
        "please",
        "problem",
        "problems",
        "project",
        "ruff",
        "safe",
        "security",
        "selected",
        "selection",
        "semgrep",
        "style",
        "the",
        "these",
        "this",
        "warning",
        "warnings",
        "whole",
        "with",
        "workspace",
    }
)
_VERBS = {
    "fix": "fix",
    "autofix": "fix",
    "format": "format",
    "reformat": "format",
    "check": "check",
    "scan": "check",
    "lint": "check",
    "checks": "check",
}
_RENAME = re.compile(
    r"^rename\s+(?:(?:the\s+)?(?:symbol|function|class|variable|method|name)\s+)?"
    r"(?P<old>\S+?)\s+(?:(?:to|into|as|->|=>)\s+)?(?P<new>\S+?)\s*[.!]?$",
    re.IGNORECASE,
)
_QUOTES = "`'\"\u201c\u201d\u2018\u2019"


def parse_builtin_instruction(text: str) -> tuple[str, dict[str, Any]] | None:
    """(kind, arguments) for an instruction a built-in agent handles, else None."""
    body = _PREFIX.sub("", text, count=1).strip()
    rename = _RENAME.match(body)
    if rename is not None:
        old, new = (rename.group(g).strip(_QUOTES) for g in ("old", "new"))
        if old.lower() not in ("to", "into", "as") and new:
            return "rename", {"old": old, "new": new}
        return None
    words = re.findall(r"[a-z]+", body.lower().replace("'", ""))
    if words[:1] == ["run"]:
        words = words[1:]
    if not words or words[0] not in _VERBS:
        return None
    if all(word in _SCOPE_WORDS for word in words[1:]):
        return _VERBS[words[0]], {}
    return None
