"""Figures of a comparison as PNG files and one self-contained HTML report (matplotlib, an optional extra).

- AUC per scenario and overall, one bar per model, error bars = std over seeds (the oracle as a tick);
- training curves from each run's `history.jsonl`;
- heatmaps of each model's extras (averaged per scenario by the trainer; key -> [N_scenarios, ...]):
  [N] and [N, k] as they are (SAML's gate per mutual layer, MMoE's expert gates), SAML's similarity
  `alpha` [N, L, N] as one scenario x scenario map per layer, anything else of higher rank as the cosine
  similarity between scenarios of the flattened values after removing their mean over scenarios (MI-DPG's
  weighting matrices: what they share would otherwise put every similarity near 1).
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mscbench.errors import UserError
from mscbench.results import html
from mscbench.results.record import RunRecord
from mscbench.results.report import Comparison, layout, title

REPORT_FILE = "report.html"
# Extras that already relate scenarios, [N, layers, N]; chosen by name since a shape can match by chance
SCENARIO_MAPS = ("alpha",)  # SAML's mutual unit: similarity of each scenario's branch to the others


@dataclass(frozen=True)
class Figure:
    name: str  # file stem
    title: str
    png: bytes


@dataclass(frozen=True)
class Heatmap:
    title: str
    values: np.ndarray  # [rows, columns]
    rows: list[str]
    columns: list[str]


def pyplot():
    """matplotlib's pyplot on the Agg backend (no display needed), or one clear error if it is missing."""
    try:
        import matplotlib
    except ImportError:
        raise UserError("plots need matplotlib: pip install 'mscbench[plots]'") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def png_of(figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    pyplot().close(figure)
    return buffer.getvalue()


def scenario_auc_figure(comparison: Comparison) -> Figure:
    plt = pyplot()
    scopes = comparison.scopes
    width = 0.8 / len(comparison.rows)
    figure, axes = plt.subplots(figsize=(max(6.0, 1.4 * len(scopes)), 4))
    positions = np.arange(len(scopes))
    for i, row in enumerate(comparison.rows):
        cells = [row.scope_auc(scope) for scope in scopes]
        means = np.array([np.nan if c.mean is None else c.mean for c in cells])
        errors = np.array([np.nan if c.std is None else c.std for c in cells])
        axes.bar(positions + (i - (len(comparison.rows) - 1) / 2) * width, means - 0.5, width, bottom=0.5,
                 yerr=errors, capsize=3, label=row.model)
    if comparison.oracle_auc:
        axes.scatter(positions, [comparison.oracle_auc[scope] for scope in scopes], marker="_", s=600,
                     color="black", label="oracle", zorder=3)
    axes.set_xticks(positions, [f"{scope}\n(n={comparison.test_rows[scope]:,})" for scope in scopes])
    axes.set_ylabel("test AUC (bars start at 0.5)")
    axes.set_title("AUC per scenario: mean ± std over seeds")
    axes.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return Figure("scenario_auc", "AUC per scenario and model (error bars: std over seeds)", png_of(figure))


def training_curves_figure(records: list[RunRecord], histories: dict[str, list[dict]]) -> Figure:
    """Training loss and validation AUC per epoch: one line per run (and per scenario when trained apart)."""
    plt = pyplot()
    figure, (loss_axes, auc_axes) = plt.subplots(1, 2, figsize=(11, 4))
    colors = {model: f"C{i}" for i, model in enumerate(dict.fromkeys(r.model for r in records))}
    labelled, epochs_seen = set(), set()
    for record in records:
        history = histories.get(record.run_id, [])
        for scenario in dict.fromkeys(row.get("scenario", "all") for row in history):
            rows = [row for row in history if row.get("scenario", "all") == scenario]
            epochs = [row["epoch"] for row in rows]
            epochs_seen.update(epochs)
            label = None if record.model in labelled else record.model
            labelled.add(record.model)
            color = colors[record.model]
            loss_axes.plot(epochs, [row["train_loss"] for row in rows], color=color, marker="o", label=label)
            auc_axes.plot(epochs, [np.nan if row["valid_auc"] is None else row["valid_auc"] for row in rows],
                          color=color, marker="o", label=label)
    for axes, name in ((loss_axes, "training loss"), (auc_axes, "validation AUC")):
        axes.set_xlabel("epoch")
        axes.set_xticks(sorted(epochs_seen))
        axes.set_ylabel(name)
        axes.legend(fontsize="small")
    figure.suptitle("Training curves (one line per seed)")
    return Figure("training_curves", "Training loss and validation AUC per epoch", png_of(figure))


def heatmaps(key: str, value: list, scenarios: list[str]) -> list[Heatmap]:
    """How one extra is drawn, by its shape [N_scenarios, ...] (see the module docstring)."""
    values = np.asarray(value, dtype=np.float64)
    n = len(scenarios)
    if values.ndim == 1:
        return [Heatmap(key, values[:, None], scenarios, ["mean"])]
    if values.ndim == 2:
        return [Heatmap(key, values, scenarios, [str(j) for j in range(values.shape[1])])]
    if key in SCENARIO_MAPS and values.ndim == 3:
        return [Heatmap(f"{key}, layer {layer}", values[:, layer], scenarios, scenarios)
                for layer in range(values.shape[1])]
    deviation = values.reshape(n, -1) - values.reshape(n, -1).mean(axis=0)
    unit = deviation / np.maximum(np.linalg.norm(deviation, axis=1, keepdims=True), 1e-12)
    return [Heatmap(f"{key}: similarity between scenarios\n(cosine of deviations from their mean)",
                    unit @ unit.T, scenarios, scenarios)]


def extras_figure(record: RunRecord, scenarios: list[str]) -> Figure | None:
    """Every extra of one run as heatmaps, or None when the model exposes none."""
    maps = [m for key, value in sorted(record.extras.items()) for m in heatmaps(key, value, scenarios)]
    if not maps:
        return None
    plt = pyplot()
    figure, axes_list = plt.subplots(1, len(maps), figsize=(4.5 * len(maps), 4), squeeze=False)
    for axes, heatmap in zip(axes_list[0], maps):
        draw_heatmap(figure, axes, heatmap)
    title = f"{record.model} (seed {record.seed}): learned scenario relations"
    figure.suptitle(title, y=1.08)
    return Figure(f"extras_{record.model}", title, png_of(figure))


def draw_heatmap(figure, axes, heatmap: Heatmap) -> None:
    image = axes.imshow(heatmap.values, cmap="viridis", aspect="auto")
    figure.colorbar(image, ax=axes, shrink=0.8)
    axes.set_title(heatmap.title, fontsize="small")
    axes.set_yticks(range(len(heatmap.rows)), heatmap.rows)
    step = max(1, len(heatmap.columns) // 12)  # at most a dozen labels on a wide map
    axes.set_xticks(range(0, len(heatmap.columns), step), heatmap.columns[::step])
    if heatmap.values.size <= 100:  # small maps carry their numbers, dark on the light end of the scale
        middle = (np.nanmin(heatmap.values) + np.nanmax(heatmap.values)) / 2
        for (i, j), value in np.ndenumerate(heatmap.values):
            axes.text(j, i, f"{value:.2f}", ha="center", va="center", fontsize=7,
                      color="black" if value > middle else "white")


def figures(comparison: Comparison, records: list[RunRecord], histories: dict[str, list[dict]]) -> list[Figure]:
    """The AUC bars, the training curves and, per model that has extras, its smallest seed's heatmaps."""
    first_runs = {}
    for record in sorted(records, key=lambda r: r.seed):
        first_runs.setdefault(record.model, record)
    extras = [extras_figure(record, comparison.scenarios) for record in first_runs.values()]
    return [scenario_auc_figure(comparison), training_curves_figure(records, histories),
            *[figure for figure in extras if figure is not None]]


def write_report(comparison: Comparison, records: list[RunRecord], histories: dict[str, list[dict]],
                 directory: Path) -> list[Path]:
    """One PNG per figure and `report.html` holding both tables and every figure; returns the paths."""
    drawn = figures(comparison, records, histories)
    directory = Path(directory)
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UserError(f"cannot write plots to {directory} ({error.strerror or error}): pass another directory")
    paths = []
    for figure in drawn:
        path = directory / f"{figure.name}.png"
        path.write_bytes(figure.png)
        paths.append(path)
    tables = [layout(comparison, by) for by in ("model", "scenario")]
    sections = [html.heading("Results"),
                *[html.table(t.header, t.rows, t.bold, t.caption) for t in tables],
                html.heading("Figures"), *[html.image(figure.png, figure.title) for figure in drawn]]
    report = directory / REPORT_FILE
    report.write_text(html.page(title(comparison), sections))
    return [*paths, report]
