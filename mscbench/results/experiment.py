"""Experiments end to end: a recipe's dataset (made first when the recipe says how), every model x seed
trained or reused, and the runs read back as one comparison."""

from __future__ import annotations

from pathlib import Path

from rich.progress import Progress

from mscbench.config import Recipe, build_config
from mscbench.data.prepare import prepare_synthetic
from mscbench.data.sources.synthetic import SyntheticParams
from mscbench.errors import UserError
from mscbench.results.report import Comparison, compare_runs
from mscbench.results.store import RunStore
from mscbench.train.runner import PlannedRun, get_or_run, plan_run


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


def plan_recipe(recipe: Recipe, data_dir: Path) -> list[PlannedRun]:
    """Every model x seed of the recipe, each name and setting checked before anything trains."""
    dataset = recipe_dataset(recipe, data_dir)
    return [plan_run(dataset, model, data_dir, recipe.model.get(model, {}), {**recipe.train, "seed": seed})
            for model in recipe.models for seed in recipe.seeds]


def run_plans(plans: list[PlannedRun], store: RunStore, progress: Progress, rerun: bool = False) -> list[dict]:
    """Each plan's record: a complete run is reused, anything else is trained (one line says which)."""
    records = []
    for plan in plans:
        reused = store.is_complete(plan.run_id) and not rerun
        progress.console.print(f"{'reusing' if reused else 'training'} {plan.model} (seed {plan.train.seed})")
        records.append(get_or_run(plan, store, progress, rerun=rerun))
    return records


def run_recipe(recipe: Recipe, data_dir: Path, store: RunStore, progress: Progress,
               rerun: bool = False) -> tuple[Comparison, list[dict]]:
    """The recipe's comparison (paired t-test across seeds only; `compare` adds DeLong) and its runs."""
    records = run_plans(plan_recipe(recipe, data_dir), store, progress, rerun)
    return compare_runs(records, recipe.base, list(recipe.models)), records
