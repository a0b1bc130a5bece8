"""DeLong against a direct O(n^2) computation, the bootstrap against plain resampling, the test over seeds
and the corrections against scipy and by hand, and a simulation: the same architecture under other seeds is
marked no more often than the nominal rate once the table is corrected."""

from __future__ import annotations

import math
from dataclasses import replace
from types import SimpleNamespace

import numpy as np
import pytest
from scipy.stats import false_discovery_control, norm, ttest_ind
from sklearn.metrics import roc_auc_score

from mscbench.eval.metrics import auc
from mscbench.eval.significance import (
    adjusted_p_values,
    auc_covariance,
    averaged,
    bootstrap_auc_ci,
    delong,
    delong_test,
    scoring_placements,
    seed_test,
)
from mscbench.results.significance import ALPHA, ScopeSample, table_tests


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


def test_seed_test_without_test_set_variance_is_welchs_t_test():
    rng = np.random.default_rng(0)
    a, b = 0.70 + rng.normal(0, 0.004, 5), 0.697 + rng.normal(0, 0.002, 3)
    expected = ttest_ind(a, b, equal_var=False)
    result = seed_test(a, b)
    assert result.difference == pytest.approx(a.mean() - b.mean(), abs=1e-15)
    assert result.p_value == pytest.approx(expected.pvalue, rel=1e-10)
    assert result.degrees_of_freedom == pytest.approx(expected.df, rel=1e-10)
    interval = expected.confidence_interval(0.95)
    assert (result.ci_low, result.ci_high) == pytest.approx((interval.low, interval.high), rel=1e-10)


def test_seed_test_adds_the_test_set_variance():
    a, b = [0.71, 0.72, 0.73], [0.70, 0.70, 0.70]  # b has no spread: df = 2 from a alone
    seed_variance = np.var(a, ddof=1) / 3
    result = seed_test(a, b, test_variance=seed_variance)  # doubles the variance, so df = 2 * 4 = 8
    assert result.std_error == pytest.approx(math.sqrt(2 * seed_variance))
    assert result.degrees_of_freedom == pytest.approx(8.0)
    only_test_set = seed_test([0.75] * 3, [0.5] * 3, test_variance=0.01)  # no spread over seeds: DeLong's z
    assert only_test_set.degrees_of_freedom is None
    assert only_test_set.p_value == pytest.approx(math.erfc(2.5 / math.sqrt(2)))
    assert only_test_set.ci_low == pytest.approx(0.25 - norm.ppf(0.975) * 0.1)


def test_seed_test_degenerate_inputs_give_no_nan():
    assert seed_test([0.7], [0.6, 0.61]) is None and seed_test([0.7, 0.71], []) is None
    same = seed_test([0.7, 0.71, 0.72], [0.7, 0.71, 0.72])
    assert (same.difference, same.p_value) == (0.0, 1.0)
    certain = seed_test([1.0, 1.0], [0.5, 0.5])  # no spread anywhere, a difference: certain
    assert (certain.difference, certain.p_value, certain.ci_low, certain.ci_high) == (0.5, 0.0, 0.5, 0.5)


def test_benjamini_hochberg_equals_scipy_and_holm_equals_the_hand_computation():
    p = [0.01, 0.04, 0.03, 0.2, 0.001]
    assert adjusted_p_values(p, "bh") == pytest.approx(false_discovery_control(p), rel=1e-12)
    # sorted 0.001, 0.01, 0.03, 0.04, 0.2 times 5, 4, 3, 2, 1, made monotone: 0.005, 0.04, 0.09, 0.09, 0.2
    assert adjusted_p_values(p, "holm") == pytest.approx([0.04, 0.09, 0.09, 0.2, 0.005], rel=1e-12)
    assert adjusted_p_values(p, "none") == p and adjusted_p_values([], "bh") == []
    assert adjusted_p_values([0.5, 0.9], "holm") == [1.0, 1.0]  # capped at 1


def test_placements_are_none_for_nan_scores_or_one_class():
    label = np.array([0, 1, 0, 1, 1, 0])
    assert scoring_placements(label, np.array([0.1, np.nan, 0.3, 0.4, 0.5, 0.6])) is None
    assert scoring_placements(np.ones(6), np.linspace(0, 1, 6)) is None


# Simulation: many benchmark tables whose models are one architecture trained with other seeds ---------------

