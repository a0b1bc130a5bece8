"""The trainer and the run path on a small synthetic dataset: learning, determinism, resume, protocols."""

import dataclasses
import json
from dataclasses import asdict

import pytest
import torch

from mscbench.data.loader import load_split
from mscbench.experiment.execution import execute, get_or_run
from mscbench.experiment.planning import plan_run
from mscbench.models import REGISTRY, build_model
from mscbench.results.store import RunStore
from mscbench.training.trainer import TrainingDiverged, fit, predict

FAST = {"epochs": 2, "batch_size": 256, "lr": 3e-3}  # a budget every model, even plain LR, learns in


def run(data_dir, tmp_path, model="dnn", **train):
    plan = plan_run("synthetic", model, data_dir, train_values={**FAST, **train})
    return execute(plan, RunStore(tmp_path / "runs"))


# What a bare `pytest` (`make quick`) trains: a single network, a mixture of experts, a behaviour-sequence
# model and SAML; `make test` trains every model (the rest is marked slow).
LEARNING_SUBSET = {"dnn", "mmoe", "din", "saml"}


@pytest.mark.parametrize("name", [name if name in LEARNING_SUBSET else pytest.param(name, marks=pytest.mark.slow)
                                  for name in sorted(REGISTRY)])
def test_every_model_learns_the_planted_signal_and_stays_below_the_oracle(name, data_dir, tmp_path):
    overall = run(data_dir, tmp_path, name).metrics.overall
    assert 0.60 < overall.auc < overall.oracle_auc


def test_same_seed_gives_identical_metrics_and_other_seed_differs(data_dir, tmp_path):
    first = run(data_dir, tmp_path / "a", "shared_bottom").metrics
    again = run(data_dir, tmp_path / "b", "shared_bottom").metrics
    other = run(data_dir, tmp_path / "c", "shared_bottom", seed=1).metrics
    assert first == again
    assert first.overall.auc != other.overall.auc


@pytest.mark.parametrize("name", ["dnn", "adasparse"])  # adasparse: a schedule driven by the global step
def test_an_interrupted_run_resumes_to_the_same_weights(name, data_dir, tmp_path):
    plan = plan_run("synthetic", name, data_dir, train_values={"epochs": 2, "batch_size": 512, "patience": 2})
    splits = {s: load_split(plan.dataset_path, plan.manifest, s) for s in ("train", "valid")}
    n = plan.manifest.num_scenarios

    def trained(epochs, checkpoint):
        torch.manual_seed(0)
        model = build_model(name, plan.manifest)
        config = dataclasses.replace(plan.train, epochs=epochs)
        result = fit(model, splits["train"], splits["valid"], config, torch.device("cpu"), n, checkpoint)
        return model, result

    straight, straight_result = trained(2, tmp_path / "straight.pt")
    trained(1, tmp_path / "resumed.pt")  # "interrupted" after its first epoch
    resumed, resumed_result = trained(2, tmp_path / "resumed.pt")
    learned = ("epoch", "train_loss", "valid_auc", "valid_logloss")  # timings differ, numbers must not
    assert [{k: r[k] for k in learned} for r in resumed_result.history] == \
        [{k: r[k] for k in learned} for r in straight_result.history]
    for key, value in straight.state_dict().items():
        assert torch.equal(value, resumed.state_dict()[key]), key


def test_run_directory_holds_config_metrics_history_weights_and_predictions(data_dir, tmp_path):
    store = RunStore(tmp_path / "runs")
    plan = plan_run("synthetic", "dnn", data_dir, train_values=FAST)
    record = get_or_run(plan, store)
    directory = store.path(plan.run_id)
    assert {p.name for p in directory.iterdir()} == {"config.toml", "metrics.json", "history.jsonl", "model.pt",
                                                      "predictions.npz"}
    assert json.loads((directory / "metrics.json").read_text())["metrics"] == asdict(record.metrics)
    assert store.predictions(plan.run_id)["prob"].shape == (plan.manifest.rows("test"),)
    torch.load(directory / "model.pt", weights_only=True)
    (directory / "history.jsonl").write_text("")  # a reused run is read, not retrained
    assert get_or_run(plan, store) == record
    assert (directory / "history.jsonl").read_text() == ""


def test_individual_protocol_trains_one_model_per_scenario(data_dir, tmp_path):
    record = run(data_dir, tmp_path, "dnn", protocol="individual")
    assert set(record.training.best_epoch) == set(record.metrics.scenarios)
    assert record.metrics.overall.auc > 0.6


@pytest.mark.slow  # three runs: joint, finetune, individual
def test_finetune_protocol_tunes_each_scenario_from_the_joint_weights(data_dir, tmp_path):
    joint, finetuned, individual = (run(data_dir, tmp_path / protocol, "dnn", protocol=protocol, epochs=1)
                                    for protocol in ("joint", "finetune", "individual"))
    scenarios = list(finetuned.metrics.scenarios)
    assert set(finetuned.training.best_epoch) == {"all", *scenarios}
    assert finetuned.parameters == (len(scenarios) + 1) * joint.parameters  # the joint model is kept

    def weights(record):
        return torch.load(RunStore(tmp_path / record.protocol / "runs").path(record.run_id) / "model.pt",
                          weights_only=True)

    start, tuned, fresh = weights(joint), weights(finetuned), weights(individual)
    for key, value in start.items():
        assert torch.equal(tuned[f"joint.{key}"], value), key  # the joint phase is the joint run

    def distance(state: dict, scenario: int) -> float:
        return sum(float((state[f"{scenario}.{key}"] - value).norm()) for key, value in start.items())

    for scenario in range(len(scenarios)):  # fine-tuning moves the joint weights a little, not from scratch
        assert 0 < distance(tuned, scenario) < distance(fresh, scenario) / 2
    assert finetuned.metrics.overall.auc > 0.6


def test_a_diverged_model_is_an_error_not_a_number(data_dir, tmp_path):
    plan = plan_run("synthetic", "dnn", data_dir, train_values=FAST)
    model = build_model("dnn", plan.manifest)
    with torch.no_grad():
        model.mlp.layers[-1].bias.fill_(float("nan"))
    test = load_split(plan.dataset_path, plan.manifest, "test")
    with pytest.raises(TrainingDiverged, match="non-finite"):
        predict(model, test, 4096, torch.device("cpu"), plan.manifest.num_scenarios)
