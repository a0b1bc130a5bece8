"""Behaviour sequences in bounded memory: each impression gets its user's last events strictly before it.

Impressions and events are partitioned on disk by a hash of the user into buckets (streamed with polars);
each bucket then finds, per impression, the user's last event strictly before its time with an as-of join
and gathers up to `max_len` events ending there, so peak memory is about one bucket. The impressions come
back in their input order without a global sort (which polars holds in memory): each bucket's rows are
cut by row number into pieces, and the pieces of each row range are merged, sorted and written in turn.
"""

from __future__ import annotations

import math
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import polars as pl

ROW = "__row"
BUCKET = "__bucket"
PIECE_ROWS = 1 << 19  # rows per piece of the ordered output: what restoring the order holds at once
BUCKET_ROWS = 1 << 18  # impressions per bucket (about 1 KiB of memory each; a heavy user's all land in one)
GATHER_ROWS = 1 << 16  # impressions whose events are gathered at once


@dataclass(frozen=True)
class History:
    """List columns gathered from `events` (a user, a time and values): most recent last."""

    events: pl.LazyFrame
    columns: dict[str, str]  # list column to add -> the event column whose values it holds
    max_len: int
    gap: str | None = None  # also add this list column: the time from each event to the impression


def bucket_count(rows: int) -> int:
    """Enough buckets that one holds about `BUCKET_ROWS` impressions."""
    return max(1, math.ceil(rows / BUCKET_ROWS))


def with_histories(impressions: pl.LazyFrame, histories: Sequence[History], user: str, time: str,
                   work: Path, buckets: int, report: Callable[[str], None]) -> pl.LazyFrame:
    """`impressions`, in their order, plus the list columns of every history, built bucket by bucket in
    `work` (a folder on the output's disk: it holds the impressions about three times over)."""
    folders = [work / "impressions", *(work / f"events-{index}" for index in range(len(histories)))]
    frames = [impressions.with_row_index(ROW), *(history.events for history in histories)]
    report(f"partitioning impressions and events into {buckets} buckets by user")
    for frame, folder in zip(frames, folders):  # one sink at a time: queries sharing a scan would cache it
        partitioned(frame, user, folder, buckets)
    schemas = [frame.collect_schema() for frame in frames]
    for bucket in range(buckets):
        report(f"building behaviour sequences: bucket {bucket + 1} of {buckets}")
        rows = read_bucket(folders[0], bucket, schemas[0])
        for history, folder, schema in zip(histories, folders[1:], schemas[1:]):
            rows = last_events(rows, read_bucket(folder, bucket, schema), history, user, time)
        write_pieces(rows, work / "pieces", bucket)
    return in_row_order(work / "pieces", work / "ordered")


def partitioned(frame: pl.LazyFrame, user: str, folder: Path, buckets: int) -> None:
    bucket = (pl.col(user).hash(seed=0) % buckets).alias(BUCKET)
    frame.with_columns(bucket).sink_parquet(pl.PartitionBy(folder, key=BUCKET, include_key=False), mkdir=True,
                                            engine="streaming")


def read_bucket(folder: Path, bucket: int, schema: pl.Schema) -> pl.DataFrame:
    path = folder / f"{BUCKET}={bucket}"
    return pl.read_parquet(path / "*.parquet") if path.is_dir() else pl.DataFrame(schema=schema)


def last_events(impressions: pl.DataFrame, events: pl.DataFrame, history: History, user: str,
                time: str) -> pl.DataFrame:
    """`impressions` plus each one's user's last `max_len` events strictly before its time.

    Events sorted by user, time and value (events at one time: by value) get a position; an as-of join
    (exact times excluded) finds each impression's last earlier event, and the positions from
    max(the user's first, last - max_len + 1) to last are gathered into lists, most recent last (a slice
    of impressions at a time: the gathered events are max_len times as many).
    """
    values = list(dict.fromkeys(history.columns.values()))
    events = (events.drop_nulls([user, time]).sort(user, time, *values, nulls_last=True)
              .with_row_index("__position").with_columns(pl.col("__position").cast(pl.Int64))  # last - n < 0
              .with_columns(__first=pl.col("__position").min().over(user)))
    impressions = impressions.sort(user, time).join_asof(
        events.select(user, time, __last="__position", __first="__first"), on=time, by=user,
        strategy="backward", allow_exact_matches=False, check_sortedness=False)
    lists = [gathered(impressions.slice(start, GATHER_ROWS), events, history, time)
             for start in range(0, max(impressions.height, 1), GATHER_ROWS)]
    return impressions.drop("__last", "__first").hstack(pl.concat(lists))


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


def write_pieces(rows: pl.DataFrame, folder: Path, bucket: int) -> None:
    """`rows` cut by row number into `folder/<piece>/<bucket>.parquet` (an empty bucket: one empty piece)."""
    pieces = rows.with_columns(__piece=pl.col(ROW) // PIECE_ROWS).partition_by(
        "__piece", as_dict=True, include_key=False) or {(0,): rows}
    for (piece,), part in pieces.items():
        (folder / f"{piece:09d}").mkdir(parents=True, exist_ok=True)
        part.write_parquet(folder / f"{piece:09d}" / f"{bucket}.parquet")


def in_row_order(pieces: Path, ordered: Path) -> pl.LazyFrame:
    """Every piece's rows from all buckets, sorted by row number, as one scan in input order."""
    ordered.mkdir()
    for piece in sorted(pieces.iterdir()):
        rows = pl.read_parquet(piece / "*.parquet").sort(ROW).drop(ROW)
        rows.write_parquet(ordered / f"{piece.name}.parquet")
        shutil.rmtree(piece)  # one copy of the rows on disk at a time
    return pl.scan_parquet(sorted(ordered.iterdir()))
