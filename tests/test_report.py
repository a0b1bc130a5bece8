"""Comparison tables from run records made in memory: seeds, significance marks that follow the corrected
p-values, bold that follows the tests, bootstrap intervals, both orientations, every export format, and bad
input."""

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
from mscbench.eval.significance import (
    adjusted_p_values,
    averaged,
    bootstrap_auc_ci,
    delong,
    difference_variance,
    scoring_placements,
    seed_test,
)
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
    return RunRecord(run_id=run_id, model=model, seed=seed, metrics=metrics, parameters=1000 * len(model),
                     dataset=DatasetRef(name="synthetic", variant="default", fingerprint=fingerprint))


def predictions_of(record: RunRecord) -> dict[str, np.ndarray]:
    return PREDICTIONS[record.run_id]


SEEDS = (0, 1, 2)
RECORDS = ([record("dnn", s, 0.3) for s in SEEDS] + [record("shared_bottom", s, 0.8) for s in SEEDS]
           + [record("lr", s, 0.0) for s in SEEDS])  # lr: noise only


def comparison(**options):
    return compare_runs(RECORDS, base="dnn", predictions_of=predictions_of, **options)


def test_seeds_are_averaged_with_the_sample_std_and_rela_impr_is_taken_from_mean_aucs():
    base, other, _ = comparison().rows
    aucs = [r.metrics.overall.auc for r in RECORDS]
    assert base.scope_auc(OVERALL).mean == pytest.approx(np.mean(aucs[:3]))
    assert base.scope_auc(OVERALL).std == pytest.approx(np.std(aucs[:3], ddof=1))
    assert other.rela_impr[OVERALL] == pytest.approx(((np.mean(aucs[3:6]) - 0.5) / (np.mean(aucs[:3]) - 0.5) - 1) * 100)
    assert base.rela_impr[OVERALL] == 0.0 and other.seeds == [0, 1, 2] and other.parameters == 13000
    assert set(comparison().oracle_auc) == {OVERALL, *NAMES}


def scope_rows(scope: str) -> np.ndarray:
    return np.ones(ROWS, dtype=bool) if scope == OVERALL else SCENARIO == NAMES.index(scope)


def expected_test(model: str, scope: str):
    """The architecture test computed by hand: Welch over seeds plus DeLong's variance of the seed means."""
    rows = scope_rows(scope)

    def placements(name: str):
        return averaged([scoring_placements(LABEL[rows], predictions_of(r)["prob"][rows])
                         for r in RECORDS if r.model == name])

    aucs = [[scope_auc(r, scope) for r in RECORDS if r.model == name] for name in (model, "dnn")]
    return seed_test(*aucs, difference_variance(placements(model), placements("dnn")))


def test_the_architecture_test_is_welch_over_seeds_plus_the_test_sets_delong_variance_bh_corrected():
    rows = {row.model: row for row in comparison().rows}
    keys = [(model, scope) for model in ("shared_bottom", "lr") for scope in (OVERALL, *NAMES)]
    raw = [expected_test(model, scope).p_value for model, scope in keys]
    adjusted = dict(zip(keys, adjusted_p_values(raw, "bh")))
    base_runs = {r.seed: r for r in RECORDS if r.model == "dnn"}
    for model, scope in keys:
        expected, test = expected_test(model, scope), rows[model].significance[scope]
        assert (test.difference, test.ci_low, test.ci_high, test.p_value) == pytest.approx(
            (expected.difference, expected.ci_low, expected.ci_high, expected.p_value), rel=1e-12)
        assert test.difference == pytest.approx(rows[model].scope_auc(scope).mean - rows["dnn"].scope_auc(scope).mean)
        assert test.adjusted_p == pytest.approx(adjusted[model, scope], rel=1e-12) and test.seeds == 3
        run = next(r for r in RECORDS if r.model == model and r.seed == 0)
        rows_in = scope_rows(scope)
        per_seed = delong(LABEL[rows_in], predictions_of(run)["prob"][rows_in], predictions_of(base_runs[0])["prob"][
            rows_in])
        assert (test.delong_seed, test.delong_p, test.delong_difference) == (0, per_seed.p_value, per_seed.difference)
    assert rows["dnn"].significance == {}  # the base is not tested against itself


def scope_auc(run: RunRecord, scope: str) -> float:
    return (run.metrics.overall if scope == OVERALL else run.metrics.scenarios[scope]).values["auc"]


