"""EigenTrust global reputation (Kamvar, Schlosser and Garcia-Molina, WWW 2003) with decay.

Owns the power iteration t <- (1 - a) C^T t + a p over sparse local trust (dict of dicts, or
index arrays), a dense baseline, and the temporal decay of local scores (docs/economy.md).
Invariants: local scores are clipped at zero and row-normalised; pre-trust p is a
distribution (weights normalised, or uniform over a plain set of names); a peer that trusts
nobody trusts according to p (its row of C is p, as in the paper); global scores are
non-negative and sum to 1.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Iterable, Mapping

import msgspec
import numpy as np
from numpy.typing import NDArray

FloatArray = NDArray[np.float64]
IndexArray = NDArray[np.int64]


class TrustError(ValueError):
    """Bad input to EigenTrust: a non-finite score, a negative or non-finite pre-trust
    weight, alpha outside [0, 1), a bad tolerance."""


class TrustResult(msgspec.Struct, frozen=True):
    """Global trust per peer (sums to 1), with how the iteration ended."""

    scores: dict[str, float]
    iterations: int
    residual: float  # L1 distance between the last two iterates
    converged: bool


class InteractionTally(msgspec.Struct):
    """Decayed counts of one rater's satisfactory and unsatisfactory outcomes with one ratee.

    Counts are stored as of `epoch` and decay by a factor 2^(-elapsed / half_life) since then.
    """

    satisfied: float = 0.0
    unsatisfied: float = 0.0
    epoch: float = 0.0

    def decayed_to(self, now: float, half_life: float) -> InteractionTally:
        factor = decay_factor(now - self.epoch, half_life)
        return InteractionTally(self.satisfied * factor, self.unsatisfied * factor, now)

    def local_score(self, now: float, half_life: float) -> float:
        """s_ij = max(sat_ij - unsat_ij, 0), both decayed to `now`."""
        current = self.decayed_to(now, half_life)
        return max(current.satisfied - current.unsatisfied, 0.0)


def decay_factor(elapsed: float, half_life: float) -> float:
    """2^(-elapsed / half_life); a non-positive or infinite half-life means no decay."""
    if half_life <= 0 or math.isinf(half_life) or elapsed <= 0:
        return 1.0
    return float(0.5 ** (elapsed / half_life))


def local_trust_from_tallies(
    tallies: Mapping[str, Mapping[str, InteractionTally]], now: float, half_life: float
) -> dict[str, dict[str, float]]:
    """Decayed, clipped local scores s_ij from outcome tallies (rater -> ratee -> tally)."""
    local: dict[str, dict[str, float]] = {}
    for rater, row in tallies.items():
        scores = {ratee: tally.local_score(now, half_life) for ratee, tally in row.items()}
        local[rater] = {ratee: score for ratee, score in scores.items() if score > 0}
    return local


def _check_parameters(alpha: float, tol: float, max_iter: int) -> None:
    if not 0 <= alpha < 1:
        raise TrustError(f"alpha must be in [0, 1), got {alpha}")
    if not tol > 0:
        raise TrustError(f"tol must be positive, got {tol}")
    if max_iter <= 0:
        raise TrustError(f"max_iter must be positive, got {max_iter}")


def pretrust_weights(pretrusted: Collection[str] | Mapping[str, float]) -> dict[str, float]:
    """Name -> pre-trust weight: a mapping's own weights, or 1 for each name of a collection.

    Raises TrustError for a negative or non-finite weight, or a non-empty mapping whose
    weights are all zero (it names pre-trusted peers yet trusts none of them).
    """
    if not isinstance(pretrusted, Mapping):
        return dict.fromkeys(pretrusted, 1.0)
    weights = {name: float(weight) for name, weight in pretrusted.items()}
    for name, weight in weights.items():
        if not math.isfinite(weight) or weight < 0:
            raise TrustError(f"pretrusted[{name!r}] must be finite and >= 0, got {weight}")
    if weights and math.fsum(weights.values()) <= 0:
        raise TrustError(f"pre-trust weights sum to zero: {weights}")
    return weights


def eigentrust(
    local_trust: Mapping[str, Mapping[str, float]],
    pretrusted: Collection[str] | Mapping[str, float] = (),
    alpha: float = 0.15,
    tol: float = 1e-6,
    max_iter: int = 1_000,
    peers: Iterable[str] = (),
) -> TrustResult:
    """Global trust from sparse local trust (rater -> ratee -> score).

    `pretrusted` is a collection of names (each gets the same pre-trust, as in the paper) or
    a mapping of names to non-negative weights (OpenRank-style seed trust), normalised to
    the distribution p. Peers are every rater, ratee, pre-trusted peer and member of
    `peers`. With no pre-trusted peer, p is uniform over all peers. Iteration starts at
    t = p and stops when ||t' - t||_1 <= tol.
    """
    _check_parameters(alpha, tol, max_iter)
    seed = pretrust_weights(pretrusted)
    names = sorted(
        set(local_trust)
        | {ratee for row in local_trust.values() for ratee in row}
        | set(seed)
        | set(peers)
    )
    if not names:
        return TrustResult({}, 0, 0.0, True)
    position = {name: index for index, name in enumerate(names)}
    sources: list[int] = []
    targets: list[int] = []
    weights: list[float] = []
    for rater, row in local_trust.items():
        for ratee, score in row.items():
            if not math.isfinite(score):
                raise TrustError(f"local_trust[{rater!r}][{ratee!r}] is not finite: {score}")
            if score > 0 and ratee != rater:  # self-trust carries no information
                sources.append(position[rater])
                targets.append(position[ratee])
                weights.append(score)
    pretrust = np.zeros(len(names))
    for name, weight in seed.items():
        pretrust[position[name]] = weight
    vector, iterations, residual = eigentrust_sparse(
        len(names),
        np.asarray(sources, dtype=np.int64),
        np.asarray(targets, dtype=np.int64),
        np.asarray(weights, dtype=np.float64),
        pretrust,
        alpha,
        tol,
        max_iter,
    )
    scores = {name: float(vector[index]) for index, name in enumerate(names)}
    return TrustResult(scores, iterations, residual, residual <= tol)


def _pretrust_vector(size: int, pretrust: FloatArray | None) -> FloatArray:
    """p: the weights normalised to sum to 1; uniform when there are none (all zero)."""
    if pretrust is None:
        return np.full(size, 1.0 / size)
    if pretrust.shape != (size,):
        raise TrustError(f"pretrust must have shape ({size},), got {pretrust.shape}")
    if not bool(np.all(np.isfinite(pretrust))) or bool(np.any(pretrust < 0)):
        raise TrustError(f"pretrust weights must be finite and >= 0, got {pretrust}")
    total = float(pretrust.sum())
    if total <= 0:
        return np.full(size, 1.0 / size)
    return np.asarray(pretrust / total, dtype=np.float64)


def eigentrust_sparse(
    size: int,
    sources: IndexArray,
    targets: IndexArray,
    weights: FloatArray,
    pretrust: FloatArray | None,
    alpha: float = 0.15,
    tol: float = 1e-6,
    max_iter: int = 1_000,
) -> tuple[FloatArray, int, float]:
    """The iteration on edge arrays (i -> j with weight w); returns (t, iterations, residual).

    Cost per iteration is O(edges + peers). Duplicate edges add up; negative weights clip to 0.
    """
    _check_parameters(alpha, tol, max_iter)
    p = _pretrust_vector(size, pretrust)
    # self-trust carries no information; drop it as the dict form does
    clipped = np.where(sources != targets, np.clip(weights, 0.0, None), 0.0)
    row_sums = np.bincount(sources, weights=clipped, minlength=size)
    dangling = row_sums <= 0
    with np.errstate(divide="ignore", invalid="ignore"):
        normalised = np.where(clipped > 0, clipped / row_sums[sources], 0.0)
    trust = p.copy()
    residual = math.inf
    iterations = 0
    while iterations < max_iter:
        iterations += 1
        received = np.bincount(targets, weights=normalised * trust[sources], minlength=size)
        spread = received.astype(np.float64) + float(trust[dangling].sum()) * p
        updated = (1.0 - alpha) * spread + alpha * p
        residual = float(np.abs(updated - trust).sum())
        trust = updated
        if residual <= tol:
            break
    return trust, iterations, residual


def eigentrust_dense(
    local: FloatArray,
    pretrust: FloatArray | None = None,
    alpha: float = 0.15,
    tol: float = 1e-6,
    max_iter: int = 1_000,
) -> tuple[FloatArray, int, float]:
    """The same iteration on a dense n x n local-trust matrix (the baseline)."""
    _check_parameters(alpha, tol, max_iter)
    size = local.shape[0]
    p = _pretrust_vector(size, pretrust)
    clipped = np.clip(local, 0.0, None)
    np.fill_diagonal(clipped, 0.0)
    row_sums = clipped.sum(axis=1)
    dangling = row_sums <= 0
    normalised = np.divide(
        clipped, row_sums[:, None], out=np.zeros_like(clipped), where=~dangling[:, None]
    )
    normalised[dangling] = p
    trust = p.copy()
    residual = math.inf
    iterations = 0
    while iterations < max_iter:
        iterations += 1
        updated = (1.0 - alpha) * (normalised.T @ trust) + alpha * p
        residual = float(np.abs(updated - trust).sum())
        trust = updated
        if residual <= tol:
            break
    return trust, iterations, residual
