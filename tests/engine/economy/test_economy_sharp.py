"""SHARP scores: coverage game from kept mutations, the three terms, exact vs sampled Shapley."""

from __future__ import annotations

import math

import pytest

from delegation_machine.engine.economy.sharp import (
    KeptWork,
    ProcessCost,
    SharpError,
    SharpWeights,
    coverage_value,
    kept_work_from_mutations,
    process_efficiency,
    sharp_score,
)
from delegation_machine.engine.protocol import Mutation, TextEdit


def mutation(agent: str, path: str, start: int, end: int, text: str = "") -> Mutation:
    return Mutation("t1", agent, path, 1, (TextEdit(start, end, text),))


def test_overlapping_edits_form_one_shared_unit():
    work = kept_work_from_mutations(
        [
            mutation("a", "m.py", 0, 10),
            mutation("b", "m.py", 5, 30),  # overlaps a's region
            mutation("b", "other.py", 100, 110),
        ]
    )
    assert work["a"].units == ("m.py@0",)
    assert set(work["b"].units) == {"m.py@0", "other.py@100"}
    assert work["b"].unit_weights["m.py@0"] == 30.0
    assert work["b"].mutations == 2


def test_shared_units_split_credit_and_shares_sum_to_accuracy():
    contributions = {
        "a": KeptWork(("u1", "shared")),
        "b": KeptWork(("shared",)),
        "c": KeptWork(("u3", "u4")),
    }
    score = sharp_score("t", "fix", contributions, True, ProcessCost())
    # coverage game: u1 -> a; shared -> a, b half each; u3, u4 -> c. Total weight 4.
    assert score.shapley == pytest.approx({"a": 1.5 / 4, "b": 0.5 / 4, "c": 2 / 4})
    assert math.fsum(score.shapley.values()) == pytest.approx(1.0)
    assert score.exact and score.accuracy == 1.0


def test_failed_task_spreads_blame_and_earns_no_efficiency():
    contributions = {"a": KeptWork(("x",)), "b": KeptWork(("y", "z"))}
    weights = SharpWeights()
    failed = sharp_score("t", "fix", contributions, False, ProcessCost())
    assert failed.shapley == pytest.approx({"a": -1 / 3, "b": -2 / 3})
    assert failed.scores["b"] == pytest.approx(
        weights.accuracy * -1 + weights.contribution * -2 / 3
    )
    passed = sharp_score("t", "fix", contributions, True, ProcessCost())
    assert passed.scores["b"] == pytest.approx(
        weights.accuracy + weights.contribution * 2 / 3 + weights.efficiency * 1.0
    )


def test_efficiency_falls_with_tokens_tool_calls_and_retries():
    weights = SharpWeights(reference_cost=1000, tokens_per_tool_call=100, tokens_per_retry=500)
    assert process_efficiency(ProcessCost(), weights) == 1.0
    assert process_efficiency(ProcessCost(prompt_tokens=1000), weights) == pytest.approx(0.5)
    # 900 of 1000 prompt tokens cached at 10% cost: 100 + 90 = 190 units
    cached = process_efficiency(ProcessCost(prompt_tokens=1000, cached_tokens=900), weights)
    assert cached == pytest.approx(1 / 1.19)
    assert process_efficiency(ProcessCost(tool_calls=10), weights) == pytest.approx(0.5)
    assert process_efficiency(ProcessCost(retries=2), weights) == pytest.approx(0.5)
    with pytest.raises(SharpError, match="output_tokens"):
        process_efficiency(ProcessCost(output_tokens=-1))


def test_large_teams_are_sampled_with_a_reported_bound():
    contributions = {f"agent{i:02d}": KeptWork((f"u{i}", f"u{i // 2}x")) for i in range(14)}
    weights = SharpWeights(exact_limit=10, samples=400, seed=1)
    sampled = sharp_score("t", "llm", contributions, True, ProcessCost(), weights)
    exact = sharp_score(
        "t", "llm", contributions, True, ProcessCost(), SharpWeights(exact_limit=16)
    )
    assert not sampled.exact and sampled.samples == 400 and sampled.error_bound > 0
    assert exact.exact and exact.error_bound == 0.0
    for agent in contributions:
        assert abs(sampled.shapley[agent] - exact.shapley[agent]) <= sampled.error_bound


def test_custom_value_function_and_bad_weights():
    contributions = {"a": KeptWork(()), "b": KeptWork(())}
    # no measurable units: the game is additive, equal shares
    assert sharp_score("t", "k", contributions, True, ProcessCost()).shapley == pytest.approx(
        {"a": 0.5, "b": 0.5}
    )
    only_b_matters = sharp_score(
        "t", "k", contributions, True, ProcessCost(), value=lambda s: 1.0 if "b" in s else 0.0
    )
    assert only_b_matters.shapley == pytest.approx({"a": 0.0, "b": 1.0})
    with pytest.raises(SharpError, match="bad weight"):
        coverage_value({"a": KeptWork(("u",), {"u": -1.0})})
