"""Behaviour sequences in bounded memory: each impression gets its user's last events strictly before it.

The impressions are first written once to Parquet, which fixes their order for the two reads below. Only
their keys (row number, user, time) and the events' own columns are partitioned on disk by a hash of the
user into buckets (streamed with polars); each bucket then finds, per impression, the user's last event
strictly before its time with an as-of join and gathers up to `max_len` events ending there, a slice of
impressions at a time, so peak memory is about one bucket's keys and events (a heavy user's all land in one
bucket, but narrow). The lists come back in input order without a global sort (which polars holds in
memory): each bucket's lists are cut by row number into pieces, and the pieces of each row range are
merged, sorted and written in turn; the impressions' other columns are put beside them as the last step.
"""

from __future__ import annotations

import math
import shutil
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import polars as pl

ROW = "__row"
BUCKET = "__bucket"
PIECE_ROWS = 1 << 19  # rows per piece of the ordered output: what restoring the order holds at once
BUCKET_ROWS = 1 << 20  # impressions per bucket (keys and events only: tens of bytes each)
GATHER_ROWS = 1 << 16  # impressions whose events are gathered at once


@dataclass(frozen=True)
class History:
    """List columns gathered from `events` (a user, a time and values): most recent last."""

    events: pl.LazyFrame
    columns: dict[str, str]  # list column to add -> the event column whose values it holds
    max_len: int
    gap: str | None = None  # also add this list column: the time from each event to the impression

    @property
    def values(self) -> list[str]:
        """The event columns the lists hold, each once."""
        return list(dict.fromkeys(self.columns.values()))

    def event_columns(self, user: str, time: str) -> list[str]:
        return list(dict.fromkeys([user, time, *self.values]))

    def list_columns(self) -> list[str]:
        return [*self.columns, *([self.gap] if self.gap else [])]


def bucket_count(rows: int) -> int:
    """Enough buckets that one holds about `BUCKET_ROWS` impressions."""
    return max(1, math.ceil(rows / BUCKET_ROWS))


def with_histories(impressions: pl.LazyFrame, histories: Sequence[History], user: str, time: str,
                   work: Path, buckets: int, report: Callable[[str], None]) -> pl.LazyFrame:
    """`impressions`, in their order, plus the list columns of every history, built bucket by bucket in
    `work` (a folder on the output's disk: it holds the impressions once and their lists about twice)."""
    report("writing the impressions in a fixed order")
    work.mkdir(parents=True, exist_ok=True)
    impressions.sink_parquet(work / "impressions.parquet", engine="streaming")
    impressions = pl.scan_parquet(work / "impressions.parquet")
    folders = [work / "keys", *(work / f"events-{index}" for index in range(len(histories)))]
    frames = [impressions.select(user, time).with_row_index(ROW),
              *(history.events.select(history.event_columns(user, time)) for history in histories)]
    report(f"partitioning impressions and events into {buckets} buckets by user")
    for frame, folder in zip(frames, folders):  # one sink at a time: queries sharing a scan would cache it
        partitioned(frame, user, folder, buckets)
    schemas = [frame.collect_schema() for frame in frames]
    lists = [name for history in histories for name in history.list_columns()]
    for bucket in range(buckets):
        report(f"building behaviour sequences: bucket {bucket + 1} of {buckets}")
        keys = read_bucket(folders[0], bucket, schemas[0])
        events = [read_bucket(folder, bucket, schema) for folder, schema in zip(folders[1:], schemas[1:])]
        for part, rows in enumerate(sliced_histories(keys, events, histories, user, time)):
            write_pieces(rows.select(ROW, *lists), work / "pieces", f"{bucket}-{part}")
    return in_row_order(work / "pieces", impressions, work / "ordered")


def partitioned(frame: pl.LazyFrame, user: str, folder: Path, buckets: int) -> None:
    bucket = (pl.col(user).hash(seed=0) % buckets).alias(BUCKET)
    frame.with_columns(bucket).sink_parquet(pl.PartitionBy(folder, key=BUCKET, include_key=False), mkdir=True,
                                            engine="streaming")


def read_bucket(folder: Path, bucket: int, schema: pl.Schema) -> pl.DataFrame:
    path = folder / f"{BUCKET}={bucket}"
    return pl.read_parquet(path / "*.parquet") if path.is_dir() else pl.DataFrame(schema=schema)


