"""Executing a planned run: reuse it from the run store, or train, evaluate and store it.

Protocols: `joint` trains one model on every scenario's data; `individual` trains a fresh model per
scenario on that scenario's data alone (SAML Table III's "-Individual" rows) and pools their predictions;
`finetune` trains jointly, then fine-tunes a copy of the joint weights on each scenario's rows alone, with
early stopping on that scenario's validation AUC (the multi-domain baseline, as in MAMDR, ICDE 2023).
Under torchrun every process trains its share of each batch (train/distributed.py); the main process alone
takes the run's lock, predicts the whole test split, evaluates it and writes the run.
"""

from __future__ import annotations

import dataclasses
import platform
import subprocess
import time
from contextlib import nullcontext
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import polars
import torch
from rich.progress import Progress

import mscbench
from mscbench.data.loader import SplitData, load_split
from mscbench.eval.evaluation import Evaluation, evaluate_predictions
from mscbench.experiment.planning import PlannedRun
from mscbench.models.base import build_model
from mscbench.results.record import DatasetRef, RunRecord, TrainingSummary
from mscbench.results.store import CHECKPOINT_FILE, RunStore
from mscbench.training.distributed import (
    data_parallel,
    from_main_process,
    is_main_process,
    process_device,
    process_group,
    rank,
    world_size,
)
from mscbench.training.trainer import (
    EpochHook,
    FitResult,
    Prediction,
    choose_device,
    fit,
    predict,
    seed_everything,
)

# a run's state in the store, against its plan (trained: by tuning, weights stored, test split not yet read;
# begun elsewhere: interrupted, its checkpoint made by other code)
MISSING, TRAINED, COMPLETE, STALE, BEGUN_ELSEWHERE = "missing", "trained", "complete", "stale", "begun elsewhere"


def get_or_run(plan: PlannedRun, store: RunStore, progress: Progress | None = None, rerun: bool = False,
               resume: bool = True, allow_stale: bool = False, heading: str = "") -> RunRecord | None:
    """The run's record, training it only when the store has no complete run made by the current code
    (`allow_stale` reuses one made by other code) or `rerun` is asked. One line, after `heading`, says which.

    While another process trains the same run, this one waits for it, then reuses its run. Under torchrun
    the record is returned in the main process; the others return None.
    """
    say = (lambda line: progress.console.print(heading + line)) if progress is not None and is_main_process() \
        else ignore
    described = f"{plan.model} (seed {plan.train.seed})"
    with process_group(process_device(choose_device(plan.train.device))), \
            store.lock(plan.run_id, say) if is_main_process() else nullcontext():
        # the main process reads the store and tells the others; a broken run is rerun too
        state = MISSING if rerun else from_main_process(run_state(plan, store) if is_main_process() else None)
        if state == COMPLETE or (state == STALE and allow_stale):
            say(f"reusing {described}" + (", a stale run made by other code (--allow-stale)"
                                          if state == STALE else ""))
            return store.load(plan.run_id) if is_main_process() else None
        if state == TRAINED:
            say(f"evaluating {described}, trained while tuning")
            return evaluate_trained(plan, store) if is_main_process() else None
        if state == STALE:
            say(f"retraining {described}: its stored run {plan.run_id} was made by other code "
                "(--allow-stale keeps it)")
        elif state == BEGUN_ELSEWHERE:
            say(f"training {described} afresh: its interrupted run was begun by other code")
        else:
            say(f"training {described}")
        fresh = rerun or state in (STALE, BEGUN_ELSEWHERE)  # nothing of another code's run is resumed
        return execute(plan, store, progress if is_main_process() else None, resume=resume and not fresh)


def ignore(message: str) -> None:
    """Where no one is told: without a progress display, and in the other processes of a launch."""


def run_state(plan: PlannedRun, store: RunStore) -> str:
    if store.is_complete(plan.run_id):
        return STALE if is_stale(store.load(plan.run_id), plan) else COMPLETE
    if store.is_trained(plan.run_id):
        return STALE if store.load_trained(plan.run_id)["code"] != plan.code else TRAINED
    begun = store.begun_by(plan.run_id)
    return BEGUN_ELSEWHERE if begun is not None and begun != plan.code else MISSING


def get_or_train(plan: PlannedRun, store: RunStore, on_epoch: EpochHook | None = None) -> dict:
    """For tuning (joint protocol): the run's training record (curves, best validation AUC), training it when
    the store has none made by the current code; the test split is not read. `on_epoch(epoch, valid_auc)`
    follows each trained epoch (a pruner may stop the run there: it resumes from that epoch's checkpoint)."""
    with store.lock(plan.run_id, ignore):
        state = run_state(plan, store)
        if state == COMPLETE:
            return dataclasses.asdict(store.load(plan.run_id))
        if state != TRAINED:
            train_joint(plan, store, resume=state == MISSING, on_epoch=on_epoch)
        return store.load_trained(plan.run_id)


