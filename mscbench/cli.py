"""The `mscbench` command line: a thin layer that parses, calls the library and renders."""

from __future__ import annotations

import dataclasses
import inspect
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import torch
import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    ProgressColumn,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.table import Table
from rich.text import Text

import mscbench.models  # noqa: F401  (registers the zoo)
from mscbench import __version__, api
from mscbench.config import load_recipe, parse_overrides
from mscbench.data.card import Card, CardReport, check_card_data, load_card, tick_datetime
from mscbench.data.card_init import draft_card
from mscbench.data.download import download_card_files
from mscbench.data.prepare import list_prepared
from mscbench.data.sources import default_raw_dir, get_source, prepare_source, source_states
from mscbench.errors import UserError
from mscbench.experiment.recipes import run_recipe
from mscbench.experiment.tune import (
    PRUNERS,
    SAMPLERS,
    TrialResult,
    TuneResult,
    model_space,
    plan_study,
    run_study,
)
from mscbench.files import write_atomic
from mscbench.models.base import REGISTRY, ModelCard, describe_config, get_card
from mscbench.results.plots import pyplot, write_report
from mscbench.results.regress import (
    DEFAULT_TOLERANCE,
    baseline_of,
    changes_against,
    check_recipe,
    load_baseline,
    recipe_identity,
    write_baseline,
)
from mscbench.results.report import (
    FORMATS,
    ORIENTATIONS,
    Comparison,
    compare_runs,
    fitted_tables,
    number,
    render,
)
from mscbench.results.store import RunStore, locate_run
from mscbench.space import value_text

app = typer.Typer(
    help="Benchmark multi-scenario recommenders: per-scenario AUC, RelaImpr and significance.",
    no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False, rich_markup_mode="rich",
)
console = Console()
errors = Console(stderr=True)

DataDir = Annotated[Path, typer.Option("--data-dir", envvar="MSCBENCH_DATA_DIR",
                                       help="Where prepared datasets live.")]
RunsDir = Annotated[Path, typer.Option("--runs-dir", envvar="MSCBENCH_RUNS_DIR", help="Where runs are stored.")]
AllowStale = Annotated[bool, typer.Option(help="Reuse stored runs made by other code than the current one "
                                               "(marked in the table) instead of retraining them.")]
Settings = Annotated[list[str] | None, typer.Option("--set", help="Override a setting: key=value (repeatable).")]


def print_version(asked: bool) -> None:
    if asked:
        cuda = f"CUDA {torch.version.cuda}" if torch.version.cuda else "CPU-only"
        console.print(f"mscbench {__version__} (torch {torch.__version__}, {cuda})", highlight=False)
        raise typer.Exit()


@app.callback()
def main_options(
    version: Annotated[bool, typer.Option("--version", callback=print_version, is_eager=True,
                                          help="Print mscbench's version (and torch's) and exit.")] = False,
) -> None:
    """Benchmark multi-scenario recommenders: per-scenario AUC, RelaImpr and significance."""


class SpeedColumn(ProgressColumn):
    """Steps per second, in the task's `unit` (samples where it names none)."""

    def render(self, task) -> Text:
        speed, unit = task.speed, task.fields.get("unit", "samples")
        return Text(f"{speed:,.{0 if speed >= 10 else 1}f} {unit}/s" if speed else "", style="cyan")


def progress_bar() -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), TaskProgressColumn(), SpeedColumn(),
                    TimeElapsedColumn(), TimeRemainingColumn(), console=console, transient=True)


@app.command()
def datasets(data_dir: DataDir = Path("data")) -> None:
    """List every built-in dataset with its state, and every prepared dataset (built-in or your own).

    Example: mscbench datasets --data-dir data
    """
    sources = Table(title="Built-in datasets", title_justify="left")
    for column in ("dataset", "state", "description"):
        sources.add_column(column)
    for state in source_states(data_dir):
        sources.add_row(state.name, state.state, state.description)
    console.print(sources)
    table = Table(title=f"Prepared datasets in {data_dir}", title_justify="left")
    for column in ("dataset", "scenarios", "train rows", "valid rows", "test rows", "path"):
        is_count = "rows" in column or column == "scenarios"
        table.add_column(column, justify="right" if is_count else "left", overflow="fold")  # names wrap, never cut
    prepared = list_prepared(data_dir)
    for name, variant, manifest in prepared:
        table.add_row(f"{name}/{variant}", str(manifest.num_scenarios), *(f"{manifest.rows(s):,}" for s in
                      ("train", "valid", "test")), str(data_dir / name / variant))
    console.print(table)
    if not prepared:
        console.print("Nothing is prepared yet: `mscbench prepare synthetic` makes the built-in dataset.")


