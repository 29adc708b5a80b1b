"""EigenTrust iterations and time to tolerance 1e-6: sparse vs dense vs pure Python.

Figures: (1) 10,000 agents, each rating 10 random peers, 1% pre-trusted: the sparse iteration
(numpy edge arrays), the dict-of-dicts entry point (conversion included) and a pure-Python
sparse iteration (baseline); (2) n = 1,000 ... 4,000: sparse vs dense n x n (baseline; dense
at 10,000 would need 800 MB). Writes benchmarks/results/eigentrust_time.json.
Run: .venv/bin/python benchmarks/eigentrust_time.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from delegation_machine.engine.economy.eigentrust import (
    eigentrust,
    eigentrust_dense,
    eigentrust_sparse,
)

RESULTS = Path(__file__).parent / "results" / "eigentrust_time.json"
ALPHA, TOL, DEGREE = 0.15, 1e-6, 10


def random_graph(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    sources = np.repeat(np.arange(n, dtype=np.int64), DEGREE)
    targets = rng.integers(0, n, n * DEGREE, dtype=np.int64)
    weights = rng.uniform(0.0, 1.0, n * DEGREE)
    pretrust = np.zeros(n)
    pretrust[rng.choice(n, max(1, n // 100), replace=False)] = 1.0
    return sources, targets, weights, pretrust


def pure_python_eigentrust(
    n: int, rows: dict[int, dict[int, float]], pretrusted: list[int]
) -> tuple[list[float], int]:
    """The same iteration with dicts and floats only (the no-numpy baseline)."""
    p = [0.0] * n
    for peer in pretrusted:
        p[peer] = 1.0 / len(pretrusted)
    normalised = {}
    for rater, row in rows.items():
        total = sum(w for ratee, w in row.items() if ratee != rater and w > 0)
        if total > 0:
            normalised[rater] = {j: w / total for j, w in row.items() if j != rater and w > 0}
    trust = p[:]
    iterations = 0
    while True:
        iterations += 1
        dangling = sum(trust[i] for i in range(n) if i not in normalised)
        spread = [dangling * p[j] for j in range(n)]
        for rater, row in normalised.items():
            share = trust[rater]
            for ratee, weight in row.items():
                spread[ratee] += weight * share
        updated = [(1 - ALPHA) * spread[j] + ALPHA * p[j] for j in range(n)]
        residual = sum(abs(a - b) for a, b in zip(updated, trust, strict=True))
        trust = updated
        if residual <= TOL:
            return trust, iterations


def timed(function: Callable[[], Any], repeats: int) -> tuple[float, Any]:
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = function()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def large_sparse(n: int, repeats: int) -> dict[str, Any]:
    sources, targets, weights, pretrust = random_graph(n, seed=1)
    sparse_s, (vector, iterations, residual) = timed(
        lambda: eigentrust_sparse(n, sources, targets, weights, pretrust, ALPHA, TOL), repeats
    )
    rows: dict[int, dict[int, float]] = {}
    for i, j, w in zip(sources.tolist(), targets.tolist(), weights.tolist(), strict=True):
        rows.setdefault(i, {})[j] = rows.get(i, {}).get(j, 0.0) + w
    named = {f"a{i}": {f"a{j}": w for j, w in row.items()} for i, row in rows.items()}
    pre_names = [f"a{i}" for i in np.flatnonzero(pretrust)]
    dict_s, result = timed(lambda: eigentrust(named, pre_names, ALPHA, TOL), repeats)
    python_s, (python_vector, python_iterations) = timed(
        lambda: pure_python_eigentrust(n, rows, [int(i) for i in np.flatnonzero(pretrust)]), 1
    )
    agree = max(abs(result.scores[f"a{i}"] - vector[i]) for i in range(n))
    return {
        "agents": n,
        "edges": int(sources.size),
        "tolerance": TOL,
        "alpha": ALPHA,
        "iterations": iterations,
        "residual": residual,
        "sparse_numpy_median_s": sparse_s,
        "dict_entry_point_median_s": dict_s,
        "pure_python_s": python_s,
        "pure_python_iterations": python_iterations,
        "speedup_numpy_over_python": python_s / sparse_s,
        "max_abs_diff_dict_vs_arrays": agree,
        "max_abs_diff_python_vs_numpy": max(
            abs(a - b) for a, b in zip(python_vector, vector.tolist(), strict=True)
        ),
        "repeats": repeats,
    }


def dense_versus_sparse(sizes: list[int], repeats: int) -> list[dict[str, Any]]:
    rows = []
    for n in sizes:
        sources, targets, weights, pretrust = random_graph(n, seed=n)
        sparse_s, (sparse_vector, sparse_iterations, _) = timed(
            lambda n=n, s=sources, t=targets, w=weights, p=pretrust: eigentrust_sparse(
                n, s, t, w, p, ALPHA, TOL
            ),
            repeats,
        )
        matrix = np.zeros((n, n))
        np.add.at(matrix, (sources, targets), weights)
        dense_s, (dense_vector, dense_iterations, _) = timed(
            lambda m=matrix, p=pretrust: eigentrust_dense(m, p, ALPHA, TOL), repeats
        )
        rows.append(
            {
                "agents": n,
                "sparse_median_s": sparse_s,
                "dense_median_s": dense_s,
                "speedup_sparse_over_dense": dense_s / sparse_s,
                "sparse_iterations": sparse_iterations,
                "dense_iterations": dense_iterations,
                "max_abs_diff": float(np.max(np.abs(sparse_vector - dense_vector))),
                "dense_matrix_mb": matrix.nbytes / 1e6,
                "repeats": repeats,
            }
        )
        del matrix
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="2,000 agents, smaller dense sizes")
    args = parser.parse_args()
    large = large_sparse(2_000 if args.quick else 10_000, repeats=3 if args.quick else 5)
    comparison = dense_versus_sparse([500, 1_000] if args.quick else [1_000, 2_000, 4_000], 5)

    print(f"EigenTrust to {TOL:g}: {large['agents']:,} agents, {large['edges']:,} edges")
    print(f"  iterations                 {large['iterations']}")
    print(f"  sparse (numpy arrays)      {large['sparse_numpy_median_s'] * 1000:8.1f} ms")
    print(f"  dict-of-dicts entry point  {large['dict_entry_point_median_s'] * 1000:8.1f} ms")
    print(f"  pure Python (baseline)     {large['pure_python_s'] * 1000:8.1f} ms")
    print(f"  speedup numpy / python     {large['speedup_numpy_over_python']:8.1f}x")
    print("\nsparse vs dense (baseline)")
    print(
        f"{'agents':>7} {'sparse ms':>10} {'dense ms':>10} {'speedup':>8} {'iters':>6} {'diff':>9}"
    )
    for row in comparison:
        print(
            f"{row['agents']:>7} {row['sparse_median_s'] * 1000:>10.2f} "
            f"{row['dense_median_s'] * 1000:>10.2f} {row['speedup_sparse_over_dense']:>7.1f}x "
            f"{row['sparse_iterations']:>6} {row['max_abs_diff']:>9.1e}"
        )
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {
                "figure": "eigentrust_time",
                "python": platform.python_version(),
                "numpy": np.__version__,
                "cpu_count": os.cpu_count(),
                "quick": args.quick,
                "graph": f"each agent rates {DEGREE} random peers, weights U(0,1), 1% pre-trusted",
                "large": large,
                "dense_vs_sparse": comparison,
            },
            indent=2,
        )
    )
    print(f"\nwrote {RESULTS}")


if __name__ == "__main__":
    main()
