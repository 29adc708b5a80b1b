"""One parse of each Python text, shared by every check and agent that reads its tree.

Owns `parse_python`, a memo of `ast.parse` keyed by the text: in one task the fix agent, the
integrity check, the acceptance judge and the affected-test selection all parse the same
before/after texts, and on a large plan those repeated parses cost more than the tools. The
trees are shared, so callers only read them. A text that does not parse gives None. Whether a
text parses (`parses_as_python`, by compiling it: no tree) is remembered for many more texts.

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
PARSE_VERDICTS_KEPT = 8192
_AST_BUILD = threading.Lock()


@functools.lru_cache(maxsize=PARSED_TEXTS_KEPT)
def parse_python(text: str) -> ast.Module | None:
    """The module tree of `text` (read-only: it is shared), or None when it is not Python."""
    try:
        with _AST_BUILD:
            return ast.parse(text)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return None


@functools.lru_cache(maxsize=PARSE_VERDICTS_KEPT)
def parses_as_python(text: str) -> bool:
    """Whether `text` is a valid Python module, remembered for far more texts than trees are.

    It compiles instead of building a tree: compiling makes no Python object per syntax node,
    so in a swarm's large heap it does not set off the garbage collections that made building
    a tree there five times slower than in an empty interpreter. It also rejects what only the
    compiler catches (`return` outside a function, `nonlocal` at module level), which CPython
    refuses to run as well."""
    try:
        compile_python(text, "<parse check>")
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return False
    return True


def compile_python(text: str, path: str) -> None:
    """Compile `text` as the module at `path` (warnings silenced); raises SyntaxError."""
    with _AST_BUILD, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        compile(text, path, "exec", dont_inherit=True)
