"""One run = one model, one dataset, one seed, one protocol: plan it, train it (or reuse it), evaluate it.

Protocols: `joint` trains one model on every scenario's data; `individual` trains a fresh model per
scenario on that scenario's data alone (SAML Table III's "-Individual" rows) and pools their predictions.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import platform
import subprocess
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import polars
import torch
from rich.progress import Progress

import mscbench
from mscbench.config import TrainConfig, build_config
from mscbench.data.loader import SplitData, load_split
from mscbench.data.manifest import Manifest, read_manifest
from mscbench.data.prepare import find_prepared
from mscbench.eval.metrics import evaluate_predictions
from mscbench.models.base import ModelCard, build_model, get_card
from mscbench.results.store import CHECKPOINT_FILE, RunStore
from mscbench.train.trainer import FitResult, Prediction, choose_device, fit, predict, seed_everything

# Settings that change how fast a run goes, not what it computes: left out of the run's identity.
NOT_IDENTITY = ("device", "eval_batch_size", "threads")


@dataclass(frozen=True)
class PlannedRun:
    run_id: str
    model: str
    card: ModelCard
    model_config: Any
    train: TrainConfig
    dataset_path: Path
    manifest: Manifest
    resolved: dict  # the fully resolved config, as written to config.toml


def plan_run(dataset: str, model: str, data_dir: Path, model_values: dict | None = None,
             train_values: dict | None = None) -> PlannedRun:
    """Resolve names and settings (every error here is a clear one) without training anything."""
    card = get_card(model)
    model_config = card.make_config(model_values)
    train = build_config(TrainConfig, train_values or {}, owner="training")
    dataset_path = find_prepared(data_dir, dataset)
    manifest = read_manifest(dataset_path)
    resolved = {
        "dataset": {"name": manifest.name, "variant": manifest.variant,
                    "fingerprint": dataset_fingerprint(manifest)},
        "model": {"name": model, **dataclasses.asdict(model_config)},
        "train": dataclasses.asdict(train),
    }
    identity = json.dumps({**resolved, "train": {k: v for k, v in resolved["train"].items()
                                                 if k not in NOT_IDENTITY}}, sort_keys=True)
    digest = hashlib.sha256(identity.encode()).hexdigest()[:10]
    run_id = f"{manifest.name}-{manifest.variant}-{model}-seed{train.seed}-{digest}"
    return PlannedRun(run_id, model, card, model_config, train, dataset_path, manifest, resolved)


def dataset_fingerprint(manifest: Manifest) -> str:
    """One short hash for the prepared data: same raw inputs and preparer -> same fingerprint."""
    basis = json.dumps({"fingerprint": manifest.fingerprint, "preparer": manifest.preparer_version,
                        "name": manifest.name, "variant": manifest.variant}, sort_keys=True)
    return hashlib.sha256(basis.encode()).hexdigest()[:16]


def get_or_run(plan: PlannedRun, store: RunStore, progress: Progress | None = None,
               rerun: bool = False, resume: bool = True) -> dict:
    """The run's metrics, training it only when no complete run exists (or `rerun` is asked)."""
    if store.is_complete(plan.run_id) and not rerun:
        return store.load(plan.run_id)
    return execute(plan, store, progress, resume=resume and not rerun)


