"""Shapley values: classic games with closed forms, the axioms as properties, Monte Carlo bounds."""

from __future__ import annotations

import itertools
import math
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from delegation_machine.engine.economy.shapley import (
    ShapleyError,
    exact_shapley,
    hoeffding_epsilon,
    hoeffding_samples,
    monte_carlo_shapley,
)


def weighted_voting(quota: int, weights: list[int]):
    return lambda coalition: 1.0 if sum(weights[i] for i in coalition) >= quota else 0.0


def test_glove_game_one_left_two_right():
    # player 0 owns the only left glove; a pair is worth 1
    def value(coalition: frozenset[int]) -> float:
        return 1.0 if 0 in coalition and (1 in coalition or 2 in coalition) else 0.0

    phi = exact_shapley([0, 1, 2], value)
    assert phi[0] == pytest.approx(2 / 3)
    assert phi[1] == pytest.approx(1 / 6)
    assert phi[2] == pytest.approx(1 / 6)


def test_airport_game_matches_littlechild_owen_formula():
    costs = [1.0, 2.0, 3.0, 7.0]

    def value(coalition: frozenset[int]) -> float:
        return max((costs[i] for i in coalition), default=0.0)

    phi = exact_shapley(range(4), value)  # type: ignore[arg-type]
    # phi_i = sum_{k<=i} (c_k - c_{k-1}) / (n - k): each runway segment split among its users
    expected, share, previous = [], 0.0, 0.0
    for k, cost in enumerate(costs):
        share += (cost - previous) / (len(costs) - k)
        previous = cost
        expected.append(share)
    assert [phi[i] for i in range(4)] == pytest.approx(expected)
    assert expected == pytest.approx(
        [0.25, 0.25 + 1 / 3, 0.25 + 1 / 3 + 0.5, 0.25 + 1 / 3 + 0.5 + 4]
    )


def test_weighted_voting_51_50_49_1():
    phi = exact_shapley([0, 1, 2], weighted_voting(51, [50, 49, 1]))
    assert phi == pytest.approx({0: 2 / 3, 1: 1 / 6, 2: 1 / 6})


def test_un_security_council_fifteen_players():
    # [39; 7,7,7,7,7,1,...,1]: Shapley-Shubik power 421/2145 (permanent), 4/2145 (elected)
    phi = exact_shapley(range(15), weighted_voting(39, [7] * 5 + [1] * 10))  # type: ignore[arg-type]
    for i in range(5):
        assert phi[i] == pytest.approx(421 / 2145, abs=1e-12)
    for i in range(5, 15):
        assert phi[i] == pytest.approx(4 / 2145, abs=1e-12)


def test_exact_matches_permutation_definition_on_an_irregular_game():
    values = {}
    players = ["a", "b", "c", "d"]
    for size in range(5):
        for combo in itertools.combinations(players, size):
            values[frozenset(combo)] = Fraction(
                len("".join(combo)) ** 2 + ord(combo[0]) % 7 if combo else 0
            )

    by_permutation = dict.fromkeys(players, Fraction(0))
    orders = list(itertools.permutations(players))
    for order in orders:
        seen: frozenset[str] = frozenset()
        for player in order:
            by_permutation[player] += values[seen | {player}] - values[seen]
            seen = seen | {player}
    phi = exact_shapley(players, lambda s: float(values[s]))
    for player in players:
        assert phi[player] == pytest.approx(float(by_permutation[player] / len(orders)))


def test_value_is_called_once_per_coalition():
    calls: list[frozenset[int]] = []

    def value(coalition: frozenset[int]) -> float:
        calls.append(coalition)
        return float(len(coalition))

    exact_shapley(range(6), value)  # type: ignore[arg-type]
    assert len(calls) == 64 and len(set(calls)) == 64


def test_bad_games_are_refused():
    with pytest.raises(ShapleyError, match="distinct"):
        exact_shapley([1, 1], lambda s: 0.0)
    with pytest.raises(ShapleyError, match="monte_carlo_shapley"):
        exact_shapley(range(25), lambda s: 0.0)  # type: ignore[arg-type]
    with pytest.raises(ShapleyError, match="samples"):
        monte_carlo_shapley([1, 2], lambda s: 0.0, samples=0)
    assert exact_shapley([], lambda s: 0.0) == {}


# --- the axioms, as properties over random games ---------------------------------------------

games = st.integers(min_value=1, max_value=6).flatmap(
    lambda n: st.tuples(
        st.just(n),
        st.lists(
            st.floats(min_value=-100, max_value=100, allow_nan=False),
            min_size=1 << n,
            max_size=1 << n,
        ),
    )
)


