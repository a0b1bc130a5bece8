"""Comparison tables: runs grouped by model, seeds aggregated as mean ± std, RelaImpr against a base.

Rows are models; columns are overall AUC, GAUC, LogLoss, RelaImpr and, for synthetic data, the share of
the oracle gap closed; then the AUC per scenario. Rendered for the terminal (rich), Markdown, CSV, JSON
and LaTeX. The JSON holds everything needed to rebuild the table.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import asdict, dataclass

import numpy as np
from rich.table import Table

from mscbench.errors import UserError
from mscbench.eval.metrics import rela_impr

FORMATS = ("table", "md", "csv", "json", "latex")


@dataclass(frozen=True)
class Cell:
    """One figure over seeds; `None` where no seed has it (a one-class scenario: AUC n/a)."""

    mean: float | None
    std: float | None
    seeds: int

    @classmethod
    def of(cls, values: list[float | None]) -> Cell:
        present = [v for v in values if v is not None]
        if not present:
            return cls(None, None, 0)
        return cls(float(np.mean(present)), float(np.std(present)), len(present))

    def text(self, digits: int = 4) -> str:
        if self.mean is None:
            return "n/a"
        return f"{self.mean:.{digits}f}" if self.seeds < 2 else f"{self.mean:.{digits}f} ± {self.std:.{digits}f}"


@dataclass(frozen=True)
class ModelRow:
    model: str
    seeds: list[int]
    auc: Cell
    gauc: Cell
    logloss: Cell
    gap_closed: Cell
    rela_impr: float | None  # % against the base, from mean AUCs
    scenario_auc: dict[str, Cell]
    scenario_rela_impr: dict[str, float | None]


@dataclass(frozen=True)
class Comparison:
    dataset: dict
    base: str
    scenarios: list[str]
    test_rows: dict[str, int]
    test_positives: dict[str, int]
    oracle_auc: dict[str, float | None]  # "overall" and per scenario; empty without ground truth
    rows: list[ModelRow]


def compare_runs(records: list[dict], base: str, models: list[str] | None = None) -> Comparison:
    """Aggregate run records (metrics.json contents) into one comparison against `base`."""
    if not records:
        raise UserError("no runs to compare")
    fingerprints = {r["dataset"]["fingerprint"] for r in records}
    if len(fingerprints) > 1:
        raise UserError("these runs were made on different datasets or dataset versions; compare one at a time")
    models = models or list(dict.fromkeys(r["model"] for r in records))
    by_model = {m: [r for r in records if r["model"] == m] for m in models}
    if not by_model.get(base):
        raise UserError(f"base model {base!r} has no run; add it to --models")
    first = records[0]["metrics"]
    scenarios = list(first["scenarios"])
    base_row = aggregate(base, by_model[base], scenarios, None)
    rows = [aggregate(m, runs, scenarios, base_row) for m, runs in by_model.items() if runs]
    oracle = {"overall": first["overall"].get("oracle_auc"),
              **{s: first["scenarios"][s].get("oracle_auc") for s in scenarios}}
    return Comparison(
        dataset=records[0]["dataset"], base=base, scenarios=scenarios,
        test_rows={"overall": first["overall"]["rows"], **{s: first["scenarios"][s]["rows"] for s in scenarios}},
        test_positives={"overall": first["overall"]["positives"],
                        **{s: first["scenarios"][s]["positives"] for s in scenarios}},
        oracle_auc=oracle if oracle["overall"] is not None else {}, rows=rows,
    )


def aggregate(model: str, runs: list[dict], scenarios: list[str], base: ModelRow | None) -> ModelRow:
    def cell(metric: str, scenario: str | None = None) -> Cell:
        return Cell.of([(r["metrics"]["overall"] if scenario is None else scenario_metrics(r, scenario))[metric]
                        for r in runs])

    auc = cell("auc")
    scenario_auc = {s: cell("auc", s) for s in scenarios}
    return ModelRow(
        model=model, seeds=sorted(r["seed"] for r in runs), auc=auc, gauc=cell("gauc"), logloss=cell("logloss"),
        gap_closed=cell("gap_closed"),
        rela_impr=rela_impr(auc.mean, (base.auc if base else auc).mean),
        scenario_auc=scenario_auc,
        scenario_rela_impr={s: rela_impr(scenario_auc[s].mean, (base.scenario_auc if base else scenario_auc)[s].mean)
                            for s in scenarios},
    )


def scenario_metrics(record: dict, scenario: str) -> dict:
    try:
        return record["metrics"]["scenarios"][scenario]
    except KeyError:
        raise UserError(f"run {record['run_id']} has no scenario {scenario!r}: it was made on other data") from None


# Rendering ------------------------------------------------------------------------------------------------

def header(comparison: Comparison) -> list[str]:
    overall = ["Model", "AUC", "GAUC", "LogLoss", f"RelaImpr vs {comparison.base}"]
    if comparison.oracle_auc:
        overall.append("Oracle gap closed")
    return overall + [f"{s} (n={comparison.test_rows[s]})" for s in comparison.scenarios]


def cells(comparison: Comparison, row: ModelRow) -> list[str]:
    values = [row.model, row.auc.text(), row.gauc.text(), row.logloss.text(), percent(row.rela_impr)]
    if comparison.oracle_auc:
        values.append(row.gap_closed.text(3))
    return values + [row.scenario_auc[s].text() for s in comparison.scenarios]


def oracle_cells(comparison: Comparison) -> list[str]:
    """The AUC of the true click probability: the ceiling no model can pass on this test set."""
    return ["oracle (true probability)", number(comparison.oracle_auc["overall"]), "", "", "", "1.000",
            *[number(comparison.oracle_auc[s]) for s in comparison.scenarios]]


def best_columns(comparison: Comparison) -> dict[int, str]:
    """Column index -> the model with the best mean (highest AUC, lowest LogLoss)."""
    columns = {1: lambda r: r.auc.mean, 3: lambda r: -r.logloss.mean if r.logloss.mean is not None else None}
    offset = 6 if comparison.oracle_auc else 5
    for i, scenario in enumerate(comparison.scenarios):
        columns[offset + i] = lambda r, s=scenario: r.scenario_auc[s].mean
    best = {}
    for column, key in columns.items():
        scored = [(key(r), r.model) for r in comparison.rows if key(r) is not None]
        if scored:
            best[column] = max(scored)[1]
    return best


def percent(value: float | None) -> str:
    return "n/a" if value is None else f"{value:+.2f}%"


def number(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def table_rows(comparison: Comparison, mark, escape=str) -> list[list[str]]:
    """Every row as text; the best model per column passes through `mark` (bold in each format)."""
    best = best_columns(comparison)
    rows = []
    for row in comparison.rows:
        values = [escape(v) for v in cells(comparison, row)]
        rows.append([mark(v) if best.get(i) == row.model else v for i, v in enumerate(values)])
    if comparison.oracle_auc:
        rows.append([escape(v) for v in oracle_cells(comparison)])
    return rows


def caption(comparison: Comparison) -> str:
    seeds = sorted({len(r.seeds) for r in comparison.rows})
    return (f"Test AUC on {comparison.dataset['name']}/{comparison.dataset['variant']} "
            f"(mean ± std over {'/'.join(map(str, seeds))} seed(s)); RelaImpr against {comparison.base}; "
            "best mean per column in bold.")


def render_rich(comparison: Comparison) -> Table:
    table = Table(title=caption(comparison), title_justify="left")
    for i, name in enumerate(header(comparison)):
        table.add_column(name, justify="left" if i == 0 else "right")
    for row in table_rows(comparison, lambda v: f"[bold]{v}[/bold]"):
        table.add_row(*row)
    return table


def to_markdown(comparison: Comparison) -> str:
    names = header(comparison)
    lines = ["| " + " | ".join(names) + " |", "|" + "|".join(["---"] + ["---:"] * (len(names) - 1)) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in table_rows(comparison, lambda v: f"**{v}**")]
    return "\n".join([*lines, "", caption(comparison), ""])


def to_csv(comparison: Comparison) -> str:
    """One line per model and metric column, numbers unformatted (mean and std side by side)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["model", "seeds", "column", "mean", "std", "rela_impr_percent"])
    for row in comparison.rows:
        seeds = " ".join(map(str, row.seeds))
        for column, cell in [("auc", row.auc), ("gauc", row.gauc), ("logloss", row.logloss),
                             ("gap_closed", row.gap_closed)]:
            writer.writerow([row.model, seeds, column, cell.mean, cell.std, row.rela_impr if column == "auc" else ""])
        for scenario in comparison.scenarios:
            cell = row.scenario_auc[scenario]
            writer.writerow([row.model, seeds, f"auc:{scenario}", cell.mean, cell.std,
                             row.scenario_rela_impr[scenario]])
    return buffer.getvalue()


def to_json(comparison: Comparison) -> str:
    return json.dumps(asdict(comparison), indent=2)


def to_latex(comparison: Comparison) -> str:
    names = [latex_escape(n) for n in header(comparison)]
    rows = table_rows(comparison, lambda v: f"\\textbf{{{v}}}", latex_escape)
    body = [" & ".join(row) + r" \\" for row in rows]
    return "\n".join([
        r"\begin{table}[t]", r"\centering", f"\\caption{{{latex_escape(caption(comparison))}}}",
        r"\begin{tabular}{l" + "r" * (len(names) - 1) + "}", r"\toprule", " & ".join(names) + r" \\",
        r"\midrule", *body, r"\bottomrule", r"\end{tabular}", r"\end{table}", "",
    ])


def latex_escape(text: str) -> str:
    for char in "&%$#_":
        text = text.replace(char, "\\" + char)
    return text.replace("±", "$\\pm$")


def render(comparison: Comparison, fmt: str) -> str:
    renderers = {"md": to_markdown, "csv": to_csv, "json": to_json, "latex": to_latex}
    if fmt not in renderers:
        raise UserError(f"unknown format {fmt!r}: choose one of {', '.join(FORMATS)}")
    return renderers[fmt](comparison)
