"""One parse of each Python text, shared by every check and agent that reads its tree.

Owns `parse_python`, a memo of `ast.parse` keyed by the text: in one task the fix agent, the
integrity check, the acceptance judge and the affected-test selection all parse the same
before/after texts, and on a large plan those repeated parses cost more than the tools. The
trees are shared, so callers only read them. A text that does not parse gives None.
"""

from __future__ import annotations

import ast
import functools

PARSED_TEXTS_KEPT = 256


@functools.lru_cache(maxsize=PARSED_TEXTS_KEPT)
def parse_python(text: str) -> ast.Module | None:
    """The module tree of `text` (read-only: it is shared), or None when it is not Python."""
    try:
        return ast.parse(text)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return None
