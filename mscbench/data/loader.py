"""Prepared split -> contiguous tensors -> whole batches by tensor indexing (no per-sample Python).

A split is read once, in bounded chunks, into arrays held in memory, or, when they would not fit
comfortably, into `.npy` files cached beside the Parquet (`train.sparse.npy`, ...) that are then
memory-mapped. Either way `SplitData` holds one tensor per Batch field, plus `user` and `oracle` for
evaluation.

Training and prediction take batches on their device in one of two ways (`place`, `device_batches`): a
split that fits comfortably in the device's memory is moved there once and shuffled and gathered there
(resident); otherwise each batch is gathered on the host, copied from pinned memory, and the next batch's
gather and copy are issued before the current batch's step runs (one batch of lookahead). Both draw the
same permutation on the CPU, so they train on the same batches in the same order.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
import polars as pl
import torch

from mscbench.data.batch import Batch
from mscbench.data.errors import DataError
from mscbench.data.manifest import Manifest
from mscbench.data.prepare import USER_KEY

READ_CHUNK_ROWS = 262_144
MEMORY_SHARE = 0.25  # map from disk when a split needs more than this share of the available memory
# A split lives on the GPU when it needs at most this share of the GPU's free memory: the rest is left to
# the model, its optimiser state and its activations (under 2 GiB per model at batch 4096 on an H200).
DEVICE_SHARE = 0.5
BATCH_FIELDS = tuple(f.name for f in fields(Batch))  # the SplitData fields a Batch is cut from

Shapes = dict[str, tuple[tuple[int, ...], type]]  # array name -> (shape, numpy dtype)


@dataclass
class SplitData:
    sparse: torch.Tensor  # [N, F] int64
    dense: torch.Tensor  # [N, D] float32
    seq: torch.Tensor  # [N, S, L] int64
    seq_gap: torch.Tensor  # [N, L] int64
    scenario: torch.Tensor  # [N] int64
    label: torch.Tensor  # [N] float32
    user: torch.Tensor | None  # [N] int64, a key per raw user (for GAUC)
    oracle: torch.Tensor | None  # [N] float64, true click probability (synthetic data)

    def __len__(self) -> int:
        return self.label.shape[0]

    def batch_bytes(self) -> int:
        """Bytes of the fields batches are made of (what `to` moves)."""
        return sum(getattr(self, name).nbytes for name in BATCH_FIELDS)

    def to(self, device: torch.device) -> SplitData:
        """The split with its batch fields on `device`; `user` and `oracle`, read by evaluation on the host,
        stay where they are."""
        return SplitData(**{f.name: getattr(self, f.name).to(device) if f.name in BATCH_FIELDS
                            else getattr(self, f.name) for f in fields(self)})

    def batch(self, rows: torch.Tensor | slice) -> Batch:
        """The rows of a slice (views, no copy) or of an index tensor (gathered by `index_select`, several
        times faster than advanced indexing)."""
        def take(array: torch.Tensor) -> torch.Tensor:
            return array[rows] if isinstance(rows, slice) else array.index_select(0, rows)

        return Batch(**{name: take(getattr(self, name)) for name in BATCH_FIELDS})

    def batches(self, batch_size: int, shuffle: bool, seed: int | None = None,
                shard: tuple[int, int] = (0, 1)) -> Iterator[Batch]:
        """Every row once, in order or in a permutation drawn from `seed` (the global torch RNG if None).

        The permutation is drawn on the CPU wherever the split is, then moved to it: the same seed gives
        the same order on every device. `shard` = (rank, world size) keeps rows rank, rank + world, ... of
        every batch, and gathers only those.
        """
        rank, world = shard
        starts = range(0, len(self), batch_size)
        if not shuffle:  # slices are views: no copy, sequential reads of a memory map
            return (self.batch(slice(start + rank, start + batch_size, world)) for start in starts)
        generator = torch.Generator().manual_seed(seed) if seed is not None else None
        order = torch.randperm(len(self), generator=generator).to(self.label.device)
        return (self.batch(order[start:start + batch_size][rank::world]) for start in starts)

    def select(self, rows: torch.Tensor | np.ndarray) -> SplitData:
        """The subset of `rows` (a boolean mask or indices), copied into memory."""
        rows = torch.as_tensor(rows)
        return SplitData(**{f.name: None if getattr(self, f.name) is None else getattr(self, f.name)[rows]
                            for f in fields(self)})


def resident(data: SplitData, device: torch.device, setting: str) -> bool:
    """Whether `data` should live on `device` for training or prediction (TrainConfig.data_on_device):
    "always", "never", or with "auto" on a GPU when it needs at most DEVICE_SHARE of the GPU's free memory.
    On the CPU "auto" keeps the host path (the data already is in the device's memory)."""
    if setting != "auto":
        return setting == "always"
    if device.type != "cuda":
        return False
    free, _ = torch.cuda.mem_get_info(device)
    return data.batch_bytes() <= DEVICE_SHARE * free


def place(data: SplitData, device: torch.device, setting: str) -> SplitData:
    """`data` moved to `device` once when it should be resident there, else `data` itself."""
    return data.to(device) if resident(data, device, setting) else data


def device_batches(batches: Iterable[Batch], device: torch.device) -> Iterator[Batch]:
    """`batches` on `device`, each one's gather and copy issued before the previous one is handed out, so
    that on a GPU they overlap the previous step's kernels. Host batches bound for a GPU go through pinned
    memory (asynchronous copies); batches already on `device` pass through unchanged."""
    def moved(batch: Batch) -> Batch:
        if batch.label.device.type == "cpu" and device.type == "cuda":
            batch = batch.pin_memory()
        return batch.to(device)

    iterator = iter(batches)
    current = next(iterator, None)
    if current is None:
        return
    current = moved(current)
    for following in iterator:
        following = moved(following)
        yield current
        current = following
    yield current


def load_split(dataset_path: Path, manifest: Manifest, split: str,
               memory_map: bool | None = None) -> SplitData:
    """The `split` of a prepared dataset; `memory_map` None decides by its size and the free memory."""
    parquet = Path(dataset_path) / manifest.splits[split]
    shapes = array_shapes(manifest, manifest.rows(split))
    if memory_map is None:
        memory_map = split_bytes(shapes) > MEMORY_SHARE * available_memory()
    if memory_map:
        arrays = cached_arrays(parquet, manifest, shapes)
    else:
        arrays = {name: np.empty(shape, dtype) for name, (shape, dtype) in shapes.items()}
        fill(arrays, parquet, manifest)
    tensors = {name: torch.from_numpy(array) for name, array in arrays.items()}
    return SplitData(**{f.name: tensors.get(f.name) for f in fields(SplitData)})


def array_shapes(manifest: Manifest, rows: int) -> Shapes:
    """Shape and dtype of each array of a split with `rows` rows."""
    length = manifest.sequence_length
    shapes = {
        "sparse": ((rows, len(manifest.sparse)), np.int64),
        "dense": ((rows, len(manifest.dense)), np.float32),
        "seq": ((rows, len(manifest.sequences), length), np.int64),
        "seq_gap": ((rows, length), np.int64),
        "scenario": ((rows,), np.int64),
        "label": ((rows,), np.float32),
    }
    if manifest.user:
        shapes["user"] = ((rows,), np.int64)
    if manifest.oracle:
        shapes["oracle"] = ((rows,), np.float64)
    return shapes


def split_bytes(shapes: Shapes) -> int:
    return sum(int(np.prod(shape)) * np.dtype(dtype).itemsize for shape, dtype in shapes.values())


def available_memory() -> int:
    """Bytes the system can give without swapping: Linux's MemAvailable, else half the physical memory."""
    meminfo = Path("/proc/meminfo")
    if meminfo.exists():
        for line in meminfo.read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") // 2


def fill(arrays: dict[str, np.ndarray], parquet: Path, manifest: Manifest) -> None:
    """Copy the Parquet into `arrays` chunk by chunk, so that at most one chunk is held twice."""
    start = 0
    for chunk in pl.scan_parquet(parquet).collect_batches(chunk_size=READ_CHUNK_ROWS):
        end = start + chunk.height
        for name, values in chunk_arrays(chunk, manifest).items():
            arrays[name][start:end] = values
        start = end
    if start != len(arrays["label"]):
        raise DataError(f"{parquet} has {start} rows, its manifest says {len(arrays['label'])}: "
                         f"re-run `mscbench prepare`")


def chunk_arrays(chunk: pl.DataFrame, manifest: Manifest) -> dict[str, np.ndarray]:
    rows, length = chunk.height, manifest.sequence_length
    sequences = [chunk[s.name].to_numpy() for s in manifest.sequences]
    arrays = {
        "sparse": side_by_side(chunk, [f.name for f in manifest.sparse]),
        "dense": side_by_side(chunk, manifest.dense),
        "seq": np.stack(sequences, axis=1) if sequences else np.zeros((rows, 0, 0), np.int64),
        "scenario": chunk[manifest.scenario.column].to_numpy(),
        "label": chunk[manifest.label].to_numpy(),
    }
    arrays["seq_gap"] = (chunk[manifest.sequence_gap].to_numpy() if manifest.sequence_gap
                         else recency_rank(arrays["seq"], length))
    if manifest.user:
        arrays["user"] = chunk[USER_KEY].to_numpy()
    if manifest.oracle:
        arrays["oracle"] = chunk[manifest.oracle].to_numpy()
    return arrays


def side_by_side(chunk: pl.DataFrame, names: list[str]) -> np.ndarray:
    """[rows, len(names)] array of the named columns (also when there are none)."""
    return chunk.select(names).to_numpy(order="c") if names else np.zeros((chunk.height, 0))


def recency_rank(seq: np.ndarray, length: int) -> np.ndarray:
    """Stand-in gaps when a dataset has no times: L..1 from the oldest to the most recent, 0 for padding."""
    if length == 0:
        return np.zeros((len(seq), 0), np.int64)
    return np.where(seq[:, 0] != 0, np.arange(length, 0, -1), 0)


def cached_arrays(parquet: Path, manifest: Manifest, shapes: Shapes) -> dict[str, np.ndarray]:
    """Memory-mapped `.npy` arrays beside the Parquet, written on first use (atomically)."""
    paths = {name: parquet.with_name(f"{parquet.stem}.{name}.npy") for name in shapes}
    if not all(path.exists() for path in paths.values()):
        write_cache(parquet, manifest, shapes, paths)
    arrays = {name: np.load(path, mmap_mode="c") for name, path in paths.items()}
    for name, (shape, dtype) in shapes.items():
        if arrays[name].shape != shape or arrays[name].dtype != dtype:
            raise DataError(f"{paths[name]} does not match its manifest: delete it and load again")
    return arrays


def write_cache(parquet: Path, manifest: Manifest, shapes: Shapes, paths: dict[str, Path]) -> None:
    temporary = {name: path.with_name(f".{path.name}.{os.getpid()}.tmp") for name, path in paths.items()}
    try:
        arrays = {name: np.lib.format.open_memmap(temporary[name], mode="w+", dtype=dtype, shape=shape)
                  for name, (shape, dtype) in shapes.items()}
        fill(arrays, parquet, manifest)
        for name, array in arrays.items():
            array.flush()
            os.replace(temporary[name], paths[name])
    finally:
        for path in temporary.values():
            path.unlink(missing_ok=True)
