"""`compile = true`: a compiled training step learns as the eager one, its compile time is reported apart;
every registered model's forward traces without a graph break (torch._dynamo.explain) and compiles once for
every pattern of rows per scenario."""

from __future__ import annotations

import copy

import pytest
import torch
from torch._dynamo.testing import CompileCounterWithBackend

from mscbench.config import TrainConfig, build_config
from mscbench.data.loader import load_split
from mscbench.data.manifest import read_manifest
from mscbench.data.prepare import find_prepared
from mscbench.models import REGISTRY, build_model
from mscbench.training import trainer
from mscbench.training.trainer import fit, seed_everything
from tests.helpers import random_batch, tiny_manifest

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


@pytest.mark.slow
# m2m: a custom autograd Function inside the graph; star, hamur: rows routed by scenario, PartitionedNorm
@pytest.mark.parametrize("name", ["dnn", "m2m", "star", "hamur"])
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


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_a_models_forward_has_no_graph_break(name):
    """torch._dynamo.explain (backend "eager": traced, not compiled) of a training-mode forward pass, under the
    setting the trainer compiles with (rows per scenario as symbolic sizes)."""
    torch.manual_seed(0)
    manifest = tiny_manifest()
    model = build_model(name, manifest).train()
    torch._dynamo.reset()
    with trainer.capturing_scalars():
        explained = torch._dynamo.explain(model)(random_batch(manifest, 32))
    reasons = sorted({str(b.reason).splitlines()[0] for b in explained.break_reasons})
    assert explained.graph_break_count == 0, f"{name}: {explained.graph_break_count} graph breaks: {reasons}"


# Batches of 32 rows over 4 scenarios (None: all, in turn): one scenario only; scenario 0 absent; scenario 3
# on a single row; two absent, the rest uneven; all, uneven
SCENARIO_PATTERNS = [None, [2], [1, 2, 3], [0] * 15 + [1] * 16 + [3], [0, 3, 3, 3], [0, 1, 1, 2, 2, 2, 3, 3, 3, 3]]


def loss_and_gradients(forward, model, batch, seed):
    """The training loss of `batch` and every parameter's gradient (zeros where it has none: a branch whose
    scenario is absent runs on no rows when compiled, and does not run eagerly)."""
    model.zero_grad(set_to_none=True)
    torch.manual_seed(seed)  # the same dropout masks
    loss = trainer.batch_loss(forward, batch)
    loss.backward()
    return loss.item(), [torch.zeros_like(p) if p.grad is None else p.grad.to_dense() for p in model.parameters()]


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_a_model_compiles_once_for_every_pattern_of_rows_per_scenario(name, monkeypatch):
    """One graph serves batches of one shape whatever their rows per scenario (the models that route rows by
    scenario read those counts), and computes what eager does."""
    counter = CompileCounterWithBackend("aot_eager")  # counts the graphs Dynamo hands to aot_eager
    monkeypatch.setattr(trainer, "COMPILE_BACKEND", counter)
    torch.manual_seed(0)
    manifest = tiny_manifest()
    model = build_model(name, manifest).train()
    eager = copy.deepcopy(model)
    torch._dynamo.reset()
    step = trainer.compiled(model, CPU)
    for seed, scenarios in enumerate(SCENARIO_PATTERNS):
        batch = random_batch(manifest, 32, scenarios, seed)
        compiled_loss, compiled_gradients = loss_and_gradients(step, model, batch, seed)
        eager_loss, eager_gradients = loss_and_gradients(eager, eager, batch, seed)
        assert compiled_loss == pytest.approx(eager_loss, abs=1e-5), scenarios
        for ours, theirs in zip(compiled_gradients, eager_gradients, strict=True):
            torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-5)
        assert counter.frame_count == 1, f"{name}: compiled again (or broke the graph) for scenarios {scenarios}"
    for ours, theirs in zip(model.buffers(), eager.buffers(), strict=True):  # running statistics
        torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-5)
