"""The swarm's incentive layer: who gets work, who leaves quarantine, who gets how much context.

Pure functions with known-answer tests (`shapley`, `sharp`, `eigentrust`, `market`, `kvcache`)
and one stateful wrapper, `reputation.Economy`, persisted per workspace. Definitions of decay,
the quarantine exit rule and the SHARP formula: docs/economy.md.
"""

from __future__ import annotations

from delegation_machine.engine.economy.eigentrust import TrustResult, eigentrust
from delegation_machine.engine.economy.kvcache import (
    ElasticKvPool,
    KvGeometry,
    KvPlan,
    KvPlanRequest,
    OffloadHierarchy,
    OffloadTier,
    plan_kv,
    pyramid_budgets,
)
from delegation_machine.engine.economy.market import MarketEquilibrium, proportional_response
from delegation_machine.engine.economy.reputation import (
    AgentStanding,
    BudgetPlan,
    Economy,
    EconomyConfig,
    EconomyError,
    EconomyStateError,
    economy_config_from,
)
from delegation_machine.engine.economy.shapley import (
    ShapleyEstimate,
    exact_shapley,
    monte_carlo_shapley,
)
from delegation_machine.engine.economy.sharp import (
    KeptWork,
    SharpScore,
    SharpWeights,
    kept_work_from_mutations,
)

__all__ = [
    "AgentStanding",
    "BudgetPlan",
    "Economy",
    "EconomyConfig",
    "EconomyError",
    "EconomyStateError",
    "ElasticKvPool",
    "KeptWork",
    "KvGeometry",
    "KvPlan",
    "KvPlanRequest",
    "MarketEquilibrium",
    "OffloadHierarchy",
    "OffloadTier",
    "ShapleyEstimate",
    "SharpScore",
    "SharpWeights",
    "TrustResult",
    "economy_config_from",
    "eigentrust",
    "exact_shapley",
    "kept_work_from_mutations",
    "monte_carlo_shapley",
    "plan_kv",
    "proportional_response",
    "pyramid_budgets",
]
