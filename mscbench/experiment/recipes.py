"""Experiments from recipes: a recipe with command-line choices over it, its dataset (made first when the
recipe says how), every model x seed planned, trained or reused, and the runs read back as one comparison.
`compare` and `regress` plan through `plan_recipe`, the one planner."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

from rich.progress import Progress

from mscbench.config import Recipe, build_config, fixed, split_experiment_overrides
from mscbench.data.prepare import prepare_synthetic
from mscbench.data.sources.synthetic import SyntheticParams
from mscbench.errors import UserError
from mscbench.experiment.execution import get_or_run, is_stale
from mscbench.experiment.planning import PlannedRun, plan_run
from mscbench.experiment.tune import OnTrial, TunedRecipe, tune_models
from mscbench.results.record import RunRecord
from mscbench.results.report import Comparison, compare_runs, label_rate
from mscbench.results.significance import check_correction
from mscbench.results.store import RunStore
from mscbench.results.transfer import split_reference


def with_options(recipe: Recipe | None, dataset: str | None = None, models: list[str] | None = None,
                 base: str | None = None, seeds: list[int] | None = None, settings: dict | None = None,
                 correction: str | None = None, tune: bool = True) -> Recipe:
    """`recipe` with the choices given over it (without a recipe: the choices, and defaults for the rest).

    A dataset given replaces the recipe's with its [prepare] table; `settings` (`--set`: training settings,
    and `MODEL.key` for a model's hyperparameter) are merged over the recipe's; a base that is not among the
    models is added first; a `correction` given replaces the recipe's. Without `tune`, the recipe's `[tune]`
    table and its ranges are dropped: every model at its defaults and the recipe's fixed settings, the same
    training budget as tuned, so the untuned table stands beside the tuned one.
    """
    recipe = recipe or Recipe(dataset="synthetic", models=(), base="")
    names = list(models or recipe.models)
    if not names:
        raise UserError("name the models to compare: --models dnn,shared_bottom (or --recipe FILE)")
    base = base or recipe.base or names[0]
    if base not in names:
        names.insert(0, base)
    prepare = recipe.prepare if dataset is None else {}
    train, hyperparameters = split_experiment_overrides(settings or {}, names)
    model = recipe.model | {name: {**recipe.model.get(name, {}), **values} for name, values in hyperparameters.items()}
    recipe = dataclasses.replace(recipe, dataset=dataset or recipe.dataset, models=tuple(names), base=base,
                                 seeds=tuple(seeds or recipe.seeds), train={**recipe.train, **train}, model=model,
                                 prepare=prepare, correction=check_correction(correction or recipe.correction))
    return recipe if tune else untuned(recipe)


def untuned(recipe: Recipe) -> Recipe:
    """The recipe without its `[tune]` table: only the settings it gives one value are kept."""
    return dataclasses.replace(recipe, tune=None, train=fixed(recipe.train),
                               model={name: fixed(values) for name, values in recipe.model.items()})


def reference_recipe(recipe: Recipe, reference: str, tuned: TunedRecipe | None = None) -> Recipe:
    """The runs of a transfer reference, MODEL[:PROTOCOL]: that model alone, trained with that protocol and
    otherwise as the recipe says (dataset, seeds, settings, the model's hyperparameters). In a tuned recipe
    that tuned MODEL, the reference trains at MODEL's tuned setting, so that it is not the one untuned model
    of the comparison; else at the recipe's fixed settings."""
    model, protocol = split_reference(reference)
    untuned_recipe = untuned(recipe)
    hyperparameters, train = (tuned.settings[model] if tuned and model in tuned.settings
                              else (untuned_recipe.model.get(model, {}), untuned_recipe.train))
    return dataclasses.replace(untuned_recipe, models=(model,), base=model, train={**train, "protocol": protocol},
                               model={model: hyperparameters})


def recipe_dataset(recipe: Recipe, data_dir: Path) -> str:
    """The recipe's dataset; with a `[prepare]` table, the synthetic data it describes, made if missing."""
    if not recipe.prepare:
        return recipe.dataset
    name = recipe.dataset.partition("/")[0]
    if name != "synthetic":
        raise UserError(f"a recipe's [prepare] table makes synthetic data only: run `mscbench prepare {name}` "
                        "yourself and drop [prepare]")
    params = build_config(SyntheticParams, recipe.prepare, owner="recipe [prepare]")
    result = prepare_synthetic(data_dir, rows=params.rows, scenarios=params.scenarios, seed=params.seed)
    return f"{result.manifest.name}/{result.manifest.variant}"


def tune_recipe(recipe: Recipe, data_dir: Path, runs_dir: Path, on_trial: OnTrial | None = None) -> TunedRecipe | None:
    """With a `[tune]` table, every model of the recipe tuned with its budget (finished studies and runs are
    reused); None for a recipe compared at its settings."""
    if recipe.tune is None:
        return None
    registered = {model: registry_name(model) for model in recipe.models}
    return tune_models(recipe, registered, recipe_dataset(recipe, data_dir), data_dir, runs_dir, on_trial=on_trial)


def plan_recipe(recipe: Recipe, data_dir: Path, tuned: TunedRecipe | None = None) -> list[PlannedRun]:
    """Every model x seed of the recipe (at its tuned setting, given `tuned`), each name and setting checked
    before anything trains."""
    dataset = recipe_dataset(recipe, data_dir)
    settings = tuned.settings if tuned else {model: (recipe.model.get(model, {}), recipe.train)
                                             for model in recipe.models}
    return [plan_run(dataset, registry_name(model), data_dir, settings[model][0], {**settings[model][1], "seed": seed})
            for model in recipe.models for seed in recipe.seeds]


def registry_name(model: str) -> str:
    """The registered model behind a recipe's model: `dnn@wide` is `dnn` with the settings given `dnn@wide`."""
    return model.partition("@")[0]


def named(records: list[RunRecord], recipe: Recipe) -> list[RunRecord]:
    """The records of `plan_recipe`'s runs under the recipe's names for them (a variant's `dnn@wide`; a run
    stores its registered model, and two names with the same settings share one run)."""
    names = [model for model in recipe.models for _ in recipe.seeds]
    return [dataclasses.replace(record, model=name) for record, name in zip(records, names, strict=True)]


def run_plans(plans: list[PlannedRun], store: RunStore, progress: Progress | None, rerun: bool = False,
              allow_stale: bool = False) -> list[RunRecord]:
    """Each plan's record: a complete run is reused, anything else is trained. One line per run says which,
    how far the experiment is and, at the pace of the runs so far, about how long the rest take."""
    records, started = [], time.perf_counter()
    for done, plan in enumerate(plans):
        left = (time.perf_counter() - started) / done * (len(plans) - done) if done else 0
        pace = f", about {duration(left)} left" if left >= 1 else ""  # not after runs that were only reused
        records.append(get_or_run(plan, store, progress, rerun=rerun, allow_stale=allow_stale,
                                  heading=f"run {done + 1} of {len(plans)}{pace}: "))
    return records


def duration(seconds: float) -> str:
    """`seconds` as a person says it: 40 s, 12 min, 2.5 h."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.0f} min" if seconds < 90 * 60 else f"{seconds / 3600:.1f} h"


def stale_runs(plans: list[PlannedRun], records: list[RunRecord]) -> set[str]:
    """The ids of the runs (reused with --allow-stale) that other code than the current one made."""
    return {plan.run_id for plan, record in zip(plans, records, strict=True) if is_stale(record, plan)}


def run_recipe(recipe: Recipe, data_dir: Path, store: RunStore, progress: Progress | None = None,
               rerun: bool = False, allow_stale: bool = False, delong: bool = False,
               bootstrap_rounds: int = 0, transfer_base: str | None = None,
               on_trial: OnTrial | None = None) -> tuple[Comparison, list[RunRecord]]:
    """The recipe's comparison and its runs (under the recipe's names). The test over seeds behind the marks
    needs only the runs; `delong` adds the test set's DeLong variance to it (and the per-seed DeLong test) from
    the stored test predictions, `bootstrap_rounds` intervals. `transfer_base` (MODEL[:PROTOCOL]) trains or
    reuses that reference too, for the negative-transfer view. With a `[tune]` table every model is tuned
    first (`on_trial` is told of each finished trial)."""
    tuned = tune_recipe(recipe, data_dir, store.root, on_trial)
    plans = plan_recipe(recipe, data_dir, tuned)
    reference = reference_recipe(recipe, transfer_base, tuned) if transfer_base else None
    reference_plans = plan_recipe(reference, data_dir) if reference else []
    records = run_plans(plans + reference_plans, store, progress, rerun, allow_stale)
    records, reference_records = named(records[:len(plans)], recipe), records[len(plans):]
    comparison = compare_runs(records, recipe.base, list(recipe.models),
                              predictions_of=store.predictions_of if delong or bootstrap_rounds else None,
                              bootstrap_rounds=bootstrap_rounds, correction=recipe.correction,
                              stale=stale_runs(plans, records), train_label_rate=label_rate(plans[0].manifest),
                              progress=progress,
                              transfer_base=f"{reference.base}:{reference.train['protocol']}" if reference else None,
                              transfer_runs=reference_records)
    return dataclasses.replace(comparison, tuning=tuned.protocol if tuned else {}), records
