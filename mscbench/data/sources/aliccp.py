"""Ali-CCP (Alibaba Click and Conversion Prediction, Tianchi dataset 408) from its raw files.

What a card cannot say: each raw line packs its features into one field. A sample line is
`sample_id,click,conversion,common_feature_index,feature_num,feature_list`; a common-features line is
`common_feature_index,feature_num,feature_list`; a feature list joins features with \\x01, and a feature
is `field\\x02feature_id\\x03value`. Here both lists are joined per sample and each field's first feature
id becomes a column (multi-valued behaviour fields keep their first id), streaming, into a Parquet table
that `mscbench/data/cards/aliccp.toml` describes; the card preparer does the rest. The training file gives train
and (a hashed tenth of its samples) valid; the test file gives test.
"""

from __future__ import annotations

import re
from pathlib import Path

import polars as pl

from mscbench.data.card import prepare_converted, raw_file
from mscbench.data.prepare import PrepareResult, Progress
from mscbench.data.sources import SOURCES

FIELDS = ("101", "121", "122", "124", "125", "126", "127", "128", "129", "205", "206", "207", "210", "216",
          "508", "509", "702", "853", "301", "109_14", "110_14", "127_14", "150_14")
FILES = {"train": ("sample_skeleton_train.csv", "common_features_train.csv"),
         "test": ("sample_skeleton_test.csv", "common_features_test.csv")}
CONVERTED = "aliccp.parquet"
VALID_SHARE = 10  # one training sample in this many validates


def prepare_aliccp(raw_dir: Path | None, data_dir: Path, progress: Progress | None = None,
                   name: str | None = None, force: bool = False) -> PrepareResult:
    return prepare_converted(SOURCES["aliccp"].card, convert, raw_dir, data_dir, progress, name, force)


def convert(raw_dir: Path, workdir: Path) -> None:
    parts = [samples(raw_dir, split, *names) for split, names in FILES.items()]
    pl.concat(parts).sink_parquet(workdir / CONVERTED, engine="streaming")


def samples(raw_dir: Path, split: str, skeleton_name: str, common_name: str) -> pl.LazyFrame:
    skeleton = lines(raw_file(raw_dir, skeleton_name),
                     ["sample_id", "click", "conversion", "common_feature_index", "feature_num", "features"])
    common = lines(raw_file(raw_dir, common_name), ["common_feature_index", "common_num", "common_features"])
    joined = skeleton.join(common, on="common_feature_index", how="left")
    features = pl.concat_str(["features", "common_features"], separator="\x01", ignore_nulls=True)
    in_train = pl.col("sample_id").hash(seed=0) % VALID_SHARE != 0
    assigned = pl.lit("test") if split == "test" else pl.when(in_train).then(pl.lit("train")).otherwise(pl.lit("valid"))
    return joined.select("sample_id", "click", "conversion", assigned.alias("split"),
                         *(features.str.extract(rf"(?:^|\x01){re.escape(field)}\x02([^\x03\x01]*)\x03", 1)
                           .alias(field) for field in FIELDS))


def lines(path: Path, columns: list[str]) -> pl.LazyFrame:
    return pl.scan_csv(path, has_header=False, new_columns=columns, infer_schema=False, quote_char=None)