@app.command()
def prepare(
    dataset: Annotated[str, typer.Argument(help="Dataset to prepare: a built-in one (see `mscbench datasets`) "
                                                 "or, with --card, your own name for it.")],
    card: Annotated[Path | None, typer.Option(help="Your dataset card (TOML); see `mscbench card init`.")]
    = None,
    raw_dir: Annotated[Path | None, typer.Option(help="Folder holding the raw files "
                                                         "(default: DATA_DIR/raw/NAME).")] = None,
    rows: Annotated[int | None, typer.Option(help="Impressions to generate (synthetic).")] = None,
    scenarios: Annotated[int, typer.Option(help="Number of scenarios (synthetic).")] = 5,
    seed: Annotated[int, typer.Option(help="Generator seed (synthetic).")] = 0,
    download: Annotated[bool, typer.Option(help="First download the files the dataset card lists with a "
                                                 "public address into --raw-dir (resumed, checksums checked).")]
    = False,
    force: Annotated[bool, typer.Option(help="Prepare again even when an intact dataset of the same inputs "
                                              "exists (rebuilds a damaged one).")] = False,
    data_dir: DataDir = Path("data"),
) -> None:
    """Turn a dataset into a prepared dataset: Parquet per split and a manifest.

    Examples: mscbench prepare synthetic --rows 1000000 --scenarios 5 --seed 0
              mscbench prepare movielens --raw-dir ~/ml-1m
              mscbench prepare shop --card shop.toml --raw-dir ~/logs
    """
    options = {"rows": rows, "scenarios": scenarios, "seed": seed} if dataset == "synthetic" and card is None else {}
    if download:
        raw_dir = raw_dir or default_raw_dir(data_dir, dataset)
        with download_bar() as bar:
            download_card_files(card or get_source(dataset).card, raw_dir, bar)
    with console.status(f"preparing {dataset}") as status:
        result = prepare_source(dataset, raw_dir, data_dir, progress_printer(status), card=card, force=force,
                                **options)
    verb = "already prepared (same inputs): nothing to do" if result.reused else "prepared"
    manifest = result.manifest
    console.print(f"{manifest.name}/{manifest.variant} {verb} at {result.path}: "
                  f"{manifest.num_scenarios} scenarios, " +
                  ", ".join(f"{manifest.rows(s):,} {s}" for s in ("train", "valid", "test")) + " rows")


@contextmanager
def download_bar() -> Iterator[Callable[[str], Callable[[int, int | None], None]]]:
    """A rich bar per downloaded file: bytes, speed, time left."""
    with Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                  TimeRemainingColumn(), console=console) as bar:
        def for_file(name: str) -> Callable[[int, int | None], None]:
            task = bar.add_task(f"downloading {name}", total=None)
            return lambda done, total: bar.update(task, completed=done, total=total)
        yield for_file


def progress_printer(status) -> Callable[[str], None]:
    """Progress messages update the spinner; warnings are printed and stay."""
    def report(message: str) -> None:
        if message.startswith("warning:"):
            errors.print(f"[yellow]{escape(message)}[/yellow]", highlight=False)
        else:
            status.update(message)
    return report


card_app = typer.Typer(help="Describe your own data in a dataset card: draft one, check it.", no_args_is_help=True)
app.add_typer(card_app, name="card")


@card_app.command("init")
def card_init(
    file: Annotated[Path, typer.Argument(help="The fact table: one row per impression (csv, tsv, txt, parquet).")],
    label: Annotated[str, typer.Option(help="The column holding the label (click, rating, ...).")],
    scenario: Annotated[str, typer.Option(help="The column defining the scenario (country, tab, ...).")],
    name: Annotated[str | None, typer.Option(help="Dataset name (default: the file's stem).")] = None,
) -> None:
    """Sniff a file (separator, header, types, cardinalities, time-like columns) and print a commented
    draft card to edit.

    Example: mscbench card init events.csv --label clicked --scenario country > shop.toml
    """
    console.print(draft_card(file, label, scenario, name), markup=False, highlight=False, soft_wrap=True)


