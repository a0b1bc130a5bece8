"""AliExpress: the public search-ranking dataset (Tianchi 74690), scenario = country (NL, ES, FR, US, RU).

The publisher ships `aliexpress_<CC>_datasets.zip` per country, holding `<cc>_user_train.zip`,
`<cc>_user_test.zip`, `<cc>_item_train.zip` and `<cc>_item_test.zip`, each one headerless CSV:
`<cc>_user_*.csv` has 33 columns (column 1 the search id; 2-8 and 32-33 categorical, 9-31 numerical),
`<cc>_item_*.csv` 49 (column 1 the search id; 19, 34-36 and 40-42 categorical, the rest numerical;
column 49 the label: 0 shown, 1 clicked, 2 clicked and bought). Joining them on the search id gives the
widely used layout `search_id, categorical_1..16, numerical_1..63, click, conversion` (the user's then the
item's categorical columns, likewise the numerical ones), which is also accepted as it comes: a folder per
country (`AliExpress_NL/train.csv`, `test.csv`). Either way the columns are named as in that layout.

The split is the publisher's: its train files train (less a seeded random 10% that validates, for early
stopping) and its test files test. Labels: click (default) or conversion (variant "conversion").
"""

from __future__ import annotations

import re
from pathlib import Path

import polars as pl

from mscbench.data.download import extracted
from mscbench.data.errors import DataError
from mscbench.data.files import fingerprint
from mscbench.data.prepare import PrepareResult, Progress, prepare
from mscbench.data.spec import ColumnSplit, DatasetSpec, RandomSplit, SparseColumn

NAME = "aliexpress"
PREPARER_VERSION = "1"
COUNTRIES = ("NL", "ES", "FR", "US", "RU")
LABELS = ("click", "conversion")
VALID_FRACTION = 0.1
SEED = 0
USER_COLUMNS, ITEM_COLUMNS = 33, 49
USER_CATEGORICAL = (*range(2, 9), 32, 33)  # 1-based raw column numbers
ITEM_CATEGORICAL = (19, 34, 35, 36, 40, 41, 42)
CATEGORICAL = tuple(f"categorical_{i}" for i in range(1, 17))
NUMERICAL = tuple(f"numerical_{i}" for i in range(1, 64))
JOINED = ("search_id", *CATEGORICAL, *NUMERICAL, *LABELS)
SPLITS = ("train", "test")


def aliexpress_spec(label: str, fingerprint: dict[str, str]) -> DatasetSpec:
    if label not in LABELS:
        raise DataError(f"aliexpress: label {label!r} is not one of {', '.join(LABELS)}")
    user_side = len(USER_CATEGORICAL)
    return DatasetSpec(
        name=NAME, label=label, scenario="country", variant="default" if label == "click" else label,
        sparse=tuple(SparseColumn(name, "user" if i < user_side else "item")
                     for i, name in enumerate(CATEGORICAL)),
        dense=NUMERICAL, split=ColumnSplit("split"),
        fingerprint={**fingerprint, "aliexpress_preparer": PREPARER_VERSION},
        notes={"validation": f"a seeded random {VALID_FRACTION:.0%} of the publisher's train files "
                             f"(seed {SEED})"},
    )


def prepare_aliexpress(raw_dir: Path, data_dir: Path, progress: Progress | None = None,
                       label: str = "click", force: bool = False) -> PrepareResult:
    """Prepare the per-country AliExpress files (joined CSVs, the publisher's files, or its archives)."""
    raw_dir = Path(raw_dir)
    cache = Path(data_dir) / ".raw" / NAME
    unpack_archives(raw_dir, cache)
    files = {country: country_files(raw_dir, cache, country) for country in COUNTRIES}
    found = {country: paths for country, paths in files.items() if paths}
    if not found:
        raise DataError(f"{raw_dir}: no AliExpress country found: expected per-country folders (e.g. "
                        f"AliExpress_NL/train.csv and test.csv) or the publisher's "
                        f"aliexpress_NL_datasets.zip")
    paths = [path for split in found.values() for split_paths in split.values() for path in split_paths]
    spec = aliexpress_spec(label, fingerprint(paths))
    return prepare(spec, lambda: log(found), data_dir, progress, force)


def unpack_archives(raw_dir: Path, cache: Path) -> None:
    """Extract the publisher's archives (the country's zip, then the four zips inside) into `cache`."""
    for archive in sorted(raw_dir.rglob("*.zip")):
        folder = extracted(archive, cache / archive.stem)
        for inner in sorted(folder.rglob("*.zip")):
            extracted(inner, cache / inner.stem)


