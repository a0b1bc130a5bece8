"""The batch loader: the contract's dtypes and shapes, every row once per epoch, seeded shuffles, mmap."""

from __future__ import annotations

from dataclasses import fields

import polars as pl
import pytest
import torch

from mscbench.data import loader
from mscbench.data.loader import SplitData, load_split
from mscbench.data.manifest import read_manifest
from mscbench.data.prepare import prepare, prepare_synthetic
from mscbench.data.spec import DatasetSpec, SequenceColumn, SparseColumn, TimeSplit


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    result = prepare_synthetic(tmp_path_factory.mktemp("data"), rows=4000, seed=2)
    return result.path, result.manifest


def numbered(rows: int) -> SplitData:
    """A split whose first sparse column numbers its rows."""
    index = torch.arange(rows)
    return SplitData(
        sparse=torch.stack([index, index % 7], dim=1), dense=index[:, None].float(),
        seq=torch.zeros(rows, 1, 4, dtype=torch.long), seq_gap=torch.zeros(rows, 4, dtype=torch.long),
        scenario=index % 3, label=(index % 2).float(), user=index, oracle=None,
    )


def epoch_order(data: SplitData, **options) -> list[int]:
    return torch.cat([batch.sparse[:, 0] for batch in data.batches(**options)]).tolist()


def test_batches_cover_every_row_once_and_keep_the_last_partial_batch():
    data = numbered(10)
    sizes = [len(batch) for batch in data.batches(batch_size=4, shuffle=True, seed=0)]
    assert sizes == [4, 4, 2]
    assert sorted(epoch_order(data, batch_size=4, shuffle=True, seed=0)) == list(range(10))
    assert epoch_order(data, batch_size=3, shuffle=False) == list(range(10))


def test_shuffling_is_deterministic_by_seed_and_differs_across_seeds():
    data = numbered(1000)
    first = epoch_order(data, batch_size=64, shuffle=True, seed=5)
    assert first == epoch_order(data, batch_size=64, shuffle=True, seed=5)
    assert first != epoch_order(data, batch_size=64, shuffle=True, seed=6)
    assert first != list(range(1000))
    torch.manual_seed(1)
    unseeded = epoch_order(data, batch_size=64, shuffle=True)
    torch.manual_seed(1)
    assert unseeded == epoch_order(data, batch_size=64, shuffle=True)  # the global RNG when seed is None


def test_batch_rows_stay_aligned_across_fields():
    batch = next(numbered(50).batches(batch_size=16, shuffle=True, seed=0))
    assert torch.equal(batch.sparse[:, 1], batch.sparse[:, 0] % 7)
    assert torch.equal(batch.scenario, batch.sparse[:, 0] % 3)
    assert torch.equal(batch.dense[:, 0], batch.sparse[:, 0].float())


def test_select_takes_a_subset_of_every_field():
    data = numbered(30)
    subset = data.select(data.scenario == 1)
    assert len(subset) == 10 and torch.equal(subset.user, torch.arange(1, 30, 3)) and subset.oracle is None


def test_loaded_split_follows_the_batch_contract(synthetic):
    path, manifest = synthetic
    data = load_split(path, manifest, "train", memory_map=False)
    rows, length = manifest.rows("train"), manifest.sequence_length
    expected = {
        "sparse": ((rows, len(manifest.sparse)), torch.int64),
        "dense": ((rows, len(manifest.dense)), torch.float32),
        "seq": ((rows, len(manifest.sequences), length), torch.int64),
        "seq_gap": ((rows, length), torch.int64),
        "scenario": ((rows,), torch.int64),
        "label": ((rows,), torch.float32),
        "user": ((rows,), torch.int64),
        "oracle": ((rows,), torch.float64),
    }
    found = {name: (tuple(getattr(data, name).shape), getattr(data, name).dtype) for name in expected}
    assert found == expected
    assert len(data) == rows
    assert torch.equal(data.seq_gap == 0, data.seq[:, 0] == 0)  # a gap exactly where a behaviour is
    assert torch.bincount(data.scenario, minlength=5).tolist() == manifest.scenario.rows["train"]
    assert int(data.label.sum()) == sum(manifest.scenario.positives["train"])
    vocab_sizes = torch.tensor([f.vocab_size for f in manifest.sparse])
    assert (data.sparse >= 1).all() and (data.sparse < vocab_sizes).all()
    batch = next(data.batches(batch_size=256, shuffle=True, seed=0))
    assert batch.sparse.shape == (256, len(manifest.sparse)) and batch.seq.dtype == torch.int64


def test_memory_mapped_arrays_equal_in_memory_ones(synthetic):
    path, manifest = synthetic
    in_memory = load_split(path, manifest, "test", memory_map=False)
    mapped = load_split(path, manifest, "test", memory_map=True)
    assert (path / "test.sparse.npy").exists()
    for field in fields(SplitData):
        assert torch.equal(getattr(in_memory, field.name), getattr(mapped, field.name)), field.name
    reloaded = load_split(path, manifest, "test", memory_map=True)  # from the cache
    assert torch.equal(reloaded.seq, in_memory.seq)
    assert epoch_order(mapped, batch_size=100, shuffle=True, seed=3) == \
        epoch_order(in_memory, batch_size=100, shuffle=True, seed=3)


def test_large_splits_are_memory_mapped_automatically(synthetic, monkeypatch):
    path, manifest = synthetic
    monkeypatch.setattr(loader, "available_memory", lambda: 1024)
    data = load_split(path, manifest, "valid")
    assert (path / "valid.label.npy").exists() and len(data) == manifest.rows("valid")


def test_without_times_the_gaps_are_recency_ranks(tmp_path):
    frame = pl.DataFrame({"day": [1, 1, 2], "scenario": ["a", "b", "a"], "item": [3, 4, 3],
                          "hist": [[3, 4], [], [4]], "click": [1, 0, 1]})
    spec = DatasetSpec(name="tiny", label="click", scenario="scenario", sparse=(SparseColumn("item"),),
                       split=TimeSplit("day", valid_from=2, test_from=3),
                       sequences=(SequenceColumn("hist", "item", 4),))
    result = prepare(spec, frame.lazy, tmp_path)
    data = load_split(result.path, read_manifest(result.path), "train")
    assert data.seq_gap.tolist() == [[0, 0, 2, 1], [0, 0, 0, 0]]
    assert data.user is None and data.oracle is None and data.dense.shape == (2, 0)
