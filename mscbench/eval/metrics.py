"""Ranking and calibration metrics, computed per scenario and overall.

Every AUC here is the Mann-Whitney statistic with ties counted one half, computed in O(n log n): from the
sorted scores of each class (AUC), or from average ranks within users (GAUC). A set holding one class only
has no AUC: the functions return None instead of raising.
Labels are 0/1 (any non-zero value counts as a click).
"""

from __future__ import annotations

import numpy as np
import polars as pl

CLIP = 1e-7  # LogLoss clips probabilities to [CLIP, 1 - CLIP]


def is_positive(label: np.ndarray) -> np.ndarray:
    """Boolean click mask of a 0/1 label array."""
    return np.asarray(label).astype(bool)


def midranks(score: np.ndarray) -> np.ndarray:
    """Average 1-based rank of every value; tied values share the mean of the ranks they occupy."""
    # polars ranks several times faster than numpy's argsort on millions of rows
    return pl.Series(np.asarray(score)).rank("average").to_numpy()


def mann_whitney_auc(positive_rank_sum: float | np.ndarray, n_positive: int | np.ndarray,
                     n_negative: int | np.ndarray) -> float | np.ndarray:
    """AUC = (R+ - n+(n+ + 1)/2) / (n+ n-), R+ the sum of the positives' midranks (scalars or arrays).

    This equals the share of (positive, negative) pairs ordered correctly, ties counting one half.
    """
    return (positive_rank_sum - n_positive * (n_positive + 1) / 2) / (n_positive * n_negative)


def auc(label: np.ndarray, score: np.ndarray) -> float | None:
    """Area under the ROC curve (SAML eq. 9, ties counting one half); None with one class only.

    AUC = 1/(|D+||D-|) * sum over (x+, x-) of [I(f(x+) > f(x-)) + 1/2 I(f(x+) = f(x-))].
    """
    positive, score = is_positive(label), np.asarray(score)
    positives, negatives = np.sort(score[positive]), np.sort(score[~positive])
    if not len(positives) or not len(negatives):
        return None
    # each positive beats the negatives below it and ties those equal to it: 2U = Σ (#below + #at or below),
    # exact in integers; two sorts of one class each cost a fraction of ranking every row
    twice_u = int(np.searchsorted(negatives, positives, "left").sum() + np.searchsorted(negatives, positives,
                                                                                         "right").sum())
    return twice_u / (2 * len(positives) * len(negatives))  # Python ints: one correctly rounded division


def gauc(label: np.ndarray, score: np.ndarray, user: np.ndarray) -> float | None:
    """Impression-weighted mean of per-user AUC: GAUC = sum_u w_u AUC_u / sum_u w_u.

    w_u is user u's number of impressions; users whose impressions hold one class only are left out of
    both sums. None when no user has both classes.
    """
    frame = pl.DataFrame({"user": np.asarray(user), "positive": is_positive(label),
                          "score": np.asarray(score)})
    per_user = frame.group_by("user", maintain_order=True).agg(  # fixed order: reproducible sums
        rows=pl.len(),
        positives=pl.col("positive").sum(),
        # rank inside the aggregation ranks within each user's impressions
        rank_sum=pl.col("score").rank("average").filter(pl.col("positive")).sum(),
    ).filter((pl.col("positives") > 0) & (pl.col("positives") < pl.col("rows")))
    if per_user.height == 0:
        return None
    rows, positives, rank_sum = (per_user[name].to_numpy().astype(np.float64)
                                 for name in ("rows", "positives", "rank_sum"))
    user_auc = mann_whitney_auc(rank_sum, positives, rows - positives)
    return float(np.average(user_auc, weights=rows))


def logloss(label: np.ndarray, prob: np.ndarray) -> float:
    """Mean binary cross-entropy: -1/n sum_i [y_i log p_i + (1 - y_i) log(1 - p_i)],
    with p clipped to [1e-7, 1 - 1e-7] so that a confident mistake costs a finite amount."""
    p = np.clip(np.asarray(prob, dtype=np.float64), CLIP, 1 - CLIP)
    return float(-np.mean(np.where(is_positive(label), np.log(p), np.log1p(-p))))


def auc_lift(auc_model: float | None, auc_reference: float | None) -> float | None:
    """(AUC_model - 0.5) / (AUC_reference - 0.5): how far above chance the model is, against the reference."""
    if auc_model is None or auc_reference is None or auc_reference == 0.5:
        return None
    return (auc_model - 0.5) / (auc_reference - 0.5)


def rela_impr(auc_model: float | None, auc_base: float | None) -> float | None:
    """RelaImpr (SAML eq. 10) in percent: ((AUC_model - 0.5) / (AUC_base - 0.5) - 1) x 100."""
    lift = auc_lift(auc_model, auc_base)
    return None if lift is None else (lift - 1) * 100
