"""Is a difference real? DeLong's test on one set of predictions, a bootstrap interval for one AUC, a test
between two architectures over their seeds, and the corrections for testing many differences in one table.

DeLong et al. (1988) in the fast midrank form of Sun & Xu (2014). With psi(x, y) = I(x > y) + 1/2 I(x = y),
the placement values of a scoring are V10_i = 1/n- sum_j psi(x_i, y_j) for each positive x_i and
V01_j = 1/n+ sum_i psi(x_i, y_j) for each negative y_j; AUC = mean(V10) = mean(V01).

DeLong compares two *trained models* (two sets of predictions): it knows the test set's sampling noise but
not how much a model's AUC moves when it is trained again with another seed, so on its own it says "these two
trained models differ", not "this architecture is better". `seed_test` answers the second question: Welch's
t-test over the models' per-seed AUCs, with the test set's DeLong variance of the difference of the
seed-averaged AUCs added to the between-seed variance (the test set is shared by every seed, so its noise does
not average out over seeds).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import polars as pl
from scipy.special import stdtr, stdtrit

from mscbench.eval.metrics import is_positive, mann_whitney_auc, midranks

CORRECTIONS = {"bh": "Benjamini-Hochberg", "holm": "Holm", "none": "no correction"}  # --correction
DEFAULT_CORRECTION = "bh"


class DeLongResult(NamedTuple):
    auc_a: float
    auc_b: float
    difference: float  # auc_a - auc_b
    std_error: float
    z: float
    p_value: float  # two-sided


class SeedTest(NamedTuple):
    """Two architectures compared over their seeds; the interval is the unadjusted `level` interval."""

    difference: float  # mean AUC of a over its seeds - mean AUC of b over its seeds
    std_error: float
    degrees_of_freedom: float | None  # Welch-Satterthwaite; None: no between-seed spread (normal)
    p_value: float  # two-sided
    ci_low: float
    ci_high: float


class Placements(NamedTuple):
    """DeLong's placement values of one scoring of some rows (or their mean over several scorings)."""

    positive: np.ndarray  # V10, one per positive row
    negative: np.ndarray  # V01, one per negative row

    @property
    def auc(self) -> float:
        return float(self.positive.mean())


def standardized(difference: float, std_error: float) -> float:
    """difference / std_error; with no spread at all: 0 for no difference, otherwise +-inf (certain)."""
    if std_error > 0:
        return difference / std_error
    return 0.0 if difference == 0 else math.copysign(math.inf, difference)


def placement_values(positive: np.ndarray, score: np.ndarray) -> Placements:
    """DeLong's V10 (one per positive) and V01 (one per negative) from three rankings (Sun & Xu 2014).

    sum_j psi(x_i, y_j) = (midrank of x_i among all rows) - (midrank of x_i among the positives),
    and symmetrically for the negatives, so no pair is ever formed.
    """
    ranks = midranks(score)
    n_positive, n_negative = np.count_nonzero(positive), np.count_nonzero(~positive)
    v10 = (ranks[positive] - midranks(score[positive])) / n_negative
    v01 = 1 - (ranks[~positive] - midranks(score[~positive])) / n_positive
    return Placements(v10, v01)


def scoring_placements(label: np.ndarray, score: np.ndarray) -> Placements | None:
    """The placements of one scoring; None unless both classes have at least two rows and every score is a
    number (a diverged model's NaN predictions have no ranking to test)."""
    positive, score = is_positive(label), np.asarray(score)
    if min(np.count_nonzero(positive), np.count_nonzero(~positive)) < 2 or not np.isfinite(score).all():
        return None
    return placement_values(positive, score)


def averaged(placements: Sequence[Placements]) -> Placements:
    """The placements of several scorings of the same rows averaged: their AUC is the mean of the AUCs."""
    return Placements(np.mean([p.positive for p in placements], axis=0),
                      np.mean([p.negative for p in placements], axis=0))


def placement_covariance(placements: Sequence[Placements]) -> np.ndarray:
    """DeLong's k x k covariance S = S10 / n+ + S01 / n- of k scorings' AUCs, S10 and S01 the sample
    covariances (denominator n - 1) of the placement values across the positives and across the negatives."""
    positive, negative = np.stack([p.positive for p in placements]), np.stack([p.negative for p in placements])
    return np.atleast_2d(np.cov(positive) / positive.shape[1] + np.cov(negative) / negative.shape[1])


def difference_variance(a: Placements, b: Placements) -> float:
    """DeLong's variance of AUC_a - AUC_b over the test rows: S_aa + S_bb - 2 S_ab."""
    s = placement_covariance([a, b])
    return max(float(s[0, 0] + s[1, 1] - 2 * s[0, 1]), 0.0)  # rounding can dip below zero


def auc_covariance(label: np.ndarray, scores: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray] | None:
    """AUCs of k scorings of the same rows and their k x k DeLong covariance; None unless both classes have at
    least two rows."""
    placements = [scoring_placements(label, score) for score in scores]
    if None in placements:
        return None
    return np.array([p.auc for p in placements]), placement_covariance(placements)


def delong_test(a: Placements, b: Placements) -> DeLongResult:
    """DeLong's test of H0: AUC_a = AUC_b for two scorings of the same rows, given their placements.

    z = (AUC_a - AUC_b) / sqrt(S_aa + S_bb - 2 S_ab), p = erfc(|z| / sqrt(2)) (two-sided normal). Zero
    variance (identical rankings, or two scorings each constant in its placements) gives z = 0, p = 1 for equal
    AUCs, else z = +-inf, p = 0.
    """
    difference = a.auc - b.auc
    std_error = math.sqrt(difference_variance(a, b))
    z = standardized(difference, std_error)
    return DeLongResult(a.auc, b.auc, difference, std_error, z, math.erfc(abs(z) / math.sqrt(2)))


