"""DDP on CPU (gloo) through `mscbench train` as torchrun launches it: two processes that each take half of
every batch store one run, whose weights are those of one process taking whole batches, and which learned;
every model of the registry trains data-parallel."""

import json
import os
import socket

import pytest
import torch
import torch.multiprocessing as mp

from mscbench.cli import main
from mscbench.data.loader import load_split
from mscbench.data.manifest import read_manifest
from mscbench.data.prepare import find_prepared, prepare_synthetic
from mscbench.experiment.execution import get_or_run
from mscbench.experiment.planning import plan_run
from mscbench.models import REGISTRY, build_model
from mscbench.results.store import RunStore
from mscbench.training.distributed import process_group
from mscbench.training.trainer import fit

SETTINGS = {"epochs": 1, "batch_size": 1024, "lr": 3e-3, "threads": 1, "device": "cpu"}


def launched(rank: int, world: int, port: int) -> None:
    """This process as one of a launch, with the environment torchrun gives it."""
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))


def train_rank(rank: int, world: int, port: int, data_dir, runs_dir) -> None:
    launched(rank, world, port)
    settings = [f"--set={key}={json.dumps(value)}" for key, value in SETTINGS.items()]
    assert main(["train", "dnn", "--data-dir", str(data_dir), "--runs-dir", str(runs_dir), *settings]) == 0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_two_processes_store_one_run_with_the_weights_of_one_process(data_dir, tmp_path):
    runs = tmp_path / "runs"
    mp.spawn(train_rank, args=(2, free_port(), data_dir, runs), nprocs=2)
    store = RunStore(runs)
    (run_id,) = store.complete_runs()  # the main process wrote the run; the other one nothing
    assert [p.name for p in runs.iterdir() if not p.name.startswith(".")] == [run_id]
    record = store.load(run_id)
    assert record.config["processes"] == 2
    (epoch,) = store.history(run_id)
    assert 0 < epoch["train_loss"] < 0.69 and epoch["valid_auc"] > 0.55  # finite, and below chance loss
    assert record.metrics.overall.auc > 0.55
    assert store.predictions(run_id)["prob"].shape == (record.metrics.overall.rows,)  # the whole split

    plan = plan_run("synthetic", "dnn", data_dir, train_values=SETTINGS)
    assert plan.run_id != run_id  # one process computes in another order: another run
    splits = {s: load_split(plan.dataset_path, plan.manifest, s) for s in ("train", "valid")}
    torch.manual_seed(plan.train.seed)
    single = build_model("dnn", plan.manifest)
    fit(single, splits["train"], splits["valid"], plan.train, torch.device("cpu"), plan.manifest.num_scenarios)
    stored = torch.load(store.path(run_id) / "model.pt", weights_only=True)
    for key, value in single.state_dict().items():
        torch.testing.assert_close(stored[key], value, rtol=1e-3, atol=1e-4)


def train_every_model(rank: int, world: int, port: int, data_dir, runs_dir) -> None:
    launched(rank, world, port)
    torch.set_num_threads(1)
    with process_group(torch.device("cpu")):  # one group for every run
        for name in sorted(REGISTRY):
            plan = plan_run("synthetic", name, data_dir, train_values={**SETTINGS, "batch_size": 256})
            get_or_run(plan, RunStore(runs_dir))


@pytest.mark.slow
def test_every_model_trains_data_parallel(tmp_path):
    """Scenario-owned parameters get no gradient in a process whose half of a batch lacks their scenario,
    schedules advance, auxiliary losses add up: each model trains and is evaluated on the whole test split."""
    prepare_synthetic(tmp_path / "data", rows=6000, seed=0)
    mp.spawn(train_every_model, args=(2, free_port(), tmp_path / "data", tmp_path / "runs"), nprocs=2)
    store = RunStore(tmp_path / "runs")
    records = [store.load(run_id) for run_id in store.complete_runs()]
    assert sorted(record.model for record in records) == sorted(REGISTRY)
    test_rows = read_manifest(find_prepared(tmp_path / "data", "synthetic")).rows("test")
    assert {(record.config["processes"], record.metrics.overall.rows) for record in records} == {(2, test_rows)}