TABLES, SEEDS, ROWS = 400, 3, 150  # per table: one test set with two scenarios of ROWS rows each
MODELS = ("base", "same_1", "same_2", "worse")


def simulated_table(table: int) -> dict[str, dict[str, ScopeSample]]:
    """Every model's samples in one table. A seed's scoring is x1 + w x2 + noise with w ~ N(0, 0.4) drawn per
    seed: retraining moves the whole ranking, not only the noise, as it does for a network. `worse` scores
    0.25 x1 + w x2 + noise: it knows less of the signal, so its AUC is lower."""
    rng = np.random.default_rng(table)
    x = rng.normal(size=(2, 2 * ROWS))
    label = (rng.random(2 * ROWS) < 1 / (1 + np.exp(-1.5 * x[0]))).astype(np.int64)
    scopes = {"overall": slice(None), "s0": slice(0, ROWS), "s1": slice(ROWS, None)}
    samples = {}
    for model in MODELS:
        signal = 0.25 if model == "worse" else 1.0
        scores = [signal * x[0] + rng.normal(0, 0.4) * x[1] + rng.normal(0, 0.3, 2 * ROWS) for _ in range(SEEDS)]
        placements = {scope: [scoring_placements(label[rows], score[rows]) for score in scores]
                      for scope, rows in scopes.items()}
        samples[model] = {scope: ScopeSample([p.auc for p in seeds], averaged(seeds))
                          for scope, seeds in placements.items()}
    return samples


@pytest.fixture(scope="module")
def simulated():
    return [simulated_table(table) for table in range(TABLES)]


def marked(samples: dict[str, dict[str, ScopeSample]], correction: str, models=MODELS) -> dict:
    runs = {model: [SimpleNamespace(seed=seed) for seed in range(SEEDS)] for model in models}  # only seeds are read
    tests = table_tests(runs, "base", {m: samples[m] for m in models}, None, correction)
    return {(model, scope): test for model, scopes in tests.items() for scope, test in scopes.items()}


def test_the_same_architecture_under_other_seeds_is_marked_at_most_at_the_nominal_rate(simulated):
    same = MODELS[:3]
    corrected = [marked(samples, "bh", same) for samples in simulated]
    tables_with_a_false_mark = np.mean([any(t.marks for t in tests.values()) for tests in corrected])
    assert tables_with_a_false_mark <= ALPHA + 0.02  # binomial sd at 400 tables: 0.011
    uncorrected = [marked(samples, "none", same) for samples in simulated]
    comparisons = [t for tests in uncorrected for t in tests.values()]
    assert np.mean([bool(t.marks) for t in comparisons]) <= ALPHA / 2 + 0.01  # one side of a two-sided test
    assert np.mean([any(t.marks for t in tests.values()) for tests in uncorrected]) > tables_with_a_false_mark
    seeds_only = [marked({model: {scope: replace(sample, placements=None) for scope, sample in scopes.items()}
                          for model, scopes in samples.items()}, "bh", same) for samples in simulated]
    assert np.mean([any(t.marks for t in tests.values()) for tests in seeds_only]) <= ALPHA + 0.02  # no DeLong term


def test_one_seeds_delong_marks_the_same_architecture_far_above_the_nominal_rate(simulated):
    """Why the marks are not DeLong's: seed 0 against seed 0 of the same architecture differs "significantly"."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 4000))
    label = (rng.random(4000) < 1 / (1 + np.exp(-1.5 * x[0]))).astype(np.int64)
    p_values = []
    for _ in range(100):
        a, b = (scoring_placements(label, x[0] + rng.normal(0, 0.4) * x[1] + rng.normal(0, 0.3, 4000))
                for _ in range(2))
        p_values.append(delong_test(a, b).p_value)
    assert np.mean(np.array(p_values) < ALPHA) > 4 * ALPHA


def test_a_model_below_the_base_is_never_marked_above_it_and_a_better_one_is_found(simulated):
    tests = [test for samples in simulated for test in marked(samples, "bh").values()]
    below = [t for t in tests if t.difference < 0]
    assert below and not any(t.marks for t in below)
    # `worse` as the base: the real difference is marked in most tables
    found = [marked({"base": samples["worse"], "better": samples["base"]}, "bh", ("base", "better"))
             [("better", "overall")] for samples in simulated]
    assert np.mean([bool(t.marks) for t in found]) > 0.5
