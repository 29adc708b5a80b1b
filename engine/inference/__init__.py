"""Inference: backends, shared-prefix prompt layout, radix prefix accounting, the token ledger.

Import from the submodules; this package re-exports the names the swarm and server use.
"""

from __future__ import annotations

from delegation_machine.engine.inference.accounting import (
    BudgetExceeded,
    LedgerSnapshot,
    TokenLedger,
    TokenPrices,
)
from delegation_machine.engine.inference.backend import (
    Backend,
    BackendError,
    ChatMessage,
    ChatRequest,
    Completion,
)
from delegation_machine.engine.inference.config import (
    BackendConfig,
    create_backend,
    create_session,
    load_backend_config,
    no_backend_message,
)
from delegation_machine.engine.inference.session import InferenceSession

__all__ = [
    "Backend",
    "BackendConfig",
    "BackendError",
    "BudgetExceeded",
    "ChatMessage",
    "ChatRequest",
    "Completion",
    "InferenceSession",
    "LedgerSnapshot",
    "TokenLedger",
    "TokenPrices",
    "create_backend",
    "create_session",
    "load_backend_config",
    "no_backend_message",
]
