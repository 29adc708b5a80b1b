"""Diagnostics kept per (check, uri), so syntax, semgrep and test results never erase each other.

Owns the server's view of what is published: `replace` swaps one check's findings for a
file and returns the union to publish for that uri; `clear` forgets a file altogether.
"""

from __future__ import annotations

from collections import defaultdict

from lsprotocol import types


class DiagnosticStore:
    def __init__(self) -> None:
        self._by_uri: dict[str, dict[str, list[types.Diagnostic]]] = defaultdict(dict)

    def replace(
        self, uri: str, check: str, diagnostics: list[types.Diagnostic]
    ) -> list[types.Diagnostic]:
        """Set the diagnostics of `check` for `uri`."""
        self._by_uri[uri][check] = diagnostics
        return self.for_uri(uri)

    def clear(self, uri: str) -> None:
        """Every check's diagnostics of `uri` are void (the file is gone)."""
        self._by_uri.pop(uri, None)

    def for_uri(self, uri: str) -> list[types.Diagnostic]:
        return [d for check in sorted(self._by_uri.get(uri, {})) for d in self._by_uri[uri][check]]

    def uris(self) -> list[str]:
        return sorted(self._by_uri)
