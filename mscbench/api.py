"""The Python API, for notebooks and scripts: what `mscbench compare` and `mscbench train` do, with the table
as a polars DataFrame and the runs as records.

    import mscbench

    result = mscbench.compare(["dnn", "shared_bottom"], dataset="synthetic", seeds=[0, 1, 2],
                              settings={"epochs": 2, "shared_bottom.tower": [32]})
    result.table                # polars DataFrame: one row per model, scope (overall, each scenario), metric
    print(result.render("md"))  # the paper-style table; also "csv", "json", "latex", "html"
    result.runs                 # each run's record (RunRecord, its metrics.json): metrics, settings, timings

    mscbench.train("star", dataset="synthetic", settings={"epochs": 2, "hidden": [64, 32]}).table

Runs are stored in `runs_dir` and reused exactly as on the command line; `settings` are `--set`'s.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl
from rich.progress import Progress

from mscbench.config import load_recipe, split_overrides
from mscbench.experiment.execution import get_or_run
from mscbench.experiment.planning import plan_run
from mscbench.experiment.recipes import run_recipe, stale_runs, with_options
from mscbench.experiment.tune import OnTrial
from mscbench.models.base import get_card
from mscbench.results.record import RunRecord
from mscbench.results.report import Comparison, compare_runs, label_rate, render, to_frame
from mscbench.results.significance import BOOTSTRAP_ROUNDS
from mscbench.results.store import RunStore


@dataclass(frozen=True)
class Result:
    """A comparison of models and the runs behind it."""

    comparison: Comparison  # everything the tables show (`render`)
    runs: list[RunRecord]  # the run records, model by model, seed by seed

    @property
    def table(self) -> pl.DataFrame:
        """Tidy: one row per model, scope and metric (mean, std, RelaImpr, significance, bootstrap interval)."""
        return to_frame(self.comparison)

    def render(self, fmt: str = "md", by: str = "model") -> str:
        """The table as text: `fmt` md, csv, json, latex or html; `by` model (Table II) or scenario (Table III)."""
        return render(self.comparison, fmt, by)


def compare(models: str | Sequence[str] | None = None, dataset: str | None = None, *, base: str | None = None,
            seeds: Sequence[int] | None = None, recipe: str | Path | None = None,
            settings: Mapping[str, Any] | None = None, bootstrap: bool = False, correction: str | None = None,
            transfer_base: str | None = None, tune: bool = True, rerun: bool = False,
            allow_stale: bool = False, data_dir: str | Path = "data", runs_dir: str | Path = "runs",
            progress: Progress | None = None, on_trial: OnTrial | None = None) -> Result:
    """Train (or reuse) every model for every seed and compare them against `base` (default: the first model).
    A recipe with a `[tune]` table tunes every model first (`on_trial` is told of each finished trial).

    `models`: names (a comma-separated string too); `NAME@LABEL` is a variant of NAME, with its own settings
    (`settings={"dnn@wide.hidden": [256, 128]}`). `settings`: training settings for every model (`epochs`,
    `lr`, ...) and `MODEL.key` for one model's hyperparameter. `correction` (bh, holm or none; the recipe's, else
    bh) corrects the significance marks for the table's number of tests. `transfer_base` (MODEL[:PROTOCOL],
    e.g. `dnn:individual`) adds the negative-transfer view against that reference. A `recipe` file gives what
    is not given here; `tune=False` compares its models untuned, at the same training budget.
    """
    names = [name.strip() for name in models.split(",") if name.strip()] if isinstance(models, str) else models
    spec = with_options(load_recipe(Path(recipe)) if recipe else None, dataset=dataset,
                        models=list(names) if names else None, base=base, seeds=list(seeds) if seeds else None,
                        settings=dict(settings or {}), correction=correction, tune=tune)
    comparison, records = run_recipe(spec, Path(data_dir), RunStore(Path(runs_dir)), progress, rerun, allow_stale,
                                     delong=True, bootstrap_rounds=BOOTSTRAP_ROUNDS if bootstrap else 0,
                                     transfer_base=transfer_base, on_trial=on_trial)
    return Result(comparison, records)


def train(model: str, dataset: str = "synthetic", *, settings: Mapping[str, Any] | None = None,
          rerun: bool = False, resume: bool = True, allow_stale: bool = False, data_dir: str | Path = "data",
          runs_dir: str | Path = "runs", progress: Progress | None = None) -> Result | None:
    """Train (or reuse) one run of `model` and evaluate it. `settings`: the model's hyperparameters and the
    training settings (`train.key` where a name is both). None in the other processes of a torchrun launch."""
    model_values, train_values = split_overrides(dict(settings or {}), get_card(model).config)
    plan = plan_run(dataset, model, Path(data_dir), model_values, train_values)
    record = get_or_run(plan, RunStore(Path(runs_dir)), progress, rerun=rerun, resume=resume,
                        allow_stale=allow_stale)
    if record is None:
        return None
    comparison = compare_runs([record], base=model, stale=stale_runs([plan], [record]),
                              train_label_rate=label_rate(plan.manifest))
    return Result(comparison, [record])
