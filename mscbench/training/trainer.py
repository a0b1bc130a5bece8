"""The training loop every model goes through: Adam, epochs, early stopping on validation AUC,
deterministic seeding, a checkpoint after every epoch and resume from it."""

from __future__ import annotations

import functools
import os
import pickle
import random
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from rich.progress import Progress
from torch import nn

from mscbench.config import ConfigError, TrainConfig
from mscbench.data.loader import SplitData, device_batches, place
from mscbench.errors import UserError
from mscbench.eval.metrics import auc, logloss
from mscbench.models.base import Scheduled
from mscbench.models.blocks.embedding import use_sparse_gradients
from mscbench.models.blocks.routing import rows_per_scenario


class TrainingDiverged(UserError):
    """The model's outputs stopped being numbers."""


@dataclass
class Prediction:
    prob: np.ndarray  # [N] click probability per row, in the split's row order
    extras: dict[str, list] = field(default_factory=dict)  # model extras averaged per scenario: key -> [N_s, ...]


EpochHook = Callable[[int, float | None], None]  # (epoch, validation AUC) after each epoch, e.g. for pruning


@dataclass
class FitResult:
    best_epoch: int
    best_valid_auc: float | None
    history: list[dict]
    train_seconds: float  # the epochs' training time, compilation excluded
    samples_per_second: float
    compile_seconds: float = 0.0  # with `compile`: the first compiled step (tracing, compiling, running it)


COMPILE_BACKEND = "inductor"  # torch.compile's backend (tests use "aot_eager", which compiles in seconds)


def capturing_scalars():
    """The Dynamo setting a compiled forward traces under: `.tolist()` (the rows per scenario that
    `route_by_scenario` reads) gives symbolic sizes, so one graph serves every pattern of counts, where it
    would break the graph and recompile for each new pattern. A context around each compiled call (Dynamo
    reads its config when it traces), not set at import, which would change whatever else the process compiles."""
    return torch._dynamo.config.patch(capture_scalar_outputs=True)


def compiled(model: nn.Module, device: torch.device) -> Callable:
    """`model` compiled for training steps of one fixed batch shape: on CUDA in "reduce-overhead" mode, whose
    CUDA graphs replay a step's kernels with one launch. It shares `model`'s parameters and buffers."""
    mode = {"mode": "reduce-overhead"} if device.type == "cuda" and COMPILE_BACKEND == "inductor" else {}
    step_model = torch.compile(model, backend=COMPILE_BACKEND, dynamic=False, **mode)

    def compiled_forward(batch):
        with capturing_scalars():
            return step_model(batch)

    return compiled_forward


def choose_device(name: str = "auto") -> torch.device:
    """The device `name` says ("auto": CUDA when available); one this torch cannot use is a clear error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"device {name!r} is not a device name: use auto, cpu, cuda or cuda:N") from None
    try:
        torch.empty(0, device=device)  # a CPU-only build, a missing GPU or a bad index fails here, not mid-run
    except (RuntimeError, AssertionError) as error:
        raise ConfigError(f"device {name!r} is not usable here ({str(error).splitlines()[0].rstrip('.')}): "
                          f"set device to auto or cpu") from None
    return device


def configure_threads(config: TrainConfig) -> None:
    """Set torch's CPU thread count to `resolved_threads(config)`."""
    torch.set_num_threads(resolved_threads(config))


def resolved_threads(config: TrainConfig) -> int:
    """`config.threads`, or with 0 one per core this process may use, or 1 when the machine was already
    oversubscribed when this process first asked (`busy_at_start`).

    Summation order (so the last digits of every metric) depends on the count, so it is part of a run's
    identity (experiment/planning.py) and decided once per process, not by the load of the moment. On a
    machine other work keeps busy, one thread runs several times faster than one per core
    (benchmarks/README.md, "Threads").
    """
    if config.threads:
        return config.threads
    cores = len(os.sched_getaffinity(0))
    return 1 if cores > 1 and busy_at_start(cores) else cores


@functools.cache
def busy_at_start(cores: int) -> bool:
    """Whether the 1-minute load average is above `cores`; read once per process, said in one line if so."""
    load = os.getloadavg()[0]
    if load > cores:
        print(f"notice: the load average ({load:.1f}) is above the {cores} cores, so training uses 1 thread "
              f"(--set threads=N to choose)", file=sys.stderr)
    return load > cores


