"""Throughput of every multi-scenario model as the number of scenarios grows (5 vs 20), on CPU.

    .venv/bin/python -m benchmarks.scenarios [--rows 20000] [--steps 10] [--repeats 3] [--threads 1]

Synthetic data is prepared once per scenario count in a temporary directory; each model then takes
`--steps` timed training steps (forward, backward, Adam) and as many evaluation passes at batch 512, after
three untimed warm-up steps. The two scenario counts are measured alternately, `--repeats` times, and the
best of each is kept, so that load from other processes on a shared machine biases neither. A model whose scenario branches run on their own rows only costs about the
same with 20 scenarios as with 5 (the same rows are split among more, smaller branches, plus a little
per-branch overhead); a model that runs every branch on every row slows down in proportion to N.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table

from mscbench.data.loader import load_split
from mscbench.data.prepare import prepare_synthetic
from mscbench.models import REGISTRY, build_model

BATCH = 512
WARMUP = 3


def multi_scenario_models() -> list[str]:
    """Every model with scenario-specific parameters, and dnn as the single-network reference."""
    return ["dnn", *sorted(n for n, card in REGISTRY.items() if card.multi_scenario)]


def throughput(name: str, manifest, data, steps: int) -> tuple[float, float]:
    """(training, evaluation) samples per second at batch 512."""
    torch.manual_seed(0)
    model = build_model(name, manifest)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    batches = [data.batch(slice(i * BATCH, (i + 1) * BATCH)) for i in range(WARMUP + steps)]
    model.train()
    for i, batch in enumerate(batches):
        if i == WARMUP:
            started = time.perf_counter()
        output = model(batch)
        loss = torch.nn.functional.binary_cross_entropy_with_logits(output.logit, batch.label)
        optimizer.zero_grad()
        (loss if output.aux_loss is None else loss + output.aux_loss).backward()
        optimizer.step()
    train = steps * BATCH / (time.perf_counter() - started)
    model.eval()
    with torch.no_grad():
        for i, batch in enumerate(batches):
            if i == WARMUP:
                started = time.perf_counter()
            model(batch)
    return train, steps * BATCH / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=20_000, help="synthetic rows per dataset")
    parser.add_argument("--steps", type=int, default=10, help="timed steps per measurement")
    parser.add_argument("--repeats", type=int, default=3, help="measurements per model and scenario count")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    arguments = parser.parse_args()
    torch.set_num_threads(arguments.threads)
    counts = (5, 20)
    results: dict[str, dict[int, tuple[float, float]]] = {}
    with tempfile.TemporaryDirectory() as directory:
        datasets = {}
        for scenarios in counts:
            prepared = prepare_synthetic(Path(directory) / str(scenarios), arguments.rows, scenarios)
            datasets[scenarios] = prepared.manifest, load_split(prepared.path, prepared.manifest, "train")
        for name in multi_scenario_models():
            for _ in range(arguments.repeats):
                for scenarios, (manifest, data) in datasets.items():
                    measured = throughput(name, manifest, data, arguments.steps)
                    best = results.setdefault(name, {}).get(scenarios, (0.0, 0.0))
                    results[name][scenarios] = (max(best[0], measured[0]), max(best[1], measured[1]))
    table = Table(title=f"samples/s, batch {BATCH}, CPU, {arguments.threads} thread(s)", title_justify="left")
    for column in ("model", "train N=5", "train N=20", "20 vs 5", "eval N=5", "eval N=20", "20 vs 5"):
        table.add_column(column, justify="left" if column == "model" else "right", no_wrap=True)
    for name, by_count in results.items():
        (train5, eval5), (train20, eval20) = by_count[5], by_count[20]
        table.add_row(name, f"{train5:,.0f}", f"{train20:,.0f}", f"{train20 / train5:.2f}x",
                      f"{eval5:,.0f}", f"{eval20:,.0f}", f"{eval20 / eval5:.2f}x")
    Console(width=120).print(table)


if __name__ == "__main__":
    main()
