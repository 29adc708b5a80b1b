"""Memory and context for the swarm: symbol index, repo graph, funnel, paging, time travel.

Semantic memory (`symbols`, `graph`, `repomap`, `retrieval`), the context funnel (`funnel`),
working memory (`working`), episodic replay (`timetravel`) and decision records (`adr`).
"""

from __future__ import annotations

from delegation_machine.engine.memory.occurrence import SymbolOccurrence
from delegation_machine.engine.memory.symbols import SymbolIndex

__all__ = ["SymbolIndex", "SymbolOccurrence"]
