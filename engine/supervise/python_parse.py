"""One parse of each Python text, shared by every check and agent that reads its tree.

Owns `parse_python`, a memo of `ast.parse` keyed by the text: in one task the fix agent, the
integrity check, the acceptance judge and the affected-test selection all parse the same
before/after texts, and on a large plan those repeated parses cost more than the tools. The
trees are shared, so callers only read them. A text that does not parse gives None.

It also owns the one lock every AST construction in the engine takes (`parse_python`,
`compile_python`): CPython 3.11 raises "SystemError: AST constructor recursion depth
mismatch" when two threads build ASTs at once, and checks run in worker threads.
"""

from __future__ import annotations

import ast
import functools
import threading
import warnings

PARSED_TEXTS_KEPT = 256
_AST_BUILD = threading.Lock()


@functools.lru_cache(maxsize=PARSED_TEXTS_KEPT)
def parse_python(text: str) -> ast.Module | None:
    """The module tree of `text` (read-only: it is shared), or None when it is not Python."""
    try:
        with _AST_BUILD:
            return ast.parse(text)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return None


def compile_python(text: str, path: str) -> None:
    """Compile `text` as the module at `path` (warnings silenced); raises SyntaxError."""
    with _AST_BUILD, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        compile(text, path, "exec", dont_inherit=True)
