import csv
import io
import json

import numpy as np
import pytest

from mscbench.errors import UserError
from mscbench.eval.metrics import evaluate_predictions
from mscbench.results.report import compare_runs, render, render_rich

NAMES = ["north", "south"]


def record(model: str, seed: int, quality: float, fingerprint: str = "fp") -> dict:
    """A run record whose predictions are the truth plus noise: higher `quality` -> higher AUC."""
    rng = np.random.default_rng(seed)
    truth = rng.random(400)
    label = (rng.random(400) < truth).astype(float)
    prob = np.clip(quality * truth + (1 - quality) * rng.random(400), 0, 1)
    scenario = np.repeat([0, 1], 200)
    metrics = evaluate_predictions(label, prob, scenario, NAMES, oracle=truth)
    return {"run_id": f"{model}-{seed}", "model": model, "seed": seed, "metrics": metrics,
            "dataset": {"name": "synthetic", "variant": "default", "fingerprint": fingerprint}}


RECORDS = [record("dnn", s, 0.3) for s in (0, 1)] + [record("shared_bottom", s, 0.8) for s in (0, 1)]


def test_seeds_are_averaged_and_rela_impr_is_taken_from_mean_aucs():
    comparison = compare_runs(RECORDS, base="dnn")
    base, other = comparison.rows
    aucs = [r["metrics"]["overall"]["auc"] for r in RECORDS]
    assert base.auc.mean == pytest.approx(np.mean(aucs[:2])) and base.auc.std == pytest.approx(np.std(aucs[:2]))
    assert other.rela_impr == pytest.approx(((np.mean(aucs[2:]) - 0.5) / (np.mean(aucs[:2]) - 0.5) - 1) * 100)
    assert base.rela_impr == 0.0 and other.seeds == [0, 1]
    assert set(comparison.oracle_auc) == {"overall", *NAMES}


def test_every_format_carries_the_numbers():
    comparison = compare_runs(RECORDS, base="dnn")
    best = f"{comparison.rows[1].auc.mean:.4f}"
    assert f"**{best} ±" in render(comparison, "md")
    assert f"\\textbf{{{best} $\\pm$" in render(comparison, "latex")
    rows = list(csv.DictReader(io.StringIO(render(comparison, "csv"))))
    assert {r["column"] for r in rows} >= {"auc", "auc:north", "auc:south", "logloss"}
    rebuilt = json.loads(render(comparison, "json"))
    assert rebuilt["rows"][1]["auc"]["mean"] == comparison.rows[1].auc.mean
    assert render_rich(comparison).row_count == 3  # two models and the oracle
    with pytest.raises(UserError, match="unknown format"):
        render(comparison, "xlsx")


def test_one_class_scenario_shows_na():
    bad = record("dnn", 0, 0.5)
    bad["metrics"]["scenarios"]["south"]["auc"] = None
    comparison = compare_runs([bad], base="dnn")
    assert "n/a" in render(comparison, "md").splitlines()[2]


def test_runs_on_different_data_or_without_base_are_refused():
    with pytest.raises(UserError, match="different datasets"):
        compare_runs([record("dnn", 0, 0.5), record("mmoe", 0, 0.5, fingerprint="other")], base="dnn")
    with pytest.raises(UserError, match="base model 'star' has no run"):
        compare_runs(RECORDS, base="star", models=["star", "dnn"])
