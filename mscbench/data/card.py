"""Dataset cards: one TOML file says how raw files become a prepared dataset (user cards and the built-in
`mscbench/data/cards/*.toml` alike).

A card names its tables (the first is the fact table, one row per impression; the others are dimension
tables joined onto it), the label, the scenario, the features and the split. `load_card` reads and checks
it into frozen dataclasses; `inspect_card` reads the raw files in a few streamed passes (bounded memory)
to find the split boundaries, the scenarios and whatever is wrong; `card_spec` maps both onto a
`DatasetSpec`, and `prepare_card` hands it to the generic preparer. Every file is read as text, so a stray non-numeric
value in a numeric-looking id column never breaks type inference; numbers are parsed where they are used.
"""

from __future__ import annotations

import dataclasses
import gzip
import itertools
import math
import operator
import re
import shutil
import tempfile
import typing
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import MISSING, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

import polars as pl
import tomllib

from mscbench.config import ConfigError, coerce, suggest
from mscbench.data.errors import DataError
from mscbench.data.files import fingerprint
from mscbench.data.names import checked_file_name, checked_relative_path, checked_url
from mscbench.data.prepare import PrepareResult, Progress, finite, ignore, numeric, prepare
from mscbench.data.sequences import History, bucket_count, with_histories
from mscbench.data.spec import (
    SPLIT_COLUMN,
    ColumnSplit,
    DatasetSpec,
    RandomSplit,
    SequenceColumn,
    SparseColumn,
    TimeSplit,
)

PARQUET_MAGIC = b"PAR1"  # the first bytes of every Parquet file
GZIP_MAGIC = b"\x1f\x8b"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
TOLERANCE = 0.001  # rows with an unreadable label or time: up to this share are dropped and counted
SCENARIO_COLUMN = "scenario"  # the prepared scenario column (derived from the card's scenario rule)
OTHER_SCENARIO = "other"  # where scenarios with fewer than `min_train_rows` training rows go
MISSING_SCENARIO = "missing"  # the scenario of rows whose scenario value is empty
ROW_COLUMN = "__row"  # a row number, hashed by the random split
MATCHED = "__matched:"  # marker column per dimension table: null where the fact row matched no row
LINE = "__line"
QUANTILE_VALUE = "__value"
QUANTILE_BIN = 1 << 16  # consecutive values counted together by the first pass of a streamed quantile
OPERATORS = {">=": operator.ge, "<=": operator.le, "==": operator.eq, "!=": operator.ne,
             ">": operator.gt, "<": operator.lt}


# ---------------------------------------------------------------------------------------------- schema


@dataclass(frozen=True)
class Join:
    on: dict[str, str]  # fact column -> dimension column (`on = "user_id"`: the same name on both sides)
    how: Literal["left", "inner"] = "left"


@dataclass(frozen=True)
class Table:
    name: str
    path: str  # relative to --raw-dir, any name; gzip or zstd compression is recognised by content
    format: Literal["csv", "parquet"] | None = None  # None: Parquet by suffix or content, else text (csv)
    separator: str = ","  # text files; several characters (MovieLens-1M's "::") are allowed
    header: bool = True
    columns: tuple[str, ...] = ()  # column names in file order (needed where header = false)
    null_values: tuple[str, ...] = ("",)
    encoding: Literal["utf8", "latin1"] = "utf8"
    join: Join | None = None  # dimension tables only
    allow_outside_raw_dir: bool = False  # let `path` be absolute or climb out of --raw-dir with ".."


@dataclass(frozen=True)
class Label:
    column: str
    positive: str | tuple[str | int | float, ...] = "== 1"  # ">= 4", "== 1" or a list of positive values


@dataclass(frozen=True)
class Buckets:
    column: str  # a numeric column
    edges: tuple[float, ...]  # increasing; buckets are [edge, next edge)


@dataclass(frozen=True)
class Scenario:
    column: str | None = None  # a categorical column (or `buckets`)
    separator: str | None = None  # the column is delimited: take its value number `index`
    index: int = 0
    buckets: Buckets | None = None
    min_train_rows: int = 0  # scenarios with fewer training rows merge into "other"


@dataclass(frozen=True)
class Sequence:
    name: str
    from_: str  # the sparse feature whose values the sequence holds (and whose vocabulary it shares)
    max_len: int = 15
    column: str | None = None  # read from this delimited column instead of built from the fact table
    separator: str = "|"


@dataclass(frozen=True)
class Features:
    sparse: tuple[str, ...] = ()
    dense: tuple[str, ...] = ()  # standardised with training-split statistics
    user: str | None = None  # a sparse feature naming the user (GAUC; built sequences)
    sequence: tuple[Sequence, ...] = ()


@dataclass(frozen=True)
class SplitRule:
    by: Literal["time", "random", "column"] = "time"
    time_column: str | None = None
    time_unit: str = "s"  # "s", "ms" or a strptime format for text timestamps
    test_fraction: float = 0.1  # time: the last share of rows in time order; random: the share drawn
    test_from: str | float | None = None  # time: the first test time (a date, or a number in time_unit)
    valid_fraction: float = 0.1  # the end of the training time (random: a share of the rest)
    seed: int = 0  # random split
    column: str | None = None  # column split: "train", "valid" or "test" per row


@dataclass(frozen=True)
class SourceFile:
    name: str
    url: str | None = None
    size: int | None = None  # bytes
    sha256: str | None = None


@dataclass(frozen=True)
class SourceInfo:
    homepage: str = ""
    licence: str = ""
    obtain: str = ""  # how to get the files
    notes: str = ""  # scenario definition, protocol, caveats
    files: tuple[SourceFile, ...] = ()


@dataclass(frozen=True)
class Card:
    name: str
    tables: tuple[Table, ...]  # the first is the fact table
    label: Label
    scenario: Scenario
    features: Features
    split: SplitRule
    description: str = ""
    source: SourceInfo | None = None
    where: str = "card"  # "card PATH", for messages

    @property
    def fact(self) -> Table:
        return self.tables[0]


# ------------------------------------------------------------------------------------------ reading