@card_app.command("check")
def card_check(
    card: Annotated[Path, typer.Argument(help="The dataset card (TOML).")],
    raw_dir: Annotated[Path, typer.Option(help="Folder holding the card's raw files.")],
) -> None:
    """Validate a card against the raw files without preparing: rows, positives, label rate and date range
    per scenario and split.

    Example: mscbench card check shop.toml --raw-dir ~/logs
    """
    parsed = load_card(card)
    with console.status(f"reading the tables of {card}"):
        report = check_card_data(parsed, raw_dir)
    for warning in report.warnings:
        errors.print(f"[yellow]warning: {escape(warning)}[/yellow]", highlight=False)
    console.print(card_table(parsed, report))
    merged = f"; merged into 'other': {', '.join(report.merged)}" if report.merged else ""
    console.print(f"{parsed.where}: {report.rows:,} rows, {report.per_scenario['scenario'].n_unique()} "
                  f"scenarios, split {report.split.describe()}{merged}")


def card_table(card: Card, report: CardReport) -> Table:
    table = Table(title=f"{card.name}: per scenario and split", title_justify="left")
    for column in ("scenario", "split", "rows", "positives", "label rate", "first", "last"):
        table.add_column(column, justify="right" if column in ("rows", "positives", "label rate") else "left")
    for row in report.per_scenario.iter_rows(named=True):
        table.add_row(row["scenario"], row["split"] or "(none)", f"{row['rows']:,}", f"{row['positives']:,}",
                      f"{row['positives'] / row['rows']:.3f}", tick_datetime(row["first"], card.split),
                      tick_datetime(row["last"], card.split))
    return table


@app.command()
def models(
    name: Annotated[str | None, typer.Argument(help="Show one model with its hyperparameters.")] = None,
    fmt: Annotated[str, typer.Option("--format", help="text (one line per model) or json.")] = "text",
) -> None:
    """List the model zoo, one line per model (name, year, description), or one model with its
    hyperparameters and their defaults.

    Examples: mscbench models | grep saml
              mscbench models saml
              mscbench models --format json
    """
    if fmt not in ("text", "json"):
        raise UserError(f"--format takes text or json, not {fmt!r}")
    cards = [get_card(name)] if name is not None else sorted(REGISTRY.values(), key=lambda c: c.name)
    if fmt == "json":
        described = [describe_model(card) for card in cards]
        console.print_json(data=described[0] if name is not None else described)
    elif name is not None:
        show_model(cards[0])
    else:  # plain lines, never cut or wrapped: readable in any terminal, and `grep` finds every name
        width = max(len(card.name) for card in cards)
        for card in cards:
            console.print(f"{card.name:<{width}}  {card.year}  {card.description}", markup=False,
                          highlight=False, soft_wrap=True)


def describe_model(card: ModelCard) -> dict:
    """A model as plain data: what `mscbench models --format json` prints."""
    comments = field_comments(card.config)
    return {"name": card.name, "year": card.year, "paper": card.paper, "description": card.description,
            "needs_sequence": card.needs_sequence, "multi_scenario": card.multi_scenario,
            "hyperparameters": [{"key": key, "default": value, "meaning": comments.get(key, "")}
                                for key, value in describe_config(card).items()],
            "search_space": {key: space.text() for key, space in model_space(card.name).items()}}


def show_model(card: ModelCard) -> None:
    console.print(f"[bold]{card.name}[/bold]: {card.description}\n{card.paper}, {card.year}")
    needs = ["a behaviour sequence"] if card.needs_sequence else []
    console.print(f"Needs: {', '.join(needs) or 'sparse and dense features'}; "
                  f"scenario-specific parameters: {'yes' if card.multi_scenario else 'no'}")
    described = describe_model(card)
    table = Table(title="Hyperparameters (--set key=value)", title_justify="left")
    for column in ("key", "default", "meaning"):
        table.add_column(column, overflow="fold")
    for setting in described["hyperparameters"]:
        table.add_row(setting["key"], str(setting["default"]), setting["meaning"])
    console.print(table)
    console.print(re.sub(r"(?<!\n)\n(?!\n)", " ", inspect.getdoc(card.config)), highlight=False)  # paragraphs
    space = Table(title="Search space (mscbench tune)", title_justify="left")
    for column in ("key", "range"):
        space.add_column(column)
    for key, values in described["search_space"].items():
        space.add_row(key, values)
    console.print(space)


