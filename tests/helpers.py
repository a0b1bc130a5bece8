"""Small manifests and batches made in memory, for model tests that need no prepared dataset."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch

from mscbench.data.batch import Batch
from mscbench.data.manifest import Manifest, ScenarioInfo, SequenceFeature, SparseFeature


def tiny_manifest(num_scenarios: int = 4, with_sequence: bool = True, num_dense: int = 2,
                  seq_len: int = 6) -> Manifest:
    """A manifest shaped like the synthetic dataset's: user, item, category, context; item sequences."""
    sparse = [
        SparseFeature("user_id", 50, "user_id", "user"),
        SparseFeature("item_id", 40, "item_id", "item"),
        SparseFeature("category", 12, "category", "item"),
        SparseFeature("device", 5, "device", "context"),
    ]
    sequences = [
        SequenceFeature("hist_item", 40, "item_id", seq_len, target="item_id"),
        SequenceFeature("hist_category", 12, "category", seq_len, target="category"),
    ] if with_sequence else []
    names = [f"s{i}" for i in range(num_scenarios)]
    zeros = {split: [0] * num_scenarios for split in ("train", "valid", "test")}
    return Manifest(
        name="tiny", variant="test", preparer_version="test", label="click", sparse=sparse,
        dense=[f"dense_{i}" for i in range(num_dense)], sequences=sequences,
        scenario=ScenarioInfo("scenario", names, zeros, zeros),
        splits={}, user="user_id",
    )


def random_batch(manifest: Manifest, size: int = 32, scenarios: list[int] | None = None,
                 seed: int = 0) -> Batch:
    """A batch of random valid ids; rows cycle through `scenarios` (default: all of them)."""
    generator = torch.Generator().manual_seed(seed)
    scenarios = scenarios if scenarios is not None else list(range(manifest.num_scenarios))
    sparse = torch.stack([torch.randint(1, f.vocab_size, (size,), generator=generator)
                          for f in manifest.sparse], dim=1)
    length = manifest.sequence_length
    seq = torch.zeros(size, len(manifest.sequences), length, dtype=torch.long)
    present = torch.randint(0, length + 1, (size,), generator=generator) if length else None
    for s, feature in enumerate(manifest.sequences):
        ids = torch.randint(2, feature.vocab_size, (size, length), generator=generator)
        positions = torch.arange(length)
        seq[:, s] = torch.where(positions[None, :] >= length - present[:, None], ids, 0)
    gap = torch.where(seq[:, 0] != 0, torch.arange(length, 0, -1).expand(size, length), 0) if length \
        else torch.zeros(size, 0, dtype=torch.long)
    scenario = torch.tensor([scenarios[i % len(scenarios)] for i in range(size)])
    return Batch(
        sparse=sparse, dense=torch.randn(size, len(manifest.dense), generator=generator), seq=seq,
        seq_gap=gap, scenario=scenario, label=(torch.rand(size, generator=generator) < 0.3).float(),
    )


def owned_gradients(model, scenario: int) -> list[torch.Tensor | None]:
    """The gradients of what `model.scenario_parameters(scenario)` names: whole parameters, or the rows of
    `(parameter, rows)` pairs (scenario-owned rows of a shared table)."""
    grads = []
    for owned in model.scenario_parameters(scenario):
        parameter, rows = owned if isinstance(owned, tuple) else (owned, slice(None))
        grads.append(None if parameter.grad is None else parameter.grad[rows])
    return grads


@contextmanager
def torch_threads(count: int) -> Iterator[None]:
    """Run the block with `count` CPU threads for torch's operators (the test session runs with one)."""
    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)