def load_card(path: Path) -> Card:
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(f"card {path} does not exist") from None
    except tomllib.TOMLDecodeError as error:
        raise DataError(f"card {path} is not valid TOML: {error}") from None
    return parse_card(raw, f"card {path}")


def parse_card(raw: dict[str, Any], where: str) -> Card:
    tables = raw.get("tables")
    if not isinstance(tables, dict) or not tables:
        raise DataError(f"{where} needs at least one [tables.NAME] (the first is the fact table)")
    card = section(Card, raw, where, where=where,
                   tables=tuple(parse_table(name, value, f"{where} [tables.{name}]")
                                for name, value in tables.items()),
                   label=parse_label(raw.get("label"), f"{where} [label]"),
                   scenario=parse_scenario(raw.get("scenario"), f"{where} [scenario]"),
                   features=parse_features(raw.get("features", {}), f"{where} [features]"),
                   split=parse_split(raw.get("split", {}), f"{where} [split]"),
                   source=parse_source(raw["source"], f"{where} [source]") if "source" in raw else None)
    check_card(card)
    return card


def section(cls: type, raw: Any, at: str, **parsed: Any) -> Any:
    """`cls` from the TOML table `raw`: unknown keys (closest one suggested), types and required keys
    checked. `parsed` holds fields already built by the caller; a trailing "_" in a field name is left
    out in TOML (`from_` is written `from`)."""
    if not isinstance(raw, dict):
        raise DataError(f"{at} must be a table, not {raw!r}")
    known = {f.name.rstrip("_"): f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    values = {key: value for key, value in parsed.items()}
    for key, value in raw.items():
        if key in parsed or key.rstrip("_") in parsed:
            continue
        if key not in known:
            raise DataError(f"{at} has no key {key!r}{suggest(key, known)}")
        try:
            values[known[key].name] = coerce(value, hints[known[key].name], f"{at}: {key}")
        except ConfigError as error:
            raise DataError(str(error)) from None
    missing = [name for name, f in known.items() if f.name not in values
               and f.default is MISSING and f.default_factory is MISSING]
    if missing:
        raise DataError(f"{at} needs {missing[0]!r}")
    return cls(**values)


def parse_table(name: str, raw: Any, where: str) -> Table:
    join = raw.get("join") if isinstance(raw, dict) else None
    table = section(Table, raw, where, name=name,
                    join=None if join is None else parse_join(join, f"{where} join"))
    if not table.header and not table.columns:
        raise DataError(f"{where}: header = false needs columns = [...] naming the columns in order")
    twice = sorted({name for name in table.columns if table.columns.count(name) > 1})
    if twice:
        raise DataError(f"{where}: columns names {', '.join(map(repr, twice))} more than once")
    if not table.allow_outside_raw_dir:
        checked_relative_path(table.path, where)
    return table


def parse_join(raw: Any, where: str) -> Join:
    if not isinstance(raw, dict):
        raise DataError(f"{where} must be a table like {{ on = \"user_id\", how = \"left\" }}")
    on = raw.get("on")
    if isinstance(on, str):
        on = {on: on}
    if not isinstance(on, dict) or not on or not all(isinstance(v, str) for v in on.values()):
        raise DataError(f"{where}: on must be a column name or a table of fact_column = \"dimension_column\"")
    return section(Join, raw, where, on=on)


def parse_label(raw: Any, where: str) -> Label:
    if raw is None:
        raise DataError(f"{where} is missing: say which column holds the label")
    positive = raw.get("positive", "== 1") if isinstance(raw, dict) else None
    if isinstance(positive, list) and positive:
        positive = tuple(positive)
    elif not isinstance(positive, str) or not parse_comparison(positive):
        raise DataError(f"{where}: positive must be a comparison like \">= 4\" or \"== 1\", or a list of "
                        f"positive values, not {positive!r}")
    return section(Label, raw, where, positive=positive)


def parse_comparison(text: str) -> tuple[str, str] | None:
    match = re.fullmatch(r"\s*(>=|<=|==|!=|>|<)\s*(\S.*?)\s*", text)
    return (match[1], match[2].strip("\"'")) if match else None


def parse_scenario(raw: Any, where: str) -> Scenario:
    if raw is None:
        raise DataError(f"{where} is missing: say which column (or buckets) defines the scenario")
    buckets = raw.get("buckets") if isinstance(raw, dict) else None
    scenario = section(Scenario, raw, where,
                       buckets=None if buckets is None else section(Buckets, buckets, f"{where} buckets"))
    if (scenario.column is None) == (scenario.buckets is None):
        raise DataError(f"{where} needs either column = \"...\" or buckets = {{ column = \"...\", edges = [...] }}")
    if scenario.buckets and list(scenario.buckets.edges) != sorted(set(scenario.buckets.edges)):
        raise DataError(f"{where}: bucket edges must be increasing, got {list(scenario.buckets.edges)}")
    return scenario


def parse_features(raw: Any, where: str) -> Features:
    sequences = raw.get("sequence", []) if isinstance(raw, dict) else []
    if not isinstance(sequences, list):
        raise DataError(f"{where}: sequences are written [[features.sequence]]")
    return section(Features, raw, where, sequence=tuple(
        section(Sequence, value, f"{where} sequence {index + 1}") for index, value in enumerate(sequences)))


def parse_split(raw: Any, where: str) -> SplitRule:
    test_from = raw.get("test_from") if isinstance(raw, dict) else None
    if test_from is not None and (isinstance(test_from, bool) or not isinstance(test_from, (str, int, float))):
        raise DataError(f"{where}: test_from must be a date (\"1998-04-01\") or a number, not {test_from!r}")
    split = section(SplitRule, raw, where, test_from=test_from)
    if split.by == "time" and not split.time_column:
        raise DataError(f"{where}: by = \"time\" needs time_column")
    if split.by == "column" and not split.column:
        raise DataError(f"{where}: by = \"column\" needs column (a column holding train, valid or test)")
    for key in ("test_fraction", "valid_fraction"):
        if not 0.0 <= getattr(split, key) < 1.0:
            raise DataError(f"{where}: {key} must be at least 0 and below 1, not {getattr(split, key)}")
    return split


def parse_source(raw: Any, where: str) -> SourceInfo:
    files = raw.get("files", []) if isinstance(raw, dict) else []
    info = section(SourceInfo, raw, where, files=tuple(
        section(SourceFile, value, f"{where} file {index + 1}") for index, value in enumerate(files)))
    for index, file in enumerate(info.files):
        checked_file_name(file.name, f"{where} file {index + 1}")
        if file.url is not None:
            checked_url(file.url, f"{where} file {index + 1}")
    return info


def check_card(card: Card) -> None:
    """What no single section can check: names used twice, references between sections."""
    where, features = card.where, card.features
    if card.fact.join is not None:
        raise DataError(f"{where}: the first table ({card.fact.name}) is the fact table and joins nothing")
    for table in card.tables[1:]:
        if table.join is None:
            raise DataError(f"{where} [tables.{table.name}] needs join = {{ on = \"...\" }} "
                            f"(only the first table is the fact table)")
    named = [*features.sparse, *features.dense, *(s.name for s in features.sequence)]
    twice = sorted({name for name in named if named.count(name) > 1})
    if twice:
        raise DataError(f"{where} [features] names {', '.join(map(repr, twice))} more than once: "
                        f"a feature is sparse, dense or a sequence, once")
    if not features.sparse:
        raise DataError(f"{where} [features] needs sparse = [...] (at least one categorical column)")
    if card.label.column in named:
        raise DataError(f"{where}: the label {card.label.column!r} is also a feature (it would leak)")
    if SCENARIO_COLUMN in named:
        raise DataError(f"{where}: a feature may not be called {SCENARIO_COLUMN!r} (the prepared scenario "
                        f"column): rename it in the table's columns")
    if features.user is not None and features.user not in features.sparse:
        raise DataError(f"{where} [features] user {features.user!r} must be one of sparse")
    for sequence in features.sequence:
        if sequence.from_ not in features.sparse:
            raise DataError(f"{where} [features] sequence {sequence.name!r}: from {sequence.from_!r} must be "
                            f"one of sparse (the sequence shares its vocabulary)")
        if sequence.column is None and not (features.user and card.split.time_column):
            raise DataError(f"{where} [features] sequence {sequence.name!r} is built from the fact table: "
                            f"it needs [features] user and [split] time_column")
    if len({sequence.max_len for sequence in features.sequence}) > 1:
        raise DataError(f"{where} [features]: every sequence must have the same max_len")


# ------------------------------------------------------------------------------------- raw tables


def needed_columns(card: Card) -> list[str]:
    """Every raw column the card reads beside join keys, in a stable order without repeats."""
    scenario = card.scenario.buckets.column if card.scenario.buckets else card.scenario.column
    features = card.features
    named = [card.label.column, scenario, *features.sparse, *features.dense,
             *(s.column for s in features.sequence), card.split.time_column, card.split.column]
    return list(dict.fromkeys(name for name in named if name is not None))


@dataclass(frozen=True)
class RawTables:
    """The card's tables scanned (lazily) from `raw_dir`; `frame` is the fact table with every join."""

    frame: pl.LazyFrame
    columns: dict[str, list[str]]  # table name -> its columns
    paths: dict[str, Path]
    empty_lines: dict[str, int] = field(default_factory=dict)  # file name -> lines without values (skipped)
    duplicate_keys: dict[str, int] = field(default_factory=dict)  # dimension table -> rows after the first per key
    shadowed: tuple[str, ...] = ()  # a column the card reads that is named twice (the first is used)

    def fingerprint(self) -> dict[str, str]:
        return fingerprint(file for path in self.paths.values() for file in table_files(path))


def raw_tables(card: Card, raw_dir: Path, workdir: Path) -> RawTables:
    paths = {table.name: table_path(card, table, raw_dir) for table in card.tables}
    empty_lines = {file.name: count for table in card.tables for file, count in
                   checked_text(table, paths[table.name], workdir).items() if count}
    frames = {table.name: scan_table(table, paths[table.name], workdir) for table in card.tables}
    columns = {name: frame.collect_schema().names() for name, frame in frames.items()}
    frame = frames[card.fact.name]
    available = list(columns[card.fact.name])
    duplicate_keys = {}
    for table in card.tables[1:]:
        frame, duplicate_keys[table.name] = joined(card, frame, available, table, frames[table.name],
                                                   columns[table.name], paths)
        available += [c for c in columns[table.name] if c not in table.join.on.values()]
    absent = [name for name in needed_columns(card) if name not in available]
    if absent:
        listing = "; ".join(f"{paths[name].name} has {', '.join(names)}" for name, names in columns.items())
        raise DataError(f"{card.where}: column {absent[0]!r} is in no table ({listing})")
    named = [re.sub(r"_duplicated_\d+$", "", name) for name in available]  # polars' name for a repeated header
    shadowed = tuple(name for name in needed_columns(card) if named.count(name) > 1)
    markers = [MATCHED + table.name for table in card.tables[1:]]
    return RawTables(frame.select(*needed_columns(card), *markers), columns, paths, empty_lines,
                     {name: count for name, count in duplicate_keys.items() if count}, shadowed)


def table_path(card: Card, table: Table, raw_dir: Path) -> Path:
    """The table's file, or its glob pattern (several files of one layout, read as one table)."""
    path = Path(raw_dir).expanduser() / table.path
    found = sorted(path.parent.glob(path.name)) if is_pattern(table.path) else [path] * path.is_file()
    if not found:
        raise DataError(f"{card.where} [tables.{table.name}]: {path} does not exist: check --raw-dir "
                        f"and the table's path")
    return path


def is_pattern(path: str) -> bool:
    return any(character in path for character in "*?[")


def table_files(path: Path) -> list[Path]:
    return sorted(path.parent.glob(path.name)) if is_pattern(path.name) else [path]


def joined(card: Card, frame: pl.LazyFrame, available: list[str], table: Table, dimension: pl.LazyFrame,
           dimension_columns: list[str], paths: dict[str, Path]) -> tuple[pl.LazyFrame, int]:
    """A left join with a marker column (null: no match), and how many dimension rows repeat a key (the
    first row of each key is joined); inner joins drop unmatched rows after counting."""
    for fact_key, dimension_key in table.join.on.items():
        if fact_key not in available:
            raise DataError(f"{card.where} [tables.{table.name}] joins on {fact_key!r}, which the tables "
                            f"before it lack (they have {', '.join(available)})")
        if dimension_key not in dimension_columns:
            raise DataError(f"{card.where} [tables.{table.name}] joins on {dimension_key!r}, which "
                            f"{paths[table.name].name} lacks (it has {', '.join(dimension_columns)})")
    keys = list(table.join.on.values())
    rows = dimension.select(pl.len()).collect(engine="streaming").item()
    # in memory (bounded by distinct keys): a join streams the fact table only against a built side;
    # a lazy `unique` there holds up the scan and buffers fact rows
    dimension = (dimension.unique(subset=keys, keep="first", maintain_order=False)
                 .with_columns(pl.lit(True).alias(MATCHED + table.name)).collect(engine="streaming"))
    return frame.join(dimension.lazy(), left_on=list(table.join.on), right_on=keys, how="left",
                      maintain_order="left", suffix=f"_{table.name}"), rows - dimension.height


def is_parquet(table: Table, path: Path) -> bool:
    """The card's `format`, else the suffix, else the file's first bytes (a pattern: its first file)."""
    if table.format is not None:
        return table.format == "parquet"
    return looks_like_parquet(table_files(path)[0])


def looks_like_parquet(path: Path) -> bool:
    return path.name.lower().endswith(".parquet") or first_bytes(path) == PARQUET_MAGIC


def first_bytes(path: Path, count: int = 4) -> bytes:
    with open(path, "rb") as stream:
        return stream.read(count)


def scan_table(table: Table, path: Path, workdir: Path) -> pl.LazyFrame:
    """The table with every column as text (lists kept), names stripped of stray spaces; rows without any
    value (blank lines) left out."""
    if is_parquet(table, path):
        frame = pl.scan_parquet(path)
        try:
            schema = frame.collect_schema()
        except (pl.exceptions.PolarsError, OSError) as error:
            raise DataError(f"{path} is not a readable Parquet file ({first_line(error)}): write or "
                            f"download it again, or set format = \"csv\" in [tables.{table.name}]") from None
        return frame.with_columns(pl.col(name).cast(pl.String) for name, dtype in schema.items()
                                  if not isinstance(dtype, pl.List))
    path = utf8_copy(table, path, workdir)
    if len(table.separator) > 1:
        frame = scan_split_lines(table, path)
    else:
        frame = pl.scan_csv(path, separator=table.separator, has_header=table.header,
                            new_columns=list(table.columns) or None, null_values=list(table.null_values),
                            infer_schema=False,
                            with_column_names=None if table.columns else lambda names: [n.strip() for n in names])
    return frame.filter(~pl.all_horizontal(pl.all().str.strip_chars().fill_null("") == ""))


def first_line(error: BaseException) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0]