def test_marks_follow_the_adjusted_p_values_and_only_improvements_are_marked():
    rows = {row.model: row for row in comparison().rows}
    better, worse = rows["shared_bottom"].significance, rows["lr"].significance
    assert all(t.adjusted_p < 0.05 and t.difference > 0 for t in better.values())
    assert all(t.adjusted_p < 0.05 and t.difference < 0 for t in worse.values())  # significantly worse
    assert {t.marks for t in better.values()} == {"*"} and {t.marks for t in worse.values()} == {""}
    table = layout(comparison(), "model")
    shared_bottom, lr = table.rows[1], table.rows[2]
    assert shared_bottom[2].endswith("*") and not lr[2].endswith("*")
    assert "Welch's t-test over each model's per-seed AUCs, with DeLong's variance of the test set added" in \
        table.caption
    assert "Benjamini-Hochberg over the 6 comparisons of the table with dnn" in table.caption
    assert "mean ± sample std over 3 seed(s)" in table.caption


@pytest.mark.parametrize("correction, name", [("holm", "Holm"), ("none", "no correction")])
def test_the_correction_is_chosen_and_named(correction, name):
    compared = comparison(correction=correction)
    tests = [t for row in compared.rows for t in row.significance.values()]
    assert [t.adjusted_p for t in tests] == pytest.approx(adjusted_p_values([t.p_value for t in tests], correction))
    assert f"{name} over the 6 comparisons of the table" in layout(compared).caption
    with pytest.raises(UserError, match="unknown correction 'bonferroni': choose one of bh, holm, none"):
        comparison(correction="bonferroni")


def test_a_mark_needs_p_below_0_05():
    """A tie with the base (the same predictions) gets p = 1 and no mark."""
    twin = [replace(r, model="twin") for r in RECORDS if r.model == "dnn"]
    rows = compare_runs(RECORDS[:3] + twin, base="dnn", predictions_of=predictions_of).rows
    test = rows[1].significance[OVERALL]
    assert (test.difference, test.p_value, test.adjusted_p, test.delong_p, test.marks) == (0.0, 1.0, 1.0, 1.0, "")


def test_a_model_whose_mean_is_below_the_base_is_never_marked_above_it():
    """Seed 0 of `lucky` beats the base's seed 0 by far (DeLong: these two trained models differ), but its
    other seeds are worse, and so is its mean: no mark."""
    lucky = [record("lucky", 0, 0.9), record("lucky", 1, 0.05), record("lucky", 2, 0.05)]
    test = compare_runs(RECORDS[:3] + lucky, base="dnn", predictions_of=predictions_of).rows[1].significance[OVERALL]
    assert test.delong_difference > 0 and test.delong_p < 1e-6
    assert test.difference < 0 and test.marks == ""


def test_one_seed_marks_nothing_and_says_why_without_predictions_the_test_is_over_seeds_only():
    one_seed = compare_runs([r for r in RECORDS if r.seed == 0], base="dnn", predictions_of=predictions_of)
    test = one_seed.rows[1].significance[OVERALL]
    assert test.delong_p < 0.05 and test.p_value is None and test.adjusted_p is None and test.marks == ""
    table = layout(one_seed)
    assert "no test between architectures is possible, so nothing is marked" in table.caption
    assert "Nothing is bold" in table.caption and table.bold == set()
    assert "two trained models differ" in table.caption
    without = compare_runs(RECORDS, base="dnn")
    test = without.rows[1].significance[OVERALL]
    expected = seed_test([scope_auc(r, OVERALL) for r in RECORDS[3:6]], [scope_auc(r, OVERALL) for r in RECORDS[:3]])
    assert (test.delong_p, test.p_value, test.marks) == (None, pytest.approx(expected.p_value), "*")
    assert "DeLong" not in layout(without).caption


def test_bold_is_the_best_only_where_it_is_significantly_ahead_else_every_tied_model():
    twin = [replace(r, model="twin", run_id=r.run_id + "-twin") for r in RECORDS if r.model == "shared_bottom"]
    for r in twin:
        PREDICTIONS[r.run_id] = PREDICTIONS[r.run_id[:-5]]
    compared = compare_runs(RECORDS + twin, base="dnn", predictions_of=predictions_of)
    assert compared.leaders[f"auc/{OVERALL}"] == ["shared_bottom", "twin"]  # tied with the best
    assert comparison().leaders[f"auc/{OVERALL}"] == ["shared_bottom"]  # significantly above the runner-up
    table = layout(compared)
    assert {(1, 2), (3, 2)} <= table.bold and (0, 2) not in table.bold
    assert "a lone bold figure is significantly above the runner-up" in table.caption


