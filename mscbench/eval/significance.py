"""Is a difference real? DeLong's test on one set of predictions, a bootstrap interval for one AUC, and a
paired t-test across seeds.

DeLong et al. (1988) in the fast midrank form of Sun & Xu (2014). With psi(x, y) = I(x > y) + 1/2 I(x = y),
the placement values of a scoring are V10_i = 1/n- sum_j psi(x_i, y_j) for each positive x_i and
V01_j = 1/n+ sum_i psi(x_i, y_j) for each negative y_j; AUC = mean(V10) = mean(V01).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import polars as pl
from scipy.special import stdtr

from mscbench.eval.metrics import is_positive, mann_whitney_auc, midranks


class DeLongResult(NamedTuple):
    auc_a: float
    auc_b: float
    difference: float  # auc_a - auc_b
    std_error: float
    z: float
    p_value: float  # two-sided


class PairedResult(NamedTuple):
    mean_difference: float | None  # mean of a - b
    t: float | None
    p_value: float | None  # two-sided
    n: int


def standardized(difference: float, std_error: float) -> float:
    """difference / std_error; with no spread at all: 0 for no difference, otherwise +-inf (certain)."""
    if std_error > 0:
        return difference / std_error
    return 0.0 if difference == 0 else math.copysign(math.inf, difference)


def placement_values(positive: np.ndarray, score: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """DeLong's V10 (one per positive) and V01 (one per negative) from three rankings (Sun & Xu 2014).

    sum_j psi(x_i, y_j) = (midrank of x_i among all rows) - (midrank of x_i among the positives),
    and symmetrically for the negatives, so no pair is ever formed.
    """
    ranks = midranks(score)
    n_positive, n_negative = np.count_nonzero(positive), np.count_nonzero(~positive)
    v10 = (ranks[positive] - midranks(score[positive])) / n_negative
    v01 = 1 - (ranks[~positive] - midranks(score[~positive])) / n_positive
    return v10, v01


def auc_covariance(label: np.ndarray, scores: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray] | None:
    """AUCs of k scorings of the same rows and their k x k DeLong covariance S = S10 / n+ + S01 / n-.

    S10 and S01 are the sample covariances (denominator n - 1) of the placement values across the
    positives and across the negatives. None unless both classes have at least two rows.
    """
    positive = is_positive(label)
    n_positive, n_negative = np.count_nonzero(positive), np.count_nonzero(~positive)
    if min(n_positive, n_negative) < 2:
        return None
    v10, v01 = zip(*(placement_values(positive, np.asarray(score)) for score in scores))
    covariance = np.atleast_2d(np.cov(np.stack(v10)) / n_positive + np.cov(np.stack(v01)) / n_negative)
    return np.mean(v10, axis=1), covariance


def delong(label: np.ndarray, score_a: np.ndarray, score_b: np.ndarray) -> DeLongResult | None:
    """DeLong's test of H0: AUC_a = AUC_b for two scorings of the same rows.

    z = (AUC_a - AUC_b) / sqrt(S_aa + S_bb - 2 S_ab), p = erfc(|z| / sqrt(2)) (two-sided normal).
    Returns None when either class has fewer than two rows. Zero variance (identical rankings, or two
    scorings each constant in its placements) gives z = 0, p = 1 for equal AUCs, else z = +-inf, p = 0.
    """
    estimate = auc_covariance(label, [score_a, score_b])
    if estimate is None:
        return None
    (auc_a, auc_b), s = estimate
    difference = float(auc_a - auc_b)
    std_error = math.sqrt(max(s[0, 0] + s[1, 1] - 2 * s[0, 1], 0.0))  # rounding can dip below zero
    z = standardized(difference, std_error)
    p_value = math.erfc(abs(z) / math.sqrt(2))
    return DeLongResult(float(auc_a), float(auc_b), difference, std_error, z, p_value)


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


def paired_test(values_a: Sequence[float], values_b: Sequence[float]) -> PairedResult:
    """Paired t-test of H0: mean(a - b) = 0 over matched runs (for example one AUC per seed).

    d_i = a_i - b_i, t = mean(d) / (sd(d) / sqrt(n)) with sd over n - 1, p = 2 P(T_{n-1} > |t|).
    n < 2 leaves t and p None; identical differences give t = 0, p = 1 (all zero) or t = +-inf, p = 0.
    """
    d = np.asarray(values_a, dtype=np.float64) - np.asarray(values_b, dtype=np.float64)
    n = len(d)
    mean = float(d.mean()) if n else None
    if n < 2:
        return PairedResult(mean, None, None, n)
    t = standardized(mean, float(d.std(ddof=1)) / math.sqrt(n))
    return PairedResult(mean, t, float(2 * stdtr(n - 1, -abs(t))), n)
