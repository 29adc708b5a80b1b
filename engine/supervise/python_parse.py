"""One parse of each Python text, shared by every check and agent that reads its tree.

Owns `parse_python`, a memo of `ast.parse` keyed by the text: in one task the fix agent, the
integrity check, the acceptance judge and the affected-test selection all parse the same
before/after texts, and on a large plan those repeated parses cost more than the tools. The
trees are shared, so callers only read them. A text that does not parse gives None. Whether a
text parses (`parses_as_python`) is remembered for many more texts than trees are.

It also owns the one lock every AST construction in the engine takes (`parse_python`,
`compile_python`): CPython 3.11 raises "SystemError: AST constructor recursion depth
mismatch" when two threads build ASTs at once, and checks run in worker threads.
"""

from __future__ import annotations

import ast
import contextlib
import functools
import gc
import threading
import warnings
from collections.abc import Iterator

PARSED_TEXTS_KEPT = 256
PARSE_VERDICTS_KEPT = 8192
_AST_BUILD = threading.Lock()


@functools.lru_cache(maxsize=PARSED_TEXTS_KEPT)
def parse_python(text: str) -> ast.Module | None:
    """The module tree of `text` (read-only: it is shared), or None when it is not Python."""
    try:
        with _AST_BUILD, _collector_paused():
            return ast.parse(text)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return None


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    """The cyclic garbage collector off while a tree is built: a tree is thousands of new
    container objects, each allocation burst triggers a collection, and in a swarm's process
    (CRDT documents, the symbol index, cached trees) each collection walks a large heap, which
    made a parse several times slower than in an empty interpreter. Trees hold no cycles the
    collector would need to free early."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


@functools.lru_cache(maxsize=PARSE_VERDICTS_KEPT)
def parses_as_python(text: str) -> bool:
    """Whether `text` parses; remembered for far more texts than their trees (a bool and a
    reference to a text the caller holds anyway cost little), so a large plan's checks parse
    each text once."""
    return parse_python(text) is not None


def compile_python(text: str, path: str) -> None:
    """Compile `text` as the module at `path` (warnings silenced); raises SyntaxError."""
    with _AST_BUILD, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        compile(text, path, "exec", dont_inherit=True)
