"""Data-parallel training with torch.distributed: one process per GPU (or CPU process), launched by torchrun.

    torchrun --nproc_per_node=2 -m mscbench.train.distributed dnn --dataset synthetic [--set lr=3e-3 ...]

Every process builds the same model from the same seed, wrapped in DistributedDataParallel; each takes its
share of every batch of the same shuffled order (`train_epoch`'s shard), so that a step sees the whole batch
as one process would, and DDP averages the gradients. The training loss is summed over processes; every
process then holds the same weights, and rank 0 evaluates the test split and prints the metrics as JSON.
Backend: NCCL on CUDA (one GPU per process, by local rank), gloo on CPU. No checkpoint is written and
`optimizer` must be "adam" (NCCL does not all-reduce sparse gradients).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
from pathlib import Path

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from mscbench.config import ConfigError, parse_overrides, split_overrides
from mscbench.data.loader import load_split
from mscbench.eval.metrics import evaluate_predictions
from mscbench.models.base import build_model, get_card
from mscbench.train.runner import PlannedRun, plan_run
from mscbench.train.trainer import FitResult, fit, predict, seed_everything


def process_device() -> torch.device:
    """This process's GPU (by torchrun's LOCAL_RANK) when there are GPUs, else the CPU."""
    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return torch.device("cpu")


def train_shard(plan: PlannedRun) -> tuple[torch.nn.Module, FitResult]:
    """Train `plan`'s model in this process of an initialised process group; returns the plain model."""
    if plan.train.optimizer != "adam":
        raise ConfigError('distributed training needs optimizer = "adam": sparse gradients are not all-reduced')
    device = process_device()
    splits = {split: load_split(plan.dataset_path, plan.manifest, split) for split in ("train", "valid")}
    seed_everything(plan.train.seed)
    model = build_model(plan.model, plan.manifest, dataclasses.asdict(plan.model_config)).to(device)
    parallel = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    result = fit(parallel, splits["train"], splits["valid"], plan.train, device, plan.manifest.num_scenarios,
                 shard=(dist.get_rank(), dist.get_world_size()))
    return model, result


def evaluate(plan: PlannedRun, model: torch.nn.Module) -> dict:
    test = load_split(plan.dataset_path, plan.manifest, "test")
    prediction = predict(model, test, plan.train.eval_batch_size, process_device(), plan.manifest.num_scenarios,
                         plan.train.amp)
    return evaluate_predictions(test.label.numpy(), prediction.prob, test.scenario.numpy(),
                                plan.manifest.scenario.names, user=None if test.user is None else test.user.numpy(),
                                oracle=None if test.oracle is None else test.oracle)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model")
    parser.add_argument("--dataset", default="synthetic")
    parser.add_argument("--data-dir", type=Path, default=Path("data"))
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args(argv)
    model_values, train_values = split_overrides(parse_overrides(args.set), get_card(args.model).config)
    plan = plan_run(args.dataset, args.model, args.data_dir, model_values, train_values)
    dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    try:
        model, result = train_shard(plan)
        if dist.get_rank() == 0:
            print(json.dumps({"run": plan.run_id, "processes": dist.get_world_size(),
                              "best_epoch": result.best_epoch, "history": result.history,
                              "metrics": evaluate(plan, model)}, indent=1))
    finally:
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