def last_events(impressions: pl.DataFrame, events: pl.DataFrame, history: History, user: str,
               time: str) -> pl.DataFrame:
    """`impressions`, sorted by user and time, plus each one's user's last `max_len` events before it."""
    return pl.concat(list(sliced_histories(impressions, [events], [history], user, time)))


def sliced_histories(impressions: pl.DataFrame, events: Sequence[pl.DataFrame], histories: Sequence[History],
                     user: str, time: str) -> Iterator[pl.DataFrame]:
    """`impressions` sorted by user and time with the list columns of every history, a slice at a time
    (the gathered events are max_len times as many as the impressions)."""
    impressions = impressions.sort(user, time)
    located = [located_events(impressions, frame, history, user, time)
               for frame, history in zip(events, histories)]
    for start in range(0, max(impressions.height, 1), GATHER_ROWS):
        lists = [gathered(bounds.slice(start, GATHER_ROWS), frame, history, time)
                 for (frame, bounds), history in zip(located, histories)]
        yield pl.concat([impressions.slice(start, GATHER_ROWS), *lists], how="horizontal")


def located_events(impressions: pl.DataFrame, events: pl.DataFrame, history: History, user: str,
                   time: str) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The events in order with a position, and per impression (sorted by user and time) its time and the
    positions of its user's first event and of its last event strictly before it.

    Events are sorted by user, time and value (events at one time: by value); an as-of join with exact
    times excluded finds the last earlier event; the list is then positions max(first, last - max_len + 1)
    to last, most recent last.
    """
    events = (events.drop_nulls([user, time]).sort(user, time, *history.values, nulls_last=True)
              .with_row_index("__position").with_columns(pl.col("__position").cast(pl.Int64))  # last - n < 0
              .with_columns(__first=pl.col("__position").min().over(user)))
    bounds = impressions.select(user, time).join_asof(
        events.select(user, time, __last="__position", __first="__first"), on=time, by=user,
        strategy="backward", allow_exact_matches=False, check_sortedness=False)
    return events, bounds.drop(user)


def gathered(impressions: pl.DataFrame, events: pl.DataFrame, history: History, time: str) -> pl.DataFrame:
    """The list columns of `impressions`, whose events end at position `__last` (null: none)."""
    start = pl.max_horizontal("__first", pl.col("__last") - (history.max_len - 1))
    positions = (impressions.select(time, __position=pl.int_ranges(start, pl.col("__last") + 1))
                 .with_row_index("__impression").explode("__position", empty_as_null=True, keep_nulls=True))
    index = positions["__position"]
    positions = positions.with_columns(
        __event_time=events[time].gather(index),
        **{name: events[column].gather(index) for name, column in history.columns.items()})
    present = pl.col("__position").is_not_null()
    gaps = [(pl.col(time) - pl.col("__event_time")).filter(present).alias(history.gap)] if history.gap else []
    return positions.group_by("__impression", maintain_order=True).agg(
        *(pl.col(name).filter(present) for name in history.columns), *gaps).drop("__impression")


def write_pieces(rows: pl.DataFrame, folder: Path, name: str) -> None:
    """`rows` cut by row number into `folder/<piece>/<name>.parquet` (no rows: one empty piece)."""
    pieces = rows.with_columns(__piece=pl.col(ROW) // PIECE_ROWS).partition_by(
        "__piece", as_dict=True, include_key=False) or {(0,): rows}
    for (piece,), part in pieces.items():
        (folder / f"{piece:09d}").mkdir(parents=True, exist_ok=True)
        part.write_parquet(folder / f"{piece:09d}" / f"{name}.parquet")


def in_row_order(pieces: Path, impressions: pl.LazyFrame, ordered: Path) -> pl.LazyFrame:
    """Every piece's lists from all buckets, sorted by row number beside the impressions of the same rows,
    as one scan in input order (a piece at a time: a lazy side-by-side join of the two streams buffers)."""
    ordered.mkdir()
    for piece in sorted(pieces.iterdir()):
        lists = pl.read_parquet(piece / "*.parquet").sort(ROW)
        first = int(piece.name) * PIECE_ROWS
        if lists.height and (lists[ROW][0], lists[ROW][-1]) != (first, first + lists.height - 1):
            raise RuntimeError(f"behaviour sequences: rows {first}.. came back incomplete from the buckets")
        rows = impressions.slice(first, lists.height).collect()
        rows.hstack(lists.drop(ROW)).write_parquet(ordered / f"{piece.name}.parquet")
        shutil.rmtree(piece)  # one copy of the lists on disk at a time
    return pl.scan_parquet(sorted(ordered.iterdir()))
