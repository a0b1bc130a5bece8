"""Hyperparameter tuning on Optuna: each trial is an ordinary run in the run store, scored on validation.

A study searches one model's space (`mscbench.space`) on one dataset. Its objective is the run's best
validation AUC (the trainer's early stopping), or its mean over several seeds, each seed a run (a setting
picked on one seed's validation AUC is partly the luckiest one where settings differ by about what seeds
do); the test split is never loaded while tuning. Each trial is planned like any other run, so its run id
is the same hash `train` and `compare` use: a re-run or extended study reuses finished runs, and `compare`
reads the best trial's run. Poor trials are pruned on the per-epoch validation AUC. The study lives in
Optuna storage (a SQLite file beside the runs by default, or any RDB URL or `journal:PATH`), so an
interrupted study resumes and several processes share one.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import multiprocessing
import os
import socket
import typing
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import sqlalchemy.exc
from optuna.storages import BaseStorage, JournalStorage, RDBStorage
from optuna.storages.journal import JournalFileBackend
from optuna.trial import TrialState

from mscbench.config import PRUNERS, SAMPLERS, Recipe, TrainConfig, coerce, split_overrides
from mscbench.errors import UserError
from mscbench.experiment.execution import get_or_train, ignore
from mscbench.experiment.planning import plan_run
from mscbench.files import exclusive
from mscbench.models.base import get_card
from mscbench.results.store import RunStore
from mscbench.space import Choice, IntRange, Space, SpaceError, declared_space, parse_space, value_text
from mscbench.training.trainer import TrainingDiverged

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)


@dataclass(frozen=True)
class StudyPlan:
    """Everything one study needs, checked before any trial runs (and picklable, for worker processes)."""

    model: str
    dataset: str
    space: dict[str, Space]
    fixed: dict[str, Any]  # settings that are not tuned (`--set key=value`, the recipe's plain values)
    seeds: tuple[int, ...]  # each trial trains one run per seed; the first is fixed["seed"]
    trials: int | None
    seconds: float | None
    sampler: str
    pruner: str
    storage: str
    name: str
    data_dir: Path
    runs_dir: Path

    def settings(self, values: dict[str, Any]) -> tuple[dict, dict]:
        """(model hyperparameters, training settings) of a trial that chose `values`."""
        return split_overrides({**self.fixed, **values}, get_card(self.model).config)

    def objective(self) -> str:
        if len(self.seeds) == 1:
            return "best validation AUC (early stopping)"
        return f"best validation AUC (early stopping), mean over seeds {', '.join(map(str, self.seeds))}"

    def budget(self) -> str:
        parts = [f"{self.trials} trials"] if self.trials else []
        return " or ".join(parts + ([f"{self.seconds:g} s"] if self.seconds else []))


@dataclass(frozen=True)
class TrialResult:
    model: str
    number: int
    state: str  # "complete", "pruned" or "failed"
    value: float | None  # best validation AUC (the last reported one when pruned)
    settings: dict[str, Any]  # the values this trial chose
    run_id: str | None
    best: float | None  # the study's best value once this trial finished


@dataclass(frozen=True)
class TuneResult:
    model: str
    dataset: str
    study: str
    storage: str
    objective: str
    budget: str
    sampler: str
    pruner: str
    space: dict[str, str]  # key -> its range, as text
    trials: list[TrialResult]
    best: TrialResult | None

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2)


OnTrial = Callable[[TrialResult], None]


def plan_study(model: str, dataset: str, data_dir: Path, runs_dir: Path, entries: dict[str, Any] | None = None,
               trials: int | None = None, seconds: float | None = None, sampler: str = "tpe",
               pruner: str = "median", storage: str | None = None, name: str | None = None,
               replace_space: bool = False, seeds: Sequence[int] = ()) -> StudyPlan:
    """Check every name, setting, range and budget, and plan the default run (so the dataset exists).

    `entries` are `--set` / recipe values: a plain value fixes a setting, a table (`{log = [a, b]}`) is its
    range; with `replace_space` only these ranges are tuned, else they narrow the declared space. `seeds`:
    each trial's seeds (default: the seed `entries` give, else the default one).
    """
    if trials is None and seconds is None:
        raise UserError("give a budget: --trials N or --timeout SECONDS")
    if trials is not None and trials <= 0:
        raise UserError(f"--trials must be 1 or more, not {trials}")
    if seconds is not None and seconds <= 0:
        raise UserError(f"--timeout must be more than 0 seconds, not {seconds}")
    check_choice(sampler, SAMPLERS, "--sampler")
    check_choice(pruner, PRUNERS, "--pruner")
    card = get_card(model)
    entries = entries or {}
    if seeds and "seed" in entries:
        raise UserError("give the trials' seeds once: --seeds, or --set seed=N for one")
    if len(set(seeds)) != len(seeds):
        raise UserError(f"--seeds names a seed twice: {', '.join(map(str, seeds))}")
    entries = {**entries, "seed": seeds[0]} if seeds else entries
    given = {key: parse_space(key, value, "search space") for key, value in entries.items()}
    ranges = {key: value for key, value in given.items() if isinstance(value, Space)}
    fixed = {key: value for key, value in given.items() if key not in ranges}
    space = {**({} if replace_space else model_space(model)), **ranges}
    space = {key: value for key, value in space.items() if key not in fixed}
    check_space(model, space)
    if not space:
        raise SpaceError(f"nothing to tune for {model}: every setting of its space is fixed")
    if sampler == "grid":
        grid_of(space)
    model_values, train_values = split_overrides(fixed, card.config)
    default = plan_run(dataset, model, data_dir, model_values, train_values)
    if default.train.protocol != "joint":
        raise UserError(f"tune trains the joint protocol, not {default.train.protocol!r}: drop that setting")
    seeds = tuple(seeds) or (default.train.seed,)
    identity = json.dumps({"dataset": default.resolved["dataset"], "fixed": entries_text(fixed),
                           "space": {key: repr(value) for key, value in sorted(space.items())},
                           **({"seeds": list(seeds)} if len(seeds) > 1 else {})}, sort_keys=True)
    name = name or f"{model}-{default.manifest.name}-{hashlib.sha256(identity.encode()).hexdigest()[:8]}"
    storage = storage or f"sqlite:///{Path(runs_dir) / 'tuning.db'}"
    return StudyPlan(model, dataset, space, {**fixed, "seed": seeds[0]}, seeds, trials, seconds, sampler, pruner,
                     storage, name, Path(data_dir), Path(runs_dir))


def model_space(model: str) -> dict[str, Space]:
    """A model's declared search space: the shared training space, then its own hyperparameters'."""
    return declared_space(TrainConfig, get_card(model).config)


def check_space(model: str, space: dict[str, Space]) -> None:
    """Every key names a setting of the model or its training, and every value of its range fits that setting."""
    card = get_card(model)
    for key, values in space.items():
        try:
            model_values, train_values = split_overrides({key: None}, card.config)
        except UserError as error:
            raise SpaceError(f"search space of {model}: {error}") from None
        config, (bare,) = (card.config, model_values) if model_values else (TrainConfig, train_values)
        hint = typing.get_type_hints(config)[bare]
        for value in values.edges():
            coerce(list(value) if isinstance(value, tuple) else value, hint, f"search space of {model}: {key}")


def grid_of(space: dict[str, Space]) -> dict[str, list]:
    """The grid sampler's points: every option of a choice, every integer of a range; a float range has none."""
    grid = {}
    for key, values in space.items():
        if isinstance(values, Choice):
            grid[key] = [value_text(option) if isinstance(option, tuple) else option for option in values.options]
        elif isinstance(values, IntRange):
            grid[key] = list(range(values.low, values.high + 1))
        else:
            raise SpaceError(f"--sampler grid needs a choice for {key} ({values.text()}): e.g. "
                             f"--set '{key}={{choice = [{values.low:g}, {values.high:g}]}}'")
    return grid