def field_comments(config: type) -> dict[str, str]:
    """The `# comment` written beside each field of a config dataclass and of the dataclasses it inherits."""
    pattern = re.compile(r"^\s+(\w+):[^#]*#\s*(.+)$")
    sources = [inspect.getsource(cls) for cls in reversed(config.__mro__) if dataclasses.is_dataclass(cls)]
    return {m[1]: m[2] for source in sources for m in map(pattern.match, source.splitlines()) if m}


@app.command()
def train(
    model: Annotated[str, typer.Argument(help="Model name (see `mscbench models`).")],
    dataset: Annotated[str, typer.Option(help="Prepared dataset, NAME or NAME/VARIANT.")] = "synthetic",
    epochs: Annotated[int | None, typer.Option(help="Training epochs.")] = None,
    batch_size: Annotated[int | None, typer.Option(help="Samples per step.")] = None,
    lr: Annotated[float | None, typer.Option(help="Adam learning rate.")] = None,
    seed: Annotated[int | None, typer.Option(help="Random seed.")] = None,
    protocol: Annotated[str | None, typer.Option(
        help="joint (one model), individual (one per scenario) or finetune (joint, then tuned per scenario).")] = None,
    settings: Settings = None,
    rerun: Annotated[bool, typer.Option(help="Retrain even if this exact run exists.")] = False,
    resume: Annotated[bool, typer.Option(help="Continue an interrupted run from its checkpoint.")] = True,
    allow_stale: AllowStale = False,
    data_dir: DataDir = Path("data"),
    runs_dir: RunsDir = Path("runs"),
) -> None:
    """Train one model on one dataset, evaluate it and print its per-scenario table.

    Under torchrun (`torchrun --nproc_per_node=2 -m mscbench train ...`) it trains data-parallel, one process
    per GPU (or CPU process); the first process stores the run and prints the table.

    Example: mscbench train shared_bottom --dataset synthetic --epochs 2 --set tower=[32]
    """
    chosen = {f"train.{key}": value for key, value in options(epochs=epochs, batch_size=batch_size, lr=lr,
                                                                 seed=seed, protocol=protocol).items()}
    with progress_bar() as progress:
        result = api.train(model, dataset, settings={**parse_overrides(settings or []), **chosen}, rerun=rerun,
                           resume=resume, allow_stale=allow_stale, data_dir=data_dir, runs_dir=runs_dir,
                           progress=progress)
    if result is None:  # another process of a torchrun launch: the first one reports
        return
    print_tables(result.comparison)
    record = result.runs[0]
    console.print(f"run {record.run_id} in {RunStore(runs_dir).path(record.run_id)}: "
                  f"{record.parameters:,} parameters, {record.training.samples_per_second:,.0f} samples/s, "
                  f"{record.training.epochs_run} epoch(s)")


