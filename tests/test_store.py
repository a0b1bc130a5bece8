"""The run store and the typed run record: runs of schema 1 stay readable, a metric added to the registry
reaches the table and the exports, and broken run files stop the CLI with one line naming the file."""

import csv
import io
import json
import shutil
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest

from mscbench.cli import main
from mscbench.eval.evaluation import METRICS, Metric
from mscbench.results.record import OVERALL, RECORD_SCHEMA, RunRecord
from mscbench.results.report import compare_runs, layout, render
from mscbench.results.store import BEGUN_FILE, RunStore
from tests.test_report import PREDICTIONS, RECORDS, comparison
from tests.test_report import record as made_run

# A run written by mscbench before the typed record (metrics.json schema 1), with its predictions and curves
SCHEMA_1 = Path(__file__).parent / "fixtures" / "schema1-runs" / "synthetic-rows3000-sc3-seed0-dnn-seed0-67eaa48d27"


def test_a_schema_1_run_reads_as_a_typed_record():
    raw = json.loads((SCHEMA_1 / "metrics.json").read_text())
    assert raw["schema"] == 1
    record = RunStore(SCHEMA_1.parent).load(SCHEMA_1.name)
    assert (record.run_id, record.model, record.seed, record.protocol) == (SCHEMA_1.name, "dnn", 0, "joint")
    assert record.code is None  # made before code fingerprints: stale against any current code
    assert record.dataset.label == "synthetic/rows3000-sc3-seed0"
    for scope in (OVERALL, "s0", "s1", "s2"):
        stored = raw["metrics"]["overall"] if scope == OVERALL else raw["metrics"]["scenarios"][scope]
        metrics = record.scope(scope)
        assert (metrics.rows, metrics.positives, metrics.oracle_auc) == \
            (stored["rows"], stored["positives"], stored["oracle_auc"])
        assert metrics.values == {m.name: stored[m.name] for m in METRICS}
    assert record.training.epochs_run == raw["training"]["epochs_run"] == 1
    assert record.parameters == 7_233
    again = RunRecord.from_json(json.loads(record.to_json()))  # written back as schema 2: the same record
    assert again == record and json.loads(record.to_json())["schema"] == RECORD_SCHEMA == 2


def test_a_schema_1_run_is_plotted_and_compared(tmp_path, capsys):
    runs = tmp_path / "runs"
    shutil.copytree(SCHEMA_1, runs / SCHEMA_1.name)
    assert main(["plot", "--runs-dir", str(runs), "--out", str(tmp_path / "plots")]) == 0
    assert (tmp_path / "plots" / "report.html").exists()
    record = RunStore(runs).load(SCHEMA_1.name)
    table = layout(compare_runs([record], "dnn", predictions_of=RunStore(runs).predictions_of))
    assert table.rows[0][:3] == ["dnn", f"{record.parameters:,}", f"{record.metrics.overall.auc:.4f}"]


@pytest.fixture
def brier():
    """One more metric in the registry, as a contributor would add it: the Brier score."""
    metric = Metric("brier", "Brier", lambda rows: float(np.mean((rows.prob - rows.label) ** 2)) if len(rows.label)
                    else None, higher_is_better=False)
    METRICS.append(metric)
    yield metric
    METRICS.remove(metric)


def test_a_metric_added_to_the_registry_reaches_the_table_and_every_export(brier):
    records = [made_run(model, seed, quality) for model, quality in (("dnn", 0.3), ("star", 0.8)) for seed in (0, 1)]
    for run in records:
        predicted = PREDICTIONS[run.run_id]
        assert run.metrics.overall.value("brier") == pytest.approx(np.mean((predicted["prob"] - predicted["label"]) ** 2))
    compared = compare_runs(records, "dnn")
    table = layout(compared)
    column = table.header.index("Brier")
    assert table.header[column - 1] == "LogLoss" and table.header[column + 1] == "RelaImpr vs dnn"
    star = compared.rows[1].cell("brier")
    assert table.rows[1][column] == star.text() and (1, column) in table.bold  # lower is better: star's
    lines = list(csv.DictReader(io.StringIO(render(compared, "csv"))))
    assert {(x["model"], x["scope"]) for x in lines if x["metric"] == "brier"} == \
        {(model, scope) for model in ("dnn", "star") for scope in compared.scopes}
    assert "Brier" in render(compared, "md") and "Brier" in render(compared, "latex")
    assert json.loads(render(compared, "json"))["rows"][1]["cells"]["brier"][OVERALL]["mean"] == star.mean