def autocast(device: torch.device, amp: bool) -> torch.autocast:
    """bf16 autocast on CUDA when `amp` is set (a no-op context otherwise)."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp)


def check_amp(config: TrainConfig, device: torch.device) -> None:
    if config.amp and device.type != "cuda":
        raise ConfigError(f"amp = true needs a CUDA device, not {device.type}: bf16 autocast on CPU is slower "
                          "than float32 for these models; leave amp off")


class LazyAdam:
    """Adam for the dense parameters and SparseAdam for the id embedding tables, stepped as one optimiser.

    The tables get sparse gradients, so a step touches only the rows its batch used (TrainConfig.optimizer).
    """

    def __init__(self, model: nn.Module, lr: float):
        tables = use_sparse_gradients(model)
        sparse = {id(weight) for weight in tables}
        dense = [p for p in model.parameters() if id(p) not in sparse]
        self.dense = torch.optim.Adam(dense, lr=lr, **fastest_adam(dense))
        self.sparse = torch.optim.SparseAdam(tables, lr=lr) if tables else None

    def optimizers(self) -> list[torch.optim.Optimizer]:
        return [self.dense] if self.sparse is None else [self.dense, self.sparse]

    def zero_grad(self, set_to_none: bool = True) -> None:
        for optimizer in self.optimizers():
            optimizer.zero_grad(set_to_none=set_to_none)

    def step(self) -> None:
        for optimizer in self.optimizers():
            optimizer.step()

    def state_dict(self) -> dict:
        return {"optimizers": [optimizer.state_dict() for optimizer in self.optimizers()]}

    def load_state_dict(self, state: dict) -> None:
        for optimizer, own in zip(self.optimizers(), state["optimizers"], strict=True):
            optimizer.load_state_dict(own)


def fastest_adam(parameters: list[nn.Parameter]) -> dict:
    """Adam's implementation switch: the fused kernel (one pass over all parameters) where torch has it."""
    return {"fused": True} if all(p.device.type in ("cpu", "cuda") for p in parameters) else {}


def build_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer | LazyAdam:
    """The optimiser `config.optimizer` names, over every parameter of `model` (already on its device)."""
    if config.optimizer == "lazy_adam":
        return LazyAdam(model, config.lr)
    parameters = list(model.parameters())
    return torch.optim.Adam(parameters, lr=config.lr, weight_decay=config.weight_decay,
                            **fastest_adam(parameters))


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work (CUDA runs asynchronously), so that a timing covers it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def batch_loss(model: nn.Module, batch) -> torch.Tensor:
    """The data loss (binary cross-entropy on logits) plus the model's own weighted extra terms."""
    output = model(batch)
    loss = nn.functional.binary_cross_entropy_with_logits(output.logit, batch.label)
    return loss if output.aux_loss is None else loss + output.aux_loss


@torch.no_grad()
def predict(model: nn.Module, data: SplitData, batch_size: int, device: torch.device,
            num_scenarios: int, amp: bool = False, data_on_device: str = "auto") -> Prediction:
    """Probabilities for every row, and each model extra averaged over each scenario's rows.

    `data_on_device` (TrainConfig's setting) decides whether `data` is first moved to `device` whole."""
    model.eval()
    probs, sums = [], {}
    data = place(data, device, data_on_device)
    for batch in device_batches(data.batches(batch_size, shuffle=False), device):
        with autocast(device, amp):
            output = model(batch)
        probs.append(torch.sigmoid(output.logit).float())
        for key, value in output.extras.items():
            total = sums.setdefault(key, value.new_zeros((num_scenarios, *value.shape[1:]), dtype=torch.float))
            total.index_add_(0, batch.scenario, value.float())
    if sums:  # rows per scenario counted once, not per batch (bincount on a GPU waits for the device)
        denominator = rows_per_scenario(data.scenario, num_scenarios).to(device, torch.float).clamp_min(1)
    extras = {key: (total / denominator.view(-1, *[1] * (total.dim() - 1))).tolist() for key, total in sums.items()}
    prob = torch.cat(probs).cpu().numpy().astype(np.float64)
    if not np.isfinite(prob).all():  # a ranking with NaNs in it would still give an AUC: a wrong one
        raise TrainingDiverged(f"{type(model).__name__} predicts non-finite probabilities: training diverged; "
                               "lower the learning rate (--lr) or check the data")
    return Prediction(prob, extras)


