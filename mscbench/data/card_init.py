"""`mscbench card init`: sniff a raw file with polars and draft a commented dataset card to edit."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import polars as pl

from mscbench.data.card import looks_like_parquet
from mscbench.data.errors import DataError

SNIFF_ROWS = 10_000  # rows read to guess types and cardinalities
SEPARATORS = (",", "\t", "|", ";", " ")
DENSE_MIN_DISTINCT = 50  # a numeric column with more distinct values than this is drafted as dense
UNIX_SECONDS = (631_152_000, 4_102_444_800)  # 1990-01-01 .. 2100-01-01
TIME_WORDS = ("time", "date", "day", "ts", "stamp")
TIME_FORMATS = ("%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S", "%Y/%m/%d %H:%M:%S", "%Y-%m-%d", "%Y%m%d")


@dataclass(frozen=True)
class Sniffed:
    separator: str
    header: bool
    sample: pl.DataFrame  # every column as text


def sniff(path: Path) -> Sniffed:
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path} does not exist")
    if looks_like_parquet(path):
        frame = pl.scan_parquet(path).head(SNIFF_ROWS).collect()
        return Sniffed("", True, frame.with_columns(pl.all().cast(pl.String)))
    lines = pl.read_csv(path, separator="\x1f", has_header=False, quote_char=None, n_rows=20,
                        infer_schema=False, new_columns=["line"])["line"].to_list()
    separator = max(SEPARATORS, key=lambda s: consistent_fields(lines, s))
    first = pl.read_csv(path, separator=separator, has_header=False, n_rows=2, infer_schema=False)
    header = looks_like_header(first)
    sample = pl.read_csv(path, separator=separator, has_header=header, n_rows=SNIFF_ROWS, infer_schema=False,
                         null_values=["", "NULL"])
    if not header:
        sample.columns = [f"column_{index + 1}" for index in range(sample.width)]
    return Sniffed(separator, header, sample)


def consistent_fields(lines: list[str], separator: str) -> tuple[int, int]:
    """(every line has the same field count, that count): the likeliest separator scores highest."""
    counts = {line.count(separator) for line in lines if line}
    return (len(counts) == 1, min(counts) if counts else 0)


def looks_like_header(first: pl.DataFrame) -> bool:
    """A first line with no numeric field while the second has one is a header."""
    if first.height < 2:
        return True
    numeric = [is_number(value) for value in first.row(0)]
    return not any(numeric) and any(is_number(value) for value in first.row(1))


def is_number(value: str | None) -> bool:
    try:
        float(value)
    except (TypeError, ValueError):
        return False
    return True


@dataclass(frozen=True)
class Profile:
    name: str
    distinct: int
    numeric: bool
    time_unit: str | None  # "s" or "ms" where the values look like Unix times, or a strptime format


def profile(sample: pl.DataFrame) -> list[Profile]:
    profiles = []
    for name in sample.columns:
        values = sample[name].drop_nulls()
        parsed = values.cast(pl.Float64, strict=False)
        numeric = values.len() > 0 and parsed.null_count() == 0
        unit = unix_unit(name, parsed) if numeric else text_time_format(values)
        profiles.append(Profile(name, values.n_unique(), numeric, unit))
    return profiles


def text_time_format(values: pl.Series) -> str | None:
    """The first of the common timestamp formats that every value parses with."""
    for layout in TIME_FORMATS:
        if values.len() and values.str.strptime(pl.Datetime, layout, strict=False).null_count() == 0:
            return layout
    return None


def unix_unit(name: str, values: pl.Series) -> str | None:
    if not any(word in name.lower() for word in TIME_WORDS) and values.n_unique() < DENSE_MIN_DISTINCT:
        return None
    low, high = values.min(), values.max()
    if UNIX_SECONDS[0] <= low and high <= UNIX_SECONDS[1]:
        return "s"
    if UNIX_SECONDS[0] * 1000 <= low and high <= UNIX_SECONDS[1] * 1000:
        return "ms"
    return None


def draft_card(path: Path, label: str, scenario: str, name: str | None = None) -> str:
    """A commented card for `path`: every column placed by a guess the user checks."""
    sniffed = sniff(path)
    columns = {p.name: p for p in profile(sniffed.sample)}
    for role, column in (("label", label), ("scenario", scenario)):
        if column not in columns:
            raise DataError(f"{path} has no column {column!r} for --{role}; its columns: {', '.join(columns)}")
    times = [p for p in columns.values() if p.time_unit and p.name not in (label, scenario)]
    time = times[0] if times else None
    rest = [p for p in columns.values() if p.name not in (label, scenario) and p is not time]
    dense = [p.name for p in rest if p.numeric and p.distinct > DENSE_MIN_DISTINCT and "id" not in p.name.lower()]
    sparse = [p.name for p in rest if p.name not in dense]
    user = next((c for c in sparse if "user" in c.lower()), None)
    label_values = sniffed.sample[label].drop_nulls().unique().sort().to_list()
    dataset = name or Path(path).name.split(".")[0]
    lines = [
        f"# Draft dataset card for {Path(path).name}, written by `mscbench card init`: check every line, then",
        f"#   mscbench card check {dataset}.toml --raw-dir {Path(path).parent}",
        f"name = {quoted(dataset)}",
        "description = \"\"",
        "",
        f"[tables.{table_name(dataset)}]  # the fact table: one row per impression",
        f"path = {quoted(Path(path).name)}",
        *([f"separator = {quoted(sniffed.separator)}", f"header = {str(sniffed.header).lower()}"]
          if sniffed.separator else []),
        *([f"columns = [{', '.join(map(quoted, sniffed.sample.columns))}]  # the file has no header: name them"]
          if not sniffed.header else []),
        "null_values = [\"\", \"NULL\"]",
        "encoding = \"utf8\"  # or \"latin1\"",
        "",
        "# [tables.users]  # a dimension table, joined onto the fact table",
        "# path = \"users.csv\"",
        "# join = { on = \"user_id\", how = \"left\" }",
        "",
        "[label]",
        f"column = {quoted(label)}  # values seen: {preview(label_values)}",
        f"positive = {quoted(guess_positive(label_values))}  # or a list of positive values",
        "",
        "[scenario]",
        (f"column = {quoted(scenario)}  # {columns[scenario].distinct} distinct values in the first "
        f"{sniffed.sample.height:,} rows"),
        "min_train_rows = 1000  # smaller scenarios merge into \"other\"",
        "",
        "[features]",
        *feature_lines("sparse", sparse, columns, "categorical: ids and codes, read as text"),
        *feature_lines("dense", dense, columns, "numeric, standardised with training statistics"),
        f"user = {quoted(user)}  # for GAUC" if user else "# user = \"user_id\"  # for GAUC",
        "",
        "[split]",
        *split_lines(time, [p.name for p in columns.values() if p.name != label]),
    ]
    return "\n".join(lines) + "\n"


def table_name(dataset: str) -> str:
    return "".join(c if c.isalnum() or c == "_" else "_" for c in dataset) or "events"


def quoted(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\t", "\\t") + '"'


def preview(values: list) -> str:
    shown = ", ".join(map(str, values[:8]))
    return shown + (f", ... ({len(values)} values)" if len(values) > 8 else "")


def guess_positive(values: list[str]) -> str:
    numbers = sorted(float(v) for v in values if is_number(v))
    if len(numbers) == len(values) and set(numbers) <= {0.0, 1.0}:
        return "== 1"
    if len(numbers) == len(values) and numbers:
        return f">= {numbers[len(numbers) * 3 // 4]:g}"
    return f"== {values[-1]}" if values else "== 1"


def feature_lines(kind: str, names: list[str], columns: dict[str, Profile], meaning: str) -> list[str]:
    lines = [f"{kind} = [  # {meaning}"]
    lines += [f"  {quoted(name)},  # {columns[name].distinct:,} distinct" for name in names]
    return lines + ["]"]


def split_lines(time: Profile | None, names: list[str]) -> list[str]:
    if time is None:
        return ["by = \"random\"  # no time-like column found; or by = \"time\" with time_column",
                "test_fraction = 0.1", "valid_fraction = 0.1", "seed = 0"]
    return ["by = \"time\"  # or \"random\" (with seed) or \"column\"",
            f"time_column = {quoted(time.name)}",
            f"time_unit = {quoted(time.time_unit)}  # s, ms, or a strptime format such as \"%Y-%m-%d %H:%M:%S\"",
            "test_fraction = 0.1  # the last 10% of rows in time order; or test_from = \"2024-01-01\"",
            "valid_fraction = 0.1  # the end of the training time, for early stopping"]