def utf8_copy(table: Table, path: Path, workdir: Path) -> Path:
    """`path` itself when UTF-8; else a UTF-8 copy in `workdir`, transcoded in chunks (bounded memory)."""
    if table.encoding == "utf8":
        return path
    if is_pattern(path.name):
        raise DataError(f"{path}: a latin1 table must be one file, not a pattern")
    magic = first_bytes(path)
    if magic == ZSTD_MAGIC:
        raise DataError(f"{path}: a latin1 zstd-compressed file cannot be read: decompress it (zstd -d) first")
    target = workdir / f"{table.name}.utf8.txt"
    if target.exists():  # transcoded once per run: the line check and the scan read the same copy
        return target
    opener = gzip.open if magic.startswith(GZIP_MAGIC) else open
    try:
        with opener(path, "rt", encoding="latin-1", newline="") as source, \
                open(target, "w", encoding="utf-8", newline="") as sink:
            shutil.copyfileobj(source, sink, 1 << 20)
    except (OSError, EOFError) as error:
        raise DataError(f"{path} cannot be decompressed ({first_line(error)}): the file is damaged or "
                        f"incomplete; download it again") from None
    return target


def scan_split_lines(table: Table, path: Path) -> pl.LazyFrame:
    """A text file whose separator is several characters: whole lines, split into columns."""
    lines = scan_lines(path)
    names = list(table.columns)
    if table.header:
        first = lines.head(1).collect()[LINE].to_list()
        names = names or [name.strip() for name in (first[0] if first else "").split(table.separator)]
        lines = lines.slice(1)
    fields = pl.col(LINE).str.splitn(table.separator, len(names)).struct.rename_fields(names)
    nulls = list(table.null_values)
    return lines.select(fields).unnest(LINE).with_columns(
        pl.when(pl.col(name).is_in(nulls)).then(None).otherwise(pl.col(name)).alias(name) for name in names)