def test_a_model_with_one_seed_is_never_bold_nor_marked_and_the_others_still_are():
    mixed = compare_runs(RECORDS + [record("star", 0, 0.95)], base="dnn", predictions_of=predictions_of)
    star = mixed.rows[3]
    assert star.scope_auc(OVERALL).mean > mixed.rows[1].scope_auc(OVERALL).mean and star.significance[OVERALL].marks == ""
    assert mixed.leaders[f"auc/{OVERALL}"] == ["shared_bottom"]
    assert "star, with one seed, cannot be compared" in layout(mixed).caption


def test_bootstrap_intervals_of_the_smallest_seed():
    compared = comparison(bootstrap_rounds=200)
    row = compared.rows[1]
    first = predictions_of(RECORDS[3])
    assert row.auc_interval[OVERALL] == list(bootstrap_auc_ci(LABEL, first["prob"], 200))
    low, high = row.auc_interval["south"]
    assert low < auc(LABEL[SCENARIO == 1], first["prob"][SCENARIO == 1]) < high
    assert f"[{low:.4f}, {high:.4f}]" in layout(compared).rows[1][9]  # the south AUC column
    assert "bootstrap interval" in layout(compared).caption


def test_runs_on_other_test_rows_are_refused():
    shuffled = record("star", 0, 0.5, label=LABEL[::-1].copy())
    with pytest.raises(UserError, match="not evaluated on the same test rows"):
        compare_runs(RECORDS + [shuffled], base="dnn", predictions_of=predictions_of)


def test_model_orientation_is_table_two():
    table = layout(comparison(), "model")
    assert table.header[:7] == ["Model", "Parameters", "AUC", "GAUC", "LogLoss", "RelaImpr vs dnn",
                                "Share of oracle lift"]
    assert table.header[7:] == ["north AUC (n=300)", "north RelaImpr", "south AUC (n=300)", "south RelaImpr"]
    assert [row[0] for row in table.rows] == ["dnn", "shared_bottom", "lr", "oracle (true probability)"]
    assert [row[1] for row in table.rows] == ["3,000", "13,000", "2,000", ""]
    assert {(1, 2), (1, 7), (1, 9)} == {(i, j) for i, j in table.bold if j in (2, 7, 9)}  # shared_bottom alone


def test_scenario_orientation_is_table_three():
    compared = comparison()
    table = layout(compared, "scenario")
    assert table.header == ["Scenario", "Test rows", "Positives", "Oracle AUC", "dnn (3,000 parameters)",
                            "shared_bottom (13,000 parameters)", "lr (2,000 parameters)",
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
    assert latex.count(r"\textbf{") == len(table.bold) and r"$\pm$" in latex
    assert latex.count(r" \\") == len(table.rows) + 1
    parser = TableCounter()
    parser.feed(render(compared, "html", by))
    assert parser.tags.count("tr") == len(table.rows) + 1 and parser.tags.count("strong") == len(table.bold)
    assert parser.tags.count("th") == len(table.header)
    assert render_rich(compared, by).renderables[0].row_count == len(table.rows)


def test_csv_is_tidy_with_significance_on_the_auc_lines():
    lines = list(csv.DictReader(io.StringIO(render(comparison(bootstrap_rounds=50), "csv"))))
    assert len(lines) == 3 * (4 + 2 * 2)  # per model: auc, logloss, gauc, gap_closed overall; auc, logloss per scenario
    line = next(x for x in lines if (x["model"], x["scope"], x["metric"]) == ("shared_bottom", "south", "auc"))
    test = comparison().rows[1].significance["south"]
    assert float(line["delong_p"]) == test.delong_p and float(line["p_value"]) == test.p_value
    assert float(line["adjusted_p"]) == test.adjusted_p and line["parameters"] == "13000"
    assert float(line["difference_ci_low"]) < float(line["difference"]) < float(line["difference_ci_high"])
    assert line["marks"] == "*" and float(line["bootstrap_low"]) < float(line["mean"]) < float(line["bootstrap_high"])


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