@app.command()
def compare(
    dataset: Annotated[str | None, typer.Option(help="Prepared dataset, NAME or NAME/VARIANT.")] = None,
    models: Annotated[str | None, typer.Option(help="Comma-separated model names; NAME@LABEL is a variant of NAME "
                                                    "with its own --set NAME@LABEL.key=value.")] = None,
    base: Annotated[str | None, typer.Option(help="Model RelaImpr is measured against.")] = None,
    seeds: Annotated[str | None, typer.Option(help="Comma-separated seeds, e.g. 0,1,2.")] = None,
    recipe: Annotated[Path | None, typer.Option(help="Recipe TOML (options given here override it).")] = None,
    epochs: Annotated[int | None, typer.Option(help="Training epochs.")] = None,
    batch_size: Annotated[int | None, typer.Option(help="Samples per step.")] = None,
    lr: Annotated[float | None, typer.Option(help="Adam learning rate.")] = None,
    settings: Settings = None,
    by: Annotated[str, typer.Option(help="Table rows: model (Table II) or scenario (Table III).")] = "model",
    bootstrap: Annotated[bool, typer.Option(help="Add 95% bootstrap intervals of each AUC.")] = False,
    correction: Annotated[str | None, typer.Option(
        help="How the table's marks are corrected for its number of tests: bh (Benjamini-Hochberg, the default), "
             "holm or none.")] = None,
    transfer_base: Annotated[str | None, typer.Option(
        help="Negative transfer: compare every model per scenario with MODEL[:PROTOCOL] (protocol individual "
             "unless named), e.g. dnn:individual.")] = None,
    tune: Annotated[bool, typer.Option(
        help="Tune every model first when the recipe has a [tune] table; --no-tune compares them untuned, at "
             "the recipe's fixed settings and training budget.")] = True,
    fmt: Annotated[str, typer.Option("--format", help=f"One of {', '.join(FORMATS)}.")] = "table",
    output: Annotated[Path | None, typer.Option(help="Write the table to this file.")] = None,
    plot: Annotated[Path | None, typer.Option(help="Also write figures and report.html to this directory.")] = None,
    rerun: Annotated[bool, typer.Option(help="Retrain runs that already exist.")] = False,
    allow_stale: AllowStale = False,
    data_dir: DataDir = Path("data"),
    runs_dir: RunsDir = Path("runs"),
) -> None:
    """Train (or reuse) every model for every seed and print the comparison table with significance marks.

    * marks a mean AUC above the base by Welch's t-test over seeds plus the test set's DeLong variance, p < 0.05
    after the correction for the table's number of tests (needs two seeds per model). Bold: the best per column
    and every model not significantly below it.
    --set key=value sets a training setting for every model, --set MODEL.key=value a hyperparameter of one.

    Examples: mscbench compare --dataset synthetic --models dnn,shared_bottom --base dnn --seeds 0,1,2 --by scenario
              mscbench compare --models dnn,dnn@wide --set dnn@wide.hidden=[512,256] --set epochs=2
    """
    check_output(fmt, by)
    if plot is not None:
        pyplot()  # a missing matplotlib is reported before anything trains
    chosen = {f"train.{key}": value for key, value in options(epochs=epochs, batch_size=batch_size, lr=lr).items()}
    with progress_bar() as progress:  # every name and setting is checked before any training
        result = api.compare(models, dataset, base=base,
                             seeds=parse_seeds(seeds) or None,
                             recipe=recipe, settings={**parse_overrides(settings or []), **chosen}, bootstrap=bootstrap,
                             correction=correction, transfer_base=transfer_base, tune=tune,
                             rerun=rerun, allow_stale=allow_stale, data_dir=data_dir, runs_dir=runs_dir,
                             progress=progress, on_trial=print_trial)
    show(result.comparison, fmt, by, output)
    if plot is not None:
        store = RunStore(runs_dir)
        paths = write_report(result.comparison, result.runs, {r.run_id: store.history(r.run_id) for r in result.runs},
                             plot)
        console.print(f"wrote {len(paths)} files to {plot}: open {paths[-1]}")


@app.command()
def tune(
    model: Annotated[str, typer.Argument(help="Model name (see `mscbench models`).")],
    dataset: Annotated[str, typer.Option(help="Prepared dataset, NAME or NAME/VARIANT.")] = "synthetic",
    trials: Annotated[int | None, typer.Option(help="Trials in the study (finished ones count).")] = None,
    timeout: Annotated[float | None, typer.Option(help="Seconds of training in the study, summed over its "
                                                       "trials (finished ones count).")] = None,
    sampler: Annotated[str, typer.Option(help=f"{', '.join(SAMPLERS)}.")] = "tpe",
    pruner: Annotated[str, typer.Option(help=f"{', '.join(PRUNERS)}: stop poor trials on per-epoch "
                                             "validation AUC.")] = "median",
    storage: Annotated[str | None, typer.Option(help="Optuna storage: an RDB URL or journal:PATH, shared by "
                                                     "processes and machines (default: RUNS_DIR/tuning.db).")]
    = None,
    study: Annotated[str | None, typer.Option(help="Study name (default: model, dataset and space).")] = None,
    jobs: Annotated[int, typer.Option(help="Worker processes on this machine.")] = 1,
    seeds: Annotated[str | None, typer.Option(help="Comma-separated seeds: each trial trains one run per seed "
                                                   "and is scored on their mean (default: one seed).")] = None,
    settings: Annotated[list[str] | None, typer.Option(
        "--set", help="key=value fixes a setting; key={log = [a, b]} (or uniform, int, choice) sets its range.")]
    = None,
    fmt: Annotated[str, typer.Option("--format", help="table or json.")] = "table",
    data_dir: DataDir = Path("data"),
    runs_dir: RunsDir = Path("runs"),
) -> None:
    """Tune a model's hyperparameters on validation AUC (the test split is never read); each trial is a
    stored run, so a re-run or a longer study reuses finished trials and `compare` reads the best one.

    Example: mscbench tune dnn --dataset synthetic --trials 8 --set 'lr={log = [1e-4, 1e-2]}'
    """
    if fmt not in ("table", "json"):
        raise UserError(f"--format takes table or json, not {fmt!r}")
    plan = plan_study(model, dataset, data_dir, runs_dir, parse_overrides(settings or []), trials, timeout,
                      sampler, pruner, storage, study,
                      seeds=parse_seeds(seeds))
    result = run_study(plan, jobs, on_trial=None if fmt == "json" else print_trial)
    if fmt == "json":
        console.print(result.to_json(), markup=False, highlight=False, soft_wrap=True)
        return
    console.print(best_table(result))