def scan_lines(path: Path, encoding: str = "utf8") -> pl.LazyFrame:
    """A text file's lines, whole, as one column (null for an empty line)."""
    return pl.scan_csv(path, separator="\x1f", has_header=False, quote_char=None, new_columns=[LINE],
                       infer_schema=False, null_values=None, truncate_ragged_lines=True, encoding=encoding)


def checked_text(table: Table, path: Path, workdir: Path) -> dict[Path, int]:
    """Lines without values in each file of a text table, after checking every other line: one pass per
    file that stops at the first line with another number of fields than the header (or `columns`), bytes
    that are not UTF-8, an empty file or a damaged compressed one, naming the file and the line."""
    if is_parquet(table, path):
        return {}
    files = [utf8_copy(table, path, workdir)] if table.encoding != "utf8" else table_files(path)
    shown = table_files(path)
    return {shown_file: line_check(table, file, shown_file) for file, shown_file in zip(files, shown)}


def line_check(table: Table, path: Path, shown: Path) -> int:
    try:
        return checked_lines(table, path, shown)
    except pl.exceptions.NoDataError:
        raise DataError(f"{shown} is empty: it needs {'a header line and ' if table.header else ''}"
                        f"one line per row") from None
    except pl.exceptions.ComputeError as error:
        if "utf-8" not in str(error).lower():
            raise
        if first_bytes(path, 2) in (b"\xff\xfe", b"\xfe\xff"):
            raise DataError(f"{shown} is UTF-16 text: convert it to UTF-8 (iconv -f utf-16 -t utf-8)") from None
        raise DataError(f"{shown}{not_utf8_line(path)} is not UTF-8 text: set encoding = \"latin1\" in "
                        f"[tables.{table.name}], or convert the file to UTF-8") from None
    except OSError as error:
        raise DataError(f"{shown} cannot be read ({first_line(error)}): if it is compressed, the file is "
                        f"damaged or incomplete; download it again") from None