def test_runs_made_before_a_metric_existed_show_n_a_for_it(brier):
    table = layout(comparison())  # RECORDS were evaluated before `brier` was registered
    column = table.header.index("Brier")
    assert {row[column] for row in table.rows[:3]} == {"n/a"} and RECORDS[0].metrics.overall.value("brier") is None


# Broken run files through the CLI ----------------------------------------------------------------------------

FAST = ["--epochs", "1", "--batch-size", "1024", "--set", "threads=1"]


def cli(capsys, *args) -> tuple[int, str]:
    code = main(list(args))
    return code, " ".join(capsys.readouterr().err.split())


@pytest.fixture(scope="module")
def trained_once(data_dir, tmp_path_factory):
    """A complete dnn run made by `mscbench train`, once for the tests below."""
    runs = tmp_path_factory.mktemp("store") / "runs"
    assert main(["train", "dnn", *FAST, "--data-dir", str(data_dir), "--runs-dir", str(runs)]) == 0
    return runs


@pytest.fixture
def trained(trained_once, data_dir, tmp_path, capsys):
    """A copy of that run in a fresh store: the command line that made it and the run's directory."""
    runs = shutil.copytree(trained_once, tmp_path / "runs")
    capsys.readouterr()
    (directory,) = [path for path in runs.iterdir() if not path.name.startswith(".")]
    return ["train", "dnn", *FAST, "--data-dir", str(data_dir), "--runs-dir", str(runs)], directory


def test_a_corrupted_checkpoint_names_the_file_and_the_way_out(trained, capsys):
    args, directory = trained
    code = json.loads((directory / "metrics.json").read_text())["code"]
    (directory / "metrics.json").unlink()  # as if the run had been killed after an epoch, by the current code
    (directory / BEGUN_FILE).write_text(code)
    (directory / "checkpoint.pt").write_bytes(b"not a checkpoint")
    code, err = cli(capsys, *args)
    assert code == 2 and "Traceback" not in err
    assert f"checkpoint {directory / 'checkpoint.pt'} is corrupt or not this run's" in err and "--no-resume" in err
    assert main([*args, "--no-resume"]) == 0


@pytest.mark.parametrize("change, reason", [
    (lambda record: record.pop("metrics"), "record lacks metrics"),
    (lambda record: record.update(seed="0"), "record.seed must be int, not '0'"),
    (lambda record: record["metrics"]["scenarios"].update(s0=[]), "record.metrics.scenarios.s0 must be an object"),
])
def test_a_metrics_json_with_wrong_contents_names_the_file(trained, capsys, change, reason):
    args, directory = trained
    record = json.loads((directory / "metrics.json").read_text())
    change(record)
    (directory / "metrics.json").write_text(json.dumps(record))
    code, err = cli(capsys, *args)
    assert code == 2 and "Traceback" not in err
    assert f"{directory / 'metrics.json'} is corrupt ({reason})" in err and "--rerun" in err
    assert main([*args, "--rerun"]) == 0


def test_predictions_of_the_wrong_length_name_the_file(trained, capsys, data_dir):
    _, directory = trained
    path = directory / "predictions.npz"
    with np.load(path) as stored:
        arrays = {key: stored[key] for key in stored.files}
    rows = len(arrays["prob"])
    np.savez_compressed(path, **{key: value[:-5] for key, value in arrays.items()})
    compare = ["compare", "--models", "dnn", "--bootstrap", *FAST, "--data-dir", str(data_dir), "--runs-dir",
               str(directory.parent)]  # the bootstrap reads the base's predictions
    code, err = cli(capsys, *compare)
    assert code == 2 and "Traceback" not in err
    assert f"{path} holds {rows - 5}/{rows - 5}/{rows - 5} predictions/labels/scenarios for {rows:,} test rows: " \
           "retrain the run with --rerun" in err
    np.savez_compressed(path, **{**arrays, "label": arrays["label"][:-1]})
    code, err = cli(capsys, *compare)
    assert code == 2 and f"holds {rows}/{rows - 1}/{rows} predictions/labels/scenarios" in err


def test_every_record_field_survives_the_store(tmp_path):
    store = RunStore(tmp_path)
    store.begin(RECORDS[0].run_id, {}, "code", resume=False)
    store.finish(RECORDS[0], [], {}, {"prob": np.zeros(3), "label": np.zeros(3), "scenario": np.zeros(3)})
    assert store.load(RECORDS[0].run_id) == RECORDS[0]
    assert asdict(store.load(RECORDS[0].run_id)) == asdict(RECORDS[0])
