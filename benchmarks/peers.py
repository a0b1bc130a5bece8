"""mscbench beside torch-rechub, DeepCTR-Torch and FuxiCTR: same model, data and settings, one epoch each.

    python3 -m venv /tmp/peers && /tmp/peers/bin/pip install torch==2.13.0 && \\
        /tmp/peers/bin/pip install torch-rechub deepctr-torch fuxictr      # the peers' own environment
    git clone https://github.com/reczoo/FuxiCTR /tmp/peers/FuxiCTR && \\
        git -C /tmp/peers/FuxiCTR checkout 0245987      # FuxiCTR's models (model_zoo/) as of fuxictr 2.3.10
    .venv/bin/python -m benchmarks.peers [--peers-python /tmp/peers/bin/python]
        [--models deepfm,dcn | din | shared_bottom,mmoe,ple]
        [--fuxictr-zoo /tmp/peers/FuxiCTR/model_zoo] [--batch-sizes 512,4096] [--train-rows 200000]
        [--repeats 3] [--set optimizer=lazy_adam] [--device cuda]

The synthetic dataset's first `--train-rows` training rows and its whole test split are exported once to
an `.npz` that the peers read; every (toolkit, model, batch size) then trains in a process of its own, so
that its peak memory (max RSS) is its own: embedding dim 16, MLP 128-64 (DCN: 3 cross layers; DIN:
attention MLP 80-40 over the two behaviour sequences, item_id and category as the target), Adam at lr 1e-3
without weight decay, batch as given, one epoch; samples/s counts the whole training call (data loading
included); test AUC on the whole test split. Each toolkit runs `--repeats` times, the toolkits in turn, and
its fastest run is kept (a shared machine's load only ever slows a run down). Ratios are mscbench's speed
over each peer's. Every process gets the same number of operator threads: mscbench's `threads` setting, by
default its idle cores. All three peers run every model of SETTINGS. Shared-Bottom, MMoE and PLE are
multi-task models in the peers and multi-scenario ones in mscbench (a gate and tower per scenario): with one
scenario and one task they are the same network, so these three train on a one-scenario synthetic dataset,
with no scenario field (mscbench routes by it), in mscbench's default setting: Shared-Bottom 128 then tower
64; MMoE 4 experts 128-64, tower Linear(64, 1); PLE one CGC level, 2 specific and 1 shared expert 128-64-32,
tower 16 (MMoE's embedding dim is set to 16 too). FuxiCTR's wheel ships no models: its worker imports the
model zoo of a checkout of the installed version (`--fuxictr-zoo`, default `$FUXICTR_ZOO`, else the path
above). `--device cuda` trains every toolkit on the GPU, each through its own device option (mscbench's
`device` setting; the peers' in benchmarks/peer_worker.py), and the peak memory column is then each process's
peak GPU allocation (torch.cuda.max_memory_allocated) instead of its peak resident memory.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from rich.table import Table

from benchmarks.peer_worker import (
    ATTENTION,
    BOTTOM,
    BOTTOM_TOWER,
    CROSS_LAYERS,
    DIM,
    EXPERTS,
    HIDDEN,
    MMOE_EXPERT,
    MULTI_TASK,
    PLE_EXPERT,
    PLE_TOWER,
    SHARED,
    SPECIFIC,
    peak_mib,
)
from benchmarks.train_speed import DATA_DIR, describe, load_average, measure, synthetic
from mscbench.config import TrainConfig, build_config, parse_overrides
from mscbench.training.trainer import choose_device, configure_threads

PEERS = ("torch-rechub", "deepctr-torch", "fuxictr")  # each has all of SETTINGS' models
SETTINGS = {  # mscbench's names for the values the peers are built with (benchmarks/peer_worker.py)
    "deepfm": {"embedding_dim": DIM, "hidden": HIDDEN, "dense_in_fm": False},
    "dcn": {"embedding_dim": DIM, "hidden": HIDDEN, "cross_layers": CROSS_LAYERS},
    "din": {"embedding_dim": DIM, "attention_hidden": ATTENTION, "hidden": HIDDEN},
    "shared_bottom": {"embedding_dim": DIM, "bottom": BOTTOM, "tower": BOTTOM_TOWER},
    "mmoe": {"embedding_dim": DIM, "num_experts": EXPERTS, "expert": MMOE_EXPERT, "tower": []},
    "ple": {"embedding_dim": DIM, "levels": 1, "specific_experts": SPECIFIC, "shared_experts": SHARED,
            "expert": PLE_EXPERT, "tower": PLE_TOWER},
}
WORKER = Path(__file__).with_name("peer_worker.py")


def scenarios(model: str) -> int:
    """The peers' multi-task models train on one scenario (one task); the others on the default 5."""
    return 1 if model in MULTI_TASK else 5