def as_value(n: int, table: list[float]):
    def value(coalition: frozenset[int]) -> float:
        return table[sum(1 << i for i in coalition)] - table[0]  # v(empty) = 0

    return value


@settings(max_examples=60, deadline=None)
@given(games)
def test_efficiency(game):
    n, table = game
    value = as_value(n, table)
    phi = exact_shapley(range(n), value)  # type: ignore[arg-type]
    assert math.fsum(phi.values()) == pytest.approx(value(frozenset(range(n))), abs=1e-6)


@settings(max_examples=60, deadline=None)
@given(games, st.data())
def test_null_player_gets_zero(game, data):
    n, table = game
    null = data.draw(st.integers(0, n - 1))
    base = as_value(n, table)

    def value(coalition: frozenset[int]) -> float:
        return base(coalition - {null})  # adding `null` never changes the value

    assert exact_shapley(range(n), value)[null] == pytest.approx(0.0, abs=1e-9)  # type: ignore[arg-type]


@settings(max_examples=60, deadline=None)
@given(games, st.data())
def test_symmetric_players_get_equal_values(game, data):
    n, table = game
    if n < 2:
        return
    i, j = data.draw(st.lists(st.integers(0, n - 1), min_size=2, max_size=2, unique=True))
    base = as_value(n, table)

    def swapped(coalition: frozenset[int]) -> frozenset[int]:
        return frozenset(j if p == i else i if p == j else p for p in coalition)

    def value(coalition: frozenset[int]) -> float:
        return base(coalition) + base(swapped(coalition))  # symmetric in i and j

    phi = exact_shapley(range(n), value)  # type: ignore[arg-type]
    assert phi[i] == pytest.approx(phi[j], abs=1e-6)


@settings(max_examples=40, deadline=None)
@given(games, st.lists(st.floats(-50, 50, allow_nan=False), min_size=64, max_size=64))
def test_additivity(game, other_table):
    n, table = game
    v, w = as_value(n, table), as_value(n, other_table[: 1 << n])
    phi_v = exact_shapley(range(n), v)  # type: ignore[arg-type]
    phi_w = exact_shapley(range(n), w)  # type: ignore[arg-type]
    phi_sum = exact_shapley(range(n), lambda s: v(s) + w(s))  # type: ignore[arg-type]
    for player in range(n):
        assert phi_sum[player] == pytest.approx(phi_v[player] + phi_w[player], abs=1e-6)


# --- Monte Carlo ------------------------------------------------------------------------------


def test_hoeffding_sample_count_and_epsilon_are_inverse():
    m = hoeffding_samples(epsilon=0.05, delta=0.05, marginal_range=1.0)
    assert m == math.ceil(math.log(2 / 0.05) / (2 * 0.05**2)) == 738
    assert hoeffding_epsilon(m, 0.05, 1.0) <= 0.05
    assert hoeffding_epsilon(m - 1, 0.05, 1.0) > 0.05


def test_monte_carlo_is_within_its_bound_on_weighted_voting():
    weights = [9, 8, 7, 6, 5, 4, 3, 2, 1, 1, 1, 1]
    value = weighted_voting(25, weights)
    exact = exact_shapley(range(12), value)  # type: ignore[arg-type]
    estimate = monte_carlo_shapley(range(12), value, samples=4000, seed=7, marginal_range=1.0)  # type: ignore[arg-type]
    assert not estimate.range_observed
    assert estimate.epsilon == pytest.approx(hoeffding_epsilon(4000, 0.05 / 12, 1.0))
    for player in range(12):
        assert abs(estimate.values[player] - exact[player]) <= estimate.epsilon
    # every permutation's marginals add up to v(N), so the estimates are exactly efficient
    assert math.fsum(estimate.values.values()) == pytest.approx(1.0)


def test_monte_carlo_is_deterministic_given_the_seed_and_improves_with_samples():
    value = weighted_voting(39, [7] * 5 + [1] * 10)
    players = list(range(15))
    first = monte_carlo_shapley(players, value, samples=300, seed=3)
    again = monte_carlo_shapley(players, value, samples=300, seed=3)
    assert first.values == again.values
    exact = [421 / 2145] * 5 + [4 / 2145] * 10
    small = monte_carlo_shapley(players, value, samples=100, seed=1)
    large = monte_carlo_shapley(players, value, samples=5000, seed=1)

    def error(estimate) -> float:
        return max(abs(estimate.values[i] - exact[i]) for i in players)

    assert error(large) < error(small)
    assert large.epsilon < small.epsilon
    assert large.range_observed and large.marginal_range == 1.0
