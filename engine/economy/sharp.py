"""SHARP: the tripartite score of one finished task (global accuracy, Shapley share, efficiency).

Owns the task's coalition game (a weighted coverage game over the units of kept work), the
tool-process efficiency term and `sharp_score`, a pure function. Invariant: the agents'
Shapley shares sum to the task's accuracy reward (efficiency axiom), exactly for teams up to
`SharpWeights.exact_limit` and within the reported bound beyond. Formula: docs/economy.md.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from typing import Protocol

import msgspec

from delegation_machine.engine.economy.shapley import exact_shapley, monte_carlo_shapley
from delegation_machine.engine.protocol import Mutation


class SharpError(ValueError):
    """The task's inputs were malformed (negative weights or usage, empty units, bad budget)."""


class KeptWork(msgspec.Struct, frozen=True):
    """What one agent contributed to a task and the task kept.

    `units` name the pieces of work the agent's kept mutations covered (for example merged edit
    regions, see `kept_work_from_mutations`); `unit_weights` gives a weight per unit (default
    1). Agents that covered the same unit share its credit.
    """

    units: tuple[str, ...]
    unit_weights: dict[str, float] = {}
    mutations: int = 0


class UsageLike(Protocol):
    """Anything shaped like engine.agents.base.TokenUsage."""

    @property
    def prompt_tokens(self) -> int: ...
    @property
    def cached_tokens(self) -> int: ...
    @property
    def output_tokens(self) -> int: ...
    @property
    def tool_calls(self) -> int: ...


class ProcessCost(msgspec.Struct, frozen=True):
    """The tool-process inputs of the efficiency term for one task."""

    prompt_tokens: int = 0
    cached_tokens: int = 0
    output_tokens: int = 0
    tool_calls: int = 0
    retries: int = 0


