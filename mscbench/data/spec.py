"""What the generic preparer needs to know about a raw impression log: the typed dataset spec.

A raw log is one polars frame, one row per impression, already joined. The spec names its columns by
role; a dataset card (TOML) or a built-in source maps onto it, and `prepare.prepare` turns the two into
a prepared dataset.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import polars as pl

SIDES = ("user", "item", "context")
SPLIT_COLUMN = "__split"  # the split of each raw row while preparing; never written
HASH_BUCKETS = 1 << 20  # resolution of the random split's draw


@dataclass(frozen=True)
class SparseColumn:
    """A categorical column, encoded with a vocabulary built from the training split."""

    name: str
    side: str = "context"  # "user", "item" or "context": which entity the column describes

    def __post_init__(self) -> None:
        if self.side not in SIDES:
            raise ValueError(f"sparse column {self.name!r}: side {self.side!r} is not one of {SIDES}")


@dataclass(frozen=True)
class SequenceColumn:
    """A list column of raw ids (most recent last, strictly before the impression).

    It shares the vocabulary and embedding table of the sparse column `target` (the vocabulary is built
    from the union of both columns' training values); only the last `max_len` entries are kept. Without a
    target (e.g. the behaviour types pv/cart/fav/buy) it has its own vocabulary and table.
    """

    name: str
    target: str | None
    max_len: int

    @property
    def table(self) -> str:
        """The vocabulary and embedding table the sequence's ids come from."""
        return self.target or self.name


class Split(Protocol):
    """Assigns each raw row to "train", "valid" or "test" (or null: the row is left out)."""

    def assign(self) -> pl.Expr: ...

    def columns(self) -> tuple[str, ...]: ...

    def describe(self) -> dict[str, object]: ...


@dataclass(frozen=True)
class TimeSplit:
    """Rows before `valid_from` train; from `valid_from` to before `test_from` validate; the rest test.

    The validation slice is the end of the training time, used for early stopping only.
    """

    column: str
    valid_from: int | float
    test_from: int | float

    def assign(self) -> pl.Expr:
        time = pl.col(self.column)
        return (pl.when(time >= self.test_from).then(pl.lit("test"))
                .when(time >= self.valid_from).then(pl.lit("valid"))
                .when(time.is_not_null()).then(pl.lit("train"))
                .alias(SPLIT_COLUMN))  # a row without a time belongs to no split

    def columns(self) -> tuple[str, ...]:
        return (self.column,)

    def describe(self) -> dict[str, object]:
        return {"by": "time", "column": self.column, "valid_from": self.valid_from,
                "test_from": self.test_from}


@dataclass(frozen=True)
class RandomSplit:
    """Each row falls in test with probability `test_fraction`, else in valid with `valid_fraction`.

    The draw hashes `key`, a column unique per row, with `seed`: the same input splits the same way.
    """

    key: str
    seed: int
    test_fraction: float
    valid_fraction: float

    def assign(self) -> pl.Expr:
        draw = (pl.col(self.key).hash(seed=self.seed) % HASH_BUCKETS).cast(pl.Float64) / HASH_BUCKETS
        valid_below = self.test_fraction + (1.0 - self.test_fraction) * self.valid_fraction
        return (pl.when(draw < self.test_fraction).then(pl.lit("test"))
                .when(draw < valid_below).then(pl.lit("valid"))
                .otherwise(pl.lit("train")).alias(SPLIT_COLUMN))

    def columns(self) -> tuple[str, ...]:
        return (self.key,)

    def describe(self) -> dict[str, object]:
        return {"by": "random", "seed": self.seed, "test_fraction": self.test_fraction,
                "valid_fraction": self.valid_fraction}


@dataclass(frozen=True)
class ColumnSplit:
    """A column names each row's split: "train", "valid" or "test"; any other value leaves the row out."""

    column: str

    def assign(self) -> pl.Expr:
        value = pl.col(self.column).cast(pl.String).str.strip_chars().str.to_lowercase()
        return pl.when(value.is_in(["train", "valid", "test"])).then(value).alias(SPLIT_COLUMN)

    def columns(self) -> tuple[str, ...]:
        return (self.column,)

    def describe(self) -> dict[str, object]:
        return {"by": "column", "column": self.column}


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    label: str  # 0/1 column
    scenario: str  # categorical column; scenario ids follow its sorted raw values (`scenario_order` first)
    sparse: tuple[SparseColumn, ...]
    split: Split
    dense: tuple[str, ...] = ()  # numeric columns, standardised with training statistics
    sequences: tuple[SequenceColumn, ...] = ()
    sequence_gap: str | None = None  # list column: seconds from each behaviour to the impression
    user: str | None = None  # sparse column naming the user, for GAUC
    oracle: str | None = None  # true click probability (synthetic data only)
    min_count: int = 1  # values seen fewer times in training map to out-of-vocabulary
    variant: str = "default"
    fingerprint: dict[str, str] = field(default_factory=dict)  # identifies the raw input
    merged_scenarios: tuple[str, ...] = ()  # raw values already merged into "other" (too few training rows)
    notes: dict[str, object] = field(default_factory=dict)  # facts about the raw input for the manifest
    # scenario values that come first, in this order (buckets by their edges); out of repr, so that the
    # digest of a spec without one stays what it was (`prepare.spec_digest` adds it where given)
    scenario_order: tuple[str, ...] = field(default=(), repr=False)

    def columns(self) -> list[str]:
        """Every raw column the spec reads."""
        named = [self.label, self.scenario, *(c.name for c in self.sparse), *self.dense,
                 *(s.name for s in self.sequences), self.sequence_gap, self.oracle, *self.split.columns()]
        return [name for name in named if name is not None]
