"""Negative transfer: does training on every scenario hurt one of them? Each model of a comparison against a
reference (typically the same or a simple model trained on each scenario alone, `dnn:individual`), per
scenario.

Per model: the AUC gain in each scenario (mean AUC over the model's seeds - the reference's) with the
architecture test of `results.significance` (its marks corrected over every (model, scenario) of the view),
the number of scenarios with a significant loss (the seesaw effect of PLE, RecSys 2020), the worst scenario's
gain, and the mean relative improvement over scenarios: 1/S sum_s (AUC_s - AUC_ref,s) / AUC_ref,s x 100%,
the multi-task measure of LibMTL (Lin & Zhang, JMLR 2023, `count_improvement`; Maninis et al., CVPR 2019).
"""

from __future__ import annotations

from dataclasses import dataclass

from mscbench.results.record import RunRecord
from mscbench.results.significance import (
    LOSS_MARK,
    MARK,
    AlignedPredictions,
    ScopeSample,
    Significance,
    scope_samples,
    table_tests,
)


@dataclass(frozen=True)
class TransferRow:
    model: str
    gains: dict[str, Significance]  # scenario -> the model against the reference (difference: the AUC gain)
    significant_losses: int  # scenarios whose AUC is significantly below the reference's
    worst_scenario: str | None  # the scenario of the smallest gain (None: no scenario has two AUCs)
    worst_gain: float | None
    mean_relative_improvement: float | None  # % over the scenarios where both have an AUC


@dataclass(frozen=True)
class Transfer:
    reference: str  # MODEL:PROTOCOL, e.g. dnn:individual
    rows: list[TransferRow]


def split_reference(reference: str) -> tuple[str, str]:
    """`dnn:individual` -> ("dnn", "individual"); a bare model name means trained per scenario."""
    model, _, protocol = reference.partition(":")
    return model, protocol or "individual"


def transfer_view(reference: str, reference_runs: list[RunRecord], by_model: dict[str, list[RunRecord]],
                  samples: dict[str, dict[str, ScopeSample]], scenarios: list[str],
                  predictions: AlignedPredictions | None, correction: str) -> Transfer:
    """Every model of `by_model` (its samples per scope in `samples`) against the reference's runs."""
    reference = ":".join(split_reference(reference))  # MODEL:PROTOCOL: never a compared model's name
    reference_samples = scope_samples(reference_runs, scenarios, predictions)
    scoped = {model: {scenario: samples[model][scenario] for scenario in scenarios} for model in by_model}
    tests = table_tests({reference: reference_runs, **by_model}, reference, {reference: reference_samples, **scoped},
                        predictions, correction)
    reference_auc = {scenario: mean(sample.values) for scenario, sample in reference_samples.items()}
    return Transfer(reference, [transfer_row(model, tests[model], reference_auc) for model in by_model])


def transfer_row(model: str, gains: dict[str, Significance], reference_auc: dict[str, float | None]) -> TransferRow:
    measured = {scenario: test.difference for scenario, test in gains.items() if test.difference is not None}
    worst = min(measured, key=measured.get) if measured else None
    relative = [measured[scenario] / reference_auc[scenario] for scenario in measured]
    return TransferRow(
        model=model, gains=gains, significant_losses=sum(test.loss for test in gains.values()),
        worst_scenario=worst, worst_gain=measured[worst] if measured else None,
        mean_relative_improvement=100 * sum(relative) / len(relative) if relative else None,
    )


def mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def gain_text(test: Significance) -> str:
    """`+0.0123*`: the AUC gain and its mark."""
    return "n/a" if test.difference is None else f"{test.difference:+.4f}{gain_mark(test)}"


def gain_mark(test: Significance) -> str:
    """`*` for a significant gain, `†` for a significant loss, nothing otherwise."""
    return MARK if test.marks else LOSS_MARK if test.loss else ""
