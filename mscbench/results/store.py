"""The run store: `runs/<run-id>/` with the resolved config, metrics, curves, weights and predictions.

A run is complete only when `metrics.json` exists; it is written last, atomically. `compare` and `regress`
read runs and reuse a complete run for the same resolved config and seed instead of retraining it.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import torch

from mscbench.data.manifest import write_atomic
from mscbench.errors import UserError

METRICS_SCHEMA = 1
CONFIG_FILE, METRICS_FILE, HISTORY_FILE = "config.toml", "metrics.json", "history.jsonl"
MODEL_FILE, PREDICTIONS_FILE, CHECKPOINT_FILE = "model.pt", "predictions.npz", "checkpoint.pt"


class RunStore:
    def __init__(self, root: Path):
        self.root = Path(root)

    def path(self, run_id: str) -> Path:
        return self.root / run_id

    def is_complete(self, run_id: str) -> bool:
        return (self.path(run_id) / METRICS_FILE).exists()

    def begin(self, run_id: str, resolved: dict, resume: bool) -> Path:
        """Create the run directory (emptied unless resuming) and write its resolved config."""
        directory = self.path(run_id)
        if directory.exists() and not resume:
            shutil.rmtree(directory)
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise UserError(f"cannot write runs to {self.root} ({error.strerror}): pass a writable --runs-dir")
        write_atomic(directory / CONFIG_FILE, to_toml(resolved))
        return directory

    def finish(self, run_id: str, metrics: dict, history: list[dict], model_state: dict,
               predictions: dict[str, np.ndarray]) -> None:
        """Write the run's files, `metrics.json` last, and drop the resume checkpoint."""
        directory = self.path(run_id)
        write_atomic(directory / HISTORY_FILE, "".join(json.dumps(row) + "\n" for row in history))
        torch.save(model_state, directory / MODEL_FILE)
        np.savez_compressed(directory / PREDICTIONS_FILE, **predictions)
        write_atomic(directory / METRICS_FILE, json.dumps({"schema": METRICS_SCHEMA, **metrics}, indent=2))
        (directory / CHECKPOINT_FILE).unlink(missing_ok=True)

    def load(self, run_id: str) -> dict:
        path = self.path(run_id) / METRICS_FILE
        try:
            metrics = json.loads(path.read_text())
        except json.JSONDecodeError as error:
            raise UserError(f"{path} is corrupt ({error}): delete the run directory to retrain it") from None
        if metrics.get("schema") != METRICS_SCHEMA:
            raise UserError(f"{path} has schema {metrics.get('schema')!r}, not {METRICS_SCHEMA}: retrain it")
        return metrics

    def predictions(self, run_id: str) -> dict[str, np.ndarray]:
        with np.load(self.path(run_id) / PREDICTIONS_FILE) as stored:
            return {key: stored[key] for key in stored.files}

    def complete_runs(self) -> list[str]:
        if not self.root.exists():
            return []
        return sorted(p.parent.name for p in self.root.glob(f"*/{METRICS_FILE}"))


def to_toml(table: dict, prefix: str = "") -> str:
    """A nested dict of scalars and lists as TOML (stdlib reads TOML but does not write it)."""
    scalars = [f"{key} = {toml_value(value)}" for key, value in table.items() if not isinstance(value, dict)]
    lines = ([f"[{prefix}]"] if prefix and scalars else []) + scalars
    for key, value in table.items():
        if isinstance(value, dict):
            lines += ["", to_toml(value, f"{prefix}.{key}" if prefix else key)]
    return "\n".join(lines).strip("\n") + "\n"


def toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if value is None:
        return '"none"'
    return json.dumps(str(value))  # a JSON string is a valid TOML basic string
