"""Is a model's AUC above the base's for real? The tests of `mscbench.eval.significance`, run per scope
(overall and each scenario) on stored runs, for the comparison table.

- DeLong's test on the test predictions of one seed: the smallest seed both models were run with.
- A paired t-test over the seeds both models were run with (the AUC of each seed is one pair).
- On request, a 95% percentile bootstrap interval of each model's AUC on its smallest seed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from mscbench.errors import UserError
from mscbench.eval.significance import bootstrap_auc_ci, delong, paired_test
from mscbench.results.record import OVERALL, RunRecord

ALPHA = 0.05  # a difference with p below this is marked
BOOTSTRAP_ROUNDS = 1000  # resamples per bootstrap interval
DELONG_MARK, PAIRED_MARK = "*", "†"

PredictionsOf = Callable[[RunRecord], dict[str, np.ndarray]]  # run record -> its stored test predictions


@dataclass(frozen=True)
class Significance:
    """One model against the base on one scope; every p-value is two-sided, None where it cannot be had."""

    delong_seed: int | None  # the seed whose test predictions DeLong compared
    delong_difference: float | None  # AUC(model) - AUC(base) on that seed
    delong_p: float | None
    paired_seeds: int  # seeds both models were run with
    paired_difference: float | None  # mean over those seeds of AUC(model) - AUC(base)
    paired_p: float | None  # None with fewer than two seeds

    @property
    def marks(self) -> str:
        """`*` for a significant improvement by DeLong, `†` by the paired t-test (a worse AUC is not marked)."""
        return ((DELONG_MARK if improves(self.delong_difference, self.delong_p) else "")
                + (PAIRED_MARK if improves(self.paired_difference, self.paired_p) else ""))


def improves(difference: float | None, p_value: float | None) -> bool:
    return difference is not None and p_value is not None and difference > 0 and p_value < ALPHA


class AlignedPredictions:
    """Loads each run's test predictions once and refuses runs that were not evaluated on the same rows."""

    def __init__(self, predictions_of: PredictionsOf, scenarios: list[str]):
        self.predictions_of = predictions_of
        self.scenarios = scenarios
        self.loaded: dict[str, dict[str, np.ndarray]] = {}
        self.reference: tuple[str, dict[str, np.ndarray]] | None = None

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
        """Each scope's rows in the aligned test set (call after loading at least one run)."""
        scenario = self.reference[1]["scenario"]
        return {OVERALL: np.ones(len(scenario), dtype=bool),
                **{name: scenario == index for index, name in enumerate(self.scenarios)}}


def against_base(runs: list[RunRecord], base_runs: list[RunRecord], scopes: list[str],
                 predictions: AlignedPredictions | None) -> dict[str, Significance]:
    """Every scope's tests of `runs` (one model, one run per seed) against the base model's runs."""
    seeds = sorted({r.seed for r in runs} & {r.seed for r in base_runs})
    delong_results = ({} if predictions is None or not seeds
                      else delong_by_scope(run_of(runs, seeds[0]), run_of(base_runs, seeds[0]), predictions))
    significance = {}
    for scope in scopes:
        pairs = [(auc_of(run_of(runs, s), scope), auc_of(run_of(base_runs, s), scope)) for s in seeds]
        pairs = [pair for pair in pairs if None not in pair]  # a one-class scenario has no AUC to pair
        paired = paired_test([a for a, _ in pairs], [b for _, b in pairs])
        result = delong_results.get(scope)
        significance[scope] = Significance(
            delong_seed=seeds[0] if result else None,
            delong_difference=result.difference if result else None,
            delong_p=result.p_value if result else None,
            paired_seeds=paired.n, paired_difference=paired.mean_difference, paired_p=paired.p_value,
        )
    return significance


def delong_by_scope(run: RunRecord, base_run: RunRecord, predictions: AlignedPredictions) -> dict:
    model, base = predictions(run), predictions(base_run)
    results = {scope: delong(model["label"][rows], model["prob"][rows], base["prob"][rows])
               for scope, rows in predictions.masks().items()}
    return {scope: result for scope, result in results.items() if result is not None}


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
