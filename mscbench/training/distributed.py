"""Data-parallel training with torch.distributed: one process per GPU (or CPU process), launched by torchrun.

    torchrun --nproc_per_node=2 -m mscbench train dnn --dataset synthetic [--set lr=3e-3 ...]

torchrun sets RANK and WORLD_SIZE; `mscbench train` (and `compare`) then train every run data-parallel
through the same planning and run store as one process does (experiment/execution.py). Every process builds
the same model from the same seed, wrapped in DistributedDataParallel; each takes its share of every batch
of the same shuffled order (`train_epoch`'s shard), so that a step sees the whole batch as one process
would, and DDP averages the gradients. Every process then holds the same weights; the main process (rank 0)
alone predicts the whole test split, evaluates it and writes the run. Backend: NCCL on CUDA (one GPU per
process, by local rank), gloo on CPU. No checkpoint is written and `optimizer` must be "adam" (NCCL does
not all-reduce sparse gradients).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from mscbench.config import ConfigError, TrainConfig


def rank() -> int:
    """This process's rank in a torchrun launch (0 outside one)."""
    return int(os.environ.get("RANK", "0"))


def world_size() -> int:
    """Processes in this torchrun launch (1 outside one)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def is_main_process() -> bool:
    return rank() == 0


@contextmanager
def process_group(device: torch.device) -> Iterator[None]:
    """This launch's process group (NCCL for CUDA, gloo for CPU) while the block runs; nothing with one
    process, and the group already made when one is."""
    if world_size() == 1 or dist.is_initialized():
        yield
        return
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    try:
        yield
    finally:
        dist.destroy_process_group()


def process_device(device: torch.device) -> torch.device:
    """This process's GPU (by torchrun's LOCAL_RANK) when `device` is CUDA in a launch; else `device`."""
    if device.type == "cuda" and world_size() > 1:
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return device


def data_parallel(model: torch.nn.Module, device: torch.device, config: TrainConfig) -> DistributedDataParallel:
    """`model` (on `device`) wrapped for data-parallel training in the current process group."""
    if config.optimizer != "adam":
        raise ConfigError('distributed training needs optimizer = "adam": sparse gradients are not all-reduced')
    # a scenario's own parameters get no gradient in a process whose share of a batch lacks that scenario
    return DistributedDataParallel(model.to(device), device_ids=[device.index] if device.type == "cuda" else None,
                                   find_unused_parameters=True)


def from_main_process(value):
    """`value` as the main process has it, in every process of the group (as it is without a group)."""
    if not dist.is_initialized():
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]
