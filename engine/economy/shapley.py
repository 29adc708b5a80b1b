"""Shapley values of cooperative games: exact enumeration and Monte Carlo permutation sampling.

Owns `exact_shapley` (all 2^n coalitions, for up to `EXACT_PLAYER_LIMIT` players) and
`monte_carlo_shapley` (Castro, Gómez and Tejada 2009), which reports a Hoeffding error bound.
A game is a list of distinct hashable players and `value(frozenset) -> float`; the value of
every coalition is asked for at most once per call.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import Generic, TypeVar

import msgspec
import numpy as np

P = TypeVar("P", bound=Hashable)

EXACT_PLAYER_LIMIT = 20
"""Above this many players exact enumeration is refused (2^20 coalitions is already ~1M)."""


class ShapleyError(ValueError):
    """The game was malformed (duplicate players, too many players, bad sampling budget)."""


class ShapleyEstimate(msgspec.Struct, Generic[P], frozen=True):
    """Shapley values estimated from `samples` random permutations.

    `epsilon` bounds |estimate - true value| for every player at once, with probability at
    least 1 - delta, when the marginal contributions lie in an interval of width
    `marginal_range` (Hoeffding, union bound over the players). `range_observed` is True when
    that width was taken from the samples rather than given, so the bound is empirical.
    """

    values: dict[P, float]
    samples: int
    epsilon: float
    delta: float
    marginal_range: float
    range_observed: bool
    standard_errors: dict[P, float]


def _check_players(players: Sequence[P]) -> list[P]:
    ordered = list(players)
    if len(set(ordered)) != len(ordered):
        raise ShapleyError(f"players must be distinct, got {ordered!r}")
    return ordered


def exact_shapley(players: Sequence[P], value: Callable[[frozenset[P]], float]) -> dict[P, float]:
    """Exact Shapley values by enumerating every coalition once.

    phi_i = sum over S not containing i of |S|! (n-|S|-1)! / n! * (v(S + i) - v(S)).
    Cost: 2^n calls of `value` and n * 2^(n-1) arithmetic steps.
    """
    ordered = _check_players(players)
    count = len(ordered)
    if count > EXACT_PLAYER_LIMIT:
        raise ShapleyError(
            f"exact Shapley over {count} players needs 2^{count} coalitions; "
            f"the limit is {EXACT_PLAYER_LIMIT}, use monte_carlo_shapley"
        )
    if count == 0:
        return {}
    coalition_values = np.asarray(_all_coalition_values(ordered, value), dtype=np.float64)
    masks = np.arange(1 << count, dtype=np.int64)
    sizes = np.zeros(1 << count, dtype=np.int64)
    for index in range(count):
        sizes += (masks >> index) & 1
    # weight[s] = s! (n-s-1)! / n!, the probability that i is preceded by exactly a given S.
    weights = np.array(
        [
            math.factorial(size) * math.factorial(count - size - 1) / math.factorial(count)
            for size in range(count)
        ]
    )
    shapley: dict[P, float] = {}
    for index, player in enumerate(ordered):
        bit = 1 << index
        without = masks[(masks & bit) == 0]
        gains = coalition_values[without | bit] - coalition_values[without]
        shapley[player] = float(np.dot(weights[sizes[without]], gains))
    return shapley


def _all_coalition_values(ordered: list[P], value: Callable[[frozenset[P]], float]) -> list[float]:
    values: list[float] = []
    for mask in range(1 << len(ordered)):
        members = frozenset(p for i, p in enumerate(ordered) if mask >> i & 1)
        values.append(float(value(members)))
    return values


def hoeffding_samples(epsilon: float, delta: float, marginal_range: float) -> int:
    """Samples m with m >= r^2 ln(2/delta) / (2 epsilon^2) (one player's two-sided bound)."""
    if epsilon <= 0 or not 0 < delta < 1 or marginal_range < 0:
        raise ShapleyError(
            f"need epsilon > 0, 0 < delta < 1, range >= 0; got {epsilon}, {delta}, {marginal_range}"
        )
    return math.ceil(marginal_range**2 * math.log(2 / delta) / (2 * epsilon**2))


def hoeffding_epsilon(samples: int, delta: float, marginal_range: float) -> float:
    """The epsilon that `samples` permutations guarantee for one player (inverse of the above)."""
    if samples <= 0:
        raise ShapleyError(f"samples must be positive, got {samples}")
    return marginal_range * math.sqrt(math.log(2 / delta) / (2 * samples))


def monte_carlo_shapley(
    players: Sequence[P],
    value: Callable[[frozenset[P]], float],
    samples: int,
    seed: int | None = 0,
    *,
    delta: float = 0.05,
    marginal_range: float | None = None,
) -> ShapleyEstimate[P]:
    """Estimate Shapley values from `samples` uniformly random player orders.

    Each permutation yields one marginal contribution per player, an unbiased sample of its
    Shapley value (Castro et al. 2009). Coalition values are memoised within the call, so small
    games cost at most 2^n evaluations whatever the budget. The reported `epsilon` holds for
    all players together with probability 1 - delta (delta split over the players).
    """
    ordered = _check_players(players)
    if samples <= 0:
        raise ShapleyError(f"samples must be positive, got {samples}")
    if not 0 < delta < 1:
        raise ShapleyError(f"delta must be in (0, 1), got {delta}")
    rng = random.Random(seed)
    memo: dict[frozenset[P], float] = {}

    def cached_value(coalition: frozenset[P]) -> float:
        found = memo.get(coalition)
        if found is None:
            found = float(value(coalition))
            memo[coalition] = found
        return found

    sums = dict.fromkeys(ordered, 0.0)
    squares = dict.fromkeys(ordered, 0.0)
    low, high = math.inf, -math.inf
    order = list(ordered)
    for _ in range(samples):
        rng.shuffle(order)
        coalition: frozenset[P] = frozenset()
        previous = cached_value(coalition)
        for player in order:
            coalition = coalition | {player}
            current = cached_value(coalition)
            marginal = current - previous
            sums[player] += marginal
            squares[player] += marginal * marginal
            low, high = min(low, marginal), max(high, marginal)
            previous = current
    estimates = {p: sums[p] / samples for p in ordered}
    observed = marginal_range is None
    width = (high - low if ordered else 0.0) if marginal_range is None else marginal_range
    per_player_delta = delta / max(len(ordered), 1)
    return ShapleyEstimate(
        values=estimates,
        samples=samples,
        epsilon=hoeffding_epsilon(samples, per_player_delta, width),
        delta=delta,
        marginal_range=width,
        range_observed=observed,
        standard_errors=_standard_errors(estimates, squares, samples),
    )


def _standard_errors(
    means: Mapping[P, float], squares: Mapping[P, float], samples: int
) -> dict[P, float]:
    errors: dict[P, float] = {}
    for player, mean in means.items():
        if samples < 2:
            errors[player] = math.inf
            continue
        variance = max(squares[player] / samples - mean * mean, 0.0) * samples / (samples - 1)
        errors[player] = math.sqrt(variance / samples)
    return errors