def country_files(raw_dir: Path, cache: Path, country: str) -> dict[str, list[Path]]:
    """Per split, the joined CSV ([path]) or the publisher's user and item CSVs ([user, item]); {} if none."""
    code = country.lower()
    raw = {split: [first(f"{code}_{kind}_{split}.csv", raw_dir, cache) for kind in ("user", "item")]
           for split in SPLITS}
    if all(path is not None for paths in raw.values() for path in paths):
        return raw
    folders = [f for f in [*raw_dir.rglob("*"), raw_dir] if f.is_dir() and re.search(
        rf"(^|[_\-]){country}($|[_\-])", f.name, re.IGNORECASE)]
    for folder in folders:
        if (folder / "train.csv").is_file() and (folder / "test.csv").is_file():
            return {split: [folder / f"{split}.csv"] for split in SPLITS}
    return {}


def first(name: str, *folders: Path) -> Path | None:
    found = [path for folder in folders if folder.is_dir() for path in sorted(folder.rglob(name))]
    return found[0] if found else None


def log(found: dict[str, dict[str, list[Path]]]) -> pl.LazyFrame:
    """Every country's rows in the joined layout, with their country and split."""
    frames = []
    for number, (country, splits) in enumerate(found.items()):
        for split, paths in splits.items():
            rows = joined(*paths) if len(paths) == 2 else scan_joined(paths[0])
            key = pl.col("row").cast(pl.Int64) + (number << 40)  # unique across countries
            frames.append(rows.with_row_index("row").with_columns(
                country=pl.lit(country), split=split_of(split), row=key))
    return pl.concat(frames, how="vertical_relaxed")


def split_of(split: str) -> pl.Expr:
    """The publisher's test stays test; a seeded random slice of its train validates."""
    if split == "test":
        return pl.lit("test")
    return RandomSplit("row", SEED, test_fraction=0.0, valid_fraction=VALID_FRACTION).assign().alias("split")


def scan_joined(path: Path) -> pl.LazyFrame:
    header = read_header(path)
    if tuple(header) != JOINED:
        raise DataError(f"{path}: line 1 has columns {','.join(header[:5])},... ({len(header)} in all); "
                        f"expected search_id,categorical_1..16,numerical_1..63,click,conversion (82)")
    schema = {name: pl.String for name in ("search_id", *CATEGORICAL)} | \
        {name: pl.Float64 for name in NUMERICAL} | {name: pl.Int8 for name in LABELS}
    return pl.scan_csv(path, schema=schema, null_values=[""])


def read_header(path: Path) -> list[str]:
    with open(path, encoding="utf-8", errors="replace") as stream:
        return [name.strip() for name in stream.readline().lstrip("\ufeff").rstrip("\r\n").split(",")]


def scan_raw(path: Path, prefix: str, count: int) -> pl.LazyFrame:
    found = len(read_header(path))
    if found != count:
        raise DataError(f"{path}: line 1 has {found} fields; the publisher's {prefix} file has {count}")
    schema = {f"{prefix}_{i}": pl.String for i in range(1, count + 1)}
    return pl.scan_csv(path, has_header=False, schema=schema, null_values=[""])


def joined(user_path: Path, item_path: Path) -> pl.LazyFrame:
    """The publisher's user and item files joined on the search id, in the joined layout's columns."""
    users, items = scan_raw(user_path, "user", USER_COLUMNS), scan_raw(item_path, "item", ITEM_COLUMNS)
    user_numerical = [i for i in range(2, USER_COLUMNS + 1) if i not in USER_CATEGORICAL]
    item_numerical = [i for i in range(2, ITEM_COLUMNS) if i not in ITEM_CATEGORICAL]
    categorical = [f"user_{i}" for i in USER_CATEGORICAL] + [f"item_{i}" for i in ITEM_CATEGORICAL]
    numerical = [f"user_{i}" for i in user_numerical] + [f"item_{i}" for i in item_numerical]
    outcome = pl.col(f"item_{ITEM_COLUMNS}").cast(pl.Int8, strict=False)
    return items.join(users, left_on="item_1", right_on="user_1", how="inner").select(
        pl.col("item_1").alias("search_id"),
        *(pl.col(raw).alias(name) for raw, name in zip(categorical, CATEGORICAL)),
        *(pl.col(raw).cast(pl.Float64, strict=False).alias(name) for raw, name in zip(numerical, NUMERICAL)),
        click=(outcome >= 1).cast(pl.Int8), conversion=(outcome == 2).cast(pl.Int8))
