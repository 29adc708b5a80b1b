"""The workspace symbol index: definitions, references and imports of every source file.

Owns one ParsedFile (text, bytes, tree-sitter tree) and the occurrence list per indexed file,
plus a name -> path -> occurrences map. Single owner: call it from one thread (the engine's
event loop); readers get immutable occurrence lists. `update_file` re-parses with the old
tree. Occurrence offsets are code points of the identifier token in the file text.
"""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from delegation_machine.engine.memory.incremental import IndexedFile, reindex_python_region
from delegation_machine.engine.memory.lang_other import extractor_for
from delegation_machine.engine.memory.lang_python import extract_python
from delegation_machine.engine.memory.occurrence import Scope, SymbolOccurrence
from delegation_machine.engine.memory.parsing import ParsedFile, Parsers, language_for_path
from delegation_machine.engine.state.files import (
    Unreadable,
    read_regular_file,
    real_path,
    regular_file_size,
)

__all__ = [
    "IGNORED_DIRECTORIES",
    "MAX_FILE_BYTES",
    "IndexedFile",
    "SkippedFile",
    "SymbolIndex",
    "SymbolOccurrence",
]

IGNORED_DIRECTORIES = frozenset(
    {
        ".delegation",
        ".git",
        ".hg",
        ".svn",
        ".venv",
        "venv",
        "node_modules",
        "__pycache__",
        ".mypy_cache",
        ".pytest_cache",
        ".ruff_cache",
        ".tox",
        "target",
    }
)
MAX_FILE_BYTES = 5_000_000
_BINARY_PROBE_BYTES = 8192

Extractor = Callable[[ParsedFile], tuple[list[SymbolOccurrence], list[Scope]]]


def extractor_for_language(language: str) -> Extractor:
    """The occurrence extractor for a grammar name ("python", "go", ...)."""
    if language == "python":
        return extract_python
    return extractor_for(language)


@dataclass(frozen=True)
class GitignoreRules:
    """The plain patterns of a workspace's top `.gitignore` (no negations, no nested files).

    `name/` matches folders only; a pattern with a slash is anchored at the root; others
    match a base name at any depth (fnmatch globs).
    """

    anchored: tuple[tuple[str, bool], ...] = ()
    anywhere: tuple[tuple[str, bool], ...] = ()

    @classmethod
    def read(cls, path: Path) -> GitignoreRules:
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError):
            return cls()
        anchored: list[tuple[str, bool]] = []
        anywhere: list[tuple[str, bool]] = []
        for raw in lines:
            line = raw.strip()
            if not line or line.startswith(("#", "!")):
                continue
            dir_only = line.endswith("/")
            pattern = line.strip("/")
            if not pattern:
                continue
            target = anchored if "/" in line.rstrip("/") else anywhere
            target.append((pattern, dir_only))
        return cls(tuple(anchored), tuple(anywhere))

    def ignores(self, rel: str, *, is_dir: bool) -> bool:
        base = rel.rsplit("/", 1)[-1]
        for pattern, dir_only in self.anywhere:
            if (is_dir or not dir_only) and fnmatch.fnmatchcase(base, pattern):
                return True
        for pattern, dir_only in self.anchored:
            if (is_dir or not dir_only) and fnmatch.fnmatchcase(rel, pattern):
                return True
        return False


@dataclass(frozen=True)
class SkippedFile:
    """A file the index left out, and why ("binary", "too large", "not UTF-8", ...)."""

    path: str
    reason: str


