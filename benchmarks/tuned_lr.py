"""Tuned `lr` against a converged one-hot logistic regression (scikit-learn) on the same prepared split.

    .venv/bin/python -m benchmarks.tuned_lr [--raw-dir ../shared/data/movielens-ml-latest-small] [--trials 20]

Both see the same features: every sparse id one-hot, the scenario id one-hot, the dense values. scikit-learn's
model is fitted to convergence (lbfgs) with its L2 strength C chosen on the validation split; mscbench's `lr`
is tuned by `mscbench tune` (lr, weight decay, batch size on validation AUC, up to 20 epochs with early
stopping) and its best setting is then evaluated on the test split. Prints both test AUCs.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import scipy.sparse
from sklearn.linear_model import LogisticRegression

from mscbench.data.loader import SplitData, load_split
from mscbench.data.manifest import read_manifest
from mscbench.data.prepare import find_prepared
from mscbench.data.sources import prepare_source
from mscbench.eval.metrics import auc
from mscbench.experiment.execution import get_or_run
from mscbench.experiment.planning import plan_run
from mscbench.experiment.tune import best_settings, plan_study, run_study
from mscbench.results.store import RunStore

RAW = Path(__file__).resolve().parents[2] / "shared" / "data" / "movielens-ml-latest-small"
C_GRID = (0.03, 0.1, 0.3, 1.0, 3.0)


def one_hot(data: SplitData, widths: list[int]) -> scipy.sparse.csr_matrix:
    """Each sparse field and the scenario id one-hot (ids are vocabulary positions), then the dense values."""
    columns = np.hstack([data.sparse.numpy(), data.scenario.numpy()[:, None]])
    offsets = np.cumsum([0, *widths[:-1]])
    rows = np.repeat(np.arange(len(data)), columns.shape[1])
    ids = scipy.sparse.csr_matrix((np.ones(rows.size), (rows, (columns + offsets).ravel())),
                                  shape=(len(data), sum(widths)))
    return scipy.sparse.hstack([ids, scipy.sparse.csr_matrix(data.dense.numpy())]).tocsr()


def sklearn_auc(path: Path) -> tuple[float, float]:
    """(best C, test AUC) of the one-hot logistic regression, C chosen on validation AUC."""
    manifest = read_manifest(path)
    widths = [f.vocab_size for f in manifest.sparse] + [manifest.num_scenarios]
    splits = {s: load_split(path, manifest, s) for s in ("train", "valid", "test")}
    x = {s: one_hot(d, widths) for s, d in splits.items()}
    y = {s: d.label.numpy() for s, d in splits.items()}
    fitted = {c: LogisticRegression(C=c, max_iter=5000).fit(x["train"], y["train"]) for c in C_GRID}
    best = max(C_GRID, key=lambda c: auc(y["valid"], fitted[c].predict_proba(x["valid"])[:, 1]))
    return best, auc(y["test"], fitted[best].predict_proba(x["test"])[:, 1])


def tuned_lr_auc(data_dir: Path, runs_dir: Path, trials: int) -> tuple[dict, float, float]:
    """(best setting, its validation AUC, its test AUC) of mscbench's `lr` after `trials` trials."""
    plan = plan_study("lr", "movielens-small", data_dir, runs_dir, {"epochs": 20, "patience": 2, "threads": 1},
                      trials=trials)
    result = run_study(plan)
    model_values, train_values = best_settings(plan, result)
    record = get_or_run(plan_run("movielens-small", "lr", data_dir, model_values, train_values), RunStore(runs_dir))
    return result.best.settings, result.best.value, record.metrics.overall.auc


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--raw-dir", type=Path, default=RAW)
    parser.add_argument("--trials", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        data_dir, runs_dir = Path(scratch) / "data", Path(scratch) / "runs"
        prepare_source("movielens-small", args.raw_dir, data_dir)
        c, reference = sklearn_auc(find_prepared(data_dir, "movielens-small"))
        settings, valid, test = tuned_lr_auc(data_dir, runs_dir, args.trials)
    print(f"scikit-learn LogisticRegression (one-hot, lbfgs to convergence, C={c} chosen on validation): "
          f"test AUC {reference:.4f}")
    print(f"mscbench lr tuned with {args.trials} trials ({settings}): valid AUC {valid:.4f}, test AUC {test:.4f}")


if __name__ == "__main__":
    main()
