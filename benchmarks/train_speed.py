"""mscbench's own speed, end to end: one training epoch (batch fetch included) and prediction, on CPU or GPU.

    .venv/bin/python -m benchmarks.train_speed [--models dnn,deepfm] [--batch-sizes 512,4096] [--device cuda]
        [--train-rows 200000] [--repeats 3] [--set optimizer=adam --set threads=1] [--profile deepfm]

Synthetic data (`prepare_synthetic`, 1M impressions by default) is prepared once under the system's
temporary folder. Every (model, batch size) pair trains a fresh model (seed 0) for one epoch over the first
`--train-rows` training rows through the trainer's own `train_epoch`, then predicts the whole test split.
Pairs run alternately, `--repeats` times, and the best of each is kept, so that load from other processes
on a shared machine biases none of them; the 1-minute load average beside each figure says how busy the
machine was. The test AUC shows that a faster setting learns the same.
`--profile MODEL` prints where one epoch's time goes instead (torch.profiler, top operators).

`--device` (default cpu) is the training setting `device`. The training split goes where its
`data_on_device` setting puts it (on a GPU by default when it fits) before the epoch's clock starts, as `fit`
moves it once per run; with `--set compile=true` the compile time (the first compiled step) is its own
column, out of the epoch's time. Peak memory: on a GPU the peak of tensors allocated during the epoch and the
prediction (the resident split included); on the CPU how far the process's resident memory rose above its
level when the pair started (run with MALLOC_MMAP_THRESHOLD_=65536, so that the memory an earlier pair freed
goes back to the system instead of hiding a later pair's peak).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table
from torch.profiler import profile

from benchmarks.peer_worker import peak_mib, reset_peak, resident_mib
from mscbench.config import TrainConfig, build_config, parse_overrides
from mscbench.data.loader import SplitData, load_split, place
from mscbench.data.manifest import Manifest
from mscbench.data.prepare import prepare_synthetic
from mscbench.eval.metrics import auc
from mscbench.experiment.execution import count_parameters
from mscbench.models import build_model
from mscbench.training.trainer import (
    build_optimizer,
    choose_device,
    compiled,
    configure_threads,
    predict,
    seed_everything,
    synchronize,
    train_epoch,
)

MODELS = ("dnn", "shared_bottom", "deepfm", "dcn", "din", "mmoe", "ple")
DATA_DIR = Path(tempfile.gettempdir()) / "mscbench-bench"


@dataclass
class Measurement:
    train_per_second: float
    predict_per_second: float
    test_auc: float | None
    parameters: int
    load: float  # 1-minute load average when the training epoch ended
    peak_mib: float  # GPU: peak allocated; CPU: rise of the resident memory (module docstring)
    compile_seconds: float  # with `compile`: the first compiled step, not in train_per_second


def load_average() -> float:
    return os.getloadavg()[0]


def synthetic(rows: int | None, scenarios: int = 5) -> tuple[Manifest, dict[str, SplitData]]:
    """The synthetic dataset's train and test splits (prepared once under DATA_DIR)."""
    prepared = prepare_synthetic(DATA_DIR, rows=rows, scenarios=scenarios)
    return prepared.manifest, {s: load_split(prepared.path, prepared.manifest, s) for s in ("train", "test")}


