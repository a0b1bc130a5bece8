"""The `mscbench` command line: a thin layer that parses, calls the library and renders."""

from __future__ import annotations

import inspect
import re
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, ProgressColumn, TaskProgressColumn, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

import mscbench.models  # noqa: F401  (registers the zoo)
from mscbench.config import TrainConfig, build_config, load_recipe, parse_overrides, split_overrides
from mscbench.data.prepare import list_prepared, prepare_synthetic
from mscbench.errors import UserError
from mscbench.models.base import REGISTRY, describe_config, get_card
from mscbench.results.report import FORMATS, compare_runs, render, render_rich
from mscbench.results.store import RunStore
from mscbench.train.runner import get_or_run, plan_run

app = typer.Typer(
    help="Benchmark multi-scenario recommenders: per-scenario AUC, RelaImpr and significance.",
    no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False, rich_markup_mode="rich",
)
console = Console()
errors = Console(stderr=True)

DataDir = Annotated[Path, typer.Option("--data-dir", envvar="MSCBENCH_DATA_DIR",
                                       help="Where prepared datasets live.")]
RunsDir = Annotated[Path, typer.Option("--runs-dir", envvar="MSCBENCH_RUNS_DIR", help="Where runs are stored.")]
Settings = Annotated[Optional[list[str]], typer.Option("--set", help="Override a setting: key=value (repeatable).")]


class SpeedColumn(ProgressColumn):
    def render(self, task) -> Text:
        return Text(f"{task.speed:,.0f} samples/s" if task.speed else "", style="cyan")


def progress_bar() -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), TaskProgressColumn(), SpeedColumn(),
                    TimeElapsedColumn(), console=console, transient=True)


@app.command()
def datasets(data_dir: DataDir = Path("data")) -> None:
    """List the prepared datasets: scenarios, rows per split, where they are.

    Example: mscbench datasets --data-dir data
    """
    table = Table(title=f"Prepared datasets in {data_dir}", title_justify="left")
    for column in ("dataset", "scenarios", "train rows", "valid rows", "test rows", "path"):
        table.add_column(column, justify="right" if "rows" in column or column == "scenarios" else "left")
    prepared = list_prepared(data_dir)
    for name, variant, manifest in prepared:
        table.add_row(f"{name}/{variant}", str(manifest.num_scenarios), *(f"{manifest.rows(s):,}" for s in
                      ("train", "valid", "test")), str(data_dir / name / variant))
    console.print(table)
    if not prepared:
        console.print("Nothing is prepared yet: `mscbench prepare synthetic` makes the built-in dataset.")


@app.command()
def prepare(
    dataset: Annotated[str, typer.Argument(help="Dataset to prepare: synthetic.")],
    rows: Annotated[Optional[int], typer.Option(help="Impressions to generate (synthetic).")] = None,
    scenarios: Annotated[int, typer.Option(help="Number of scenarios (synthetic).")] = 5,
    seed: Annotated[int, typer.Option(help="Generator seed (synthetic).")] = 0,
    data_dir: DataDir = Path("data"),
) -> None:
    """Turn a dataset into a prepared dataset: Parquet per split and a manifest.

    Example: mscbench prepare synthetic --rows 1000000 --scenarios 5 --seed 0
    """
    if dataset != "synthetic":
        raise UserError(f"unknown dataset {dataset!r}: available: synthetic")
    with console.status(f"preparing {dataset}"):
        result = prepare_synthetic(data_dir, rows=rows, scenarios=scenarios, seed=seed)
    verb = "already prepared (same inputs): nothing to do" if result.reused else "prepared"
    manifest = result.manifest
    console.print(f"{manifest.name}/{manifest.variant} {verb} at {result.path}: "
                  f"{manifest.num_scenarios} scenarios, " +
                  ", ".join(f"{manifest.rows(s):,} {s}" for s in ("train", "valid", "test")) + " rows")


@app.command()
def models(name: Annotated[Optional[str], typer.Argument(help="Show one model in full.")] = None) -> None:
    """List the model zoo, or one model with its hyperparameters and their defaults.

    Example: mscbench models saml
    """
    if name is not None:
        show_model(name)
        return
    table = Table(title="Model zoo", title_justify="left")
    for column in ("model", "description", "paper", "year", "hyperparameters"):
        table.add_column(column)
    for card in sorted(REGISTRY.values(), key=lambda c: c.name):
        settings = ", ".join(f"{k}={v}" for k, v in describe_config(card).items())
        table.add_row(card.name, card.description, card.paper, str(card.year), settings)
    console.print(table)


def show_model(name: str) -> None:
    card = get_card(name)
    console.print(f"[bold]{card.name}[/bold]: {card.description}\n{card.paper}, {card.year}")
    needs = ["a behaviour sequence"] if card.needs_sequence else []
    console.print(f"Needs: {', '.join(needs) or 'sparse and dense features'}; "
                  f"scenario-specific parameters: {'yes' if card.multi_scenario else 'no'}")
    table = Table(title="Hyperparameters (--set key=value)", title_justify="left")
    for column in ("key", "default", "meaning"):
        table.add_column(column)
    comments = field_comments(card.config)
    for key, value in describe_config(card).items():
        table.add_row(key, str(value), comments.get(key, ""))
    console.print(table)


def field_comments(config: type) -> dict[str, str]:
    """The `# comment` written beside each field of a config dataclass."""
    pattern = re.compile(r"^\s+(\w+):[^#]*#\s*(.+)$")
    return {m[1]: m[2] for m in map(pattern.match, inspect.getsource(config).splitlines()) if m}