class SharpWeights(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Weights of the three terms and the cost model of the efficiency term."""

    accuracy: float = 0.4
    contribution: float = 0.4
    efficiency: float = 0.2
    reference_cost: float = 20_000.0  # cost units at which efficiency is 1/2
    tokens_per_tool_call: float = 500.0
    tokens_per_retry: float = 5_000.0
    cached_token_discount: float = 0.1  # a cached prompt token costs this much of an uncached one
    exact_limit: int = 10  # exact Shapley up to this many agents, Monte Carlo above
    samples: int = 2_000  # Monte Carlo permutations above exact_limit
    seed: int = 0


DEFAULT_WEIGHTS = SharpWeights()


class SharpScore(msgspec.Struct, frozen=True):
    """The score of one finished task, per agent and in its three parts."""

    task_id: str
    kind: str
    accuracy: float  # +1 when the supervisor passed the task, -1 when it failed
    efficiency: float  # in (0, 1]; the same for every agent of the task
    shapley: dict[str, float]  # each agent's share of `accuracy`; sums to it
    scores: dict[str, float]  # the SHARP score per agent
    exact: bool
    samples: int = 0
    error_bound: float = 0.0  # Monte Carlo epsilon (delta 0.05), 0 when exact


def kept_work_from_mutations(mutations: Iterable[Mutation]) -> dict[str, KeptWork]:
    """Turn kept mutations into units: one unit per connected region of edited text per file.

    Edits of different agents that overlap or touch fall into one region, so those agents
    share it; a region's weight is the number of code points it spans (at least 1).
    """
    by_path: dict[str, list[tuple[int, int, str]]] = {}
    counts: dict[str, int] = {}
    for mutation in mutations:
        counts[mutation.agent_id] = counts.get(mutation.agent_id, 0) + 1
        for edit in mutation.edits:
            end = max(edit.end, edit.start + len(edit.new_text))
            by_path.setdefault(mutation.path, []).append((edit.start, end, mutation.agent_id))
    units: dict[str, list[str]] = {agent: [] for agent in counts}
    weights: dict[str, dict[str, float]] = {agent: {} for agent in counts}
    for path, spans in sorted(by_path.items()):
        for name, weight, agents in _merged_regions(path, spans):
            for agent in agents:
                units[agent].append(name)
                weights[agent][name] = weight
    return {agent: KeptWork(tuple(units[agent]), weights[agent], counts[agent]) for agent in counts}


def _merged_regions(
    path: str, spans: list[tuple[int, int, str]]
) -> list[tuple[str, float, set[str]]]:
    regions: list[tuple[str, float, set[str]]] = []
    spans.sort()
    start, end, agents = spans[0][0], spans[0][1], {spans[0][2]}
    for span_start, span_end, agent in spans[1:]:
        if span_start <= end:
            end = max(end, span_end)
            agents.add(agent)
            continue
        regions.append((f"{path}@{start}", float(max(end - start, 1)), agents))
        start, end, agents = span_start, span_end, {agent}
    regions.append((f"{path}@{start}", float(max(end - start, 1)), agents))
    return regions


def coverage_value(contributions: Mapping[str, KeptWork]) -> Callable[[frozenset[str]], float]:
    """The coalition game: the weighted share of all kept units that coalition S covers."""
    unit_weight: dict[str, float] = {}
    for agent, work in contributions.items():
        for unit in work.units:
            weight = work.unit_weights.get(unit, 1.0)
            if weight < 0 or not math.isfinite(weight):
                raise SharpError(f"unit {unit!r} of agent {agent!r} has bad weight {weight}")
            unit_weight[unit] = max(unit_weight.get(unit, 0.0), weight)
    total = sum(unit_weight.values())
    covers = {agent: frozenset(work.units) for agent, work in contributions.items()}

    def value(coalition: frozenset[str]) -> float:
        if total == 0:
            # no measurable units: every agent counts equally (an additive game)
            return len(coalition) / max(len(covers), 1)
        covered: set[str] = set()
        for agent in coalition:
            covered |= covers[agent]
        return sum(unit_weight[unit] for unit in covered) / total

    return value


def process_efficiency(cost: ProcessCost, weights: SharpWeights = DEFAULT_WEIGHTS) -> float:
    """E = 1 / (1 + c / c_ref), c = uncached + discounted cached + output + tool + retry cost."""
    for field in ("prompt_tokens", "cached_tokens", "output_tokens", "tool_calls", "retries"):
        if getattr(cost, field) < 0:
            raise SharpError(f"usage.{field} is negative: {getattr(cost, field)}")
    cached = min(cost.cached_tokens, cost.prompt_tokens)
    units = (
        (cost.prompt_tokens - cached)
        + weights.cached_token_discount * cached
        + cost.output_tokens
        + weights.tokens_per_tool_call * cost.tool_calls
        + weights.tokens_per_retry * cost.retries
    )
    return 1.0 / (1.0 + units / weights.reference_cost)


def process_cost(usage: UsageLike | None, retries: int = 0) -> ProcessCost:
    if usage is None:
        return ProcessCost(retries=retries)
    return ProcessCost(
        prompt_tokens=int(usage.prompt_tokens),
        cached_tokens=int(usage.cached_tokens),
        output_tokens=int(usage.output_tokens),
        tool_calls=int(usage.tool_calls),
        retries=int(getattr(usage, "retries", 0)) + retries,
    )


def sharp_score(
    task_id: str,
    kind: str,
    contributions: Mapping[str, KeptWork],
    verdict_passed: bool,
    cost: ProcessCost,
    weights: SharpWeights = DEFAULT_WEIGHTS,
    value: Callable[[frozenset[str]], float] | None = None,
) -> SharpScore:
    """Score a finished task: s_i = w_a * A + w_m * phi_i + w_e * E * [passed].

    A is +1 on a pass and -1 on a failure; phi_i is agent i's Shapley value in the game
    A * v(S), where v defaults to `coverage_value(contributions)` (v(all) = 1), so the shares
    sum to A. A failed task earns no efficiency credit, so cheap failures are not rewarded.
    """
    accuracy = 1.0 if verdict_passed else -1.0
    efficiency = process_efficiency(cost, weights)
    agents = sorted(contributions)
    game = value if value is not None else coverage_value(contributions)

    def reward(coalition: frozenset[str]) -> float:
        return accuracy * game(coalition)

    exact = len(agents) <= weights.exact_limit
    if exact:
        shapley, samples, bound = exact_shapley(agents, reward), 0, 0.0
    else:
        if weights.samples <= 0:
            raise SharpError(f"SharpWeights.samples must be positive, got {weights.samples}")
        estimate = monte_carlo_shapley(agents, reward, weights.samples, weights.seed)
        shapley, samples, bound = estimate.values, estimate.samples, estimate.epsilon
    efficiency_credit = efficiency if verdict_passed else 0.0
    scores = {
        agent: weights.accuracy * accuracy
        + weights.contribution * shapley[agent]
        + weights.efficiency * efficiency_credit
        for agent in agents
    }
    return SharpScore(
        task_id=task_id,
        kind=kind,
        accuracy=accuracy,
        efficiency=efficiency,
        shapley=shapley,
        scores=scores,
        exact=exact,
        samples=samples,
        error_bound=bound,
    )