def train_joint(plan: PlannedRun, store: RunStore, resume: bool, on_epoch: EpochHook | None) -> None:
    """Train on the training split with early stopping on the validation split and store the weights,
    curves and training record, without reading the test split."""
    directory = store.begin(plan.run_id, plan.resolved, plan.code, resume=resume)
    device = choose_device(plan.train.device)
    splits = {split: load_split(plan.dataset_path, plan.manifest, split) for split in ("train", "valid")}
    started = time.perf_counter()
    model, fit_result = train_model(plan, splits, device, directory, CHECKPOINT_FILE, None, on_epoch=on_epoch)
    fields = run_fields(plan, count_parameters(model), training_summary({"all": fit_result},
                        time.perf_counter() - started), device)
    trained = {key: dataclasses.asdict(value) if dataclasses.is_dataclass(value) else value
               for key, value in fields.items()}
    store.finish_training(plan.run_id, trained, curves({"all": fit_result}), model.state_dict())


def evaluate_trained(plan: PlannedRun, store: RunStore) -> RunRecord:
    """Complete a run tuning trained: predict the test split with its stored weights and evaluate it."""
    device = choose_device(plan.train.device)
    test = load_split(plan.dataset_path, plan.manifest, "test")
    state = store.weights(plan.run_id)
    model = build_model(plan.model, plan.manifest, dataclasses.asdict(plan.model_config))
    model.load_state_dict(state)
    model.to(device)
    prediction = predict_test(plan, model, test, device)
    metrics, predictions = evaluate_test(plan, test, prediction)
    trained = store.load_trained(plan.run_id)
    record = RunRecord(**{**trained, "dataset": DatasetRef(**trained["dataset"]),
                          "training": TrainingSummary(**trained["training"]), "metrics": metrics,
                          "extras": prediction.extras})
    store.finish_evaluation(record, predictions)  # its curves and weights are stored already
    return store.load(plan.run_id)


def is_stale(record: RunRecord, plan: PlannedRun) -> bool:
    """Was this run of `plan` made by other code than the current one (or before code fingerprints)?"""
    return record.code != plan.code


def execute(plan: PlannedRun, store: RunStore, progress: Progress | None = None,
            resume: bool = False) -> RunRecord | None:
    """Train, evaluate and store the run (the main process writes; under torchrun the others return None)."""
    main = is_main_process()
    directory = store.begin(plan.run_id, plan.resolved, plan.code, resume=resume) if main else None
    device = process_device(choose_device(plan.train.device))
    splits = {split: load_split(plan.dataset_path, plan.manifest, split) for split in ("train", "valid", "test")}
    started = time.perf_counter()
    if plan.train.protocol == "individual":
        model_state, fits, prediction, parameters = run_per_scenario(plan, splits, device, directory, progress)
    else:
        model, fit_result = train_model(plan, splits, device, directory, CHECKPOINT_FILE, progress)
        fits = {"all": fit_result}
        prediction = predict_test(plan, model, splits["test"], device) if main else None
        model_state, parameters = model.state_dict(), count_parameters(model)
        if plan.train.protocol == "finetune":
            model_state, tuned, prediction, parameters = run_per_scenario(plan, splits, device, directory, progress,
                                                                         joint=(model_state, prediction))
            fits |= tuned  # "all": the joint phase; then one entry per fine-tuned scenario
    if not main:
        return None
    summary = training_summary(fits, time.perf_counter() - started)
    metrics, predictions = evaluate_test(plan, splits["test"], prediction)
    record = RunRecord(**run_fields(plan, parameters, summary, device), metrics=metrics, extras=prediction.extras)
    store.finish(record, curves(fits), model_state, predictions)
    return store.load(plan.run_id)  # exactly what a later reuse of this run will read