def print_trial(trial: TrialResult) -> None:
    """One line per finished trial (module level: worker processes print through it too)."""
    value = "n/a" if trial.value is None else f"{trial.value:.4f}"
    best = "n/a" if trial.best is None else f"{trial.best:.4f}"
    colour = {"complete": "green", "pruned": "yellow"}.get(trial.state, "red")
    settings = " ".join(f"{key}={value_text(v)}"
                        for key, v in trial.settings.items())
    console.print(f"{trial.model} trial {trial.number:>3} [{colour}]{trial.state:<8}[/] valid AUC {value}  best {best}  "
                  f"{settings}", highlight=False)


def best_table(result: TuneResult) -> Table:
    trials = len(result.trials)
    pruned = sum(t.state == "pruned" for t in result.trials)
    table = Table(title=f"{result.model} on {result.dataset}: best of {trials} trials ({pruned} pruned) by "
                        f"{result.objective}; study {result.study} in {result.storage}", title_justify="left")
    for column in ("setting", "best value", "space"):
        table.add_column(column)
    if result.best is None:
        table.add_row("(no complete trial)", "", "")
        return table
    for key, value in result.best.settings.items():
        table.add_row(key, value_text(value), result.space[key])
    table.add_row("valid AUC", f"{result.best.value:.4f}", f"trial {result.best.number}, run {result.best.run_id}")
    return table


@app.command()
def plot(
    runs: Annotated[list[str] | None, typer.Argument(
        help="Run directories or run ids (default: every complete run in --runs-dir).")] = None,
    out: Annotated[Path, typer.Option(help="Directory for the PNG files and report.html.")] = Path("plots"),
    base: Annotated[str | None, typer.Option(help="Model RelaImpr is measured against (default: the first).")]
    = None,
    runs_dir: RunsDir = Path("runs"),
) -> None:
    """Draw stored runs as PNG figures and one self-contained report.html (nothing is trained).

    AUC per scenario with error bars, training curves, heatmaps of learned scenario relations (SAML, MI-DPG).

    Example: mscbench plot runs/synthetic-default-dnn-* runs/synthetic-default-saml-* --out plots
    """
    pyplot()
    located = [locate_run(run, runs_dir) for run in runs] if runs else \
        [(RunStore(runs_dir), run_id) for run_id in RunStore(runs_dir).complete_runs()]
    if not located:
        raise UserError(f"no complete runs in {runs_dir}: run `mscbench compare` first, or name run directories")
    stores = {run_id: store for store, run_id in located}
    records = [store.load(run_id) for store, run_id in located]
    comparison = compare_runs(records, base or records[0].model,
                              predictions_of=lambda record: stores[record.run_id].predictions_of(record))
    paths = write_report(comparison, records, {run_id: store.history(run_id) for store, run_id in located}, out)
    console.print(f"wrote {len(paths)} files to {out}: open {paths[-1]}")


