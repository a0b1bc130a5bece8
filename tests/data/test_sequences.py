"""The bounded-memory building blocks: bucketed behaviour sequences and streamed quantiles."""

from __future__ import annotations

import random

import polars as pl
import pytest

from mscbench.data import sequences
from mscbench.data.card import QUANTILE_VALUE, streamed_quantiles
from mscbench.data.sequences import History, with_histories

ROWS = [  # user, time, item: ties at one time, a missing item, a missing time, a user with one row
    ("u1", 5, "c"), ("u2", 1, "a"), ("u1", 1, "a"), ("u1", 3, "b"), ("u1", 3, "a"), ("u3", 2, "z"),
    ("u1", 7, None), ("u2", 4, "b"), ("u1", 9, "d"), ("u2", None, "c"), ("u1", 9, "e"), ("u2", 6, "a"),
]


def direct_history(user: str, time: int | None, max_len: int) -> list[str]:
    """The user's last `max_len` items strictly before `time`, in time order (ties: by item)."""
    if time is None:
        return []
    earlier = sorted((t, item) for u, t, item in ROWS if u == user and t is not None and t < time and item)
    return [item for _, item in earlier][-max_len:]


@pytest.mark.parametrize("buckets", [1, 3])
def test_bucketed_sequences_equal_a_direct_build_and_keep_the_row_order(tmp_path, monkeypatch, buckets):
    monkeypatch.setattr(sequences, "PIECE_ROWS", 4)  # several pieces to put back in order
    monkeypatch.setattr(sequences, "GATHER_ROWS", 2)  # several slices per bucket
    frame = pl.DataFrame(ROWS, schema={"user": pl.String, "t": pl.Int64, "item": pl.String}, orient="row")
    history = History(frame.lazy().drop_nulls(), {"hist": "item"}, max_len=3, gap="gap")
    built = with_histories(frame.lazy(), [history], "user", "t", tmp_path, buckets, print).collect()
    assert built.select("user", "t", "item").equals(frame)
    assert built["hist"].to_list() == [direct_history(user, time, 3) for user, time, _ in ROWS]
    assert built.row(8, named=True)["gap"] == [9 - 3, 9 - 3, 9 - 5]  # u1 at 9: a, b (at 3), c (5); none at 7


def test_streamed_quantiles_equal_polars_quantiles():
    generator = random.Random(0)
    fractions = [0.0, 0.1, 0.5, 0.81, 0.99, 1.0]
    for size in (1, 2, 7, 5000):
        values = [generator.choice([generator.randint(-10**6, 10**10), 5, 5]) for _ in range(size)]
        expected = [pl.Series(values).quantile(fraction, "higher") for fraction in fractions]
        assert streamed_quantiles(pl.LazyFrame({QUANTILE_VALUE: values}), fractions) == expected
    assert streamed_quantiles(pl.LazyFrame(schema={QUANTILE_VALUE: pl.Int64}), [0.5]) == [None]