def checked_lines(table: Table, path: Path, shown: Path) -> int:
    """Empty lines of one text file (see `checked_text`)."""
    separator = table.separator
    line = pl.col(LINE)
    if len(separator) == 1:  # separators inside "quoted" values do not count; a line with an odd number
        # of quotes is part of a value spanning lines, left to the parser
        unquoted = line.str.replace_all('"[^"]*"', "")
        fields = pl.when(line.str.count_matches('"', literal=True) % 2 == 0).then(
            unquoted.str.count_matches(separator, literal=True) + 1)
    else:
        fields = line.str.count_matches(separator, literal=True) + 1
    empty = line.is_null() | (line.str.strip_chars(f"{separator} \t\r") == "")
    lines = scan_lines(path).with_row_index("number", offset=1).select("number", fields=fields, empty=empty)
    if table.header:
        head = lines.head(1).collect()
        expected = head["fields"][0] if head.height else None
        lines = lines.slice(1)
    else:
        expected = len(table.columns)
    bad = ~pl.col("empty") & (pl.col("fields") != pl.lit(expected, pl.UInt32)).fill_null(False)
    found = lines.select(empty=pl.col("empty").sum(), line=pl.col("number").filter(bad).first(),
                         fields=pl.col("fields").filter(bad).first()).collect(engine="streaming")
    if found["line"][0] is not None:
        raise DataError(f"{shown} line {found['line'][0]}: expected {expected} fields separated by "
                        f"{separator!r}, found {found['fields'][0]}: fix or remove the line")
    return int(found["empty"][0])


def not_utf8_line(path: Path) -> str:
    """" line N" of the first line of `path` that is not UTF-8 ("" where it cannot be found)."""
    try:
        found = (scan_lines(path, "utf8-lossy").with_row_index("number", offset=1)
                 .filter(pl.col(LINE).str.contains("\ufffd", literal=True)).head(1).collect())
    except pl.exceptions.PolarsError:
        return ""
    return f" line {found['number'][0]}" if found.height else ""


@contextmanager
def reading(card: Card) -> Iterator[None]:
    """Turns what polars finds unreadable later on (a damaged Parquet page, a stray quote) into one line."""
    try:
        yield
    except (pl.exceptions.PolarsError, OSError) as error:
        files = ", ".join(table.path for table in card.tables)
        raise DataError(f"{card.where}: cannot read {files} ({first_line(error)}): a damaged file is best "
                        f"written or downloaded again") from None


# --------------------------------------------------------------------------- label, time, scenario


def label_value(label: Label) -> pl.Expr:
    """1 where the raw label is positive, 0 where not, null where it cannot be read."""
    raw = pl.col(label.column).cast(pl.String).str.strip_chars()
    if isinstance(label.positive, tuple):
        if all(is_number(value) for value in label.positive):
            hit = finite(raw).is_in([float(v) for v in label.positive])
        else:
            hit = raw.is_in([str(value) for value in label.positive])
    else:
        symbol, operand = parse_comparison(label.positive)
        if is_number(operand):
            hit = OPERATORS[symbol](finite(raw), float(operand))
        else:
            hit = OPERATORS[symbol](raw, operand)
    return hit.cast(pl.Int8)


def is_number(value: object) -> bool:
    try:
        float(value)
    except (TypeError, ValueError):
        return False
    return not isinstance(value, bool)


def time_value(split: SplitRule) -> pl.Expr:
    """The time column as integer ticks (seconds, or milliseconds for "ms"); null where it does not parse
    or lies beyond what 64-bit ticks hold (inf, 1e308)."""
    raw = pl.col(split.time_column).cast(pl.String).str.strip_chars()
    if split.time_unit in ("s", "ms"):
        number = finite(raw)
        return pl.when(number.abs() < 2.0 ** 62).then(number).cast(pl.Int64)
    return raw.str.strptime(pl.Datetime("ms"), split.time_unit, strict=False).dt.epoch("s")