@app.command()
def regress(
    recipe: Annotated[Path, typer.Option(help="Recipe TOML to run.")] = Path("recipes/ci.toml"),
    baseline: Annotated[Path, typer.Option(help="Baseline JSON made from the same recipe.")]
    = Path("baselines/ci.json"),
    tolerance: Annotated[float, typer.Option(help="Largest AUC drop that still passes.")] = DEFAULT_TOLERANCE,
    update: Annotated[bool, typer.Option(help="Rewrite the baseline with the current AUCs.")] = False,
    rerun: Annotated[bool, typer.Option(help="Retrain runs that already exist.")] = False,
    allow_stale: AllowStale = False,
    data_dir: DataDir = Path("data"),
    runs_dir: RunsDir = Path("runs"),
) -> None:
    """Compare a recipe's AUCs with a baseline: exit 1 when one fell by more than the tolerance.

    Runs (or reuses) the recipe; every (model, scenario) AUC that moved is listed, improvements too.

    Example: mscbench regress --recipe recipes/ci.toml --baseline baselines/ci.json --tolerance 0.002
    """
    spec = load_recipe(recipe)
    identity = recipe_identity(spec, recipe)
    stored = None if update else check_recipe(load_baseline(baseline), identity, baseline)  # before training
    with progress_bar() as progress:
        comparison, _ = run_recipe(spec, data_dir, RunStore(runs_dir), progress, rerun, allow_stale)
    if stored is None:
        write_baseline(baseline, baseline_of(comparison, identity))
        console.print(f"wrote baseline {baseline}: {len(comparison.rows)} models x {len(comparison.scopes)} AUCs")
        return
    changes = changes_against(stored, comparison, identity, baseline)
    moved = [change for change in changes if change.status(tolerance) != "unchanged"]
    colors = {"regressed": "red", "improved": "green"}
    for change in moved:  # plain lines: easy to read in a CI log and to grep
        status = change.status(tolerance)
        console.print(f"{change.model} / {change.scope}: {number(change.baseline)} -> {number(change.current)} "
                      f"({'n/a' if change.delta is None else f'{change.delta:+.4f}'}) "
                      f"[{colors.get(status, 'default')}]{status}[/]", highlight=False)
    fell = [change for change in changes if change.fell(tolerance)]
    verdict = f"[red]{len(fell)} fell by more than {tolerance}[/red]" if fell else "[green]none fell[/green]"
    console.print(f"regress {identity['name']}: {len(moved)} of {len(changes)} AUCs moved; {verdict}")
    if fell:
        raise typer.Exit(1)


def check_output(fmt: str, by: str) -> None:
    if fmt not in FORMATS:
        raise UserError(f"unknown format {fmt!r}: choose one of {', '.join(FORMATS)}")
    if by not in ORIENTATIONS:
        raise UserError(f"--by takes {' or '.join(ORIENTATIONS)}, not {by!r}")


def show(comparison: Comparison, fmt: str, by: str, output: Path | None) -> None:
    """The table on the terminal (rich), or as text in `fmt` printed or written to `output`."""
    if fmt == "table" and output is None:
        print_tables(comparison, by)
        return
    text = render(comparison, "md" if fmt == "table" else fmt, by)
    if output is None:
        console.print(text, markup=False, highlight=False, soft_wrap=True)
        return
    try:
        write_atomic(output, text)
    except OSError as error:
        raise UserError(f"cannot write {output} ({error.strerror or error}): pass another --output") from None
    console.print(f"wrote {output}")


def print_tables(comparison: Comparison, by: str = "model") -> None:
    """The table on the terminal, in as many blocks as its width needs: a number is never cut."""
    for table in fitted_tables(comparison, by, console.width):
        console.print(table)


def options(**values) -> dict:
    return {key: value for key, value in values.items() if value is not None}


def split_list(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def parse_seeds(text: str | None) -> list[int]:
    """`--seeds 0,1,2`; none given: an empty list."""
    return [parse_int(part, "--seeds") for part in split_list(text)] if text else []


def parse_int(text: str, option: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise UserError(f"{option} takes integers, not {text!r}") from None


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; a `UserError` becomes one red line on stderr and exit code 2, never a traceback."""
    try:
        app(args=argv)  # standalone: typer prints usage errors and help itself, then exits
    except SystemExit as done:
        return done.code if isinstance(done.code, int) else (0 if done.code is None else 1)
    except UserError as error:
        errors.print(f"[red]error:[/red] {escape(str(error))}", highlight=False, soft_wrap=True)
        return 2
    return 0