def check_choice(value: str, choices: tuple[str, ...], option: str) -> None:
    if value not in choices:
        raise UserError(f"{option} takes {', '.join(choices)}, not {value!r}")


def entries_text(values: dict[str, Any]) -> dict[str, str]:
    return {key: value_text(v) for key, v in sorted(values.items())}


# Storage and the study ----------------------------------------------------------------------------------------

def open_storage(url: str) -> BaseStorage:
    """Optuna storage for `url`: an RDB URL (sqlite:///, postgresql://, mysql://) or `journal:PATH`."""
    try:
        if url.startswith("journal:"):
            path = Path(url.removeprefix("journal:").removeprefix("//"))
            if not path.parent.is_dir():
                raise OSError(f"no directory {path.parent}")
            return JournalStorage(JournalFileBackend(str(path)))
        if url.startswith("sqlite:///"):
            Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        return RDBStorage(url)
    except (ImportError, ValueError, OSError, sqlalchemy.exc.SQLAlchemyError) as error:
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise UserError(f"cannot open the study storage {url!r}: {reason}") from None


def load_study(plan: StudyPlan, storage: BaseStorage) -> optuna.Study:
    """The plan's study (created on first use) with the plan's sampler and pruner."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna.create_study(storage=storage, study_name=plan.name, direction="maximize",
                               sampler=make_sampler(plan, 0), pruner=make_pruner(plan), load_if_exists=True)


def make_sampler(plan: StudyPlan, seed: int) -> optuna.samplers.BaseSampler:
    """A seeded sampler: a study run by one worker is reproducible."""
    if plan.sampler == "grid":
        return optuna.samplers.GridSampler(grid_of(plan.space), seed=seed)
    if plan.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    # TPE's default 10 random trials would leave a 10-trial budget all random: a third of it, 2 to 10
    startup = 10 if plan.trials is None else min(10, max(2, plan.trials // 3))
    return optuna.samplers.TPESampler(n_startup_trials=startup, seed=seed)


def make_pruner(plan: StudyPlan) -> optuna.pruners.BasePruner:
    if plan.pruner == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=1)
    if plan.pruner == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1)
    return optuna.pruners.NopPruner()


def run_study(plan: StudyPlan, jobs: int = 1, on_trial: OnTrial | None = None) -> TuneResult:
    """Run the study until its budget is spent (trials already finished count), with `jobs` processes."""
    if jobs <= 0:
        raise UserError(f"--jobs must be 1 or more, not {jobs}")
    study = load_study(plan, open_storage(plan.storage))
    recover_interrupted(study)
    if jobs == 1:
        work(plan, 0, on_trial)
    else:
        context = multiprocessing.get_context("spawn")  # torch and forked threads do not mix
        workers = [context.Process(target=work, args=(plan, worker, on_trial)) for worker in range(jobs)]
        for process in workers:
            process.start()
        for process in workers:
            process.join()
        if any(process.exitcode for process in workers):
            raise UserError(f"a tuning worker failed (exit codes {[p.exitcode for p in workers]}): see above")
    return summarize(plan, study)


def work(plan: StudyPlan, worker: int, on_trial: OnTrial | None) -> None:
    """One worker: ask a trial while the budget allows, run it, tell its result."""
    study = load_study(plan, open_storage(plan.storage))
    # seeded per worker (two workers propose different trials) and by the trials already there (a resumed
    # study does not propose its first trials again)
    study.sampler = make_sampler(plan, worker * 1_000_003 + len(study.get_trials(deepcopy=False)))
    store = RunStore(plan.runs_dir)
    while True:
        # counting and asking as one step: no worker of this machine goes over the budget
        with exclusive(plan.runs_dir / f".study-{plan.name}.lock", ignore):
            if spent(plan, study):
                return
            trial = study.ask()
            trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")
        if beyond_budget(plan, study, trial.number):  # another machine asked the last trial first
            trial.set_user_attr("surplus", True)
            study.tell(trial, state=TrialState.FAIL)
            return
        result = run_trial(plan, study, trial, store)
        if on_trial is not None:
            on_trial(result)


def spent(plan: StudyPlan, study: optuna.Study) -> bool:
    """Whether the trials begun (interrupted ones aside) reach the budget, or their time the seconds."""
    trials = [t for t in study.get_trials(deepcopy=False) if counted(t)]
    if plan.trials is not None and len(trials) >= plan.trials:
        return True
    if plan.seconds is not None and sum(t.duration.total_seconds() for t in trials if t.duration) >= plan.seconds:
        return True
    sampler = study.sampler
    return isinstance(sampler, optuna.samplers.GridSampler) and sampler.is_exhausted(study)


def beyond_budget(plan: StudyPlan, study: optuna.Study, number: int) -> bool:
    """Whether the trials numbered before `number` already spend a budget of trials. The storage numbers the
    trials in the order they were asked, whichever machine asked: the first `trials` counted ones run."""
    earlier = [t for t in study.get_trials(deepcopy=False) if t.number < number and counted(t)]
    return plan.trials is not None and len(earlier) >= plan.trials


def counted(trial: optuna.trial.FrozenTrial) -> bool:
    """Whether a trial spends budget: running or finished, or failed by diverging (not by an interruption)."""
    return trial.state in (*FINISHED, TrialState.RUNNING) or bool(trial.user_attrs.get("diverged"))


def run_trial(plan: StudyPlan, study: optuna.Study, trial: optuna.Trial, store: RunStore) -> TrialResult:
    """Train (or reuse) the trial's run of each seed and tell the study their mean best validation AUC. The
    first seed's run reports its epochs to the pruner (the runs of a study are compared at the same seed)."""
    values = {key: space.sample(trial, key) for key, space in plan.space.items()}
    trial.set_user_attr("settings", {key: list(v) if isinstance(v, tuple) else v for key, v in values.items()})
    model_values, train_values = plan.settings(values)
    runs = [plan_run(plan.dataset, plan.model, plan.data_dir, model_values, {**train_values, "seed": seed})
            for seed in plan.seeds]
    trial.set_user_attr("run_id", runs[0].run_id)
    trial.set_user_attr("run_ids", [run.run_id for run in runs])

    def report(epoch: int, valid_auc: float | None) -> None:
        trial.report(valid_auc or 0.0, epoch)
        if trial.should_prune():
            raise optuna.TrialPruned()

    try:  # each under the run's lock: a setting trains once
        records = [get_or_train(run, store, on_epoch=report if run is runs[0] else None) for run in runs]
    except optuna.TrialPruned:
        frozen = study.tell(trial, state=TrialState.PRUNED)
    except TrainingDiverged:
        trial.set_user_attr("diverged", True)  # a spent trial, unlike an interrupted one
        frozen = study.tell(trial, state=TrialState.FAIL)
    else:
        frozen = study.tell(trial, sum(r["training"]["best_valid_auc"]["all"] for r in records) / len(records))
    return trial_result(plan, study, frozen)


