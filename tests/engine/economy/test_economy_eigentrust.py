"""EigenTrust: hand-computed examples, weighted pre-trust, collusion, dangling rows,
sparse == dense, decay."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from delegation_machine.engine.economy.eigentrust import (
    InteractionTally,
    TrustError,
    decay_factor,
    eigentrust,
    eigentrust_dense,
    local_trust_from_tallies,
)


def test_hand_computed_three_peers():
    # A (pre-trusted) trusts B 1 and C 3; B trusts C; C trusts nobody (its row becomes p).
    # With a = 1/2: t_A = t_C / 2 + 1/2, t_B = t_A / 8, t_C = (3 t_A / 4 + t_B) / 2
    # => t_A = 0.64, t_B = 0.08, t_C = 0.28.
    local = {"A": {"B": 1.0, "C": 3.0}, "B": {"C": 1.0}}
    result = eigentrust(local, pretrusted={"A"}, alpha=0.5, tol=1e-12)
    assert result.converged
    assert result.scores == pytest.approx({"A": 0.64, "B": 0.08, "C": 0.28}, abs=1e-9)


def test_weighted_pretrust_known_answer():
    # Local trust ek->sd 100, ek->vm 75, vm->sd 100; sd trusts nobody. Pre-trust ek 50,
    # vm 100 normalises to p = (ek 1/3, sd 0, vm 2/3). Rows: ek = (sd 4/7, vm 3/7),
    # vm = (sd 1), and sd's empty row becomes p (the paper's convention: a peer that trusts
    # nobody trusts the pre-trusted peers). With a = 1/2, t = (1 - a) C^T t + a p reads
    #   t_ek = t_sd / 6 + 1/6
    #   t_vm = 3 t_ek / 14 + t_sd / 3 + 1/3
    #   t_sd = 2 t_ek / 7 + t_vm / 2
    # whose solution is t = (28, 39, 62) / 129. (Sending sd's row uniformly to all three
    # peers instead, PageRank-style, gives about (28.79, 43.75, 56.46) / 129.)
    local = {"ek": {"sd": 100.0, "vm": 75.0}, "vm": {"sd": 100.0}}
    result = eigentrust(local, pretrusted={"ek": 50.0, "vm": 100.0}, alpha=0.5, tol=1e-14)
    assert result.converged
    expected = {"ek": 28 / 129, "sd": 39 / 129, "vm": 62 / 129}
    assert result.scores == pytest.approx(expected, abs=1e-12)
    # only the weights' proportions matter, and a plain set stays uniform (ek 1/2, vm 1/2)
    rescaled = eigentrust(local, pretrusted={"ek": 1.0, "vm": 2.0}, alpha=0.5, tol=1e-14)
    assert rescaled.scores == pytest.approx(expected, abs=1e-12)
    uniform = eigentrust(local, pretrusted={"ek", "vm"}, alpha=0.5, tol=1e-14)
    halves = eigentrust(local, pretrusted={"ek": 3.0, "vm": 3.0}, alpha=0.5, tol=1e-14)
    assert uniform.scores == pytest.approx(halves.scores, abs=1e-12)
    assert uniform.scores["ek"] == pytest.approx(1 / 2 * 0.5 + 0.5 * uniform.scores["sd"] / 2)


def test_a_zero_weight_peer_is_a_peer_without_pretrust():
    result = eigentrust({"a": {"b": 1.0}}, pretrusted={"a": 1.0, "c": 0.0}, alpha=0.5)
    assert set(result.scores) == {"a", "b", "c"}
    assert result.scores["c"] == 0.0  # nobody trusts c and it holds no pre-trust


@pytest.mark.parametrize(
    ("weights", "message"),
    [
        ({"a": -1.0, "b": 2.0}, "pretrusted\\['a'\\] must be finite and >= 0"),
        ({"a": math.nan}, "pretrusted\\['a'\\] must be finite"),
        ({"a": math.inf, "b": 1.0}, "pretrusted\\['a'\\] must be finite"),
        ({"a": 0.0, "b": 0.0}, "sum to zero"),
    ],
)
def test_bad_pretrust_weights_are_refused(weights, message):
    with pytest.raises(TrustError, match=message):
        eigentrust({"a": {"b": 1.0}}, pretrusted=weights)


def test_bad_pretrust_arrays_are_refused():
    matrix = np.array([[0.0, 1.0], [1.0, 0.0]])
    with pytest.raises(TrustError, match="finite and >= 0"):
        eigentrust_dense(matrix, np.array([1.0, -0.5]))
    with pytest.raises(TrustError, match="finite and >= 0"):
        eigentrust_dense(matrix, np.array([1.0, math.nan]))
    with pytest.raises(TrustError, match="shape"):
        eigentrust_dense(matrix, np.array([1.0, 0.0, 0.0]))


def test_colluders_nobody_outside_trusts_stay_at_zero():
    local = {
        "p": {"a": 1.0, "b": 1.0},
        "a": {"b": 2.0, "p": 1.0},
        "b": {"a": 1.0},
        # the ring trusts itself heavily and also gives a little to honest peers
        "x": {"y": 100.0, "z": 100.0, "a": 1.0},
        "y": {"x": 100.0, "z": 100.0},
        "z": {"x": 100.0, "y": 100.0, "b": 1.0},
    }
    result = eigentrust(local, pretrusted={"p"}, alpha=0.1, tol=1e-12)
    for colluder in "xyz":
        assert result.scores[colluder] == 0.0
    assert math.fsum(result.scores.values()) == pytest.approx(1.0)
    assert min(result.scores[peer] for peer in "pab") > 0.1


def test_negative_local_scores_are_clipped_and_rows_normalised():
    raw = {"p": {"a": 5.0, "b": -7.0}, "a": {"b": 2.0}}
    clipped = {"p": {"a": 1.0}, "a": {"b": 2.0}}
    left = eigentrust(raw, pretrusted={"p"}, alpha=0.2, tol=1e-12)
    right = eigentrust(clipped, pretrusted={"p"}, alpha=0.2, tol=1e-12)
    assert left.scores == pytest.approx(right.scores)
    scaled = eigentrust({"p": {"a": 50.0}, "a": {"b": 0.1}}, pretrusted={"p"}, alpha=0.2, tol=1e-12)
    assert scaled.scores == pytest.approx(right.scores)  # only each row's proportions matter


def test_no_pretrusted_peers_means_uniform_pretrust():
    result = eigentrust({"a": {"b": 1.0}, "b": {"a": 1.0}}, alpha=0.15, tol=1e-12)
    assert result.scores == pytest.approx({"a": 0.5, "b": 0.5})
    assert eigentrust({}).scores == {}


def test_bad_parameters_are_refused():
    with pytest.raises(TrustError, match="alpha"):
        eigentrust({"a": {"b": 1.0}}, alpha=1.0)
    with pytest.raises(TrustError, match="not finite"):
        eigentrust({"a": {"b": math.nan}})
    with pytest.raises(TrustError, match="tol"):
        eigentrust({"a": {"b": 1.0}}, tol=0)


def test_max_iter_reports_not_converged():
    local = {"a": {"b": 1.0}, "b": {"c": 1.0}, "c": {"a": 1.0}}
    result = eigentrust(local, pretrusted={"a"}, alpha=0.01, tol=1e-15, max_iter=3)
    assert result.iterations == 3 and not result.converged


sparse_graphs = st.dictionaries(
    st.sampled_from("abcdefg"),
    st.dictionaries(st.sampled_from("abcdefg"), st.floats(-1, 10, allow_nan=False), max_size=7),
    max_size=7,
)


@settings(max_examples=80, deadline=None)
@given(sparse_graphs, st.sets(st.sampled_from("abcdefg"), max_size=3), st.floats(0.0, 0.9))
def test_sparse_matches_dense_and_is_a_distribution(local, pretrusted, alpha):
    result = eigentrust(local, pretrusted, alpha=alpha, tol=1e-12, max_iter=20_000, peers="abcdefg")
    names = sorted(result.scores)
    matrix = np.zeros((len(names), len(names)))
    for rater, row in local.items():
        for ratee, score in row.items():
            matrix[names.index(rater), names.index(ratee)] = score
    pre = np.array([1.0 if n in pretrusted else 0.0 for n in names])
    dense, _, _ = eigentrust_dense(matrix, pre, alpha=alpha, tol=1e-12, max_iter=20_000)
    if result.converged:
        assert [result.scores[n] for n in names] == pytest.approx(list(dense), abs=1e-7)
    assert all(value >= 0 for value in result.scores.values())
    assert math.fsum(result.scores.values()) == pytest.approx(1.0)


@settings(max_examples=60, deadline=None)
@given(
    sparse_graphs,
    st.dictionaries(st.sampled_from("abcdefg"), st.floats(0.0, 100.0), min_size=1, max_size=4),
    st.floats(0.0, 0.9),
)
def test_weighted_pretrust_sparse_matches_dense(local, weights, alpha):
    if math.fsum(weights.values()) <= 0:
        weights = {**weights, "a": 1.0}
    result = eigentrust(local, weights, alpha=alpha, tol=1e-12, max_iter=20_000, peers="abcdefg")
    names = sorted(result.scores)
    matrix = np.zeros((len(names), len(names)))
    for rater, row in local.items():
        for ratee, score in row.items():
            matrix[names.index(rater), names.index(ratee)] = score
    pre = np.array([weights.get(n, 0.0) for n in names])
    dense, _, _ = eigentrust_dense(matrix, pre, alpha=alpha, tol=1e-12, max_iter=20_000)
    if result.converged:
        assert [result.scores[n] for n in names] == pytest.approx(list(dense), abs=1e-7)
    assert math.fsum(result.scores.values()) == pytest.approx(1.0)


def test_decay_halves_every_half_life():
    assert decay_factor(0, 10) == 1.0
    assert decay_factor(10, 10) == pytest.approx(0.5)
    assert decay_factor(30, 10) == pytest.approx(0.125)
    assert decay_factor(5, 0) == 1.0  # no half-life: no decay
    tally = InteractionTally(satisfied=8.0, unsatisfied=2.0, epoch=0.0)
    assert tally.local_score(now=10.0, half_life=10.0) == pytest.approx(3.0)
    assert InteractionTally(1.0, 4.0).local_score(0.0, 10.0) == 0.0  # clipped at zero


def test_old_praise_fades_so_recent_outcomes_decide():
    tallies = {
        "judge": {
            "veteran": InteractionTally(satisfied=20.0, epoch=0.0),  # good long ago
            "newcomer": InteractionTally(satisfied=4.0, epoch=100.0),  # good just now
        }
    }
    fresh = local_trust_from_tallies(tallies, now=100.0, half_life=1e9)
    decayed = local_trust_from_tallies(tallies, now=100.0, half_life=20.0)
    assert fresh["judge"]["veteran"] > fresh["judge"]["newcomer"]
    assert decayed["judge"]["veteran"] < decayed["judge"]["newcomer"]
    trust = eigentrust(decayed, pretrusted={"judge"}, tol=1e-12).scores
    assert trust["newcomer"] > trust["veteran"] > 0
