"""Is a model's AUC above the base's for real? The tests of `mscbench.eval.significance`, run per scope
(overall and each scenario) on stored runs, for the comparison table.

- The architecture test behind every mark: Welch's t-test over each model's per-seed AUCs, with DeLong's
  variance of the difference of the seed-averaged AUCs on the shared test rows added when the runs' test
  predictions are stored (`eval.significance.seed_test`). It needs two seeds per model.
- The marks of one table are corrected together for the number of tests the table makes (Benjamini-Hochberg
  by default; Holm or none on request).
- DeLong's test on the test predictions of one seed (the smallest both models share): it says "these two
  trained models differ", not "this architecture is better", so it is exported but never marked.
- On request, a 95% percentile bootstrap interval of each model's AUC on its smallest seed.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np

from mscbench.errors import UserError
from mscbench.eval.significance import (
    CORRECTIONS,
    Placements,
    SeedTest,
    adjusted_p_values,
    averaged,
    bootstrap_auc_ci,
    delong_test,
    difference_variance,
    scoring_placements,
    seed_test,
)
from mscbench.results.record import OVERALL, RunRecord

ALPHA = 0.05  # a difference whose adjusted p is below this is marked
BOOTSTRAP_ROUNDS = 1000  # resamples per bootstrap interval
MARK = "*"  # significantly above the base
LOSS_MARK = "†"  # significantly below the reference (the transfer view only)

PredictionsOf = Callable[[RunRecord], dict[str, np.ndarray]]  # run record -> its stored test predictions


@dataclass(frozen=True)
class Significance:
    """One model against the base on one scope; every p-value is two-sided, None where it cannot be had."""

    difference: float | None  # mean AUC over the model's seeds - mean AUC over the base's seeds
    ci_low: float | None  # 95% interval of that difference (not adjusted for the table's other tests)
    ci_high: float | None
    p_value: float | None  # the architecture test, raw; None with fewer than two seeds on either side
    adjusted_p: float | None  # after the table's correction: what the mark follows
    seeds: int  # seeds with an AUC in this scope, model and base
    base_seeds: int
    delong_seed: int | None  # the seed whose test predictions DeLong compared ("these trained models differ")
    delong_difference: float | None  # AUC(model) - AUC(base) on that seed
    delong_p: float | None

    @property
    def marks(self) -> str:
        """`*` where the model's mean AUC is above the base's and the corrected test says so."""
        return MARK if improves(self.difference, self.adjusted_p) else ""

    @property
    def loss(self) -> bool:
        """Whether the model's mean AUC is significantly below the base's (corrected)."""
        return improves(None if self.difference is None else -self.difference, self.adjusted_p)


def improves(difference: float | None, p_value: float | None) -> bool:
    return difference is not None and p_value is not None and difference > 0 and p_value < ALPHA


def check_correction(correction: str) -> str:
    if correction not in CORRECTIONS:
        raise UserError(f"unknown correction {correction!r}: choose one of {', '.join(CORRECTIONS)}")
    return correction


def corrected(p_values: dict, correction: str) -> dict:
    """The adjusted p-value of each key, the tests made (p not None) corrected together."""
    made = {key: p for key, p in p_values.items() if p is not None}
    return dict(zip(made, adjusted_p_values(list(made.values()), correction)))


@dataclass(frozen=True)
class ScopeSample:
    """One model's runs in one column of the table: the figure of each seed that has one (higher is better)
    and, for an AUC, the placements of the scope's test rows averaged over those seeds (None without stored
    predictions, or with one class in the scope)."""

    values: list[float]
    placements: Placements | None


def architecture_test(model: ScopeSample, base: ScopeSample) -> SeedTest | None:
    test_variance = (0.0 if model.placements is None or base.placements is None
                     else difference_variance(model.placements, base.placements))
    return seed_test(model.values, base.values, test_variance)


class AlignedPredictions:
    """Loads each run's test predictions once and refuses runs that were not evaluated on the same rows."""

    def __init__(self, predictions_of: PredictionsOf, scenarios: list[str]):
        self.predictions_of = predictions_of
        self.scenarios = scenarios
        self.loaded: dict[str, dict[str, np.ndarray]] = {}
        self.reference: tuple[str, dict[str, np.ndarray]] | None = None
        self.placed: dict[tuple[str, str], Placements | None] = {}
        self.scope_rows: dict[str, np.ndarray] | None = None  # `masks`: the same for every aligned run

    def __call__(self, record: RunRecord) -> dict[str, np.ndarray]:
        run_id = record.run_id
        if run_id not in self.loaded:
            self.loaded[run_id] = self.checked(run_id, self.predictions_of(record))
        return self.loaded[run_id]

    def checked(self, run_id: str, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if self.reference is None:
            self.reference = run_id, arrays
            return arrays
        other, reference = self.reference
        for key in ("label", "scenario"):
            if not np.array_equal(arrays[key], reference[key]):
                raise UserError(f"runs {other} and {run_id} were not evaluated on the same test rows (their "
                                f"stored {key}s differ): rerun them on one prepared dataset with --rerun")
        return arrays

    def masks(self) -> dict[str, np.ndarray]:
        """Each scope's rows in the aligned test set, built once (call after loading at least one run)."""
        if self.scope_rows is None:
            scenario = self.reference[1]["scenario"]
            self.scope_rows = {OVERALL: np.ones(len(scenario), dtype=bool),
                               **{name: scenario == index for index, name in enumerate(self.scenarios)}}
        return self.scope_rows

    def placements(self, record: RunRecord, scope: str) -> Placements | None:
        """DeLong's placements of the run's test predictions in the scope, computed once per run and scope."""
        key = record.run_id, scope
        if key not in self.placed:
            arrays = self(record)
            rows = self.masks()[scope]
            self.placed[key] = scoring_placements(arrays["label"][rows], arrays["prob"][rows])
        return self.placed[key]


def scope_samples(runs: list[RunRecord], scopes: list[str], predictions: AlignedPredictions | None
                  ) -> dict[str, ScopeSample]:
    """Each scope's sample of one model's runs."""
    samples = {}
    for scope in scopes:
        present = [r for r in runs if finite(auc_of(r, scope))]
        placements = [predictions.placements(r, scope) for r in present] if predictions else []
        samples[scope] = ScopeSample([auc_of(r, scope) for r in present],
                                     averaged(placements) if placements and None not in placements else None)
    return samples


def table_tests(by_model: dict[str, list[RunRecord]], base: str, samples: dict[str, dict[str, ScopeSample]],
                predictions: AlignedPredictions | None, correction: str) -> dict[str, dict[str, Significance]]:
    """Every model but the base against the base in every scope, the table's tests corrected together."""
    tests = {model: against_base(runs, by_model[base], samples[model], samples[base], predictions)
             for model, runs in by_model.items() if model != base}
    adjusted = corrected({(model, scope): test.p_value for model, scopes in tests.items()
                          for scope, test in scopes.items()}, correction)
    return {model: {scope: replace(test, adjusted_p=adjusted.get((model, scope))) for scope, test in scopes.items()}
            for model, scopes in tests.items()}


def leaders(samples: dict[str, ScopeSample], correction: str) -> list[str]:
    """The models in bold in one column: the best mean and every model not significantly below it (the
    column's tests corrected together), among the models with two seeds or more; none when fewer than two
    such models: a best mean alone says nothing about architectures."""
    means = {model: float(np.mean(sample.values)) for model, sample in samples.items() if len(sample.values) > 1}
    if len(means) < 2:
        return []
    best = max(means, key=means.get)
    adjusted = corrected({model: architecture_test(samples[best], samples[model]).p_value
                          for model in means if model != best}, correction)
    return [model for model in means if model == best or adjusted[model] >= ALPHA]


def against_base(runs: list[RunRecord], base_runs: list[RunRecord], samples: dict[str, ScopeSample],
                 base_samples: dict[str, ScopeSample], predictions: AlignedPredictions | None
                 ) -> dict[str, Significance]:
    """Every scope's tests of `runs` (one model, one run per seed) against the base model's runs, unadjusted
    (`with_adjusted` fills in the table's correction)."""
    shared_seeds = sorted({r.seed for r in runs} & {r.seed for r in base_runs})
    significance = {}
    for scope, sample in samples.items():
        test = architecture_test(sample, base_samples[scope])
        delong = None
        if predictions is not None and shared_seeds:
            seed = shared_seeds[0]
            model_placements = predictions.placements(run_of(runs, seed), scope)
            base_placements = predictions.placements(run_of(base_runs, seed), scope)
            if model_placements is not None and base_placements is not None:
                delong = delong_test(model_placements, base_placements)
        significance[scope] = Significance(
            difference=float(np.mean(sample.values) - np.mean(base_samples[scope].values))
            if sample.values and base_samples[scope].values else None,
            ci_low=test.ci_low if test else None, ci_high=test.ci_high if test else None,
            p_value=test.p_value if test else None, adjusted_p=None,
            seeds=len(sample.values), base_seeds=len(base_samples[scope].values),
            delong_seed=shared_seeds[0] if delong else None,
            delong_difference=delong.difference if delong else None, delong_p=delong.p_value if delong else None,
        )
    return significance


def bootstrap_intervals(runs: list[RunRecord], scopes: list[str], predictions: AlignedPredictions, rounds: int,
                        done: Callable[[], None] = lambda: None) -> dict[str, list[float] | None]:
    """95% bootstrap interval of the AUC of the model's smallest seed, per scope (None: one class only);
    `done` is called after each scope's (a progress bar's step)."""
    arrays = predictions(run_of(runs, min(r.seed for r in runs)))
    masks = predictions.masks()
    intervals = {}
    for scope in scopes:
        interval = bootstrap_auc_ci(arrays["label"][masks[scope]], arrays["prob"][masks[scope]], rounds)
        intervals[scope] = None if interval is None else list(interval)
        done()
    return intervals


def run_of(runs: list[RunRecord], seed: int) -> RunRecord:
    return next(r for r in runs if r.seed == seed)


def auc_of(record: RunRecord, scope: str) -> float | None:
    return record.scope(scope).auc


def finite(value: float | None) -> bool:
    """A figure that exists: not None (a one-class scenario) and not NaN (a diverged run)."""
    return value is not None and math.isfinite(value)
