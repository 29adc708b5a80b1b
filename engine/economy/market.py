"""Linear Fisher market equilibrium by proportional response dynamics (Zhang 2011).

Owns `proportional_response` (unit supply of every good, linear utilities) and the checks of
the equilibrium conditions. Each round every buyer re-splits its whole budget in proportion
to the utility each good gave it last round (Birnbaum, Devanur and Xiao 2011: mirror descent
on the Eisenberg-Gale program). Invariants: prices always sum to the budgets; every good
with a buyer who values it is fully sold in every round.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import msgspec
import numpy as np
from numpy.typing import NDArray

FloatArray = NDArray[np.float64]


class MarketError(ValueError):
    """The market was malformed: a bad budget, a negative utility, a good nobody values."""


class MarketEquilibrium(msgspec.Struct, frozen=True):
    """Prices and allocation where proportional response stopped.

    `allocation[i][j]` is buyer i's share of good j (each column sums to 1), `bids[i][j]` the
    money i spends on j. `price_change` is the last round's largest relative price change (the
    stopping rule); `equilibrium_gap` is the largest share of utility a buyer misses by not
    spending everything at its best value per price, 0 at an exact equilibrium.
    """

    prices: list[float]
    allocation: list[list[float]]
    bids: list[list[float]]
    iterations: int
    price_change: float
    equilibrium_gap: float
    converged: bool


def _validated(
    budgets: Sequence[float] | FloatArray, utilities: Sequence[Sequence[float]] | FloatArray
) -> tuple[FloatArray, FloatArray]:
    budget = np.asarray(budgets, dtype=np.float64)
    utility = np.asarray(utilities, dtype=np.float64)
    if budget.ndim != 1 or budget.size == 0:
        raise MarketError(f"budgets must be a non-empty vector, got shape {budget.shape}")
    if utility.ndim != 2 or utility.shape[0] != budget.size:
        raise MarketError(
            f"utilities must be {budget.size} x goods (one row per buyer), got {utility.shape}"
        )
    if utility.shape[1] == 0:
        raise MarketError("the market has no goods")
    if not np.all(np.isfinite(budget)) or np.any(budget <= 0):
        bad = int(np.argmin(np.where(np.isfinite(budget), budget, -np.inf)))
        raise MarketError(f"budgets[{bad}] must be positive and finite, got {budget[bad]}")
    if not np.all(np.isfinite(utility)) or np.any(utility < 0):
        i, j = np.argwhere(~(np.isfinite(utility) & (utility >= 0)))[0]
        raise MarketError(f"utilities[{i}][{j}] must be >= 0 and finite, got {utility[i, j]}")
    for i in np.flatnonzero(utility.sum(axis=1) <= 0):
        raise MarketError(f"buyer {int(i)} values no good (utilities[{int(i)}] is all zero)")
    for j in np.flatnonzero(utility.sum(axis=0) <= 0):
        raise MarketError(f"good {int(j)} is valued by no buyer; it cannot be sold")
    return budget, utility


def equilibrium_gap(budgets: FloatArray, utilities: FloatArray, bids: FloatArray) -> float:
    """max_i 1 - u_i(x) / (B_i * max_j u_ij / p_j): 0 iff every buyer buys only best goods."""
    prices = bids.sum(axis=0)
    allocation = bids / prices
    gained = (utilities * allocation).sum(axis=1)
    best_value_per_price = (utilities / prices).max(axis=1)
    return float(np.max(1.0 - gained / (budgets * best_value_per_price)))


def proportional_response(
    budgets: Sequence[float] | FloatArray,
    utilities: Sequence[Sequence[float]] | FloatArray,
    tol: float = 1e-6,
    max_iter: int = 100_000,
) -> MarketEquilibrium:
    """Run proportional response until no price moves by more than `tol` (relative) in a round.

    Bids start in proportion to utility. Round: p_j = sum_i b_ij; x_ij = b_ij / p_j;
    b_ij <- B_i * u_ij x_ij / sum_k u_ik x_ik.
    """
    if not tol > 0 or max_iter <= 0:
        raise MarketError(f"need tol > 0 and max_iter > 0, got {tol} and {max_iter}")
    budget, utility = _validated(budgets, utilities)
    bids = budget[:, None] * utility / utility.sum(axis=1, keepdims=True)
    prices = bids.sum(axis=0)
    change = math.inf
    iterations = 0
    while iterations < max_iter:
        iterations += 1
        earned = utility * (bids / prices)
        bids = budget[:, None] * earned / earned.sum(axis=1, keepdims=True)
        updated = bids.sum(axis=0)
        change = float(np.max(np.abs(updated - prices) / prices))
        prices = updated
        if change <= tol:
            break
    return MarketEquilibrium(
        prices=prices.tolist(),
        allocation=(bids / prices).tolist(),
        bids=bids.tolist(),
        iterations=iterations,
        price_change=change,
        equilibrium_gap=equilibrium_gap(budget, utility, bids),
        converged=change <= tol,
    )


def proportional_share(
    budgets: Sequence[float] | FloatArray, utilities: Sequence[Sequence[float]] | FloatArray
) -> MarketEquilibrium:
    """The no-market baseline: every good split in proportion to budgets, whatever it is worth."""
    budget, utility = _validated(budgets, utilities)
    goods = utility.shape[1]
    bids = np.repeat((budget / goods)[:, None], goods, axis=1)
    prices = bids.sum(axis=0)
    return MarketEquilibrium(
        prices=prices.tolist(),
        allocation=(bids / prices).tolist(),
        bids=bids.tolist(),
        iterations=0,
        price_change=0.0,
        equilibrium_gap=equilibrium_gap(budget, utility, bids),
        converged=False,
    )