def execute(plan: PlannedRun, store: RunStore, progress: Progress | None = None, resume: bool = False) -> dict:
    directory = store.begin(plan.run_id, plan.resolved, resume=resume)
    device = choose_device(plan.train.device)
    splits = {split: load_split(plan.dataset_path, plan.manifest, split) for split in ("train", "valid", "test")}
    started = time.perf_counter()
    if plan.train.protocol == "joint":
        model, fits, prediction = train_and_predict(plan, splits, device, directory / CHECKPOINT_FILE, progress)
        model_state, parameters = model.state_dict(), count_parameters(model)
    else:
        model_state, fits, prediction, parameters = run_individual(plan, splits, device, directory, progress)
    seconds = time.perf_counter() - started
    test = splits["test"]
    metrics = evaluate_predictions(
        test.label.numpy(), prediction.prob, test.scenario.numpy(), plan.manifest.scenario.names,
        user=None if test.user is None else test.user.numpy(),
        oracle=None if test.oracle is None else test.oracle,
    )
    record = {
        "run_id": plan.run_id, "model": plan.model, "seed": plan.train.seed, "protocol": plan.train.protocol,
        "dataset": plan.resolved["dataset"], "config": plan.resolved, "metrics": metrics,
        "extras": prediction.extras, "parameters": parameters,
        "training": training_summary(fits, seconds), "device": str(device), "environment": environment(),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    history = [{**row, "scenario": scenario} for scenario, fit_result in fits.items() for row in fit_result.history]
    predictions = {"prob": prediction.prob.astype(np.float32), "label": test.label.numpy(),
                   "scenario": test.scenario.numpy()}
    store.finish(plan.run_id, record, history, model_state, predictions)
    return store.load(plan.run_id)  # exactly what a later reuse of this run will read


def train_and_predict(plan: PlannedRun, splits: dict[str, SplitData], device: torch.device, checkpoint: Path,
                      progress: Progress | None) -> tuple[torch.nn.Module, dict[str, FitResult], Prediction]:
    seed_everything(plan.train.seed)
    model = build_model(plan.model, plan.manifest, dataclasses.asdict(plan.model_config))
    n = plan.manifest.num_scenarios
    result = fit(model, splits["train"], splits["valid"], plan.train, device, n, checkpoint, progress)
    prediction = predict(model, splits["test"], plan.train.eval_batch_size, device, n, plan.train.amp)
    return model, {"all": result}, prediction


def run_individual(plan: PlannedRun, splits: dict[str, SplitData], device: torch.device, directory: Path,
                   progress: Progress | None):
    """One model per scenario, trained and evaluated on that scenario's rows alone."""
    test = splits["test"]
    prob = np.full(len(test), np.nan)
    fits, states, parameters = {}, {}, 0
    for scenario, name in enumerate(plan.manifest.scenario.names):
        own = {split: data.select(data.scenario == scenario) for split, data in splits.items()}
        if len(own["train"]) == 0 or len(own["test"]) == 0:
            continue
        model, fit_result, prediction = train_and_predict(plan, own, device, directory / f"checkpoint-{scenario}.pt",
                                                          progress)
        prob[(test.scenario == scenario).numpy()] = prediction.prob
        fits[name] = fit_result["all"]
        states.update({f"{scenario}.{key}": value for key, value in model.state_dict().items()})
        parameters += count_parameters(model)
        (directory / f"checkpoint-{scenario}.pt").unlink(missing_ok=True)
    untrained = np.isnan(prob)
    prob[untrained] = 0.5  # a scenario with no training rows gets no model: a constant, AUC exactly 0.5
    return states, fits, Prediction(prob), parameters


def training_summary(fits: dict[str, FitResult], seconds: float) -> dict:
    trained = sum(len(f.history) for f in fits.values())
    samples = sum(f.samples_per_second * f.train_seconds for f in fits.values())
    train_seconds = sum(f.train_seconds for f in fits.values())
    return {
        "best_epoch": {name: f.best_epoch for name, f in fits.items()},
        "best_valid_auc": {name: f.best_valid_auc for name, f in fits.items()},
        "epochs_run": trained, "train_seconds": train_seconds,
        "samples_per_second": samples / max(train_seconds, 1e-9), "total_seconds": seconds,
    }


def count_parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def environment() -> dict:
    return {"mscbench": mscbench.__version__, "python": platform.python_version(), "torch": torch.__version__,
            "polars": polars.__version__, "numpy": np.__version__, "git_revision": git_revision()}


def git_revision() -> str | None:
    try:
        result = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                                check=False, cwd=Path(__file__).parent)  # outside a checkout: no revision
    except (OSError, subprocess.SubprocessError):
        return None
    return result.stdout.strip() or None