def fit(model: nn.Module, train: SplitData, valid: SplitData, config: TrainConfig, device: torch.device,
        num_scenarios: int, checkpoint: Path | None = None, progress: Progress | None = None,
        shard: tuple[int, int] = (0, 1), on_epoch: EpochHook | None = None) -> FitResult:
    """Train `model` in place, keep the weights of the best validation epoch, and return the curves.

    If `checkpoint` exists, training resumes after its last completed epoch with the same RNG state,
    so an interrupted run ends with the same numbers as an uninterrupted one. `shard` = (rank, world size)
    trains on this process's share of every batch (`train_epoch`). `on_epoch` is called after each epoch
    (once its checkpoint is written, so a hook that stops training leaves a run that resumes).
    """
    check_amp(config, device)
    configure_threads(config)
    model.to(device)
    placed_train, placed_valid = (place(split, device, config.data_on_device) for split in (train, valid))
    step_model, timing = compiled(model, device) if config.compile else None, {}
    optimizer = build_optimizer(model, config)
    state = {"epoch": 0, "best_epoch": 0, "best_valid_auc": None, "best_model": None, "bad_epochs": 0,
             "history": [], "train_seconds": 0.0, "trained_samples": 0, "step": 0, "compile_seconds": 0.0}
    if checkpoint is not None and checkpoint.exists():
        state = restore(checkpoint, model, optimizer)
        say(progress, f"resuming run {checkpoint.parent.name} after epoch {state['epoch']} of {config.epochs}")
    while state["epoch"] < config.epochs and state["bad_epochs"] < config.patience:
        epoch = state["epoch"] + 1
        started = time.perf_counter()
        compiled_before = "compile_seconds" in timing
        train_loss, state["step"] = train_epoch(model, optimizer, placed_train, config, device, epoch, progress,
                                                state["step"], shard, step_model, timing)
        compile_seconds = 0.0 if compiled_before else timing.get("compile_seconds", 0.0)
        seconds = time.perf_counter() - started - compile_seconds
        valid_prob = predict(model, placed_valid, config.eval_batch_size, device, num_scenarios, config.amp,
                             config.data_on_device).prob
        valid_auc = auc(valid.label.numpy(), valid_prob)
        record = {"epoch": epoch, "train_loss": train_loss, "valid_auc": valid_auc,
                  "valid_logloss": logloss(valid.label.numpy(), valid_prob), "train_seconds": seconds,
                  "samples_per_second": len(train) / seconds}
        if config.compile:
            record["compile_seconds"] = compile_seconds
        state["history"].append(record)
        if progress is not None and not progress.console.is_terminal:  # a log gets the line a bar would show
            say(progress, epoch_line(record, config.epochs))
        state["train_seconds"] += seconds
        state["compile_seconds"] = state.get("compile_seconds", 0.0) + compile_seconds  # older checkpoints lack it
        state["trained_samples"] += len(train)
        improved = state["best_model"] is None or (valid_auc or 0.0) > (state["best_valid_auc"] or 0.0)
        if improved:
            state.update(best_epoch=epoch, best_valid_auc=valid_auc, bad_epochs=0,
                         best_model={k: v.detach().clone() for k, v in model.state_dict().items()})
        else:
            state["bad_epochs"] += 1
        state["epoch"] = epoch
        if checkpoint is not None:
            save_checkpoint(checkpoint, model, optimizer, state)
        if on_epoch is not None:
            on_epoch(epoch, valid_auc)
    model.load_state_dict(state["best_model"])
    return FitResult(state["best_epoch"], state["best_valid_auc"], state["history"], state["train_seconds"],
                     state["trained_samples"] / max(state["train_seconds"], 1e-9), state["compile_seconds"])


def epoch_line(record: dict, epochs: int) -> str:
    valid_auc = "n/a" if record["valid_auc"] is None else f"{record['valid_auc']:.4f}"
    return (f"epoch {record['epoch']} of {epochs}: train loss {record['train_loss']:.4f}, valid AUC {valid_auc}, "
            f"{record['train_seconds']:.0f} s ({record['samples_per_second']:,.0f} samples/s)")


