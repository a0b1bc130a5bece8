"""`compile = true`: a compiled training step learns as the eager one, its compile time is reported apart;
every registered model's forward keeps to its known graph breaks (torch._dynamo.explain)."""

from __future__ import annotations

import pytest
import torch

from mscbench.config import TrainConfig, build_config
from mscbench.data.loader import load_split
from mscbench.data.manifest import read_manifest
from mscbench.data.prepare import find_prepared
from mscbench.models import build_model
from mscbench.train import trainer
from mscbench.train.trainer import fit, seed_everything

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def splits(data_dir):
    path = find_prepared(data_dir, "synthetic")
    manifest = read_manifest(path)
    return manifest, {split: load_split(path, manifest, split) for split in ("train", "valid")}


def trained(name, manifest, splits, **settings):
    config = build_config(TrainConfig, {"epochs": 2, "batch_size": 700, "patience": 2, "threads": 1, **settings},
                          owner="training")
    seed_everything(0)
    model = build_model(name, manifest)
    return model, fit(model, splits["train"], splits["valid"], config, CPU, manifest.num_scenarios)


@pytest.mark.parametrize("name", ["dnn", "m2m"])  # m2m: a custom autograd Function inside the graph
def test_a_compiled_step_follows_the_eager_loss_trajectory(name, splits, monkeypatch):
    monkeypatch.setattr(trainer, "COMPILE_BACKEND", "aot_eager")  # inductor's C++ build takes minutes here
    manifest, data = splits
    assert len(data["train"]) % 700  # a ragged last batch, which runs eagerly
    _, eager = trained(name, manifest, data)
    _, compiled = trained(name, manifest, data, compile=True)
    for ours, theirs in zip(compiled.history, eager.history, strict=True):
        assert ours["train_loss"] == pytest.approx(theirs["train_loss"], rel=1e-5)
        assert ours["valid_auc"] == pytest.approx(theirs["valid_auc"], abs=1e-4)
    assert compiled.compile_seconds > 0 and "compile_seconds" not in eager.history[0]
    assert compiled.history[0]["compile_seconds"] == compiled.compile_seconds  # the first epoch compiles
    assert compiled.history[1]["compile_seconds"] == 0.0
    assert eager.compile_seconds == 0.0
