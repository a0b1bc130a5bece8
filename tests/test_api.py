"""The Python API for notebooks: `import mscbench` stays light; `mscbench.compare` and `mscbench.train` return
the table as a polars DataFrame and the runs, from the same runs the command line makes."""

import subprocess
import sys

import polars as pl

import mscbench

FAST = {"epochs": 1, "batch_size": 1024}


def test_importing_mscbench_loads_neither_torch_nor_polars():
    code = "import sys, mscbench; print(sorted(m for m in sys.modules if m in ('torch', 'polars', 'mscbench.api')))"
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert loaded.stdout.strip() == "[]"


def test_compare_returns_the_table_and_the_runs_with_a_variant_named_in_it(data_dir, tmp_path):
    result = mscbench.compare("dnn,dnn@narrow", dataset="synthetic", seeds=[0, 1],
                              settings={**FAST, "dnn@narrow.hidden": [8]}, data_dir=data_dir, runs_dir=tmp_path)
    assert [run.model for run in result.runs] == ["dnn", "dnn", "dnn@narrow", "dnn@narrow"]
    assert [run.config["model"]["hidden"] for run in result.runs] == [[128, 64, 32]] * 2 + [[8]] * 2
    auc = result.table.filter(pl.col("scope") == "overall", pl.col("metric") == "auc")
    assert auc["model"].to_list() == ["dnn", "dnn@narrow"] and auc["seeds"].to_list() == ["0 1", "0 1"]
    narrow = [run.metrics.overall.auc for run in result.runs[2:]]
    assert auc["mean"][1] == sum(narrow) / 2 and auc["delong_p"][1] > 0
    assert "| dnn@narrow |" in result.render("md")


def test_train_returns_one_runs_table(data_dir, tmp_path):
    result = mscbench.train("dnn", settings={**FAST, "hidden": [16]}, data_dir=data_dir, runs_dir=tmp_path)
    (run,) = result.runs
    assert run.config["model"]["hidden"] == [16] and run.config["train"]["epochs"] == 1
    logloss = result.table.filter(pl.col("scope") == "overall", pl.col("metric") == "logloss")["mean"].item()
    assert logloss == run.metrics.overall.value("logloss")
