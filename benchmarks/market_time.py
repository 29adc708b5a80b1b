"""Proportional response to tolerance 1e-6 with 100 bidders and 1,000 slots, against baselines.

Figures: iterations and time until no price moves more than 1e-6 (relative) in a round; the
equilibrium gap there and how many rounds the gap needs to reach 1e-3 and 1e-4; baselines in
the same run: proportional sharing (no market: each slot split by budget) for quality (gap,
Nash welfare), and one round of the same dynamics in pure Python for time per round.
Writes benchmarks/results/market_time.json. Run: .venv/bin/python benchmarks/market_time.py
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np

from delegation_machine.engine.economy.market import (
    equilibrium_gap,
    proportional_response,
    proportional_share,
)

RESULTS = Path(__file__).parent / "results" / "market_time.json"


def instance(bidders: int, slots: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.uniform(1.0, 10.0, bidders), rng.uniform(0.0, 1.0, (bidders, slots))


def nash_welfare(
    budgets: np.ndarray, utilities: np.ndarray, allocation: list[list[float]]
) -> float:
    gained = (utilities * np.asarray(allocation)).sum(axis=1)
    return float(np.sum(budgets * np.log(gained)))


def rounds_to_gap(
    budgets: np.ndarray, utilities: np.ndarray, targets: list[float]
) -> dict[str, int]:
    """Run the dynamics, checking the equilibrium gap every 50 rounds (up to 20,000 rounds)."""
    bids = budgets[:, None] * utilities / utilities.sum(axis=1, keepdims=True)
    reached: dict[str, int] = {}
    for round_number in range(1, 20_001):
        earned = utilities * (bids / bids.sum(axis=0))
        bids = budgets[:, None] * earned / earned.sum(axis=1, keepdims=True)
        if round_number % 50 == 0:
            gap = equilibrium_gap(budgets, utilities, bids)
            for target in targets:
                if gap <= target and f"{target:g}" not in reached:
                    reached[f"{target:g}"] = round_number
            if len(reached) == len(targets):
                break
    return reached


def pure_python_round_s(budgets: np.ndarray, utilities: np.ndarray) -> float:
    """One proportional-response round on lists of floats (the no-numpy baseline)."""
    b = budgets.tolist()
    u = utilities.tolist()
    n, m = len(u), len(u[0])
    bids = [[b[i] * u[i][j] / sum(u[i]) for j in range(m)] for i in range(n)]
    start = time.perf_counter()
    prices = [sum(bids[i][j] for i in range(n)) for j in range(m)]
    earned = [[u[i][j] * bids[i][j] / prices[j] for j in range(m)] for i in range(n)]
    totals = [sum(row) for row in earned]
    updated = [[b[i] * e / totals[i] for e in row] for i, row in enumerate(earned)]
    elapsed = time.perf_counter() - start
    assert len(updated) == n
    return elapsed


def measure(bidders: int, slots: int, seeds: int) -> dict[str, Any]:
    runs = []
    for seed in range(seeds):
        budgets, utilities = instance(bidders, slots, seed)
        start = time.perf_counter()
        market = proportional_response(budgets, utilities, tol=1e-6, max_iter=100_000)
        elapsed = time.perf_counter() - start
        naive = proportional_share(budgets, utilities)
        runs.append(
            {
                "seed": seed,
                "iterations": market.iterations,
                "seconds": elapsed,
                "ms_per_round": elapsed / market.iterations * 1000,
                "converged": market.converged,
                "equilibrium_gap": market.equilibrium_gap,
                "baseline_gap": naive.equilibrium_gap,
                "nash_welfare": nash_welfare(budgets, utilities, market.allocation),
                "baseline_nash_welfare": nash_welfare(budgets, utilities, naive.allocation),
                "prices_sum_minus_budgets": abs(sum(market.prices) - float(budgets.sum())),
            }
        )
    budgets, utilities = instance(bidders, slots, 0)
    python_round = statistics.median(pure_python_round_s(budgets, utilities) for _ in range(3))
    numpy_round = statistics.median(r["ms_per_round"] for r in runs) / 1000
    return {
        "bidders": bidders,
        "slots": slots,
        "tolerance": 1e-6,
        "stopping_rule": "max relative price change in one round <= tolerance",
        "seeds": seeds,
        "runs": runs,
        "iterations_median": statistics.median(r["iterations"] for r in runs),
        "seconds_median": statistics.median(r["seconds"] for r in runs),
        "equilibrium_gap_median": statistics.median(r["equilibrium_gap"] for r in runs),
        "baseline_gap_median": statistics.median(r["baseline_gap"] for r in runs),
        "welfare_gain_median": statistics.median(
            r["nash_welfare"] - r["baseline_nash_welfare"] for r in runs
        ),
        "rounds_to_gap_seed0": rounds_to_gap(budgets, utilities, [1e-2, 1e-3, 1e-4]),
        "pure_python_round_s": python_round,
        "numpy_round_s": numpy_round,
        "speedup_numpy_round_over_python": python_round / numpy_round,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="30 bidders x 300 slots, 2 seeds")
    args = parser.parse_args()
    bidders, slots = (30, 300) if args.quick else (100, 1_000)
    result = measure(bidders, slots, seeds=2 if args.quick else 5)
    print(f"proportional response, {bidders} bidders x {slots} slots, to 1e-6 (price change)")
    print(f"  iterations (median)          {result['iterations_median']:,.0f}")
    print(f"  time (median)                {result['seconds_median']:.2f} s")
    print(
        f"  time per round numpy/python  {result['numpy_round_s'] * 1000:.2f} ms / "
        f"{result['pure_python_round_s'] * 1000:.1f} ms "
        f"({result['speedup_numpy_round_over_python']:.0f}x)"
    )
    print(
        f"  equilibrium gap at stop      {result['equilibrium_gap_median']:.2e} "
        f"(proportional share baseline {result['baseline_gap_median']:.2f})"
    )
    print(f"  Nash welfare gain vs share   {result['welfare_gain_median']:.1f}")
    print(f"  rounds to gap (seed 0)       {result['rounds_to_gap_seed0']}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {
                "figure": "market_time",
                "python": platform.python_version(),
                "numpy": np.__version__,
                "cpu_count": os.cpu_count(),
                "quick": args.quick,
                "instance": "budgets U(1,10), utilities U(0,1), unit supply",
                **result,
            },
            indent=2,
        )
    )
    print(f"\nwrote {RESULTS}")


if __name__ == "__main__":
    main()