class SymbolIndex:
    """Tree-sitter index of a workspace. Paths are workspace-relative POSIX strings."""

    def __init__(
        self,
        root: Path,
        *,
        max_file_bytes: int = MAX_FILE_BYTES,
        ignored_directories: Iterable[str] = IGNORED_DIRECTORIES,
        languages: Iterable[str] | None = None,
    ) -> None:
        self.root = Path(root).resolve()
        # None indexes every language with a grammar; else only these ("python", "go", ...).
        self.languages = frozenset(languages) if languages is not None else None
        self.max_file_bytes = max_file_bytes
        self.ignored_directories = frozenset(ignored_directories)
        self._parsers = Parsers()
        self._files: dict[str, IndexedFile] = {}
        self._paths_by_name: dict[str, set[str]] = {}
        self.skipped: list[SkippedFile] = []
        # How many updates re-extracted one statement vs the whole file (for benchmarks).
        self.region_updates = 0
        self.full_updates = 0
        # Bumped by every change, so derived views (the repo graph) know when they are stale.
        self.generation = 0

    # --- building ------------------------------------------------------------------------

    def build(self) -> None:
        """Index every supported source file under the root (ignored folders skipped)."""
        self.generation += 1
        self._files.clear()
        self._paths_by_name.clear()
        self.skipped = []
        for rel in self.discover():
            text = self._read(rel)
            if text is not None:
                self._index(rel, self._parsers.parse(rel, language_for_path(rel) or "", text))

    def discover(self) -> list[str]:
        """Workspace-relative paths of supported files, sorted; ignored folders pruned."""
        found: list[str] = []
        ignore = GitignoreRules.read(self.root / ".gitignore")
        for directory, subdirectories, filenames in os.walk(self.root):
            relative_dir = Path(directory).relative_to(self.root).as_posix()
            prefix = "" if relative_dir == "." else f"{relative_dir}/"
            subdirectories[:] = sorted(
                name
                for name in subdirectories
                if name not in self.ignored_directories
                and not name.endswith(".egg-info")
                and not ignore.ignores(prefix + name, is_dir=True)
            )
            for filename in filenames:
                rel = prefix + filename
                language = language_for_path(rel)
                if language is None or ignore.ignores(rel, is_dir=False):
                    continue
                if self.languages is None or language in self.languages:
                    found.append(rel)
        found.sort()
        return found

    def _read(self, rel: str) -> str | None:
        path = self.root / rel
        try:  # a FIFO or device is never opened, a symlink loop is a reason, not a crash
            if path.is_symlink() and not real_path(path).is_relative_to(self.root):
                self.skipped.append(SkippedFile(rel, "symlink outside the workspace"))
                return None
            size = regular_file_size(path)
            if size > self.max_file_bytes:
                self.skipped.append(SkippedFile(rel, f"too large ({size} bytes)"))
                return None
            data = read_regular_file(path, max_bytes=self.max_file_bytes)
        except Unreadable as exc:
            self.skipped.append(SkippedFile(rel, exc.reason))
            return None
        if b"\x00" in data[:_BINARY_PROBE_BYTES]:
            self.skipped.append(SkippedFile(rel, "binary"))
            return None
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError as exc:
            self.skipped.append(SkippedFile(rel, f"not UTF-8 (byte {exc.start})"))
            return None

    # --- incremental updates -------------------------------------------------------------

    def update_file(self, rel: str, text: str) -> list[SymbolOccurrence]:
        """Re-index one file from `text` (re-parsing with its old tree); returns its occurrences.

        Files with no grammar are ignored (an empty list comes back).
        """
        language = language_for_path(rel)
        if language is None:
            return []
        old = self._files.get(rel)
        if old is None:
            return self._index(rel, self._parsers.parse(rel, language, text)).occurrences
        old_tree = old.parsed.tree
        parsed = self._parsers.reparse(old.parsed, text)
        old_names = old.names()
        if parsed.language == "python":
            indexed = reindex_python_region(old, parsed, old_tree)
            if indexed is not None:
                self.region_updates += 1
                return self._link(rel, indexed, old_names).occurrences
        self.full_updates += 1
        return self._index(rel, parsed, old_names).occurrences

    def remove_file(self, rel: str) -> bool:
        """Drop a file from the index; False if it was not indexed."""
        old = self._files.pop(rel, None)
        if old is None:
            return False
        self.generation += 1
        self._forget_names(rel, old.names())
        return True

    def _index(
        self, rel: str, parsed: ParsedFile, old_names: set[str] | None = None
    ) -> IndexedFile:
        occurrences, scopes = extractor_for_language(parsed.language)(parsed)
        return self._link(rel, IndexedFile(parsed, occurrences, scopes), old_names)

    def _link(
        self, rel: str, indexed: IndexedFile, old_names: set[str] | None = None
    ) -> IndexedFile:
        """Store a file's record; only names that appeared or vanished touch the name map."""
        self.generation += 1
        self._files[rel] = indexed
        names = indexed.names()
        paths_by_name = self._paths_by_name
        for name in names if old_names is None else names - old_names:
            paths = paths_by_name.get(name)
            if paths is None:
                paths_by_name[name] = {rel}
            else:
                paths.add(rel)
        if old_names is not None:
            self._forget_names(rel, old_names - names)
        return indexed

    def _forget_names(self, rel: str, names: Iterable[str]) -> None:
        for name in names:
            paths = self._paths_by_name.get(name)
            if paths is not None:
                paths.discard(rel)
                if not paths:
                    del self._paths_by_name[name]

    # --- queries -------------------------------------------------------------------------

    def occurrences(self, name: str) -> list[SymbolOccurrence]:
        """Every occurrence of `name` across the workspace, ordered by (path, start)."""
        paths = self._paths_by_name.get(name, ())
        return [occurrence for rel in sorted(paths) for occurrence in self._files[rel].named(name)]

    def definitions(self, name: str) -> list[SymbolOccurrence]:
        return [o for o in self.occurrences(name) if o.kind == "definition"]

    def references(self, name: str) -> list[SymbolOccurrence]:
        return [o for o in self.occurrences(name) if o.kind == "reference"]

    def imports(self, name: str) -> list[SymbolOccurrence]:
        return [o for o in self.occurrences(name) if o.kind == "import"]

    def files(self) -> list[str]:
        """Indexed paths, sorted."""
        return sorted(self._files)

    def file_occurrences(self, rel: str) -> list[SymbolOccurrence]:
        """All occurrences in one file, ordered by offset (empty if not indexed)."""
        indexed = self._files.get(rel)
        return list(indexed.occurrences) if indexed is not None else []

    def scopes(self, rel: str) -> list[Scope]:
        """The named scopes (classes, functions, ...) of one file, in source order."""
        indexed = self._files.get(rel)
        return list(indexed.scopes) if indexed is not None else []

    def parsed(self, rel: str) -> ParsedFile | None:
        """The parsed file (text, bytes, tree) of an indexed path, or None."""
        indexed = self._files.get(rel)
        return indexed.parsed if indexed is not None else None

    def names(self) -> list[str]:
        """Every name that occurs somewhere, sorted."""
        return sorted(self._paths_by_name)

    def line_count(self) -> int:
        return sum(indexed.parsed.text.count("\n") + 1 for indexed in self._files.values())