def recover_interrupted(study: optuna.Study) -> None:
    """Trials a killed process on this machine left running: marked interrupted, and queued again (their
    runs resume from the last epoch's checkpoint). Trials of live workers, or of other machines, stay."""
    host = socket.gethostname()
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        where, _, pid = trial.user_attrs.get("worker", "").partition(":")
        if where == host and pid.isdigit() and not alive(int(pid)):
            study.tell(trial.number, state=TrialState.FAIL)
            study.enqueue_trial(trial.params)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# Results ---------------------------------------------------------------------------------------------------------

STATES = {TrialState.COMPLETE: "complete", TrialState.PRUNED: "pruned", TrialState.FAIL: "failed"}


def trial_result(plan: StudyPlan, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> TrialResult:
    finished = [t.value for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
                if t.number <= trial.number]
    best = max(finished) if finished else None
    value = trial.value if trial.state == TrialState.COMPLETE else last_reported(trial)
    return TrialResult(plan.model, trial.number, STATES.get(trial.state, trial.state.name.lower()), value,
                       trial.user_attrs.get("settings", {}), trial.user_attrs.get("run_id"), best)


def last_reported(trial: optuna.trial.FrozenTrial) -> float | None:
    steps = trial.intermediate_values
    return steps[max(steps)] if steps else None


def summarize(plan: StudyPlan, study: optuna.Study) -> TuneResult:
    trials = [trial_result(plan, study, t) for t in study.get_trials(deepcopy=False) if t.state in STATES and counted(t)]
    complete = [t for t in trials if t.state == "complete"]
    best = max(complete, key=lambda t: (t.value, -t.number)) if complete else None
    return TuneResult(plan.model, plan.dataset, plan.name, plan.storage, plan.objective(), plan.budget(),
                      plan.sampler, plan.pruner, {key: space.text() for key, space in plan.space.items()}, trials,
                      best)


def best_settings(plan: StudyPlan, result: TuneResult) -> tuple[dict, dict]:
    """(model hyperparameters, training settings) of the best trial, as `compare` plans them."""
    if result.best is None:
        raise UserError(f"study {plan.name} has no complete trial: every trial was pruned or failed")
    return plan.settings(result.best.settings)


@dataclass(frozen=True)
class TunedRecipe:
    settings: dict[str, tuple[dict, dict]]  # model -> (hyperparameters, training settings) of its best trial
    protocol: dict  # budget, sampler, pruner, objective, each model's chosen setting and space (for the report)


def tune_models(recipe: Recipe, registered: dict[str, str], dataset: str, data_dir: Path, runs_dir: Path,
                jobs: int = 1, on_trial: OnTrial | None = None) -> TunedRecipe:
    """Tune every model of a recipe (its name -> the registered model) with its `[tune]` budget, trials seeded
    with the recipe's first seeds (`[tune] seeds`, one by default), so that the best trial's runs are the
    comparison's runs of those seeds. Every space is checked before any trial runs."""
    settings = recipe.tune
    if settings.seeds > len(recipe.seeds):
        raise UserError(f"[tune] seeds = {settings.seeds}, but the recipe has {len(recipe.seeds)} seeds")
    seeds, train = recipe.seeds[:settings.seeds], {k: v for k, v in recipe.train.items() if k != "seed"}
    plans = {name: plan_study(model, dataset, data_dir, runs_dir, {**train, **recipe.model.get(name, {})},
                              settings.trials, settings.seconds, settings.sampler, settings.pruner,
                              replace_space=settings.space == "recipe", seeds=seeds)
             for name, model in registered.items()}
    results = {name: run_study(plan, jobs, on_trial) for name, plan in plans.items()}
    protocol = {"budget": next(iter(plans.values())).budget(), "sampler": settings.sampler,
                "pruner": settings.pruner, "objective": next(iter(plans.values())).objective(),
                "settings": {name: r.best and r.best.settings for name, r in results.items()},
                "spaces": {name: r.space for name, r in results.items()},
                "studies": {name: r.study for name, r in results.items()}}
    return TunedRecipe({name: best_settings(plans[name], results[name]) for name in plans}, protocol)