def export(train_rows: int, scenario_count: int) -> Path:
    """The arrays the peers read: sparse ids, scenario, dense values, sequences and labels per split."""
    path = DATA_DIR / f"peers-{scenario_count}-scenarios-{train_rows}.npz"
    if path.exists():
        return path
    manifest, splits = synthetic(None, scenario_count)
    arrays = {"sparse_names": [f.name for f in manifest.sparse], "sparse_vocab": [f.vocab_size for f in manifest.sparse],
              "dense_names": manifest.dense, "seq_names": [s.name for s in manifest.sequences],
              "seq_tables": [s.table for s in manifest.sequences], "num_scenarios": manifest.num_scenarios}
    for split, data in splits.items():
        rows = slice(train_rows) if split == "train" else slice(None)
        arrays |= {f"{split}_{name}": getattr(data, name)[rows].numpy()
                   for name in ("sparse", "dense", "seq", "scenario", "label")}
    np.savez(path, **arrays)
    return path


def mscbench_run(model: str, batch: int, train_rows: int, overrides: list[str]) -> dict:
    """One mscbench measurement in this (fresh) process: the worker side of `--mscbench-worker`."""
    config = build_config(TrainConfig, {**parse_overrides(overrides), "batch_size": batch, "lr": 1e-3,
                                        "epochs": 1}, owner="training")
    configure_threads(config)
    manifest, splits = synthetic(None, scenarios(model))
    train = splits.pop("train").select(torch.arange(train_rows))  # holds only the rows the peers get
    result = measure(model, manifest, train, splits["test"], config, SETTINGS[model])
    return {"toolkit": "mscbench", "model": model, "batch": batch, "train_per_second": result.train_per_second,
            "test_auc": result.test_auc, "peak_mib": peak_mib(str(choose_device(config.device)))}


def run_in_process(command: list[str]) -> dict:
    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    return {**json.loads(output.strip().splitlines()[-1]), "load": load_average()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--peers-python", default="/tmp/peers/bin/python")
    parser.add_argument("--fuxictr-zoo", help="FuxiCTR's model_zoo folder (from a git checkout)",
                        default=os.environ.get("FUXICTR_ZOO", "/tmp/peers/FuxiCTR/model_zoo"))
    parser.add_argument("--models", default="deepfm,dcn", help=f"any of {','.join(SETTINGS)}")
    parser.add_argument("--batch-sizes", default="512,4096")
    parser.add_argument("--train-rows", type=int, default=200_000)
    parser.add_argument("--repeats", type=int, default=3, help="runs per toolkit; the fastest is kept")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="an mscbench setting")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ...: every toolkit trains there")
    parser.add_argument("--mscbench-worker", nargs=2, metavar=("MODEL", "BATCH"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.mscbench_worker:
        model, batch = args.mscbench_worker
        print(json.dumps(mscbench_run(model, int(batch), args.train_rows, args.set)))
        return
    os.environ["FUXICTR_ZOO"] = args.fuxictr_zoo  # for the workers
    threads = str(parse_overrides(args.set).get("threads") or len(os.sched_getaffinity(0)))
    rows = []
    for model in args.models.split(","):
        data = export(args.train_rows, scenarios(model))
        for batch in args.batch_sizes.split(","):
            own = [sys.executable, "-m", "benchmarks.peers", "--mscbench-worker", model, batch,
                   "--train-rows", str(args.train_rows), *(f"--set={item}" for item in args.set),
                   f"--set=threads={threads}", f"--set=device={args.device}"]
            commands = {"mscbench": own, **{peer: [args.peers_python, str(WORKER), str(data), peer, model, batch,
                                                   threads, args.device] for peer in PEERS}}
            best: dict[str, dict] = {}
            for _ in range(args.repeats):  # toolkits alternate, so that a busy spell hits them alike
                for toolkit, command in commands.items():
                    result = run_in_process(command)
                    if toolkit not in best or result["train_per_second"] > best[toolkit]["train_per_second"]:
                        best[toolkit] = result
            rows += [(best["mscbench"], result) for result in best.values()]
    table = Table(title=f"one epoch over {args.train_rows:,} synthetic rows, test AUC on the whole test split, "
                        f"{threads} thread(s) each, {describe(choose_device(args.device))}, best of {args.repeats} "
                        f"(mscbench settings: {args.set or 'default'})")
    peak = "peak GPU MiB" if args.device.startswith("cuda") else "peak MiB"
    for column in ("model", "batch", "toolkit", "train samples/s", "test AUC", peak, "mscbench speed ratio",
                   "load"):
        table.add_column(column, justify="left" if column in ("model", "toolkit") else "right")
    for ours, result in rows:
        table.add_row(result["model"], str(result["batch"]), result["toolkit"], f"{result['train_per_second']:,.0f}",
                      f"{result['test_auc']:.4f}", f"{result['peak_mib']:,.0f}",
                      f"{ours['train_per_second'] / result['train_per_second']:.1f}x", f"{result['load']:.1f}")
    Console().print(table)


if __name__ == "__main__":
    main()
