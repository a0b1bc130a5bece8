"""Comparison tables from run records made in memory: seeds, significance marks that follow the p-values,
bootstrap intervals, both orientations, every export format, and bad input."""

import csv
import io
import json
from dataclasses import replace
from html.parser import HTMLParser

import numpy as np
import pytest

from mscbench.errors import UserError
from mscbench.eval.evaluation import evaluate_predictions
from mscbench.eval.metrics import auc
from mscbench.eval.significance import bootstrap_auc_ci, delong, paired_test
from mscbench.results.record import OVERALL, DatasetRef, RunRecord
from mscbench.results.report import FORMATS, compare_runs, from_json, layout, render, render_rich, to_markdown
from mscbench.results.store import RunStore

NAMES = ["north", "south"]
ROWS = 600
RNG = np.random.default_rng(0)
TRUTH = RNG.random(ROWS)  # every run is evaluated on these test rows
LABEL = (RNG.random(ROWS) < TRUTH).astype(np.float32)
SCENARIO = np.repeat([0, 1], ROWS // 2)
PREDICTIONS: dict[str, dict[str, np.ndarray]] = {}


def record(model: str, seed: int, quality: float, fingerprint: str = "fp", label: np.ndarray = LABEL) -> RunRecord:
    """A run whose predictions are the truth plus noise: higher `quality` -> higher AUC."""
    noise = np.random.default_rng([seed, sum(map(ord, model))]).random(ROWS)
    prob = np.clip(quality * TRUTH + (1 - quality) * noise, 0, 1)
    run_id = f"{model}-{seed}-{quality}-{fingerprint}-{label is LABEL}"
    PREDICTIONS[run_id] = {"prob": prob, "label": label, "scenario": SCENARIO}
    metrics = evaluate_predictions(label, prob, SCENARIO, NAMES, oracle=TRUTH)
    return RunRecord(run_id=run_id, model=model, seed=seed, metrics=metrics,
                     dataset=DatasetRef(name="synthetic", variant="default", fingerprint=fingerprint))


def predictions_of(record: RunRecord) -> dict[str, np.ndarray]:
    return PREDICTIONS[record.run_id]


SEEDS = (0, 1, 2)
RECORDS = ([record("dnn", s, 0.3) for s in SEEDS] + [record("shared_bottom", s, 0.8) for s in SEEDS]
           + [record("lr", s, 0.0) for s in SEEDS])  # lr: noise only


def comparison(**options):
    return compare_runs(RECORDS, base="dnn", predictions_of=predictions_of, **options)


def test_seeds_are_averaged_and_rela_impr_is_taken_from_mean_aucs():
    base, other, _ = comparison().rows
    aucs = [r.metrics.overall.auc for r in RECORDS]
    assert base.scope_auc(OVERALL).mean == pytest.approx(np.mean(aucs[:3]))
    assert base.scope_auc(OVERALL).std == pytest.approx(np.std(aucs[:3]))
    assert other.rela_impr[OVERALL] == pytest.approx(((np.mean(aucs[3:6]) - 0.5) / (np.mean(aucs[:3]) - 0.5) - 1) * 100)
    assert base.rela_impr[OVERALL] == 0.0 and other.seeds == [0, 1, 2]
    assert set(comparison().oracle_auc) == {OVERALL, *NAMES}


def test_p_values_are_delong_on_the_smallest_seed_and_paired_t_over_seeds():
    rows = {row.model: row for row in comparison().rows}
    base_runs = {r.seed: r for r in RECORDS if r.model == "dnn"}
    for model in ("shared_bottom", "lr"):
        runs = {r.seed: r for r in RECORDS if r.model == model}
        for scope, scenario in [(OVERALL, None), ("north", 0), ("south", 1)]:
            rows_in = slice(None) if scenario is None else SCENARIO == scenario
            expected = delong(LABEL[rows_in], predictions_of(runs[0])["prob"][rows_in],
                              predictions_of(base_runs[0])["prob"][rows_in])
            test = rows[model].significance[scope]
            assert (test.delong_seed, test.delong_p, test.delong_difference) == \
                (0, expected.p_value, expected.difference)
            metrics = [scope_auc(runs[s], scope) for s in SEEDS], [scope_auc(base_runs[s], scope) for s in SEEDS]
            assert test.paired_p == paired_test(*metrics).p_value and test.paired_seeds == 3
    assert rows["dnn"].significance == {}  # the base is not tested against itself


def scope_auc(run: RunRecord, scope: str) -> float:
    return (run.metrics.overall if scope == OVERALL else run.metrics.scenarios[scope]).values["auc"]


def test_marks_follow_the_p_values_and_only_improvements_are_marked():
    rows = {row.model: row for row in comparison().rows}
    better, worse = rows["shared_bottom"].significance, rows["lr"].significance
    assert all(t.delong_p < 0.05 and t.delong_difference > 0 for t in better.values())
    assert all(t.delong_p < 0.05 and t.delong_difference < 0 for t in worse.values())  # significantly worse
    assert {t.marks for t in better.values()} == {"*†"} and {t.marks for t in worse.values()} == {""}
    table = layout(comparison(), "model")
    shared_bottom, lr = table.rows[1], table.rows[2]
    assert shared_bottom[1].endswith("*†") and not lr[1].endswith(("*", "†"))
    assert "DeLong's test on the test predictions of seed 0" in table.caption
    assert "paired t-test" in table.caption


def test_a_mark_needs_p_below_0_05():
    """A tie with the base (the same predictions) gets p = 1 from both tests and no mark."""
    twin = [replace(r, model="twin") for r in RECORDS if r.model == "dnn"]
    rows = compare_runs(RECORDS[:3] + twin, base="dnn", predictions_of=predictions_of).rows
    test = rows[1].significance[OVERALL]
    assert (test.delong_p, test.paired_p, test.marks) == (1.0, 1.0, "")


def test_one_seed_gives_delong_only_and_no_predictions_gives_paired_only():
    one_seed = compare_runs([r for r in RECORDS if r.seed == 0], base="dnn", predictions_of=predictions_of)
    test = one_seed.rows[1].significance[OVERALL]
    assert test.delong_p is not None and test.paired_p is None and test.marks == "*"
    assert "paired t-test" not in layout(one_seed).caption
    without = compare_runs(RECORDS, base="dnn").rows[1].significance[OVERALL]
    assert without.delong_p is None and without.paired_p is not None and without.marks == "†"


def test_bootstrap_intervals_of_the_smallest_seed():
    compared = comparison(bootstrap_rounds=200)
    row = compared.rows[1]
    first = predictions_of(RECORDS[3])
    assert row.auc_interval[OVERALL] == list(bootstrap_auc_ci(LABEL, first["prob"], 200))
    low, high = row.auc_interval["south"]
    assert low < auc(LABEL[SCENARIO == 1], first["prob"][SCENARIO == 1]) < high
    assert f"[{low:.4f}, {high:.4f}]" in layout(compared).rows[1][8]  # the south AUC column
    assert "bootstrap interval" in layout(compared).caption


def test_runs_on_other_test_rows_are_refused():
    shuffled = record("star", 0, 0.5, label=LABEL[::-1].copy())
    with pytest.raises(UserError, match="not evaluated on the same test rows"):
        compare_runs(RECORDS + [shuffled], base="dnn", predictions_of=predictions_of)


def test_model_orientation_is_table_two():
    table = layout(comparison(), "model")
    assert table.header[:6] == ["Model", "AUC", "GAUC", "LogLoss", "RelaImpr vs dnn", "Share of oracle lift"]
    assert table.header[6:] == ["north AUC (n=300)", "north RelaImpr", "south AUC (n=300)", "south RelaImpr"]
    assert [row[0] for row in table.rows] == ["dnn", "shared_bottom", "lr", "oracle (true probability)"]
    best_auc_columns = {j for i, j in table.bold if i == 1}
    assert {1, 6, 8} <= best_auc_columns  # shared_bottom: best AUC overall and in both scenarios


def test_scenario_orientation_is_table_three():
    compared = comparison()
    table = layout(compared, "scenario")
    assert table.header == ["Scenario", "Test rows", "Positives", "Oracle AUC", "dnn", "shared_bottom", "lr",
                            "shared_bottom RelaImpr vs dnn", "lr RelaImpr vs dnn"]
    assert [row[0] for row in table.rows] == ["north", "south", OVERALL]
    north_positives = int(LABEL[SCENARIO == 0].sum())
    assert table.rows[0][1:3] == ["300", f"{north_positives:,}"] and table.rows[2][1] == "600"
    assert table.bold == {(0, 5), (1, 5), (2, 5)}  # the best model per scenario
    rela = compared.rows[2].rela_impr["south"]
    assert table.rows[1][8] == f"{rela:+.2f}%" and rela < 0


class TableCounter(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags = []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)


@pytest.mark.parametrize("by", ["model", "scenario"])
def test_every_format_carries_the_table(by):
    compared = comparison(bootstrap_rounds=50)
    table = layout(compared, by)
    bold_text = table.rows[min(table.bold)[0]][min(table.bold)[1]]
    markdown = render(compared, "md", by)
    assert f"**{bold_text.replace('*', chr(92) + '*')}**" in markdown
    assert markdown.count("\n|") == len(table.rows) + 1  # the separator line and every row
    latex = render(compared, "latex", by)
    assert latex.count(r"\textbf{") == len(table.bold) and r"$^\dagger$" in latex
    assert latex.count(r" \\") == len(table.rows) + 1
    parser = TableCounter()
    parser.feed(render(compared, "html", by))
    assert parser.tags.count("tr") == len(table.rows) + 1 and parser.tags.count("strong") == len(table.bold)
    assert parser.tags.count("th") == len(table.header)
    assert render_rich(compared, by).row_count == len(table.rows)


def test_csv_is_tidy_with_significance_on_the_auc_lines():
    lines = list(csv.DictReader(io.StringIO(render(comparison(bootstrap_rounds=50), "csv"))))
    assert len(lines) == 3 * (4 + 2 * 2)  # per model: auc, logloss, gauc, gap_closed overall; auc, logloss per scenario
    line = next(x for x in lines if (x["model"], x["scope"], x["metric"]) == ("shared_bottom", "south", "auc"))
    test = comparison().rows[1].significance["south"]
    assert float(line["delong_p"]) == test.delong_p and float(line["paired_p"]) == test.paired_p
    assert line["marks"] == "*†" and float(line["ci_low"]) < float(line["mean"]) < float(line["ci_high"])


@pytest.mark.parametrize("fmt", [f for f in FORMATS if f != "table"])
def test_json_rebuilds_the_same_table_in_every_format_and_orientation(fmt):
    compared = comparison(bootstrap_rounds=50)
    rebuilt = from_json(render(compared, "json"))
    assert rebuilt == compared
    for by in ("model", "scenario"):
        assert render(rebuilt, fmt, by) == render(compared, fmt, by)


def test_one_class_scenario_shows_na():
    bad = record("dnn", 0, 0.5)
    bad.metrics.scenarios["south"].values["auc"] = None
    assert "n/a" in to_markdown(compare_runs([bad], base="dnn")).splitlines()[2]


def test_bad_input_is_refused_with_one_clear_message(tmp_path):
    with pytest.raises(UserError, match="different datasets"):
        compare_runs([record("dnn", 0, 0.5), record("mmoe", 0, 0.5, fingerprint="other")], base="dnn")
    with pytest.raises(UserError, match="base model 'star' has no run"):
        compare_runs(RECORDS, base="star", models=["star", "dnn"])
    partial = record("mmoe", 0, 0.5)
    del partial.metrics.scenarios["south"]
    with pytest.raises(UserError, match=f"run {partial.run_id} has no scenario 'south'"):
        compare_runs([record("dnn", 0, 0.5), partial], base="dnn")
    with pytest.raises(UserError, match="unknown orientation 'models'"):
        layout(comparison(), "models")
    with pytest.raises(UserError, match="unknown format"):
        render(comparison(), "xlsx")


@pytest.mark.parametrize("content, message", [
    ("{not json", "is corrupt \\(Expecting property name"),
    (json.dumps({"schema": 1, "model": "dnn"}), "is corrupt \\(record lacks run_id, seed, dataset, metrics\\)"),
    (json.dumps([1, 2]), "is corrupt \\(a JSON object was expected, not list\\)"),
    (json.dumps({"schema": 7}), "is corrupt \\(schema 7 is not one this version reads \\(1 to 2\\)\\)"),
    (RECORDS[0].to_json().replace('"seed": 0', '"seed": "zero"'), "record.seed must be int, not 'zero'"),
    (RECORDS[0].to_json().replace('"rows": 300', '"rows": null', 1), "record.metrics.scenarios.north.rows must be int"),
])
def test_corrupt_metrics_json_is_a_clear_error(tmp_path, content, message):
    store = RunStore(tmp_path)
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "metrics.json").write_text(content)
    with pytest.raises(UserError, match=message) as raised:
        store.load("run")
    assert str(raised.value).startswith(f"{tmp_path / 'run' / 'metrics.json'} is corrupt (")
    assert str(raised.value).endswith(f"retrain the run with --rerun, or delete {tmp_path / 'run'}")
    with pytest.raises(UserError, match="no stored test predictions"):
        store.predictions("run")