def measure(name: str, manifest: Manifest, train: SplitData, test: SplitData, config: TrainConfig,
            model_values: dict | None = None) -> Measurement:
    """Train `name` one epoch from scratch and predict the test split; samples per second of each."""
    device = choose_device(config.device)
    start_mib = 0.0 if device.type == "cuda" else resident_mib()
    reset_peak(str(device))
    seed_everything(config.seed)
    model = build_model(name, manifest, model_values).to(device)
    optimizer = build_optimizer(model, config)
    placed = place(train, device, config.data_on_device)
    step_model, timing = compiled(model, device) if config.compile else None, {}
    synchronize(device)
    started = time.perf_counter()
    train_epoch(model, optimizer, placed, config, device, epoch=1, progress=None, step_model=step_model,
                timing=timing)
    synchronize(device)
    compile_seconds = timing.get("compile_seconds", 0.0)
    train_seconds = time.perf_counter() - started - compile_seconds
    load = load_average()
    started = time.perf_counter()
    prob = predict(model, test, config.eval_batch_size, device, manifest.num_scenarios, config.amp,
                   config.data_on_device).prob
    predict_seconds = time.perf_counter() - started
    return Measurement(len(train) / train_seconds, len(test) / predict_seconds, auc(test.label.numpy(), prob),
                       count_parameters(model), load, peak_mib(str(device)) - start_mib, compile_seconds)


def profile_epoch(name: str, manifest: Manifest, train: SplitData, config: TrainConfig, console: Console) -> None:
    seed_everything(config.seed)
    model = build_model(name, manifest)
    optimizer = build_optimizer(model, config)
    with profile() as profiler:
        train_epoch(model, optimizer, train, config, torch.device("cpu"), epoch=1, progress=None)
    console.print(f"{name}, batch {config.batch_size}, {len(train):,} rows, load {load_average():.1f}")
    console.print(profiler.key_averages().table(sort_by="self_cpu_time_total", row_limit=20))


def describe(device: torch.device) -> str:
    """The machine a figure was taken on: the GPU's name, torch and the CUDA torch was built with, or the CPU."""
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)}, torch {torch.__version__} (CUDA {torch.version.cuda})"
    return f"CPU, torch {torch.__version__}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--batch-sizes", default="512,4096")
    parser.add_argument("--rows", type=int, default=None, help="synthetic impressions (default 1M)")
    parser.add_argument("--train-rows", type=int, default=200_000, help="training rows per timed epoch")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="a training setting")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ... (the training setting `device`)")
    parser.add_argument("--profile", metavar="MODEL", help="profile one epoch of MODEL instead (on the CPU)")
    args = parser.parse_args()
    console = Console()
    base = build_config(TrainConfig, {**parse_overrides(args.set), "device": args.device}, owner="training")
    configure_threads(base)
    manifest, splits = synthetic(args.rows)
    train = splits["train"].select(torch.arange(min(args.train_rows, len(splits["train"]))))
    batch_sizes = [int(size) for size in args.batch_sizes.split(",")]
    if args.profile:
        for size in batch_sizes:
            profile_epoch(args.profile, manifest, train, dataclasses.replace(base, batch_size=size), console)
        return
    best: dict[tuple[str, int], Measurement] = {}
    for _ in range(args.repeats):
        for name in args.models.split(","):
            for size in batch_sizes:
                result = measure(name, manifest, train, splits["test"], dataclasses.replace(base, batch_size=size))
                key = (name, size)
                if key not in best or result.train_per_second > best[key].train_per_second:
                    best[key] = result
    table = Table(title=f"mscbench on synthetic ({len(train):,} training rows per epoch, "
                        f"{len(splits['test']):,} test rows; {describe(choose_device(args.device))}, "
                        f"{torch.get_num_threads()} CPU threads; "
                        f"best of {args.repeats}; settings {args.set or 'default'})")
    for column in ("model", "batch", "parameters", "train samples/s", "predict samples/s", "test AUC", "peak MiB",
                   "compile s", "load"):
        table.add_column(column, justify="left" if column == "model" else "right")
    for (name, size), result in best.items():
        table.add_row(name, str(size), f"{result.parameters:,}", f"{result.train_per_second:,.0f}",
                      f"{result.predict_per_second:,.0f}", f"{result.test_auc:.4f}", f"{result.peak_mib:,.0f}",
                      f"{result.compile_seconds:.1f}", f"{result.load:.1f}")
    console.print(table)


if __name__ == "__main__":
    main()
