"""One real dataset end to end: ml-latest-small from its card, prepared and trained (dnn, shared_bottom)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mscbench.data.loader import load_split
from mscbench.data.prepare import find_prepared
from mscbench.data.sources import prepare_source
from mscbench.eval.evaluation import evaluate_predictions
from mscbench.experiment.execution import execute
from mscbench.experiment.planning import plan_run
from mscbench.results.record import DatasetRef, RunRecord
from mscbench.results.report import compare_runs, label_rate, layout
from mscbench.results.store import RunStore

RAW = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "movielens-ml-latest-small"
pytestmark = pytest.mark.skipif(not (RAW / "ratings.csv").is_file(), reason=f"{RAW} is absent")


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    directory = tmp_path_factory.mktemp("data")
    prepare_source("movielens-small", RAW, directory)
    return directory


def test_card_prepares_ratings_joined_with_movies_by_first_genre(data_dir):
    manifest = prepare_source("movielens-small", RAW, data_dir).manifest  # reused: same inputs
    assert sum(manifest.rows(s) for s in ("train", "valid", "test")) == 100_836
    assert manifest.rows("test") == 10_084  # the last 10% of ratings in time
    assert manifest.scenario.names == ["Action", "Adventure", "Comedy", "Crime", "Drama", "other"]
    assert "Animation" in manifest.scenario.merged and manifest.scenario.rows["train"][0] == 23_877
    assert manifest.notes["unmatched_rows"] == {"movies": 0}


@pytest.mark.slow
@pytest.mark.parametrize("model", ["dnn", "shared_bottom"])
def test_models_learn_the_split(data_dir, tmp_path, model):
    # A one-hot logistic regression (user, movie, first genre; sklearn, C=1) reaches 0.663 on this split;
    # one epoch of either model reaches about 0.67. The bound is loose to stay robust across seeds.
    plan = plan_run("movielens-small", model, data_dir, {}, {"epochs": 1, "batch_size": 512})
    record = execute(plan, RunStore(tmp_path / "runs"))
    overall = record.metrics.overall
    assert overall.rows == 10_084 and overall.auc > 0.64


def test_the_table_notes_that_logloss_carries_the_label_shift_of_this_split(data_dir):
    """48.8% positives in training, 40.9% in test: LogLoss moves with that shift, which the caption says."""
    manifest = prepare_source("movielens-small", RAW, data_dir).manifest
    test = load_split(find_prepared(data_dir, "movielens-small"), manifest, "test")
    label, scenario = test.label.numpy(), test.scenario.numpy()
    constant = np.full(len(label), label_rate(manifest))  # a model that learned the training rate and no more
    metrics = evaluate_predictions(label, constant, scenario, manifest.scenario.names)
    record = RunRecord(run_id="constant", model="constant", seed=0, dataset=DatasetRef("movielens-small", "v", "f"),
                       metrics=metrics)
    caption = layout(compare_runs([record], "constant", train_label_rate=label_rate(manifest))).caption
    assert (f"Positives: 48.8% of the training rows, 40.9% of the test rows; LogLoss is dominated by that shift "
            f"(predicting 48.8% for every test row scores {metrics.overall.value('logloss'):.4f}).") in caption