def delong(label: np.ndarray, score_a: np.ndarray, score_b: np.ndarray) -> DeLongResult | None:
    """DeLong's test of two scorings of the same rows; None when either class has fewer than two rows."""
    a, b = scoring_placements(label, score_a), scoring_placements(label, score_b)
    return None if a is None or b is None else delong_test(a, b)


def tie_groups(score: np.ndarray) -> np.ndarray:
    """Index of each value among the distinct values in ascending order (equal values share one group)."""
    return pl.Series(np.asarray(score)).rank("dense").to_numpy().astype(np.int64) - 1


def group_midranks(counts: np.ndarray) -> np.ndarray:
    """Average 1-based rank of each tie group, given the group sizes in ascending order of value.

    A group of c tied values after C smaller ones takes ranks C+1 .. C+c, whose mean is C + (c+1)/2.
    """
    return np.cumsum(counts) - (counts - 1) / 2


def resampled_auc(cells: np.ndarray, n_groups: int, rng: np.random.Generator) -> float | None:
    """AUC of one resample with replacement, given each row's cell 2 * tie group + label."""
    drawn = cells[rng.integers(0, len(cells), len(cells))]
    counts = np.bincount(drawn, minlength=2 * n_groups).reshape(n_groups, 2)
    n_negative, n_positive = counts.sum(axis=0)
    if n_positive == 0 or n_negative == 0:
        return None
    return float(mann_whitney_auc(counts[:, 1] @ group_midranks(counts.sum(axis=1)), n_positive, n_negative))


def bootstrap_auc_ci(label: np.ndarray, score: np.ndarray, rounds: int = 1000, level: float = 0.95,
                     seed: int = 0) -> tuple[float, float] | None:
    """Percentile bootstrap interval for the AUC: the (1 - level)/2 and (1 + level)/2 quantiles of the AUCs
    of `rounds` resamples of the rows (with replacement). Resamples holding one class are skipped; None
    when the rows (or all resamples) hold one class. Deterministic for a given seed.
    """
    positive = is_positive(label)
    if positive.all() or not positive.any():
        return None
    # ranking once suffices: a resample only changes how many rows fall in each (tie group, class) cell
    groups = tie_groups(score)
    n_groups = int(groups.max()) + 1
    cells = 2 * groups + positive
    rng = np.random.default_rng(seed)
    resampled = (resampled_auc(cells, n_groups, rng) for _ in range(rounds))
    aucs = [value for value in resampled if value is not None]
    if not aucs:
        return None
    low, high = np.quantile(aucs, [(1 - level) / 2, (1 + level) / 2])
    return float(low), float(high)


def seed_test(values_a: Sequence[float], values_b: Sequence[float], test_variance: float = 0.0,
              level: float = 0.95) -> SeedTest | None:
    """Is architecture a's mean AUC over its seeds different from b's? None with fewer than two seeds on
    either side (one run per architecture says nothing about how far a retrained model moves).

    d = mean(a) - mean(b), V = s_a^2 / n_a + s_b^2 / n_b + test_variance (s^2: sample variance over seeds,
    ddof = 1; test_variance: DeLong's variance of d over the shared test rows, 0 when not known);
    t = d / sqrt(V), p = 2 P(T_df > |t|) with Welch-Satterthwaite's df = V^2 / sum (s^2 / n)^2 / (n - 1), the
    test-set term counting as exact (its df is the number of test rows). Welch, not a paired test: seed k of
    two architectures shares no initialisation, so pairing by seed number only costs degrees of freedom.
    """
    a, b = np.asarray(values_a, dtype=np.float64), np.asarray(values_b, dtype=np.float64)
    if min(len(a), len(b)) < 2:
        return None
    seed_terms = np.array([a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)])
    variance = float(seed_terms.sum() + test_variance)
    difference, std_error = float(a.mean() - b.mean()), math.sqrt(variance)
    spread = float(np.sum(seed_terms ** 2 / np.array([len(a) - 1, len(b) - 1])))
    df = variance ** 2 / spread if spread > 0 else math.inf  # no spread over seeds: the normal (DeLong) limit
    t = standardized(difference, std_error)
    half_width = float(stdtrit(df, (1 + level) / 2)) * std_error
    return SeedTest(difference, std_error, None if math.isinf(df) else df, float(2 * stdtr(df, -abs(t))),
                    difference - half_width, difference + half_width)


def adjusted_p_values(p_values: Sequence[float], method: str) -> list[float]:
    """p-values adjusted for testing them all (a mark needs an adjusted p below alpha), in the input order.

    bh: Benjamini-Hochberg (1995), controls the false discovery rate: p_(i) m / i, made monotone from the
    largest down. holm: Holm (1979), controls the chance of any false mark: p_(i) (m - i + 1), made monotone
    from the smallest up. none: the p-values as they are. Every adjusted value is capped at 1.
    """
    p = np.asarray(p_values, dtype=np.float64)
    m = len(p)
    if method == "none" or m == 0:
        return p.tolist()
    order = np.argsort(p, kind="stable")
    ranked = p[order]
    if method == "bh":
        adjusted = np.minimum.accumulate((ranked * m / np.arange(1, m + 1))[::-1])[::-1]
    elif method == "holm":
        adjusted = np.maximum.accumulate(ranked * (m - np.arange(m)))
    else:
        raise ValueError(f"unknown correction {method!r}")
    result = np.empty(m)
    result[order] = np.minimum(adjusted, 1.0)
    return result.tolist()
