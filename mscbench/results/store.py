"""The run store: `runs/<run-id>/` with the resolved config, metrics, curves, weights and predictions.

A run is complete only when `metrics.json` exists; it is written last, atomically. `compare` and `regress`
read runs and reuse a complete run for the same resolved config and seed instead of retraining it.
"""

from __future__ import annotations

import json
import shutil
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

from mscbench.errors import UserError
from mscbench.files import exclusive, write_atomic
from mscbench.results.record import RunRecord

CONFIG_FILE, METRICS_FILE, HISTORY_FILE = "config.toml", "metrics.json", "history.jsonl"
MODEL_FILE, PREDICTIONS_FILE, CHECKPOINT_FILE = "model.pt", "predictions.npz", "checkpoint.pt"
TRAINED_FILE = "trained.json"  # a run tuning trained but did not evaluate: its record without test metrics
BEGUN_FILE = "begun-by.txt"  # the code fingerprint a run was begun with: a checkpoint resumes under that code only


class RunStore:
    def __init__(self, root: Path):
        self.root = Path(root)

    def path(self, run_id: str) -> Path:
        return self.root / run_id

    def is_complete(self, run_id: str) -> bool:
        return (self.path(run_id) / METRICS_FILE).exists()

    def begin(self, run_id: str, resolved: dict, code: str, resume: bool) -> Path:
        """Create the run directory (emptied unless resuming) and write its resolved config and the code
        fingerprint it is begun with."""
        directory = self.path(run_id)
        if directory.exists() and not resume:
            shutil.rmtree(directory)
        self.make(directory)
        write_atomic(directory / CONFIG_FILE, to_toml(resolved))
        write_atomic(directory / BEGUN_FILE, code)
        return directory

    def begun_by(self, run_id: str) -> str | None:
        """The code fingerprint an interrupted run's checkpoints were made by ("" when the run predates the
        record of it); None when the run has no checkpoint to resume."""
        directory = self.path(run_id)
        if not any(directory.glob("checkpoint*.pt")):
            return None
        begun = directory / BEGUN_FILE
        return begun.read_text() if begun.exists() else ""

    def make(self, directory: Path) -> None:
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise UserError(f"cannot write runs to {self.root} ({error.strerror}): pass a writable --runs-dir")

    @contextmanager
    def lock(self, run_id: str, say: Callable[[str], None]) -> Iterator[None]:
        """Hold `run_id`'s lock while the block runs: one process trains a run at a time, and another one
        waits (after `say` tells by whom) to find the run complete. The kernel drops a dead holder's lock."""
        self.make(self.root)
        with exclusive(self.root / f".{run_id}.lock",
                       lambda holder: say(f"waiting for run {run_id} (being trained by {holder})")):
            yield

    def finish(self, record: RunRecord, history: list[dict], model_state: dict,
               predictions: dict[str, np.ndarray]) -> None:
        """Write the run's files, `metrics.json` last, and drop the resume checkpoint and its code's record."""
        write_training(self.path(record.run_id), history, model_state)
        self.finish_evaluation(record, predictions)

    def finish_evaluation(self, record: RunRecord, predictions: dict[str, np.ndarray]) -> None:
        """Complete a run whose curves and weights are stored (trained while tuning): its test predictions,
        then `metrics.json`."""
        directory = self.path(record.run_id)
        np.savez_compressed(directory / PREDICTIONS_FILE, **predictions)
        write_atomic(directory / METRICS_FILE, record.to_json())
        for done_with in (CHECKPOINT_FILE, TRAINED_FILE, BEGUN_FILE):
            (directory / done_with).unlink(missing_ok=True)

    def finish_training(self, run_id: str, trained: dict, history: list[dict], model_state: dict) -> None:
        """Store a run trained without reading its test split: curves, weights, then its training record."""
        directory = self.path(run_id)
        write_training(directory, history, model_state)
        write_atomic(directory / TRAINED_FILE, json.dumps(trained, indent=2))
        for done_with in (CHECKPOINT_FILE, BEGUN_FILE):
            (directory / done_with).unlink(missing_ok=True)

    def is_trained(self, run_id: str) -> bool:
        return (self.path(run_id) / TRAINED_FILE).exists()

    def load_trained(self, run_id: str) -> dict:
        """The training record of a run stored by `finish_training` (the run record without test metrics)."""
        path = self.path(run_id) / TRAINED_FILE
        try:
            return json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise UserError(f"{path} is corrupt ({error}): delete the run directory to retrain it") from None

    def weights(self, run_id: str) -> dict:
        return torch.load(self.path(run_id) / MODEL_FILE, weights_only=True, map_location="cpu")

    def load(self, run_id: str) -> RunRecord:
        path = self.path(run_id) / METRICS_FILE
        try:
            return RunRecord.from_json(json.loads(path.read_text()))
        except FileNotFoundError:
            raise UserError(f"run {run_id} is not in {self.root} (no {METRICS_FILE}): train it first") from None
        except ValueError as error:  # undecodable text, bad JSON, or JSON that is not a record (RecordError)
            raise UserError(f"{path} is corrupt ({error}): retrain the run with --rerun, or delete "
                            f"{path.parent}") from None

    def predictions(self, run_id: str, rows: int | None = None) -> dict[str, np.ndarray]:
        """The stored test predictions: `prob`, `label` and `scenario`, one entry per test row in order
        (`rows` of them, where the caller knows how many the run was evaluated on)."""
        path = self.path(run_id) / PREDICTIONS_FILE
        try:
            with np.load(path) as stored:
                arrays = {key: stored[key] for key in stored.files}
        except FileNotFoundError:
            raise UserError(f"run {run_id} has no stored test predictions ({path}): retrain it with --rerun") from None
        except (OSError, ValueError, zipfile.BadZipFile) as error:
            raise UserError(f"{path} is corrupt ({error}): retrain the run with --rerun") from None
        if not {"prob", "label", "scenario"} <= set(arrays):
            raise UserError(f"{path} lacks prob, label or scenario: retrain the run with --rerun")
        lengths = {len(arrays[key]) for key in ("prob", "label", "scenario")}
        if len(lengths) > 1 or (rows is not None and lengths != {rows}):
            raise UserError(f"{path} holds {'/'.join(str(len(arrays[k])) for k in ('prob', 'label', 'scenario'))} "
                            f"predictions/labels/scenarios{'' if rows is None else f' for {rows:,} test rows'}: "
                            "retrain the run with --rerun")
        return arrays

    def predictions_of(self, record: RunRecord) -> dict[str, np.ndarray]:
        return self.predictions(record.run_id, record.metrics.overall.rows)

    def history(self, run_id: str) -> list[dict]:
        """The run's curves, one dict per epoch (and per scenario for the individual protocol)."""
        path = self.path(run_id) / HISTORY_FILE
        try:
            return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        except FileNotFoundError:
            return []
        except json.JSONDecodeError as error:
            raise UserError(f"{path} is corrupt ({error}): retrain the run with --rerun") from None

    def complete_runs(self) -> list[str]:
        if not self.root.exists():
            return []
        return sorted(p.parent.name for p in self.root.glob(f"*/{METRICS_FILE}"))


def locate_run(run: str, runs_dir: Path) -> tuple[RunStore, str]:
    """A complete run named by its directory, or by its id inside `runs_dir`: its store and its id."""
    for directory in (Path(run), Path(runs_dir) / run):
        if (directory / METRICS_FILE).exists():
            return RunStore(directory.parent), directory.name
    raise UserError(f"{run} is not a complete run: no {METRICS_FILE} in it, nor a run of that id in {runs_dir}")


def write_training(directory: Path, history: list[dict], model_state: dict) -> None:
    """What every trained run stores, evaluated or not: its curves and its weights."""
    write_atomic(directory / HISTORY_FILE, "".join(json.dumps(row) + "\n" for row in history))
    torch.save(model_state, directory / MODEL_FILE)


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
