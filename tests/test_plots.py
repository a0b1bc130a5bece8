"""Figures and the HTML report from runs made in memory (nothing trains): valid PNGs, heatmaps shaped by each
extra, one self-contained page, and `mscbench plot` over a run store."""

import base64
import re
import sys
from dataclasses import replace

import numpy as np
import pytest

from mscbench.cli import main
from mscbench.errors import UserError
from mscbench.results.plots import heatmaps, pyplot, write_report
from mscbench.results.record import RunRecord
from mscbench.results.report import compare_runs
from mscbench.results.store import RunStore
from tests.test_report import NAMES, RECORDS, predictions_of

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# Extras as the trainer stores them, averaged per scenario: SAML's similarity [N, layers, N] and gate
# [N, layers]; MI-DPG's weighting matrices [N, m, n]
SAML_EXTRAS = {"alpha": [[[0.0, 0.7], [0.0, 0.6]], [[0.4, 0.0], [0.5, 0.0]]], "gate": [[0.1, 0.2], [0.3, 0.4]]}
MIDPG_EXTRAS = {"weighting": np.arange(2 * 3 * 4).reshape(2, 3, 4).tolist()}


def runs_with_extras() -> list[RunRecord]:
    extras = {"shared_bottom": SAML_EXTRAS, "lr": MIDPG_EXTRAS}
    return [replace(r, extras=extras.get(r.model, {})) for r in RECORDS]


def histories(records: list[RunRecord]) -> dict[str, list[dict]]:
    return {r.run_id: [{"epoch": e, "train_loss": 0.5 / e, "valid_auc": 0.6 + 0.01 * e, "scenario": "all"}
                          for e in (1, 2, 3)] for r in records}


def is_png(data: bytes) -> bool:
    return data.startswith(PNG_SIGNATURE)


def test_report_writes_valid_pngs_and_one_self_contained_html(tmp_path):
    records = runs_with_extras()
    comparison = compare_runs(records, base="dnn", predictions_of=predictions_of)
    paths = write_report(comparison, records, histories(records), tmp_path / "plots")
    names = [p.name for p in paths]
    assert names == ["scenario_auc.png", "training_curves.png", "extras_shared_bottom.png", "extras_lr.png",
                     "report.html"]
    for path in paths[:-1]:
        assert is_png(path.read_bytes())
        height, width, _ = pyplot().imread(path).shape
        assert height > 200 and width > 300
    page = paths[-1].read_text()
    embedded = re.findall(r'src="data:image/png;base64,([^"]+)"', page)
    assert [base64.b64decode(data) for data in embedded] == [p.read_bytes() for p in paths[:-1]]
    assert "http" not in page.replace("<!DOCTYPE html>", "")  # nothing fetched from elsewhere
    assert page.count("<table>") == 2 and "Bold: the best mean per scenario" in page


def test_each_extra_becomes_the_heatmaps_its_shape_calls_for():
    alpha = heatmaps("alpha", SAML_EXTRAS["alpha"], NAMES)
    assert [m.title for m in alpha] == ["alpha, layer 0", "alpha, layer 1"]
    assert alpha[1].values.tolist() == [[0.0, 0.6], [0.5, 0.0]] and alpha[1].columns == NAMES  # own entry 0
    (gate,) = heatmaps("gate", SAML_EXTRAS["gate"], NAMES)
    assert gate.values.shape == (2, 2) and gate.columns == ["0", "1"]
    (weighting,) = heatmaps("weighting", MIDPG_EXTRAS["weighting"], NAMES)
    assert weighting.values == pytest.approx(np.array([[1.0, -1.0], [-1.0, 1.0]]))  # two scenarios: opposite
    (scalar,) = heatmaps("wide_logit", [0.5, -0.5], NAMES)
    assert scalar.values.shape == (2, 1)


def test_missing_matplotlib_is_one_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib now raises ImportError
    with pytest.raises(UserError, match=r"plots need matplotlib: pip install 'mscbench\[plots\]'"):
        pyplot()


def test_plot_command_draws_stored_runs(tmp_path, capsys):
    store = RunStore(tmp_path / "runs")
    records = runs_with_extras()
    for record in records:
        store.begin(record.run_id, {}, "code", resume=False)
        store.finish(record, histories([record])[record.run_id], {}, predictions_of(record))
    out = tmp_path / "plots"
    assert main(["plot", "--runs-dir", str(store.root), "--base", "dnn", "--out", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["extras_lr.png", "extras_shared_bottom.png", "report.html",
                                                     "scenario_auc.png", "training_curves.png"]
    one = str(store.path(records[0].run_id))
    assert main(["plot", one, "--out", str(tmp_path / "one")]) == 0
    assert main(["plot", str(tmp_path / "nothing"), "--runs-dir", str(store.root)]) == 2
    assert "is not a complete run" in " ".join(capsys.readouterr().err.split())