@app.command()
def train(
    model: Annotated[str, typer.Argument(help="Model name (see `mscbench models`).")],
    dataset: Annotated[str, typer.Option(help="Prepared dataset, NAME or NAME/VARIANT.")] = "synthetic",
    epochs: Annotated[Optional[int], typer.Option(help="Training epochs.")] = None,
    batch_size: Annotated[Optional[int], typer.Option(help="Samples per step.")] = None,
    lr: Annotated[Optional[float], typer.Option(help="Adam learning rate.")] = None,
    seed: Annotated[Optional[int], typer.Option(help="Random seed.")] = None,
    protocol: Annotated[Optional[str], typer.Option(help="joint or individual.")] = None,
    settings: Settings = None,
    rerun: Annotated[bool, typer.Option(help="Retrain even if this exact run exists.")] = False,
    resume: Annotated[bool, typer.Option(help="Continue an interrupted run from its checkpoint.")] = True,
    data_dir: DataDir = Path("data"),
    runs_dir: RunsDir = Path("runs"),
) -> None:
    """Train one model on one dataset, evaluate it and print its per-scenario table.

    Example: mscbench train shared_bottom --dataset synthetic --epochs 2 --set tower=[32]
    """
    overrides = parse_overrides(settings or [])
    model_values, train_values = split_overrides(overrides, get_card(model).config)
    train_values |= options(epochs=epochs, batch_size=batch_size, lr=lr, seed=seed, protocol=protocol)
    plan = plan_run(dataset, model, data_dir, model_values, train_values)
    store = RunStore(runs_dir)
    with progress_bar() as progress:
        record = get_or_run(plan, store, progress, rerun=rerun, resume=resume)
    console.print(render_rich(compare_runs([record], base=model)))
    summary = record["training"]
    console.print(f"run {plan.run_id} in {store.path(plan.run_id)}: {record['parameters']:,} parameters, "
                  f"{summary['samples_per_second']:,.0f} samples/s, {summary['epochs_run']} epoch(s)")


@app.command()
def compare(
    dataset: Annotated[Optional[str], typer.Option(help="Prepared dataset, NAME or NAME/VARIANT.")] = None,
    models: Annotated[Optional[str], typer.Option(help="Comma-separated model names.")] = None,
    base: Annotated[Optional[str], typer.Option(help="Model RelaImpr is measured against.")] = None,
    seeds: Annotated[Optional[str], typer.Option(help="Comma-separated seeds, e.g. 0,1,2.")] = None,
    recipe: Annotated[Optional[Path], typer.Option(help="Recipe TOML (options given here override it).")] = None,
    epochs: Annotated[Optional[int], typer.Option(help="Training epochs.")] = None,
    batch_size: Annotated[Optional[int], typer.Option(help="Samples per step.")] = None,
    lr: Annotated[Optional[float], typer.Option(help="Adam learning rate.")] = None,
    settings: Settings = None,
    fmt: Annotated[str, typer.Option("--format", help=f"One of {', '.join(FORMATS)}.")] = "table",
    output: Annotated[Optional[Path], typer.Option(help="Write the table to this file.")] = None,
    rerun: Annotated[bool, typer.Option(help="Retrain runs that already exist.")] = False,
    data_dir: DataDir = Path("data"),
    runs_dir: RunsDir = Path("runs"),
) -> None:
    """Train (or reuse) every model for every seed and print the per-scenario comparison table.

    Example: mscbench compare --dataset synthetic --models dnn,shared_bottom --base dnn --seeds 0,1,2
    """
    spec = load_recipe(recipe) if recipe else None
    dataset = dataset or (spec.dataset if spec else "synthetic")
    names = split_list(models) if models else list(spec.models if spec else [])
    if not names:
        raise UserError("name the models to compare: --models dnn,shared_bottom (or --recipe FILE)")
    base = base or (spec.base if spec else names[0])
    if base not in names:
        names.insert(0, base)
    seed_list = [parse_int(s, "--seeds") for s in split_list(seeds)] if seeds else list(spec.seeds if spec else [0])
    shared = {**(spec.train if spec else {}), **parse_train_settings(settings),
              **options(epochs=epochs, batch_size=batch_size, lr=lr)}
    plans = [plan_run(dataset, name, data_dir, (spec.model.get(name, {}) if spec else {}), {**shared, "seed": seed})
             for name in names for seed in seed_list]  # every name and setting checked before any training
    store = RunStore(runs_dir)
    records = []
    with progress_bar() as progress:
        for plan in plans:
            reused = store.is_complete(plan.run_id) and not rerun
            progress.console.print(f"{'reusing' if reused else 'training'} {plan.model} (seed {plan.train.seed})")
            records.append(get_or_run(plan, store, progress, rerun=rerun))
    comparison = compare_runs(records, base, names)
    if fmt == "table" and output is None:
        console.print(render_rich(comparison))
        return
    text = render(comparison, "md" if fmt == "table" else fmt)
    if output is None:
        console.print(text, markup=False, highlight=False, soft_wrap=True)
    else:
        output.write_text(text)
        console.print(f"wrote {output}")


def parse_train_settings(settings: list[str] | None) -> dict:
    """`compare --set` takes training settings, shared by every model (hyperparameters go in a recipe)."""
    values = {key.removeprefix("train."): value for key, value in parse_overrides(settings or []).items()}
    build_config(TrainConfig, values, owner="compare --set (training settings)")
    return values


def options(**values) -> dict:
    return {key: value for key, value in values.items() if value is not None}


def split_list(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


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
        errors.print(f"[red]error:[/red] {error}", highlight=False)
        return 2
    return 0
