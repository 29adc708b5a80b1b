"""Fisher market by proportional response: hand-solved equilibria and the equilibrium conditions."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from delegation_machine.engine.economy.market import (
    MarketError,
    proportional_response,
    proportional_share,
)


def test_hand_solved_two_by_two():
    # B = (2, 1); u_1 = (1, 1), u_2 = (1, 2). Buyer 2 prefers good 2 whenever p_1 = p_2, so it
    # spends its 1 there; buyer 1 is indifferent only at p_1 = p_2 = 1.5 and spends 1.5 on
    # good 1 and 0.5 on good 2. Allocation: x_1 = (1, 1/3), x_2 = (0, 2/3).
    market = proportional_response([2.0, 1.0], [[1.0, 1.0], [1.0, 2.0]], tol=1e-12)
    assert market.converged
    assert market.prices == pytest.approx([1.5, 1.5], abs=1e-9)
    assert market.allocation[0] == pytest.approx([1.0, 1 / 3], abs=1e-9)
    assert market.allocation[1] == pytest.approx([0.0, 2 / 3], abs=1e-9)
    assert market.equilibrium_gap == pytest.approx(0.0, abs=1e-9)


def test_each_buyer_gets_the_good_only_it_values():
    market = proportional_response([3.0, 1.0], [[1.0, 0.0], [0.0, 1.0]], tol=1e-12)
    assert market.prices == pytest.approx([3.0, 1.0])
    assert market.allocation[0] == pytest.approx([1.0, 0.0])
    assert market.allocation[1] == pytest.approx([0.0, 1.0])
    assert market.iterations == 1


def test_identical_goods_are_split_in_proportion_to_budgets():
    market = proportional_response([1.0, 3.0], [[1.0] * 4, [1.0] * 4], tol=1e-12)
    assert market.prices == pytest.approx([1.0] * 4)
    assert [sum(row) for row in market.allocation] == pytest.approx([1.0, 3.0])


def test_malformed_markets_say_what_is_wrong():
    with pytest.raises(MarketError, match=r"budgets\[1\]"):
        proportional_response([1.0, 0.0], [[1.0], [1.0]])
    with pytest.raises(MarketError, match=r"utilities\[0\]\[1\]"):
        proportional_response([1.0], [[1.0, -2.0]])
    with pytest.raises(MarketError, match="good 1 is valued by no buyer"):
        proportional_response([1.0, 1.0], [[1.0, 0.0], [1.0, 0.0]])
    with pytest.raises(MarketError, match="buyer 0 values no good"):
        proportional_response([1.0, 1.0], [[0.0, 0.0], [1.0, 1.0]])
    with pytest.raises(MarketError, match="one row per buyer"):
        proportional_response([1.0, 1.0], [[1.0, 1.0]])


markets = st.integers(2, 5).flatmap(
    lambda n: st.integers(2, 6).flatmap(
        lambda m: st.tuples(
            st.lists(st.floats(0.5, 5.0), min_size=n, max_size=n),
            st.lists(
                st.lists(st.floats(0.05, 1.0), min_size=m, max_size=m), min_size=n, max_size=n
            ),
        )
    )
)


@settings(max_examples=40, deadline=None)
@given(markets)
def test_equilibrium_conditions_hold_where_it_stops(market_input):
    budgets, utilities = market_input
    market = proportional_response(budgets, utilities, tol=1e-10, max_iter=200_000)
    prices = np.array(market.prices)
    bids = np.array(market.bids)
    u = np.array(utilities)
    # prices sum to the budgets, and every buyer spends exactly its budget
    assert prices.sum() == pytest.approx(sum(budgets))
    assert bids.sum(axis=1) == pytest.approx(budgets)
    # every good is sold
    assert np.array(market.allocation).sum(axis=0) == pytest.approx(np.ones(len(prices)))
    # each buyer spends (almost) only on goods of its best value per price
    if market.converged:
        ratio = u / prices
        best = ratio.max(axis=1, keepdims=True)
        off_best = np.where(ratio < best * (1 - 1e-3), bids, 0.0).sum(axis=1)
        assert np.all(off_best <= 1e-3 * np.array(budgets))
        assert market.equilibrium_gap <= 1e-4


def test_the_market_beats_proportional_sharing_for_every_buyer_with_tastes():
    rng = np.random.default_rng(5)
    budgets = rng.uniform(1, 4, 6)
    utilities = rng.uniform(0.01, 1, (6, 12))
    market = proportional_response(budgets, utilities, tol=1e-9)
    naive = proportional_share(budgets, utilities)
    assert market.equilibrium_gap < 1e-3 < naive.equilibrium_gap

    # Fisher equilibria maximise the Nash welfare sum_i B_i log u_i (Eisenberg-Gale)
    def nash_welfare(allocation: list[list[float]]) -> float:
        gained = (utilities * np.array(allocation)).sum(axis=1)
        return float(sum(b * math.log(g) for b, g in zip(budgets, gained, strict=True)))

    assert nash_welfare(market.allocation) > nash_welfare(naive.allocation)
