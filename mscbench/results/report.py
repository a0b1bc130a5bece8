"""Comparison tables: runs grouped by model, seeds aggregated as mean ± sample std, RelaImpr against a base,
significance marks about architectures (a test over seeds, corrected for the table's number of tests; see
`results.significance`) and bold only where the best is significantly ahead.

Two orientations, as the SAML paper prints them: `model` (Table II: rows = models; AUC, GAUC, LogLoss,
RelaImpr overall, then AUC and RelaImpr per scenario) and `scenario` (Table III: rows = scenarios with their
test rows and positives; one AUC column per model, then RelaImpr per model). Rendered for the terminal
(rich), Markdown, CSV (tidy: one line per model, scope and metric), JSON (everything; `from_json` rebuilds
the comparison), LaTeX and HTML.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Collection
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np
import polars as pl
from rich.cells import cell_len
from rich.console import Group
from rich.progress import Progress
from rich.table import Table
from rich.text import Text

from mscbench.data.manifest import Manifest
from mscbench.errors import UserError
from mscbench.eval.evaluation import METRICS, Metric
from mscbench.eval.metrics import logloss, rela_impr
from mscbench.eval.significance import CORRECTIONS, DEFAULT_CORRECTION
from mscbench.results import html
from mscbench.results.record import OVERALL, DatasetRef, RunRecord, typed
from mscbench.results.significance import (
    ALPHA,
    LOSS_MARK,
    MARK,
    AlignedPredictions,
    PredictionsOf,
    ScopeSample,
    Significance,
    bootstrap_intervals,
    check_correction,
    finite,
    leaders,
    scope_samples,
    table_tests,
)
from mscbench.results.transfer import (
    Transfer,
    gain_mark,
    gain_text,
    split_reference,
    transfer_view,
)

FORMATS = ("table", "md", "csv", "json", "latex", "html")
LABEL_SHIFT = 0.01  # the share of LogLoss that a shift of the label rate between train and test may cost unsaid
ORIENTATIONS = ("model", "scenario")
STALE_MARK = "‡"  # beside a model whose runs were made by other code than the current one (--allow-stale)


@dataclass(frozen=True)
class Cell:
    """One figure over seeds: mean and sample std (ddof = 1); `None` where no seed has it (a one-class
    scenario: AUC n/a; a diverged run's NaN counts as missing)."""

    mean: float | None
    std: float | None
    seeds: int

    @classmethod
    def of(cls, values: list[float | None]) -> Cell:
        present = [v for v in values if finite(v)]
        if not present:
            return cls(None, None, 0)
        return cls(float(np.mean(present)), float(np.std(present, ddof=1)) if len(present) > 1 else 0.0,
                   len(present))

    def text(self, digits: int = 4) -> str:
        if self.mean is None:
            return "n/a"
        return f"{self.mean:.{digits}f}" if self.seeds < 2 else f"{self.mean:.{digits}f} ± {self.std:.{digits}f}"


@dataclass(frozen=True)
class ModelRow:
    model: str
    seeds: list[int]
    cells: dict[str, dict[str, Cell]]  # metric name (eval/evaluation.py's registry) -> scope -> over seeds
    rela_impr: dict[str, float | None]  # scope -> % against the base, from mean AUCs
    parameters: int | None = None  # trainable parameters of one run (None: not recorded)
    significance: dict[str, Significance] = field(default_factory=dict)  # scope -> against the base
    auc_interval: dict[str, list[float] | None] = field(default_factory=dict)  # scope -> 95% bootstrap
    stale: bool = False  # some of its runs were made by other code than the current one

    @property
    def label(self) -> str:
        """The model's name as the tables print it: marked when a run of it is stale."""
        return self.model + (STALE_MARK if self.stale else "")

    def cell(self, metric: str, scope: str = OVERALL) -> Cell:
        return self.cells.get(metric, {}).get(scope, Cell(None, None, 0))

    def scope_auc(self, scope: str) -> Cell:
        return self.cell("auc", scope)


@dataclass(frozen=True)
class Comparison:
    dataset: DatasetRef
    base: str
    scenarios: list[str]
    test_rows: dict[str, int]
    test_positives: dict[str, int]
    oracle_auc: dict[str, float | None]  # "overall" and per scenario; empty without ground truth
    rows: list[ModelRow]
    bootstrap_rounds: int = 0  # resamples behind each row's `auc_interval`; 0: not asked for
    train_label_rate: float | None = None  # share of positives in the training split, where known
    correction: str = DEFAULT_CORRECTION  # how the marks of the table are corrected: bh, holm or none
    test_set_variance: bool = False  # whether the marks' test added DeLong's variance (stored predictions)
    leaders: dict[str, list[str]] = field(default_factory=dict)  # column key -> the models shown in bold
    transfer: Transfer | None = None  # every model against a reference per scenario (--transfer-base)
    tuning: dict[str, Any] = field(default_factory=dict)  # how each model's setting was chosen; empty: default settings

    @property
    def scopes(self) -> list[str]:
        return [OVERALL, *self.scenarios]

    def has(self, metric: str) -> bool:
        """Does some model have a value of `metric` overall?"""
        return any(row.cell(metric).mean is not None for row in self.rows)


def compare_runs(records: list[RunRecord], base: str, models: list[str] | None = None,
                 predictions_of: PredictionsOf | None = None, bootstrap_rounds: int = 0,
                 correction: str = DEFAULT_CORRECTION, stale: Collection[str] = (),
                 train_label_rate: float | None = None, progress: Progress | None = None,
                 transfer_base: str | None = None, transfer_runs: list[RunRecord] | None = None) -> Comparison:
    """Aggregate run records into one comparison against `base`.

    Every model is tested against the base over its seeds, the table's tests corrected together by
    `correction`; with `predictions_of` (record -> its stored test predictions) the test adds the test set's
    DeLong variance, the per-seed DeLong test is exported and, given `bootstrap_rounds`, bootstrap intervals.
    A model with a run in `stale` (run ids made by other code than the current one) is marked.
    `train_label_rate` (`label_rate(manifest)`) lets the caption say when LogLoss mostly measures a shift of the
    label rate between the training and test splits. `progress` shows a bar of the bootstrap intervals.
    With `transfer_base` (MODEL:PROTOCOL) and its runs, every model is also compared with it per scenario.
    """
    if not records:
        raise UserError("no runs to compare")
    check_correction(correction)
    if len({r.dataset.fingerprint for r in records}) > 1:
        raise UserError("these runs were made on different datasets or dataset versions; compare one at a time")
    models = models or list(dict.fromkeys(r.model for r in records))
    by_model = {m: [r for r in records if r.model == m] for m in models}
    if not by_model.get(base):
        raise UserError(f"base model {base!r} has no run; add it to --models")
    by_model = {m: runs for m, runs in by_model.items() if runs}
    if bootstrap_rounds and predictions_of is None:
        raise ValueError("bootstrap intervals need the runs' stored predictions: pass predictions_of")
    if transfer_base is not None and not transfer_runs:
        raise UserError(f"the transfer reference {transfer_base} has no run")
    first = records[0]
    scopes = [OVERALL, *first.metrics.scenarios]
    predictions = AlignedPredictions(predictions_of, scopes[1:]) if predictions_of else None
    samples = {model: scope_samples(runs, scopes, predictions) for model, runs in by_model.items()}
    tests = table_tests(by_model, base, samples, predictions, correction)
    base_row = aggregate(base, by_model[base], scopes, None)
    done = bootstrap_bar(progress, bootstrap_rounds, len(by_model) * len(scopes))
    rows = [replace(aggregate(model, runs, scopes, base_row), significance=tests.get(model, {}),
                    auc_interval=bootstrap_intervals(runs, scopes, predictions, bootstrap_rounds, done)
                    if bootstrap_rounds else {}, stale=any(r.run_id in stale for r in runs))
            for model, runs in by_model.items()]
    oracle = {scope: first.scope(scope).oracle_auc for scope in scopes}
    return Comparison(
        dataset=first.dataset, base=base, scenarios=scopes[1:],
        test_rows={scope: first.scope(scope).rows for scope in scopes},
        test_positives={scope: first.scope(scope).positives for scope in scopes},
        oracle_auc=oracle if oracle[OVERALL] is not None else {}, rows=rows, bootstrap_rounds=bootstrap_rounds,
        train_label_rate=train_label_rate, correction=correction, test_set_variance=predictions is not None,
        leaders=column_leaders(by_model, samples, scopes, correction),
        transfer=None if transfer_base is None else transfer_view(transfer_base, transfer_runs, by_model, samples,
                                                                  scopes[1:], predictions, correction),
    )


def column_leaders(by_model: dict[str, list[RunRecord]], samples: dict[str, dict[str, ScopeSample]],
                   scopes: list[str], correction: str) -> dict[str, list[str]]:
    """The models in bold in each column that marks a best: the AUC of every scope (`auc/SCOPE`) and every
    other registered metric overall (by its name; lower is better where the registry says so)."""
    def overall(metric) -> dict[str, ScopeSample]:
        sign = 1 if metric.higher_is_better else -1
        figures = {model: [r.scope(OVERALL).value(metric.name) for r in runs] for model, runs in by_model.items()}
        return {model: ScopeSample([sign * v for v in values if finite(v)], None) for model, values in figures.items()}

    auc_columns = {f"auc/{scope}": leaders({model: samples[model][scope] for model in samples}, correction)
                   for scope in scopes}
    return {**auc_columns, **{m.name: leaders(overall(m), correction) for m in METRICS if m.name != "auc"}}


def label_rate(manifest: Manifest, split: str = "train") -> float:
    """The share of positive labels in one split of a prepared dataset."""
    return sum(manifest.scenario.positives[split]) / max(sum(manifest.scenario.rows[split]), 1)


def aggregate(model: str, runs: list[RunRecord], scopes: list[str], base: ModelRow | None) -> ModelRow:
    """Every registered metric of every scope over the runs' seeds, and RelaImpr against `base`."""
    cells = {metric.name: {scope: Cell.of([r.scope(scope).value(metric.name) for r in runs]) for scope in scopes}
             for metric in METRICS}
    base_auc = (base.cells if base else cells)["auc"]
    return ModelRow(model=model, seeds=sorted(r.seed for r in runs), cells=cells,
                    rela_impr={scope: rela_impr(cells["auc"][scope].mean, base_auc[scope].mean) for scope in scopes},
                    parameters=runs[0].parameters or None)


def bootstrap_bar(progress: Progress | None, rounds: int, intervals: int) -> Callable[[], None]:
    """One step of a bar over the `intervals` bootstrap intervals to draw (a no-op without a display)."""
    if progress is None or not rounds:
        return lambda: None
    task = progress.add_task(f"bootstrap ({rounds} resamples per AUC)", total=intervals, unit="AUCs")
    return lambda: progress.advance(task)


def from_json(text: str) -> Comparison:
    """The comparison `to_json` wrote, rebuilt: it renders to the same table in every format."""
    return typed(Comparison, json.loads(text), "comparison")


# Layout: the table as text cells, in either orientation ----------------------------------------------------

@dataclass(frozen=True)
class Layout:
    """A table ready to draw in any format: plain text cells, which of them are bold, and the caption."""

    header: list[str]
    rows: list[list[str]]
    bold: set[tuple[int, int]]  # (row, column)
    caption: str


@dataclass(frozen=True)
class Column:
    """A column of the model orientation: its title, each row's text, where bold marks the best the key of its
    leaders in `Comparison.leaders`, and the oracle row's text."""

    title: str
    text: Callable[[ModelRow], str]
    leaders: str | None = None
    oracle: str = ""  # the oracle row's text (synthetic data)


def layout(comparison: Comparison, by: str = "model") -> Layout:
    if by not in ORIENTATIONS:
        raise UserError(f"unknown orientation {by!r}: choose one of {', '.join(ORIENTATIONS)}")
    return by_model(comparison) if by == "model" else by_scenario(comparison)


def by_model(comparison: Comparison) -> Layout:
    """Table II: one row per model (the oracle last, for synthetic data); the leaders of each column in bold."""
    columns = model_columns(comparison)
    rows = [[column.text(row) for column in columns] for row in comparison.rows]
    bold = {(i, j) for j, column in enumerate(columns) for i, row in enumerate(comparison.rows)
            if row.model in comparison.leaders.get(column.leaders, [])}
    if comparison.oracle_auc:
        rows.append([column.oracle for column in columns])
    lift = " Share of oracle lift: (AUC - 0.5) / (oracle AUC - 0.5)." if comparison.has("gap_closed") else ""
    return Layout([c.title for c in columns], rows, bold, caption(comparison, "column", lift))


def model_columns(comparison: Comparison) -> list[Column]:
    """Model, AUC, every other registered metric overall (an optional one only where some model has it,
    after RelaImpr), then AUC and RelaImpr per scenario."""
    oracle = comparison.oracle_auc
    others = [m for m in METRICS if m.name != "auc" and (not m.optional or comparison.has(m.name))]
    columns = [Column("Model", lambda r: r.label, oracle="oracle (true probability)"),
               Column("Parameters", lambda r: "n/a" if r.parameters is None else f"{r.parameters:,}"),
               Column("AUC", lambda r: auc_text(r, OVERALL), f"auc/{OVERALL}", number(oracle.get(OVERALL))),
               *[metric_column(m) for m in others if not m.optional],
               Column(f"RelaImpr vs {comparison.base}", lambda r: percent(r.rela_impr[OVERALL])),
               *[metric_column(m) for m in others if m.optional]]
    for s in comparison.scenarios:
        columns += [Column(f"{s} AUC (n={comparison.test_rows[s]:,})", lambda r, s=s: auc_text(r, s), f"auc/{s}",
                           number(oracle.get(s))),
                    Column(f"{s} RelaImpr", lambda r, s=s: percent(r.rela_impr[s]))]
    return columns


def metric_column(metric: Metric) -> Column:
    """A registered metric overall: its value over seeds, its leaders in bold, and the oracle's where known."""
    return Column(metric.label, lambda r: r.cell(metric.name).text(metric.digits), metric.name,
                  "" if metric.of_oracle is None else f"{metric.of_oracle:.{metric.digits}f}")


def by_scenario(comparison: Comparison) -> Layout:
    """Table III: one row per scenario (overall last) with its test rows and positives; one AUC column per
    model (its parameters in the header), then each other model's RelaImpr; each scenario's leaders in bold."""
    others = [row for row in comparison.rows if row.model != comparison.base]
    oracle = ["Oracle AUC"] if comparison.oracle_auc else []
    header = ["Scenario", "Test rows", "Positives", *oracle, *[model_header(row) for row in comparison.rows],
              *[f"{row.label} RelaImpr vs {comparison.base}" for row in others]]
    first_model = 3 + len(oracle)
    rows, bold = [], set()
    for i, scope in enumerate([*comparison.scenarios, OVERALL]):
        rows.append([scope, f"{comparison.test_rows[scope]:,}", f"{comparison.test_positives[scope]:,}",
                     *([number(comparison.oracle_auc[scope])] if oracle else []),
                     *[auc_text(row, scope) for row in comparison.rows],
                     *[percent(row.rela_impr[scope]) for row in others]])
        leading = comparison.leaders.get(f"auc/{scope}", [])
        bold |= {(i, first_model + j) for j, row in enumerate(comparison.rows) if row.model in leading}
    return Layout(header, rows, bold, caption(comparison, "scenario"))


def model_header(row: ModelRow) -> str:
    return row.label if row.parameters is None else f"{row.label} ({row.parameters:,} parameters)"


def auc_text(row: ModelRow, scope: str) -> str:
    """Mean ± std, the significance marks, and the bootstrap interval when there is one."""
    text = row.scope_auc(scope).text()
    significance = row.significance.get(scope)
    if significance is not None:
        text += significance.marks
    interval = row.auc_interval.get(scope)
    return text + (f" [{interval[0]:.4f}, {interval[1]:.4f}]" if interval else "")


def caption(comparison: Comparison, bold_in: str, note: str = "") -> str:
    """What the table shows (and `note`), which test its marks and bold follow, the correction and the number of
    seeds."""
    seeds = "/".join(map(str, sorted({len(r.seeds) for r in comparison.rows})))
    base = comparison.base
    dataset = comparison.dataset.label
    parts = [(f"Test AUC on {dataset} (mean ± sample std over {seeds} seed(s)); RelaImpr against {base} from mean "
              f"AUCs.{note}"), protocol(comparison), *label_shift(comparison)]
    correction = CORRECTIONS[comparison.correction]
    parts.append(marks_sentence(comparison, [row.significance for row in comparison.rows],
                                f"{MARK} mean AUC above {base}", f"comparisons of the table with {base}"))
    single = [row.model for row in comparison.rows if len(row.seeds) < 2]
    if any(comparison.leaders.values()):
        parts.append(f"Bold: the best mean per {bold_in} and every model not significantly below it (the same "
                     f"test, {correction} within the {bold_in}); a lone bold figure is significantly above the "
                     "runner-up" + (f"; {', '.join(single)}, with one seed, cannot be compared." if single else "."))
    elif len(comparison.rows) > 1:
        parts.append("Nothing is bold: fewer than two models have the two seeds a comparison needs.")
    if any(row.stale for row in comparison.rows):
        parts.append(f"{STALE_MARK} Reused runs made by other code than the current one (--allow-stale): "
                     "retrain them for numbers of the current code.")
    if any(s.delong_p is not None for row in comparison.rows for s in row.significance.values()):
        parts.append("The JSON and CSV exports add each difference's 95% interval, raw and adjusted p-values, and "
                     "DeLong's test on one seed's predictions (it says two trained models differ, not two "
                     "architectures).")
    if comparison.bootstrap_rounds:
        parts.append(f"[low, high]: 95% percentile bootstrap interval of the AUC of each model's smallest seed "
                     f"({comparison.bootstrap_rounds} resamples).")
    return " ".join(part for part in parts if part)


def test_name(comparison: Comparison) -> str:
    return ("Welch's t-test over each model's per-seed AUCs"
            + (", with DeLong's variance of the test set added" if comparison.test_set_variance else ""))


def marks_sentence(comparison: Comparison, tests: list[dict[str, Significance]], marked: str, family: str) -> str:
    """Which test and correction the marks follow, or why there are none."""
    made = [test for scopes in tests for test in scopes.values() if test.p_value is not None]
    if made:
        return (f"{marked} by {test_name(comparison)}, p < {ALPHA} after {CORRECTIONS[comparison.correction]} "
                f"over the {len(made)} {family}.")
    if any(tests):
        return "One seed per model: no test between architectures is possible, so nothing is marked."
    return ""


def label_shift(comparison: Comparison) -> list[str]:
    """A note when the label rate shifts between the training and test splits enough to move LogLoss: a model
    learns about the training rate, so predicting it for every test row (a constant) scores more than
    predicting the test rate; past `LABEL_SHIFT` of the latter, the shift weighs like a model's own gains."""
    rows, positives = comparison.test_rows[OVERALL], comparison.test_positives[OVERALL]
    train, test = comparison.train_label_rate, positives / max(rows, 1)
    if train is None:
        return []
    constant, calibrated = (constant_logloss(rate, positives, rows) for rate in (train, test))
    if constant - calibrated <= LABEL_SHIFT * calibrated:
        return []
    note = (f"Positives: {train:.1%} of the training rows, {test:.1%} of the test rows; LogLoss is dominated by "
            f"that shift (predicting {train:.1%} for every test row scores {constant:.4f}).")
    return [note]


def constant_logloss(rate: float, positives: int, rows: int) -> float:
    """LogLoss of predicting `rate` for every one of `rows` test rows, `positives` of them clicks: from the
    counts, without a prediction per row."""
    click, no_click = logloss(np.ones(1), np.full(1, rate)), logloss(np.zeros(1), np.full(1, rate))
    return (positives * click + (rows - positives) * no_click) / max(rows, 1)


def transfer_layout(comparison: Comparison) -> Layout:
    """Negative transfer: one row per model, its AUC gain over the reference in each scenario and a summary."""
    transfer = comparison.transfer
    scenarios = comparison.scenarios
    header = ["Model", *[f"{s} AUC gain" for s in scenarios], "Significant losses", "Worst scenario (gain)",
              "Mean relative improvement"]
    rows = [[row.model, *[gain_text(row.gains[s]) for s in scenarios], f"{row.significant_losses} of {len(scenarios)}",
             "n/a" if row.worst_scenario is None else f"{row.worst_scenario} ({row.worst_gain:+.4f})",
             percent(row.mean_relative_improvement)] for row in transfer.rows]
    model, protocol = split_reference(transfer.reference)
    parts = [(f"Negative transfer: each model's mean test AUC minus that of {model} trained with the {protocol} "
             f"protocol ({transfer.reference}), per scenario."), reference_setting(comparison, model),
             marks_sentence(comparison, [row.gains for row in transfer.rows],
                            f"{MARK} significant gain, {LOSS_MARK} significant loss,", "comparisons of this view"),
             ("Mean relative improvement: the mean over scenarios of (AUC - AUC_ref) / AUC_ref, LibMTL's multi-task "
             "measure (Lin & Zhang, JMLR 2023).")]
    return Layout(header, rows, set(), " ".join(part for part in parts if part))


def reference_setting(comparison: Comparison, model: str) -> str:
    """How the transfer reference's setting was chosen, where the models compared were tuned."""
    if not comparison.tuning:
        return ""
    if model in comparison.tuning["settings"]:
        return f"The reference trains at {model}'s tuned setting above (tuned with the joint protocol)."
    return f"The reference is not tuned: {model} at the recipe's fixed settings."


def layouts(comparison: Comparison, by: str) -> list[Layout]:
    """The table, then the negative-transfer view when the comparison has one."""
    return [layout(comparison, by), *([transfer_layout(comparison)] if comparison.transfer else [])]


def protocol(comparison: Comparison) -> str:
    """How the settings compared were chosen: tuned with one budget per model, or the defaults."""
    tuning = comparison.tuning
    if not tuning:
        return "Default settings (untuned)."
    return (f"Each model tuned with the same budget ({tuning['budget']} per model, {tuning['sampler']} sampler, "
            f"{tuning['pruner']} pruner) on its {tuning['objective']}, the test split untouched while tuning; "
            "each model's best setting then trained with every seed.")


def percent(value: float | None) -> str:
    return "n/a" if value is None else f"{value:+.2f}%"


def number(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"


# Rendering --------------------------------------------------------------------------------------------------

def drawn(table: Layout, escape: Callable[[str], str], strong: Callable[[str], str]) -> list[list[str]]:
    """Every cell escaped for the format, the bold ones passed through `strong`."""
    return [[strong(escape(text)) if (i, j) in table.bold else escape(text) for j, text in enumerate(row)]
            for i, row in enumerate(table.rows)]


def render_rich(comparison: Comparison, by: str = "model") -> Group:
    """The whole table (and the transfer view), as wide as it needs to be."""
    return Group(*[rich_table(table, natural_widths(table)) for table in layouts(comparison, by)])


def fitted_tables(comparison: Comparison, by: str, width: int) -> list[Table]:
    """The comparison as tables no wider than `width` with every number whole (headers wrap at spaces): of
    the `by` orientation and the other one, the one that fits in the fewest blocks of columns, each block
    repeating the row names and only the first carrying the caption; then the transfer view's blocks."""
    other = next(orientation for orientation in ORIENTATIONS if orientation != by)
    blocks = min((column_blocks(layout(comparison, way), width) for way in (by, other)), key=len)
    if comparison.transfer:
        blocks += column_blocks(transfer_layout(comparison), width)
    return [rich_table(block, fitted_widths(block, width)) for block in blocks]


def rich_table(table: Layout, widths: list[int]) -> Table:
    drawn_table = Table(title=Text(table.caption) if table.caption else None, title_justify="left")  # no markup
    for j, name in enumerate(table.header):
        drawn_table.add_column(name, justify="left" if j == 0 else "right", width=widths[j])
    for i, row in enumerate(table.rows):
        drawn_table.add_row(*(Text(text, style="bold" if (i, j) in table.bold else "") for j, text in enumerate(row)))
    return drawn_table


def natural_widths(table: Layout) -> list[int]:
    """Each column's width with no cell wrapped."""
    return [max(cell_len(text) for text in [name, *(row[j] for row in table.rows)])
            for j, name in enumerate(table.header)]


def least_widths(table: Layout) -> list[int]:
    """Each column's width with every number whole: the headers, and the row names, wrap at spaces."""
    def least(j: int, name: str) -> int:
        cells = [row[j] for row in table.rows]
        wrapping, whole = ([name, *cells], []) if j == 0 else ([name], cells)
        return max([cell_len(word) for text in wrapping for word in text.split()] + [*map(cell_len, whole)],
                   default=1)
    return [least(j, name) for j, name in enumerate(table.header)]


def drawn_width(widths: list[int]) -> int:
    return sum(widths) + 3 * len(widths) + 1  # a border and a space either side of every column


def fitted_widths(table: Layout, width: int) -> list[int]:
    """The natural widths if they fit, else the least ones with the room left shared by what each lacks."""
    natural, least = natural_widths(table), least_widths(table)
    if drawn_width(natural) <= width:
        return natural
    lacking = [n - m for n, m in zip(natural, least, strict=True)]
    room = max(width - drawn_width(least), 0)
    return [m + room * lack // max(sum(lacking), 1) for m, lack in zip(least, lacking, strict=True)]


def column_blocks(table: Layout, width: int) -> list[Layout]:
    """`table` cut into blocks of whole columns that fit `width`, each starting with the row names."""
    least = least_widths(table)
    blocks: list[list[int]] = [[]]
    for j in range(1, len(table.header)):
        if blocks[-1] and drawn_width([least[0], *(least[k] for k in blocks[-1]), least[j]]) > width:
            blocks.append([])
        blocks[-1].append(j)
    return [columns_of(table, [0, *block], table.caption if i == 0 else "") for i, block in enumerate(blocks)]


def columns_of(table: Layout, columns: list[int], caption: str) -> Layout:
    return Layout([table.header[j] for j in columns], [[row[j] for j in columns] for row in table.rows],
                  {(i, columns.index(j)) for i, j in table.bold if j in columns}, caption)


def to_markdown(comparison: Comparison, by: str = "model") -> str:
    return "\n".join(map(markdown_table, layouts(comparison, by)))


def markdown_table(table: Layout) -> str:
    lines = ["| " + " | ".join(map(markdown_escape, table.header)) + " |",
             "|" + "|".join(["---"] + ["---:"] * (len(table.header) - 1)) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in drawn(table, markdown_escape, lambda v: f"**{v}**")]
    return "\n".join([*lines, "", markdown_escape(table.caption), ""])


def markdown_escape(text: str) -> str:
    return text.replace("|", "\\|").replace("*", "\\*")


def to_latex(comparison: Comparison, by: str = "model") -> str:
    return "\n".join(map(latex_table, layouts(comparison, by)))


def latex_table(table: Layout) -> str:
    body = [" & ".join(row) + r" \\" for row in drawn(table, latex_escape, lambda v: f"\\textbf{{{v}}}")]
    return "\n".join([
        r"\begin{table}[t]", r"\centering", f"\\caption{{{latex_escape(table.caption)}}}",
        r"\begin{tabular}{l" + "r" * (len(table.header) - 1) + "}", r"\toprule",
        " & ".join(map(latex_escape, table.header)) + r" \\", r"\midrule", *body, r"\bottomrule", r"\end{tabular}",
        r"\end{table}", "",
    ])


def latex_escape(text: str) -> str:
    for char in "&%$#_":
        text = text.replace(char, "\\" + char)
    return text.replace("±", "$\\pm$").replace(STALE_MARK, "$^\\ddagger$").replace(LOSS_MARK, "$^\\dagger$")


def to_html(comparison: Comparison, by: str = "model") -> str:
    return html.page(title(comparison), [html.table(t.header, t.rows, t.bold, t.caption) for t in layouts(comparison, by)])


def title(comparison: Comparison) -> str:
    return f"mscbench: {comparison.dataset.label}, models against {comparison.base}"


# The columns of the tidy table (`to_csv`, `to_frame`) and their types; on the AUC lines the test against the base.
TEST_COLUMNS = {"difference": pl.Float64, "difference_ci_low": pl.Float64, "difference_ci_high": pl.Float64,
                "p_value": pl.Float64, "adjusted_p": pl.Float64, "marks": pl.String, "delong_seed": pl.Int64,
                "delong_p": pl.Float64}
TIDY_COLUMNS = {"model": pl.String, "seeds": pl.String, "parameters": pl.Int64, "scope": pl.String,
                "metric": pl.String, "mean": pl.Float64, "std": pl.Float64, "rela_impr_percent": pl.Float64,
                **TEST_COLUMNS, "bootstrap_low": pl.Float64, "bootstrap_high": pl.Float64}


def to_csv(comparison: Comparison, by: str = "model") -> str:
    """Tidy: one line per model, scope and metric, numbers unformatted (std: ddof = 1); on the AUC lines the
    test against the base (the difference of mean AUCs, its 95% interval, raw and adjusted p, the mark, the
    per-seed DeLong p) and the bootstrap interval; then the transfer view's lines (metric `auc_gain_vs_REF` per
    scenario with its test, and its summaries). The same in both orientations (pivot it either way)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(TIDY_COLUMNS)
    described = {row.model: [row.model, " ".join(map(str, row.seeds)), row.parameters] for row in comparison.rows}
    for row in comparison.rows:
        for scope in comparison.scopes:
            auc = row.scope_auc(scope)
            writer.writerow([*described[row.model], scope, "auc", auc.mean, auc.std, row.rela_impr[scope],
                             *tested_cells(row.significance.get(scope)), *(row.auc_interval.get(scope) or ["", ""])])
            for metric in (m for m in METRICS if m.name != "auc"):
                if scope == OVERALL or metric.per_scenario:
                    cell = row.cell(metric.name, scope)
                    writer.writerow([*described[row.model], scope, metric.name, cell.mean, cell.std,
                                     *[""] * (len(TEST_COLUMNS) + 3)])
    for row in comparison.transfer.rows if comparison.transfer else []:
        versus = f"_vs_{comparison.transfer.reference}"
        for scope, test in row.gains.items():
            cells = tested_cells(test)
            cells[list(TEST_COLUMNS).index("marks")] = gain_mark(test)
            writer.writerow([*described[row.model], scope, "auc_gain" + versus, test.difference, "", "", *cells, "", ""])
        for metric, scope, value in [("significant_losses", OVERALL, row.significant_losses),
                                     ("worst_gain", row.worst_scenario, row.worst_gain),
                                     ("mean_relative_improvement_percent", OVERALL, row.mean_relative_improvement)]:
            writer.writerow([*described[row.model], scope, metric + versus, value, *[""] * (len(TEST_COLUMNS) + 4)])
    return buffer.getvalue()


def tested_cells(test: Significance | None) -> list:
    if test is None:
        return [""] * len(TEST_COLUMNS)
    return [test.difference, test.ci_low, test.ci_high, test.p_value, test.adjusted_p, test.marks, test.delong_seed,
            test.delong_p]


def to_frame(comparison: Comparison) -> pl.DataFrame:
    """The tidy table (`to_csv`'s lines) as a polars DataFrame, numbers as numbers and missing ones null."""
    return pl.read_csv(io.StringIO(to_csv(comparison)), schema=TIDY_COLUMNS)


def to_json(comparison: Comparison, by: str = "model") -> str:
    """Everything in the comparison (orientation-free: either table is rebuilt from it by `from_json`)."""
    return json.dumps(asdict(comparison), indent=2)


RENDERERS = {"md": to_markdown, "csv": to_csv, "json": to_json, "latex": to_latex, "html": to_html}


def render(comparison: Comparison, fmt: str, by: str = "model") -> str:
    if fmt not in RENDERERS:
        raise UserError(f"unknown format {fmt!r}: choose one of {', '.join(FORMATS)}")
    return RENDERERS[fmt](comparison, by)