def say(progress: Progress | None, message: str) -> None:
    """One line above the bars (they stay at the bottom of a terminal)."""
    if progress is not None:
        progress.console.print(message, highlight=False)


def train_epoch(model: nn.Module, optimizer: torch.optim.Optimizer | LazyAdam, data: SplitData,
                config: TrainConfig, device: torch.device, epoch: int, progress: Progress | None,
                step: int = 0, shard: tuple[int, int] = (0, 1), step_model: Callable | None = None,
                timing: dict | None = None) -> tuple[float, int]:
    """One pass over `data` starting at global training step `step`; returns the mean training loss (read
    once, not per step: no host syncs) and the global step reached.

    With `shard` = (rank, world size) > 1 process, this process takes rows rank, rank + world, ... of every
    batch (DDP averages the gradients, so a step sees the whole batch) and the loss is summed over processes.
    `step_model` (`compiled(model)`) runs the batches as long as the first; others (the ragged last one) run
    through `model` itself. Its first step (the one that compiles) is timed into `timing["compile_seconds"]`
    unless `timing` already has it (from an earlier epoch).
    """
    world = shard[1]
    model.train()
    scheduled = scheduled_modules(model)
    task = progress.add_task(f"epoch {epoch}", total=len(data)) if progress else None
    total_loss = torch.zeros((), device=device)
    shuffle_seed = config.seed * 1_000_003 + epoch  # a fresh, reproducible order every epoch
    batches = data.batches(config.batch_size, shuffle=True, seed=shuffle_seed, shard=shard)
    full_size = None
    for batch in device_batches(batches, device):
        full_size = full_size or len(batch)
        forward = step_model if step_model is not None and len(batch) == full_size else model
        first_compiled = forward is step_model and timing is not None and "compile_seconds" not in timing
        started = time.perf_counter()
        for module in scheduled:
            module.advance_schedule(step)
        if forward is step_model and device.type == "cuda":
            torch.compiler.cudagraph_mark_step_begin()  # the previous step's graph outputs are no longer read
        with autocast(device, config.amp):
            loss = batch_loss(forward, batch)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        total_loss += loss.detach() * len(batch)
        step += 1
        if first_compiled:
            synchronize(device)
            timing["compile_seconds"] = time.perf_counter() - started
        if task is not None:
            progress.advance(task, len(batch))
    if task is not None:
        progress.remove_task(task)
    if world > 1:
        torch.distributed.all_reduce(total_loss)
    return float(total_loss) / max(len(data), 1), step


def advance_schedules(model: nn.Module, step: int) -> None:
    """Set every schedule (temperatures, sharpness, cluster updates) of `model` and its submodules to global
    training step `step`, before that step runs: forward only reads them, so evaluation stays pure."""
    for module in scheduled_modules(model):
        module.advance_schedule(step)


def scheduled_modules(model: nn.Module) -> list[nn.Module]:
    """The modules of `model` that have a schedule: found once per epoch, as walking a deep model per step
    costs milliseconds."""
    return [module for module in model.modules() if isinstance(module, Scheduled)]


def save_checkpoint(path: Path, model: nn.Module, optimizer: torch.optim.Optimizer | LazyAdam,
                    state: dict) -> None:
    """Atomically write everything needed to continue: weights, optimiser moments, RNG, curves."""
    payload = {**state, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
               "torch_rng": torch.get_rng_state()}
    temporary = path.with_name(f".{path.name}.tmp")
    torch.save(payload, temporary)
    os.replace(temporary, path)


def restore(path: Path, model: nn.Module, optimizer: torch.optim.Optimizer | LazyAdam) -> dict:
    try:
        payload = torch.load(path, weights_only=True, map_location="cpu")
        model.load_state_dict(payload.pop("model"))
        optimizer.load_state_dict(payload.pop("optimizer"))
        torch.set_rng_state(payload.pop("torch_rng"))
    except (RuntimeError, EOFError, KeyError, TypeError, ValueError, AttributeError, pickle.UnpicklingError) as error:
        raise UserError(f"checkpoint {path} is corrupt or not this run's ({type(error).__name__}): start the run "
                        "afresh with --no-resume (or --rerun)") from None
    return payload
