"""The negative-transfer view: each model against a reference trained per scenario, from run records made in
memory (tests/test_report.py's), in every format, and on broken input."""

import csv
import io
import math
from dataclasses import replace

import numpy as np
import pytest

from mscbench.errors import UserError
from mscbench.eval.significance import adjusted_p_values
from mscbench.results.report import FORMATS, compare_runs, from_json, layouts, render, render_rich
from tests.test_report import NAMES, RECORDS, predictions_of, record, scope_auc

REFERENCE = "dnn:individual"
REFERENCE_RUNS = [record("dnn", seed, 0.5) for seed in (0, 1, 2)]  # better than dnn joint (0.3), worse than sb


def compared(records=RECORDS, reference_runs=REFERENCE_RUNS, **options):
    return compare_runs(records, base="dnn", predictions_of=predictions_of, transfer_base=REFERENCE,
                        transfer_runs=reference_runs, **options)


def mean_auc(runs: list[dict], scope: str) -> float:
    return float(np.mean([scope_auc(r, scope) for r in runs]))


def test_gains_losses_worst_scenario_and_mean_relative_improvement():
    transfer = compared().transfer
    assert transfer.reference == REFERENCE and [row.model for row in transfer.rows] == ["dnn", "shared_bottom", "lr"]
    for row in transfer.rows:
        runs = [r for r in RECORDS if r.model == row.model]
        gains = {s: mean_auc(runs, s) - mean_auc(REFERENCE_RUNS, s) for s in NAMES}
        assert {s: test.difference for s, test in row.gains.items()} == pytest.approx(gains, rel=1e-12)
        assert row.worst_scenario == min(gains, key=gains.get) and row.worst_gain == pytest.approx(min(gains.values()))
        relative = [gains[s] / mean_auc(REFERENCE_RUNS, s) for s in NAMES]
        assert row.mean_relative_improvement == pytest.approx(100 * np.mean(relative), rel=1e-12)
    rows = {row.model: row for row in transfer.rows}
    assert rows["shared_bottom"].significant_losses == 0 and {t.marks for t in rows["shared_bottom"].gains.values()} \
        == {"*"}
    assert rows["lr"].significant_losses == 2 and rows["dnn"].significant_losses == 2  # joint dnn (0.3) < 0.5
    raw = [test.p_value for row in transfer.rows for test in row.gains.values()]
    adjusted = [test.adjusted_p for row in transfer.rows for test in row.gains.values()]
    assert adjusted == pytest.approx(adjusted_p_values(raw, "bh"), rel=1e-12)  # the view's 6 tests together


def test_the_view_is_rendered_in_every_format_and_rebuilt_from_json():
    comparison = compared()
    view = layouts(comparison, "model")[1]
    assert view.header == ["Model", "north AUC gain", "south AUC gain", "Significant losses",
                           "Worst scenario (gain)", "Mean relative improvement"]
    lr = view.rows[2]
    assert lr[1].endswith("†") and lr[3] == "2 of 2" and view.rows[1][1].endswith("*")
    assert "LibMTL" in view.caption and "6 comparisons of this view" in view.caption
    assert "dnn trained with the individual protocol" in view.caption
    assert "| Model | north AUC gain |" in render(comparison, "md")
    assert r"$^\dagger$" in render(comparison, "latex") and render(comparison, "html").count("<table>") == 2
    assert len(render_rich(comparison).renderables) == 2
    lines = list(csv.DictReader(io.StringIO(render(comparison, "csv"))))
    losses = next(x for x in lines if x["metric"] == f"significant_losses_vs_{REFERENCE}" and x["model"] == "lr")
    gain = next(x for x in lines if x["metric"] == f"auc_gain_vs_{REFERENCE}" and x["model"] == "lr")
    assert losses["mean"] == "2" and gain["marks"] == "†" and float(gain["adjusted_p"]) < 0.05
    for fmt in FORMATS[1:]:
        assert render(from_json(render(comparison, "json")), fmt) == render(comparison, fmt)


def test_one_seed_marks_no_gain_and_says_why():
    one_seed = compared([r for r in RECORDS if r.seed == 0], REFERENCE_RUNS[:1])
    row = one_seed.transfer.rows[2]
    assert row.significant_losses == 0 and all(test.p_value is None for test in row.gains.values())
    assert row.gains["north"].difference < 0  # the gain is still shown, unmarked
    assert "no test between architectures is possible" in layouts(one_seed, "model")[1].caption


def test_identical_predictions_are_no_gain():
    twin = [replace(r, model="twin") for r in REFERENCE_RUNS]
    row = compared(RECORDS[:3] + twin).transfer.rows[1]
    assert {(t.difference, t.p_value, t.marks, t.loss) for t in row.gains.values()} == {(0.0, 1.0, "", False)}
    assert row.mean_relative_improvement == 0.0


def test_a_scenario_with_one_class_or_a_nan_auc_has_no_gain_and_no_crash():
    broken = [record("star", seed, 0.6) for seed in (0, 1, 2)]
    for run in broken:
        run.metrics.scenarios["south"].values["auc"] = None  # one class in that scenario's test rows
    broken[0].metrics.scenarios["north"].values["auc"] = math.nan  # a diverged seed
    row = compared(RECORDS[:3] + broken).transfer.rows[1]
    assert row.gains["south"].difference is None and row.worst_scenario == "north"
    assert row.gains["north"].seeds == 2  # the NaN seed left out
    assert "n/a" in layouts(compared(RECORDS[:3] + broken), "model")[1].rows[1][2]


def test_a_reference_without_runs_is_refused():
    with pytest.raises(UserError, match="the transfer reference dnn:individual has no run"):
        compared(reference_runs=[])