def time_ticks(value: str | float, split: SplitRule, where: str) -> int:
    """`test_from` in the time column's ticks: a number in time_unit, an ISO date, or a time_unit text."""
    if is_number(value):
        return int(float(value))
    try:
        moment = datetime.fromisoformat(str(value))
    except ValueError:
        try:
            moment = datetime.strptime(str(value), split.time_unit)
        except ValueError:
            raise DataError(f"{where} [split]: test_from {value!r} is neither a number, an ISO date nor "
                            f"in time_unit {split.time_unit!r}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    seconds = moment.timestamp()
    return int(seconds * 1000) if split.time_unit == "ms" else int(seconds)


def tick_datetime(ticks: int | None, split: SplitRule) -> str:
    if ticks is None:
        return ""
    seconds = ticks / 1000 if split.time_unit == "ms" else ticks
    return datetime.fromtimestamp(seconds, tz=timezone.utc).strftime("%Y-%m-%d")


def scenario_value(scenario: Scenario) -> pl.Expr:
    """The raw scenario name of each row (before small scenarios merge); "missing" where empty."""
    if scenario.buckets:
        edges = list(scenario.buckets.edges)
        value = (finite(pl.col(scenario.buckets.column))
                 .bin_intervals(edges, labels=bucket_names(edges)).cast(pl.String))
    else:
        value = pl.col(scenario.column).cast(pl.String).str.strip_chars()
        if scenario.separator:
            value = value.str.split(scenario.separator).list.get(scenario.index, null_on_oob=True).str.strip_chars()
    return pl.when(value == "").then(None).otherwise(value).fill_null(MISSING_SCENARIO)


def bucket_names(edges: list[float]) -> list[str]:
    text = [f"{edge:g}" for edge in edges]
    return [f"<{text[0]}", *(f"{low}-{high}" for low, high in itertools.pairwise(text)), f">={text[-1]}"]


# --------------------------------------------------------------------------------------- inspection


@dataclass(frozen=True)
class CardReport:
    """What reading the raw files found: boundaries, scenarios, counts, problems tolerated."""

    rows: int
    split: Any  # the spec's split (TimeSplit, RandomSplit or ColumnSplit)
    per_scenario: pl.DataFrame  # scenario (after merging), split, rows, positives, first, last (ticks)
    merged: tuple[str, ...]  # raw scenarios merged into "other"
    notes: dict[str, object] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()


def inspect_card(card: Card, tables: RawTables) -> CardReport:
    """Read the joined tables (streamed passes) and check the label, time, joins and dense values."""
    frame = tables.frame
    profile = profile_query(card, frame).collect(engine="streaming")
    rows = profile["rows"].item()
    if rows == 0:
        raise DataError(f"{card.where}: the fact table {tables.paths[card.fact.name].name} has no rows")
    notes: dict[str, object] = {}
    warnings: list[str] = []
    notes["unreadable_label_rows"] = tolerated(card, profile, "label", card.label.column, rows)
    if card.split.time_column:
        notes["unreadable_time_rows"] = tolerated(card, profile, "time", card.split.time_column, rows)
    positives = profile["positives"].item()
    if positives in (0, rows - notes["unreadable_label_rows"]):
        raise DataError(f"{card.where} [label]: {card.label.column} {card.label.positive!r} makes "
                        f"{'no' if positives == 0 else 'every'} row positive: the label is not binary")
    notes["label_values"] = label_values(card, profile, warnings)
    notes["unmatched_rows"] = join_matches(card, profile, rows, warnings)
    notes["unparsable_dense"] = {name: profile[f"dense:{name}"].item() for name in card.features.dense}
    warnings += [f"dense column {name!r}: {count:,} values are not finite numbers (counted as missing)"
                 for name, count in notes["unparsable_dense"].items() if count]
    notes |= reading_notes(card, tables, warnings)
    split = split_of(card, frame)
    counts = scenario_counts(card, frame, split)
    merged = small_scenarios(counts, card.scenario.min_train_rows)
    per_scenario = merge_counts(counts, merged, scenario_order(card))
    notes["missing_scenario_rows"] = int(counts.filter(pl.col(SCENARIO_COLUMN) == MISSING_SCENARIO)["rows"].sum())
    return CardReport(rows, split, per_scenario, merged, notes, tuple(warnings))


def readable(card: Card, frame: pl.LazyFrame) -> pl.LazyFrame:
    """Rows with a readable label (and time) only; the split boundaries and scenarios come from these."""
    frame = frame.filter(label_value(card.label).is_not_null())
    for table in card.tables[1:]:
        if table.join.how == "inner":
            frame = frame.filter(pl.col(MATCHED + table.name).is_not_null())
    return frame


def profile_query(card: Card, frame: pl.LazyFrame) -> pl.LazyFrame:
    label, time_column = label_value(card.label), card.split.time_column
    raw_label = pl.col(card.label.column).cast(pl.String).str.strip_chars().drop_nulls()
    columns = [pl.len().alias("rows"), label.sum().alias("positives"),
               *bad_values("label", card.label.column, label), raw_label.n_unique().alias("label:values"),
               raw_label.min().alias("label:min"), raw_label.max().alias("label:max"),
               *(pl.col(MATCHED + t.name).null_count().alias(f"unmatched:{t.name}") for t in card.tables[1:]),
               *((pl.col(name).is_not_null() & numeric(name).is_null()).sum().alias(f"dense:{name}")
                 for name in card.features.dense)]
    if time_column:
        columns += bad_values("time", time_column, time_value(card.split))
    return frame.select(columns)


def bad_values(kind: str, column: str, parsed: pl.Expr) -> list[pl.Expr]:
    bad = parsed.is_null()
    return [bad.sum().alias(f"{kind}:bad"), pl.col(column).filter(bad).first().alias(f"{kind}:first")]


def label_values(card: Card, profile: pl.DataFrame, warnings: list[str]) -> int:
    """How many distinct raw labels there are; more than two under an equality (`== 1`, a list of values)
    turns every value but the positive ones negative, which is worth a word (a threshold means it)."""
    values, positive = profile["label:values"].item(), card.label.positive
    if values > 2 and (isinstance(positive, tuple) or parse_comparison(positive)[0] in ("==", "!=")):
        warnings.append(f"label {card.label.column!r} has {values:,} distinct values (from "
                        f"{profile['label:min'].item()!r} to {profile['label:max'].item()!r}): positive "
                        f"{positive!r} makes every other value negative; list the positive values if "
                        f"more than one is")
    return int(values)


def reading_notes(card: Card, tables: RawTables, warnings: list[str]) -> dict[str, object]:
    """What reading the files skipped or chose: empty lines, repeated join keys, columns named twice."""
    warnings += [f"{name}: {count:,} empty lines skipped" for name, count in tables.empty_lines.items()]
    warnings += [f"{count:,} rows of {tables.paths[name].name} repeat a join key of the rows before them: "
                 f"each fact row is joined with the first row of its key only" for name, count
                 in tables.duplicate_keys.items()]
    warnings += [f"column {name!r} is named more than once in the tables: the first one (fact table first) "
                 f"is read" for name in tables.shadowed]
    return {"empty_lines": tables.empty_lines, "duplicate_join_rows": tables.duplicate_keys,
            "columns_named_twice": list(tables.shadowed)}


def tolerated(card: Card, profile: pl.DataFrame, kind: str, column: str, rows: int) -> int:
    """Rows whose `kind` cannot be read: an error beyond the tolerance, else the count (rows dropped)."""
    bad, first = profile[f"{kind}:bad"].item(), profile[f"{kind}:first"].item()
    if bad > TOLERANCE * rows:
        if kind == "label":
            expected = f"values compared with positive {card.label.positive!r}"
        else:
            expected = f"times in time_unit {card.split.time_unit!r}"
        raise DataError(f"{card.where}: {kind} column {column!r} cannot be read on {bad:,} of {rows:,} rows "
                        f"(expected {expected}; first bad value: {first!r})")
    return int(bad)


def join_matches(card: Card, profile: pl.DataFrame, rows: int, warnings: list[str]) -> dict[str, int]:
    unmatched = {t.name: profile[f"unmatched:{t.name}"].item() for t in card.tables[1:]}
    for table in card.tables[1:]:
        keys = ", ".join(f"{fact} = {dimension}" for fact, dimension in table.join.on.items())
        if unmatched[table.name] == rows:
            raise DataError(f"{card.where} [tables.{table.name}]: the join on {keys} matches none of the "
                            f"{rows:,} fact rows: check `on` and that ids are written alike (1 vs 1.0)")
        if unmatched[table.name]:
            what = "dropped (inner join)" if table.join.how == "inner" else "kept with empty columns"
            warnings.append(f"{unmatched[table.name]:,} of {rows:,} fact rows match no row of "
                            f"{table.name} ({keys}): {what}")
    return unmatched


def split_of(card: Card, frame: pl.LazyFrame) -> Any:
    split = card.split
    if split.by == "random":
        return RandomSplit(ROW_COLUMN, split.seed, split.test_fraction, split.valid_fraction)
    if split.by == "column":
        return ColumnSplit(split.column)
    test_from, valid_from = time_boundaries(card, frame)
    if test_from is None:
        raise DataError(f"{card.where} [split]: no row has a readable time in {split.time_column!r}")
    valid_from = test_from if valid_from is None else valid_from
    return TimeSplit(split.time_column, valid_from=int(valid_from), test_from=int(test_from))


def time_boundaries(card: Card, frame: pl.LazyFrame) -> tuple[int | None, int | None]:
    """The first test and validation times: row quantiles of time (the last shares of rows)."""
    split = card.split
    times = (frame.filter(label_value(card.label).is_not_null())
             .select(time_value(split).alias(QUANTILE_VALUE)).drop_nulls())
    if split.test_from is not None:
        test_from = time_ticks(split.test_from, split, card.where)
        training = times.filter(pl.col(QUANTILE_VALUE) < test_from)
        return test_from, streamed_quantiles(training, [1.0 - split.valid_fraction])[0]
    test_from, valid_from = streamed_quantiles(
        times, [1.0 - split.test_fraction, (1.0 - split.test_fraction) * (1.0 - split.valid_fraction)])
    return test_from, valid_from


def streamed_quantiles(values: pl.LazyFrame, fractions: list[float]) -> list[int | None]:
    """Exact "higher" quantiles (as polars computes them) of the integer column `QUANTILE_VALUE`, in two
    streamed passes that hold counts only (polars' own quantile holds the whole column): rows per bin of
    `QUANTILE_BIN` consecutive values find the bin of each quantile's rank, then rows per value within
    those bins find the value."""
    value, bin_of = pl.col(QUANTILE_VALUE), pl.col(QUANTILE_VALUE) // QUANTILE_BIN
    bins = values.group_by(bin=bin_of).agg(rows=pl.len()).collect(engine="streaming").sort("bin")
    total = int(bins["rows"].sum())
    if total == 0:
        return [None] * len(fractions)
    ends = bins["rows"].cum_sum()
    ranks = [math.ceil((total - 1) * fraction) for fraction in fractions]
    chosen = [ends.search_sorted(rank, side="right") for rank in ranks]  # index of the bin holding each rank
    counts = (values.filter(bin_of.is_in(bins["bin"].gather(chosen).to_list()))
              .group_by(value, bin=bin_of).agg(rows=pl.len()).collect(engine="streaming").sort(QUANTILE_VALUE))
    found = []
    for rank, index in zip(ranks, chosen):
        inside = counts.filter(pl.col("bin") == bins["bin"][index])
        before = ends[index] - bins["rows"][index]
        found.append(inside[QUANTILE_VALUE][inside["rows"].cum_sum().search_sorted(rank - before, side="right")])
    return found


def derived(card: Card, frame: pl.LazyFrame) -> pl.LazyFrame:
    """Readable rows with the label as 0/1, the time as ticks, the raw scenario and a row number."""
    columns = [label_value(card.label).alias(card.label.column), scenario_value(card.scenario).alias(SCENARIO_COLUMN)]
    if card.split.time_column:
        columns.append(time_value(card.split).alias(card.split.time_column))
    columns += [pl.col(s.column).cast(pl.String).str.split(s.separator).list.eval(pl.element().str.strip_chars())
                .list.filter(pl.element() != "").alias(s.name) for s in card.features.sequence if s.column]
    frame = readable(card, frame).with_columns(columns)
    return frame.with_row_index(ROW_COLUMN) if card.split.by == "random" else frame


def scenario_counts(card: Card, frame: pl.LazyFrame, split: Any) -> pl.DataFrame:
    """Rows, positives and time range per raw scenario and split."""
    frame = derived(card, frame).with_columns(split.assign())
    time = pl.col(card.split.time_column) if card.split.time_column else pl.lit(None, pl.Int64)
    return (frame.group_by(SCENARIO_COLUMN, SPLIT_COLUMN)
            .agg(rows=pl.len(), positives=pl.col(card.label.column).sum(), first=time.min(), last=time.max())
            .collect(engine="streaming"))


def small_scenarios(counts: pl.DataFrame, min_train_rows: int) -> tuple[str, ...]:
    train = counts.filter(pl.col(SPLIT_COLUMN) == "train").group_by(SCENARIO_COLUMN).agg(pl.col("rows").sum())
    rows = dict(zip(train[SCENARIO_COLUMN], train["rows"]))
    names = counts[SCENARIO_COLUMN].unique().to_list()
    return tuple(sorted(name for name in names if rows.get(name, 0) < min_train_rows and name != OTHER_SCENARIO))


def merged_scenario(merged: tuple[str, ...]) -> pl.Expr:
    column = pl.col(SCENARIO_COLUMN)
    return pl.when(column.is_in(list(merged))).then(pl.lit(OTHER_SCENARIO)).otherwise(column).alias(SCENARIO_COLUMN)


def merge_counts(counts: pl.DataFrame, merged: tuple[str, ...], order: tuple[str, ...]) -> pl.DataFrame:
    rank = pl.col(SCENARIO_COLUMN).replace_strict(order, range(len(order)), default=len(order),
                                                  return_dtype=pl.Int64)
    return (counts.with_columns(merged_scenario(merged))
            .group_by(SCENARIO_COLUMN, SPLIT_COLUMN)
            .agg(pl.col("rows").sum(), pl.col("positives").sum(), pl.col("first").min(), pl.col("last").max())
            .sort(rank, SCENARIO_COLUMN, SPLIT_COLUMN, nulls_last=True).rename({SPLIT_COLUMN: "split"}))


def scenario_order(card: Card) -> tuple[str, ...]:
    """Bucketed scenarios in the order of their edges (`<25`, `25-35`, ...), not as text sorts them."""
    return tuple(bucket_names(list(card.scenario.buckets.edges))) if card.scenario.buckets else ()


# ---------------------------------------------------------------------------------------- preparing


def card_spec(card: Card, tables: RawTables, report: CardReport, name: str | None = None) -> DatasetSpec:
    features = card.features
    sides = feature_sides(card, tables)
    return DatasetSpec(
        name=name or card.name, label=card.label.column, scenario=SCENARIO_COLUMN,
        sparse=tuple(SparseColumn(column, sides.get(column, "context")) for column in features.sparse),
        dense=features.dense,
        sequences=tuple(SequenceColumn(s.name, s.from_, s.max_len) for s in features.sequence),
        split=report.split, user=features.user, fingerprint=tables.fingerprint(),
        merged_scenarios=report.merged, notes={"card": card.name, **report.notes},
        scenario_order=scenario_order(card),
    )


def feature_sides(card: Card, tables: RawTables) -> dict[str, str]:
    """User: the user column and the columns of tables joined on it; item: sequence targets and theirs."""
    keys = {card.features.user: "user"} if card.features.user else {}
    keys |= {sequence.from_: "item" for sequence in card.features.sequence}
    sides = dict(keys)
    for table in card.tables[1:]:
        side = next((keys[key] for key in table.join.on if key in keys), None)
        if side:
            sides |= {column: side for column in tables.columns[table.name] if column not in sides}
    return sides


def prepared_frame(card: Card, frame: pl.LazyFrame, report: CardReport, workdir: Path,
                   progress: Progress) -> pl.LazyFrame:
    """The rows to prepare; sequences built from the fact table are gathered by user buckets in `workdir`."""
    frame = derived(card, frame).with_columns(merged_scenario(report.merged))
    built = [sequence for sequence in card.features.sequence if sequence.column is None]
    if not built:
        return frame
    user, time = card.features.user, card.split.time_column
    histories = [History(frame.select(user, time, s.from_).drop_nulls(), {s.name: s.from_}, s.max_len)
                 for s in built]
    buckets = bucket_count(report.rows)
    return with_histories(frame, histories, user, time, workdir / "sequences", buckets, progress)


@contextmanager
def opened(card: Card, raw_dir: Path, work_parent: Path | None = None) -> Iterator[tuple[RawTables, Path]]:
    """The card's tables read from `raw_dir`, with a scratch folder for transcoded copies."""
    if work_parent is not None:
        Path(work_parent).mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".card-", dir=work_parent) as scratch:
        workdir = Path(scratch)
        with reading(card):
            yield raw_tables(card, raw_dir, workdir), workdir


