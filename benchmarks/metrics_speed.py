"""Time of the per-scenario evaluation (AUC, GAUC, LogLoss, oracle AUC) at scale.

    .venv/bin/python -m benchmarks.metrics_speed [--rows 10000000] [--users 100000] [--scenarios 5] [--repeats 3]

Random predictions with a planted signal, users and scenarios drawn uniformly, a true click probability
as the oracle: the shape `evaluate_predictions` gets from a large test split. Best of `--repeats`: wall
seconds with the 1-minute load average beside them, and CPU seconds (all threads), which load from other
processes inflates far less.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

from mscbench.eval.evaluation import evaluate_predictions


def predictions(rows: int, users: int, scenarios: int, seed: int = 0) -> dict[str, np.ndarray]:
    generator = np.random.default_rng(seed)
    oracle = generator.uniform(0.02, 0.3, rows)
    return {"label": (generator.random(rows) < oracle).astype(np.float32),
            "prob": np.clip(oracle + generator.normal(0, 0.05, rows), 0, 1).astype(np.float32),
            "scenario": generator.integers(0, scenarios, rows), "user": generator.integers(0, users, rows),
            "oracle": oracle}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--scenarios", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    data = predictions(args.rows, args.users, args.scenarios)
    names = [f"s{i}" for i in range(args.scenarios)]
    best, best_cpu, load = float("inf"), float("inf"), 0.0
    for _ in range(args.repeats):
        started, started_cpu = time.perf_counter(), time.process_time()
        metrics = evaluate_predictions(data["label"], data["prob"], data["scenario"], names, user=data["user"],
                                       oracle=data["oracle"])
        seconds, best_cpu = time.perf_counter() - started, min(best_cpu, time.process_time() - started_cpu)
        if seconds < best:
            best, load = seconds, os.getloadavg()[0]
    overall = metrics.overall
    print(f"evaluate_predictions: {args.rows:,} predictions, {args.users:,} users, {args.scenarios} scenarios: "
          f"{best:.2f} s wall (load {load:.1f}), {best_cpu:.2f} s CPU, best of {args.repeats}; "
          f"overall AUC {overall.auc:.4f}, GAUC {overall.value('gauc'):.4f}")


if __name__ == "__main__":
    main()
