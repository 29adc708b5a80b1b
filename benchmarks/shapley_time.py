"""Exact Shapley time for n = 4 ... 16 against brute force, and Monte Carlo error at n = 12.

Figures: (1) `exact_shapley` (2^n coalitions) vs the permutation definition (n! orders, run
while n <= 9) on random weighted voting games; (2) `monte_carlo_shapley` at 100, 1,000 and
10,000 permutations vs the exact values at n = 12 (max and mean absolute error, Hoeffding
epsilon at delta 0.05, time). Writes benchmarks/results/shapley_time.json.
Run: .venv/bin/python benchmarks/shapley_time.py [--quick]
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import platform
import random
import statistics
import time
from collections.abc import Callable
from pathlib import Path

from delegation_machine.engine.economy.shapley import exact_shapley, monte_carlo_shapley

RESULTS = Path(__file__).parent / "results" / "shapley_time.json"
Game = Callable[[frozenset[int]], float]


def voting_game(n: int, seed: int) -> Game:
    rng = random.Random(seed)
    weights = [rng.randint(1, 20) for _ in range(n)]
    quota = sum(weights) // 2 + 1
    return lambda coalition: 1.0 if sum(weights[i] for i in coalition) >= quota else 0.0


def shapley_by_permutations(n: int, value: Game) -> dict[int, float]:
    """The textbook definition: average marginal contribution over all n! orders."""
    totals = dict.fromkeys(range(n), 0.0)
    count = 0
    for order in itertools.permutations(range(n)):
        coalition: frozenset[int] = frozenset()
        previous = value(coalition)
        for player in order:
            coalition = coalition | {player}
            current = value(coalition)
            totals[player] += current - previous
            previous = current
        count += 1
    return {p: t / count for p, t in totals.items()}


def timed(function: Callable[[], object], repeats: int) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = function()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def exact_rows(sizes: range, brute_limit: int) -> list[dict[str, object]]:
    rows = []
    for n in sizes:
        game = voting_game(n, seed=n)
        repeats = 5 if n <= 12 else 3 if n <= 14 else 2
        exact_s, exact = timed(lambda game=game, n=n: exact_shapley(range(n), game), repeats)  # type: ignore[arg-type]
        row: dict[str, object] = {"n": n, "coalitions": 1 << n, "exact_median_s": exact_s}
        row["exact_repeats"] = repeats
        if n <= brute_limit:
            brute_s, brute = timed(lambda game=game, n=n: shapley_by_permutations(n, game), 1)
            assert isinstance(exact, dict) and isinstance(brute, dict)
            row["permutations_s"] = brute_s
            row["speedup"] = brute_s / exact_s
            row["max_abs_diff"] = max(abs(exact[p] - brute[p]) for p in range(n))
        rows.append(row)
    return rows


def monte_carlo_rows(n: int, budgets: list[int], seeds: int) -> list[dict[str, object]]:
    game = voting_game(n, seed=1234)
    exact_s, exact_result = timed(lambda: exact_shapley(range(n), game), 3)  # type: ignore[arg-type]
    assert isinstance(exact_result, dict)
    rows = []
    for samples in budgets:
        max_errors, mean_errors, times, epsilons = [], [], [], []
        for seed in range(seeds):
            start = time.perf_counter()
            estimate = monte_carlo_shapley(range(n), game, samples, seed, marginal_range=1.0)  # type: ignore[arg-type]
            times.append(time.perf_counter() - start)
            errors = [abs(estimate.values[p] - exact_result[p]) for p in range(n)]
            max_errors.append(max(errors))
            mean_errors.append(statistics.fmean(errors))
            epsilons.append(estimate.epsilon)
        rows.append(
            {
                "n": n,
                "samples": samples,
                "seeds": seeds,
                "max_abs_error_median": statistics.median(max_errors),
                "max_abs_error_worst": max(max_errors),
                "mean_abs_error_median": statistics.median(mean_errors),
                "hoeffding_epsilon": epsilons[0],
                "within_bound": all(e <= epsilons[0] for e in max_errors),
                "mc_median_s": statistics.median(times),
                "exact_median_s": exact_s,
                "time_ratio_mc_over_exact": statistics.median(times) / exact_s,
            }
        )
    return rows


def scaling_rows(sizes: list[int], samples: int, exact_up_to: int) -> list[dict[str, object]]:
    """Where sampling pays: MC time at large n, and exact time while it is still feasible."""
    rows = []
    for n in sizes:
        game = voting_game(n, seed=n)
        mc_s, _ = timed(lambda game=game, n=n: monte_carlo_shapley(range(n), game, samples, 0), 3)  # type: ignore[arg-type]
        row: dict[str, object] = {"n": n, "samples": samples, "mc_median_s": mc_s}
        if n <= exact_up_to:
            exact_s, _ = timed(lambda game=game, n=n: exact_shapley(range(n), game), 1)  # type: ignore[arg-type]
            row["exact_s"] = exact_s
            row["time_ratio_exact_over_mc"] = exact_s / mc_s
        rows.append(row)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="n up to 12, fewer seeds")
    args = parser.parse_args()
    sizes = range(4, 13) if args.quick else range(4, 17)
    exact = exact_rows(sizes, brute_limit=8 if args.quick else 9)
    mc = monte_carlo_rows(12, [100, 1_000, 10_000], seeds=3 if args.quick else 5)
    scaling = scaling_rows([16, 20, 30, 50], 1_000, exact_up_to=16 if args.quick else 20)

    print("exact Shapley (2^n coalitions) vs the permutation definition (n! orders)")
    print(f"{'n':>3} {'coalitions':>10} {'exact s':>10} {'perm s':>10} {'speedup':>9}")
    for row in exact:
        perm = f"{row['permutations_s']:.4f}" if "permutations_s" in row else "-"
        speed = f"{row['speedup']:.0f}x" if "speedup" in row else "-"
        print(
            f"{row['n']:>3} {row['coalitions']:>10} {row['exact_median_s']:>10.4f} {perm:>10} {speed:>9}"
        )
    print("\nMonte Carlo vs exact at n = 12 (median over seeds)")
    print(
        f"{'samples':>8} {'max err':>9} {'mean err':>9} {'epsilon':>9} {'ok':>4} {'mc s':>8} {'mc/exact':>9}"
    )
    for row in mc:
        print(
            f"{row['samples']:>8} {row['max_abs_error_median']:>9.4f} "
            f"{row['mean_abs_error_median']:>9.4f} {row['hoeffding_epsilon']:>9.4f} "
            f"{'yes' if row['within_bound'] else 'NO':>4} {row['mc_median_s']:>8.4f} "
            f"{row['time_ratio_mc_over_exact']:>9.2f}"
        )
    print("\nMonte Carlo (1,000 permutations) where exact enumeration stops being cheap")
    print(f"{'n':>3} {'mc s':>8} {'exact s':>9} {'exact/mc':>9}")
    for row in scaling:
        exact_s = f"{row['exact_s']:.3f}" if "exact_s" in row else "-"
        ratio = f"{row['time_ratio_exact_over_mc']:.1f}" if "exact_s" in row else "-"
        print(f"{row['n']:>3} {row['mc_median_s']:>8.3f} {exact_s:>9} {ratio:>9}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {
                "figure": "shapley_time",
                "python": platform.python_version(),
                "cpu_count": os.cpu_count(),
                "quick": args.quick,
                "game": "weighted voting, weights uniform in 1..20, quota half + 1",
                "exact": exact,
                "monte_carlo": mc,
                "scaling": scaling,
                "delta": 0.05,
                "note": "epsilon is the Hoeffding bound for all 12 players at once (union bound)",
                "max_exact_s": max(float(r["exact_median_s"]) for r in exact),  # type: ignore[arg-type]
                "exact_at_16_s": next(
                    (r["exact_median_s"] for r in exact if r["n"] == 16), math.nan
                ),
            },
            indent=2,
        )
    )
    print(f"\nwrote {RESULTS}")


if __name__ == "__main__":
    main()