def check_card_data(card: Card, raw_dir: Path) -> CardReport:
    """Validate the card against the raw files without preparing anything."""
    with opened(card, raw_dir) as (tables, _):
        report = inspect_card(card, tables)
    unchecked = [f"[source] file {file.name!r} has no sha256: a damaged or swapped download would go "
                 f"unnoticed; add sha256 = \"...\" (sha256sum {file.name})"
                 for file in (card.source.files if card.source else ()) if file.url and not file.sha256]
    return dataclasses.replace(report, warnings=(*report.warnings, *unchecked))


def prepare_card(card: Card, raw_dir: Path, data_dir: Path, progress: Progress | None = None,
                 name: str | None = None, force: bool = False) -> PrepareResult:
    report = progress or ignore
    with opened(card, raw_dir, data_dir) as (tables, workdir):
        report(f"reading {', '.join(p.name for p in tables.paths.values())}")
        inspection = inspect_card(card, tables)
        for warning in inspection.warnings:
            report(f"warning: {warning}")
        if inspection.merged:
            report(f"merged {len(inspection.merged)} small scenario(s) into {OTHER_SCENARIO!r}: "
                   f"{', '.join(inspection.merged)}")
        spec = card_spec(card, tables, inspection, name)
        return prepare(spec, lambda: prepared_frame(card, tables.frame, inspection, workdir, report), data_dir,
                       progress, force)


