"""Per-scenario evaluation through one metric registry.

Every metric a run stores, the comparison tables print and the exports carry is one `Metric` in `METRICS`:
its name (the key in metrics.json and the exports), how it is computed from a scope's test rows, whether
higher is better (which value is bold) and its column title. Adding a metric is adding one entry; runs
stored before it show "n/a" for it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from mscbench.eval.metrics import auc, auc_lift, gauc, logloss


@dataclass
class Rows:
    """The test rows of one scope (all of them, or one scenario's): what every metric is computed from."""

    label: np.ndarray  # [N] 0/1
    prob: np.ndarray  # [N] predicted click probability
    user: np.ndarray | None  # [N] user ids, where the data has users
    oracle: np.ndarray | None  # [N] true click probability, where the data has it (synthetic)

    @cached_property
    def auc(self) -> float | None:
        return auc(self.label, self.prob)

    @cached_property
    def oracle_auc(self) -> float | None:
        return None if self.oracle is None else auc(self.label, self.oracle)


@dataclass(frozen=True)
class Metric:
    name: str  # key in metrics.json and in the exports
    label: str  # column title
    compute: Callable[[Rows], float | None]  # None where the metric is undefined on these rows
    higher_is_better: bool
    digits: int = 4  # decimals in the tables
    per_scenario: bool = True  # also exported per scenario (not only overall)
    optional: bool = False  # a column only where some run has a value, after RelaImpr
    of_oracle: float | None = None  # the true click probability's own value, where known by definition


METRICS: list[Metric] = [
    Metric("auc", "AUC", lambda rows: rows.auc, higher_is_better=True),
    Metric("gauc", "GAUC", lambda rows: None if rows.user is None else gauc(rows.label, rows.prob, rows.user),
           higher_is_better=True, per_scenario=False),
    Metric("logloss", "LogLoss", lambda rows: logloss(rows.label, rows.prob) if len(rows.label) else None,
           higher_is_better=False),
    # the share of the true probability's lift over chance that the model reaches: (AUC - 0.5) / (oracle - 0.5)
    Metric("gap_closed", "Share of oracle lift", lambda rows: auc_lift(rows.auc, rows.oracle_auc),
           higher_is_better=True, digits=3, per_scenario=False, optional=True, of_oracle=1.0),
]


@dataclass(frozen=True)
class ScopeMetrics:
    """One scope's test rows, positives, the oracle's AUC (None without ground truth) and every metric."""

    rows: int
    positives: int
    oracle_auc: float | None
    values: dict[str, float | None]  # metric name -> value; a metric registered after the run: absent

    @property
    def auc(self) -> float | None:
        return self.values.get("auc")

    def value(self, name: str) -> float | None:
        return self.values.get(name)


@dataclass(frozen=True)
class Evaluation:
    overall: ScopeMetrics
    scenarios: dict[str, ScopeMetrics]  # every scenario's name, in the manifest's order


def summarize(rows: Rows) -> ScopeMetrics:
    return ScopeMetrics(rows=len(rows.label), positives=int(np.count_nonzero(rows.label)),
                        oracle_auc=rows.oracle_auc, values={m.name: m.compute(rows) for m in METRICS})


def evaluate_predictions(label: np.ndarray, prob: np.ndarray, scenario: np.ndarray, scenario_names: list[str],
                         user: np.ndarray | None = None, oracle: np.ndarray | None = None) -> Evaluation:
    """Every metric overall and per scenario. `scenario` holds integer ids indexing `scenario_names`; a
    scenario without rows still gets an entry."""
    scenario = np.asarray(scenario)
    if len(scenario) and scenario.max() >= len(scenario_names):
        raise ValueError(f"scenario id {scenario.max()} has no name (names: {list(scenario_names)})")
    # one stable sort splits every column by scenario, instead of one full mask per scenario
    order = np.argsort(scenario, kind="stable")
    rows_of = np.split(order, np.cumsum(np.bincount(scenario, minlength=len(scenario_names)))[:-1])
    columns = {name: None if values is None else np.asarray(values)
               for name, values in {"label": label, "prob": prob, "user": user, "oracle": oracle}.items()}

    def metrics(rows: np.ndarray | slice) -> ScopeMetrics:
        return summarize(Rows(**{name: None if values is None else values[rows] for name, values in columns.items()}))

    return Evaluation(overall=metrics(slice(None)),
                      scenarios={name: metrics(rows) for name, rows in zip(scenario_names, rows_of)})