def run_fields(plan: PlannedRun, parameters: int, training: TrainingSummary, device: torch.device) -> dict:
    """Everything a run's record says but its test metrics (alone, it is the record of a run trained while
    tuning, whose test split is read only when a comparison needs it)."""
    return {"run_id": plan.run_id, "model": plan.model, "seed": plan.train.seed, "protocol": plan.train.protocol,
            "dataset": DatasetRef(**plan.resolved["dataset"]), "config": plan.resolved, "code": plan.code,
            "parameters": parameters, "training": training, "device": str(device), "environment": environment(),
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds")}


def evaluate_test(plan: PlannedRun, test: SplitData, prediction: Prediction) -> tuple[Evaluation, dict]:
    """The test split's metrics and the arrays stored for significance tests, from the model's predictions."""
    metrics = evaluate_predictions(
        test.label.numpy(), prediction.prob, test.scenario.numpy(), plan.manifest.scenario.names,
        user=None if test.user is None else test.user.numpy(),
        oracle=None if test.oracle is None else test.oracle,
    )
    arrays = {"prob": prediction.prob.astype(np.float32), "label": test.label.numpy(),
              "scenario": test.scenario.numpy()}
    return metrics, arrays


def curves(fits: dict[str, FitResult]) -> list[dict]:
    """The history rows of every fit, each naming its scope ("all", or the scenario a model was fit on)."""
    return [{**row, "scenario": scenario} for scenario, fit_result in fits.items() for row in fit_result.history]


def train_model(plan: PlannedRun, splits: dict[str, SplitData], device: torch.device, directory: Path | None,
                checkpoint: str, progress: Progress | None, start: dict | None = None,
                on_epoch: EpochHook | None = None) -> tuple[torch.nn.Module, FitResult]:
    """A model of the plan, fresh or from the weights `start`, trained on `splits` (data-parallel under
    torchrun, without a checkpoint)."""
    seed_everything(plan.train.seed)
    model = build_model(plan.model, plan.manifest, dataclasses.asdict(plan.model_config))
    if start is not None:
        model.load_state_dict(start)
    n = plan.manifest.num_scenarios
    if world_size() > 1:
        parallel = data_parallel(model, device, plan.train)
        result = fit(parallel, splits["train"], splits["valid"], plan.train, device, n, progress=progress,
                     shard=(rank(), world_size()), on_epoch=on_epoch)
    else:
        result = fit(model, splits["train"], splits["valid"], plan.train, device, n, directory / checkpoint,
                     progress, on_epoch=on_epoch)
    return model, result


def predict_test(plan: PlannedRun, model: torch.nn.Module, test: SplitData, device: torch.device) -> Prediction:
    return predict(model, test, plan.train.eval_batch_size, device, plan.manifest.num_scenarios, plan.train.amp,
                   plan.train.data_on_device)


def run_per_scenario(plan: PlannedRun, splits: dict[str, SplitData], device: torch.device, directory: Path | None,
                     progress: Progress | None, joint: tuple[dict, Prediction | None] | None = None):
    """One model per scenario, trained and evaluated on that scenario's rows alone: fresh (individual) or
    from the `joint` model's weights (finetune; the joint model is kept, and its predictions stand for a
    scenario that cannot be trained)."""
    test = splits["test"]
    start, joint_prediction = joint or (None, None)
    prob = np.full(len(test), np.nan) if joint_prediction is None else joint_prediction.prob.astype(np.float64)
    fits, states, parameters = {}, {}, 0
    if start is not None:
        states = {f"joint.{key}": value for key, value in start.items()}
        parameters = sum(value.numel() for value in start.values())
    for scenario, name in enumerate(plan.manifest.scenario.names):
        own = {split: data.select(data.scenario == scenario) for split, data in splits.items()}
        if len(own["train"]) == 0 or len(own["test"]) == 0:
            continue
        checkpoint = f"checkpoint-{scenario}.pt"
        model, fits[name] = train_model(plan, own, device, directory, checkpoint, progress, start)
        if directory is None:  # a process of a launch other than the main one: it predicts nothing
            continue
        prob[(test.scenario == scenario).numpy()] = predict_test(plan, model, own["test"], device).prob
        states.update({f"{scenario}.{key}": value for key, value in model.state_dict().items()})
        parameters += count_parameters(model)
        (directory / checkpoint).unlink(missing_ok=True)
    untrained = np.isnan(prob)
    prob[untrained] = 0.5  # a scenario with no training rows gets no model: a constant, AUC exactly 0.5
    return states, fits, Prediction(prob), parameters


def training_summary(fits: dict[str, FitResult], seconds: float) -> TrainingSummary:
    samples = sum(f.samples_per_second * f.train_seconds for f in fits.values())
    train_seconds = sum(f.train_seconds for f in fits.values())
    return TrainingSummary(
        best_epoch={name: f.best_epoch for name, f in fits.items()},
        best_valid_auc={name: f.best_valid_auc for name, f in fits.items()},
        epochs_run=sum(len(f.history) for f in fits.values()), train_seconds=train_seconds,
        samples_per_second=samples / max(train_seconds, 1e-9), total_seconds=seconds,
        compile_seconds=sum(f.compile_seconds for f in fits.values()),
    )


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