def prepare_card_source(raw_dir: Path | None, data_dir: Path, progress: Progress | None = None,
                        card: Path | None = None, name: str | None = None, force: bool = False) -> PrepareResult:
    """The registry's preparer for a source that is a card alone."""
    if raw_dir is None:
        raise DataError("pass --raw-dir DIR: the folder holding the card's raw files")
    return prepare_card(load_card(card), raw_dir, data_dir, progress, name, force)


def prepare_converted(card_path: Path, convert: Callable[[Path, Path], None], raw_dir: Path | None,
                      data_dir: Path, progress: Progress | None = None, name: str | None = None,
                      force: bool = False) -> PrepareResult:
    """For a source whose raw layout a card cannot say: `convert(raw_dir, workdir)` writes the card's
    tables into a scratch folder, which the same card preparer then reads."""
    if raw_dir is None:
        raise DataError("pass --raw-dir DIR: the folder holding the raw files")
    Path(data_dir).mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".convert-", dir=data_dir) as scratch:
        (progress or ignore)(f"converting the raw files in {raw_dir}")
        convert(Path(raw_dir).expanduser(), Path(scratch))
        return prepare_card(load_card(card_path), Path(scratch), data_dir, progress, name, force)


def raw_file(raw_dir: Path, name: str) -> Path:
    path = raw_dir / name
    if not path.is_file():
        raise DataError(f"{path} does not exist: check --raw-dir (it should hold {name})")
    return path
