"""AUC, GAUC, LogLoss, RelaImpr and the per-scenario report against scikit-learn and direct references."""

from __future__ import annotations

import json
import math
from dataclasses import asdict

import numpy as np
import pytest
from scipy.stats import rankdata
from sklearn.metrics import log_loss, roc_auc_score

from mscbench.eval.evaluation import ScopeMetrics, evaluate_predictions
from mscbench.eval.metrics import auc, gauc, logloss, midranks, rela_impr


def clicks(n: int, seed: int, ties: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Labels correlated with scores, so AUCs sit well away from 0.5."""
    rng = np.random.default_rng(seed)
    score = rng.random(n)
    label = (rng.random(n) < score).astype(np.float32)
    return label, np.round(score, 1) if ties else score


def loop_gauc(label: np.ndarray, score: np.ndarray, user: np.ndarray) -> float:
    """GAUC by its definition: one scikit-learn AUC per user with both classes, weighted by impressions."""
    weighted, weights = 0.0, 0
    for u in np.unique(user):
        rows = user == u
        if 0 < label[rows].sum() < rows.sum():
            weighted += rows.sum() * roc_auc_score(label[rows], score[rows])
            weights += rows.sum()
    return weighted / weights


def test_midranks_average_the_positions_of_ties():
    values = np.array([0.3, 0.1, 0.3, 0.2, 0.3, 0.1])
    np.testing.assert_array_equal(midranks(values), [5, 1.5, 5, 3, 5, 1.5])
    np.testing.assert_array_equal(midranks(values), rankdata(values))


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("ties", [False, True])
def test_auc_equals_sklearn(seed, ties):
    label, score = clicks(2000, seed, ties)
    assert auc(label, score) == pytest.approx(roc_auc_score(label, score), abs=1e-12)


def test_auc_counts_ties_one_half():
    assert auc(np.array([0, 1, 0, 1]), np.full(4, 0.3)) == 0.5
    # pairs (positive, negative): (0.5, 0.2) right, (0.5, 0.5) tie, (0.2, 0.2) tie, (0.2, 0.5) wrong
    assert auc(np.array([1, 0, 1, 0]), np.array([0.5, 0.5, 0.2, 0.2])) == 0.5
    assert auc(np.array([1, 0, 0]), np.array([0.5, 0.5, 0.1])) == 0.75


def test_auc_accepts_boolean_and_integer_labels():
    label, score = clicks(300, 7)
    assert auc(label.astype(bool), score) == auc(label.astype(np.int64), score) == auc(label, score)


@pytest.mark.parametrize("label", [np.zeros(5), np.ones(5), np.zeros(0)])
def test_auc_is_none_with_one_class(label):
    assert auc(label, np.linspace(0, 1, len(label))) is None


@pytest.mark.parametrize("seed", range(3))
def test_gauc_equals_a_per_user_loop(seed):
    label, score = clicks(3000, seed, ties=True)
    user = np.random.default_rng(seed + 100).integers(0, 60, len(label))
    assert gauc(label, score, user) == pytest.approx(loop_gauc(label, score, user), abs=1e-12)


def test_gauc_drops_single_class_users_and_weights_by_impressions():
    user = np.array([1, 1, 2, 2, 2, 2, 2, 3, 3, 3, 3])
    label = np.array([1, 0, 0, 0, 0, 0, 0, 1, 1, 0, 0])
    score = np.array([0.9, 0.1, 0.5, 0.4, 0.3, 0.2, 0.1, 0.1, 0.2, 0.8, 0.9])
    # user 1: AUC 1 over 2 impressions; user 2 has no click and is dropped; user 3: AUC 0 over 4
    assert gauc(label, score, user) == pytest.approx(2 / 6, abs=1e-15)


def test_gauc_is_none_when_no_user_has_both_classes():
    assert gauc(np.array([1, 1, 0]), np.array([0.2, 0.3, 0.4]), np.array([5, 5, 6])) is None


def test_logloss_equals_sklearn():
    label, score = clicks(1000, 3)
    prob = np.clip(score, 0.01, 0.99)
    assert logloss(label, prob) == pytest.approx(log_loss(label, prob), abs=1e-12)


def test_logloss_clips_at_1e_7():
    # certain and wrong in both directions: each row costs -log(1e-7)
    assert logloss(np.array([1, 0]), np.array([0.0, 1.0])) == pytest.approx(-math.log(1e-7), rel=1e-8)
    assert logloss(np.array([1, 0]), np.array([1.0, 0.0])) == pytest.approx(-math.log(1 - 1e-7), rel=1e-8)


def test_rela_impr_reproduces_the_saml_tables():
    # public data, W&D against the BST base: 0.1320 / 0.1348 - 1
    assert rela_impr(0.6320, 0.6348) == pytest.approx((0.1320 / 0.1348 - 1) * 100, abs=1e-9)
    assert round(rela_impr(0.6320, 0.6348), 2) == -2.08
    # industrial data, SAML against BST: 0.2526 / 0.2430 - 1
    assert round(rela_impr(0.7526, 0.7430), 2) == 3.95
    assert rela_impr(0.7, 0.7) == 0


@pytest.mark.parametrize("model, base", [(None, 0.7), (0.7, None), (0.7, 0.5)])
def test_rela_impr_is_none_when_undefined(model, base):
    assert rela_impr(model, base) is None


def test_evaluate_predictions_reports_each_scenario_on_its_own_rows():
    rng = np.random.default_rng(0)
    label, prob = clicks(4000, 11)
    oracle = np.clip(prob + rng.normal(0, 0.05, len(prob)), 0, 1)
    scenario = rng.integers(0, 2, len(label))
    user = rng.integers(0, 50, len(label))
    report = evaluate_predictions(label, prob, scenario, ["city", "town"], user=user, oracle=oracle)
    json.dumps(asdict(report))  # plain Python values only
    for name, metrics in [("overall", report.overall), *report.scenarios.items()]:
        rows = np.ones(len(label), bool) if name == "overall" else scenario == ["city", "town"].index(name)
        oracle_auc = auc(label[rows], oracle[rows])
        values = {"auc": auc(label[rows], prob[rows]), "gauc": gauc(label[rows], prob[rows], user[rows]),
                  "logloss": logloss(label[rows], prob[rows]), "gap_closed": (metrics.auc - 0.5) / (oracle_auc - 0.5)}
        assert metrics == ScopeMetrics(int(rows.sum()), int(label[rows].sum()), oracle_auc, values)
        assert type(metrics.rows) is int and type(metrics.auc) is float


def test_evaluate_predictions_survives_empty_and_one_class_scenarios():
    label = np.array([1, 0, 1, 1], dtype=np.float32)
    prob = np.array([0.9, 0.2, 0.6, 0.7])
    report = evaluate_predictions(label, prob, np.array([0, 0, 1, 1]), ["mixed", "clicks", "empty"])
    clicks_only, empty = report.scenarios["clicks"], report.scenarios["empty"]
    assert report.scenarios["mixed"].auc == 1.0
    assert clicks_only.rows == 2 and clicks_only.auc is None and clicks_only.value("logloss") is not None
    assert empty == ScopeMetrics(rows=0, positives=0, oracle_auc=None,
                                 values={"auc": None, "gauc": None, "logloss": None, "gap_closed": None})
    assert report.overall.value("gauc") is None and report.overall.value("gap_closed") is None


def test_evaluate_predictions_refuses_a_scenario_id_without_a_name():
    with pytest.raises(ValueError, match="scenario id 2"):
        evaluate_predictions(np.array([1, 0]), np.array([0.5, 0.5]), np.array([0, 2]), ["a", "b"])
