"""DeLong against a direct O(n^2) computation, the bootstrap against plain resampling, the paired test
against scipy."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import ttest_rel
from sklearn.metrics import roc_auc_score

from mscbench.eval.metrics import auc
from mscbench.eval.significance import auc_covariance, bootstrap_auc_ci, delong, paired_test


def direct_delong(label: np.ndarray, scores: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """DeLong (1988) by its definition: psi over every (positive, negative) pair, then the placement values'
    sample covariances S10 (across positives) and S01 (across negatives); S = S10 / n+ + S01 / n-."""
    positive = label == 1
    v10, v01 = [], []
    for score in scores:
        x, y = score[positive][:, None], score[~positive][None, :]
        psi = (x > y) + 0.5 * (x == y)
        v10.append(psi.mean(axis=1))
        v01.append(psi.mean(axis=0))
    n_positive, n_negative = len(v10[0]), len(v01[0])
    s10 = np.array([[np.sum((a - a.mean()) * (b - b.mean())) / (n_positive - 1) for b in v10] for a in v10])
    s01 = np.array([[np.sum((a - a.mean()) * (b - b.mean())) / (n_negative - 1) for b in v01] for a in v01])
    return np.array([v.mean() for v in v10]), s10 / n_positive + s01 / n_negative


def correlated_scorings(n: int, seed: int, noise_a: float, noise_b: float):
    """Two noisy readings of one click signal, scored on the same rows."""
    rng = np.random.default_rng(seed)
    signal = rng.normal(size=n)
    label = (rng.random(n) < 1 / (1 + np.exp(-2 * signal))).astype(np.int64)
    return label, signal + rng.normal(0, noise_a, n), signal + rng.normal(0, noise_b, n)


@pytest.mark.parametrize("seed", range(3))
def test_auc_covariance_equals_the_direct_delong_computation(seed):
    label, a, b = correlated_scorings(150, seed, 0.5, 1.0)
    scorings = [a, b, np.round(a, 0)]  # the rounded one is full of ties
    aucs, covariance = auc_covariance(label, scorings)
    expected_aucs, expected_covariance = direct_delong(label, scorings)
    np.testing.assert_allclose(aucs, expected_aucs, rtol=0, atol=1e-12)
    np.testing.assert_allclose(covariance, expected_covariance, rtol=1e-10, atol=1e-15)


def test_delong_aucs_and_standard_error_follow_the_covariance():
    label, a, b = correlated_scorings(400, 4, 0.5, 1.0)
    result = delong(label, a, b)
    (_, _), s = direct_delong(label, [a, b])
    assert result.auc_a == pytest.approx(roc_auc_score(label, a), abs=1e-12)
    assert result.auc_b == pytest.approx(roc_auc_score(label, b), abs=1e-12)
    assert result.difference == pytest.approx(result.auc_a - result.auc_b, abs=1e-15)
    assert result.std_error == pytest.approx(math.sqrt(s[0, 0] + s[1, 1] - 2 * s[0, 1]), rel=1e-10)
    assert result.z == pytest.approx(result.difference / result.std_error, rel=1e-12)
    assert result.p_value == pytest.approx(math.erfc(abs(result.z) / math.sqrt(2)), rel=1e-12)


def test_delong_of_identical_rankings_is_no_difference():
    label, a, _ = correlated_scorings(300, 5, 0.5, 1.0)
    for same_ranking in (a, 3 * a + 1):
        result = delong(label, a, same_ranking)
        assert (result.difference, result.std_error, result.z, result.p_value) == (0.0, 0.0, 0.0, 1.0)


def test_delong_with_zero_variance_but_different_aucs_is_certain():
    label = np.array([0, 0, 0, 1, 1, 1])
    result = delong(label, label.astype(float), np.zeros(6))  # AUC 1 against AUC 0.5, no spread
    assert (result.difference, result.z, result.p_value) == (0.5, math.inf, 0.0)


@pytest.mark.parametrize("seed", range(5))
def test_delong_separates_a_real_difference_from_none(seed):
    label, sharp, blurred = correlated_scorings(2000, seed, 0.3, 2.0)
    assert delong(label, sharp, blurred).p_value < 1e-6
    label, a, b = correlated_scorings(2000, seed, 1.0, 1.0)
    assert delong(label, a, b).p_value > 0.01


@pytest.mark.parametrize("label", [np.zeros(6), np.ones(6), np.array([1, 0, 0, 0, 0, 0])])
def test_delong_is_none_without_two_rows_of_each_class(label):
    score = np.linspace(0, 1, 6)
    assert delong(label, score, score[::-1]) is None


def test_bootstrap_equals_plain_resampling():
    rng = np.random.default_rng(0)
    label = np.array([1, 0, 0, 0, 0, 0, 0, 1])  # small enough that some resamples hold one class
    score = np.round(rng.random(8), 1)
    draws = np.random.default_rng(3)
    resampled = (auc(label[rows], score[rows]) for rows in (draws.integers(0, 8, 8) for _ in range(300)))
    expected = np.quantile([value for value in resampled if value is not None], [0.05, 0.95])
    assert bootstrap_auc_ci(label, score, rounds=300, level=0.9, seed=3) == pytest.approx(expected, abs=1e-12)


def test_bootstrap_interval_holds_the_auc_is_seeded_and_narrows_with_n():
    label, score, _ = correlated_scorings(4000, 6, 1.0, 1.0)
    low, high = bootstrap_auc_ci(label, score, rounds=300)
    assert low < auc(label, score) < high
    assert bootstrap_auc_ci(label, score, rounds=300) == (low, high)
    assert bootstrap_auc_ci(label, score, rounds=300, seed=1) != (low, high)
    small_low, small_high = bootstrap_auc_ci(label[:250], score[:250], rounds=300)
    assert high - low < (small_high - small_low) / 2  # width ~ 1/sqrt(n): 16x the rows, a quarter the width


def test_bootstrap_is_none_with_one_class():
    assert bootstrap_auc_ci(np.ones(10), np.linspace(0, 1, 10)) is None


def test_paired_test_equals_scipy():
    rng = np.random.default_rng(0)
    a = 0.70 + rng.normal(0, 0.004, 5)
    b = a - 0.003 + rng.normal(0, 0.002, 5)
    expected = ttest_rel(a, b)
    result = paired_test(a, b)
    assert result.n == 5 and result.mean_difference == pytest.approx(np.mean(a - b), abs=1e-15)
    assert result.t == pytest.approx(expected.statistic, rel=1e-10)
    assert result.p_value == pytest.approx(expected.pvalue, rel=1e-10)


def test_paired_test_degenerate_inputs_give_no_nan():
    assert paired_test([0.7, 0.71, 0.72], [0.7, 0.71, 0.72]) == (0.0, 0.0, 1.0, 3)
    assert paired_test([0.7], [0.6]) == pytest.approx((0.1, None, None, 1))
    assert paired_test([], []) == (None, None, None, 0)
    assert paired_test([1.0, 2.0], [0.5, 1.5]) == (0.5, math.inf, 0.0, 2)
