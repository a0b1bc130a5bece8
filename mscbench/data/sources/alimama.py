"""Alimama: "Ad Display/Click Data on Taobao.com" (Tianchi dataset 56), scenario = city level.

Raw files, as published (plain CSV or `<file>.tar.gz`), comma separated with a header:

- `raw_sample.csv` (user, time_stamp, adgroup_id, pid, nonclk, clk): 26M impressions over 8 days,
  2017-05-06..2017-05-13 in UTC+8, time_stamp in Unix seconds;
- `ad_feature.csv` (adgroup_id, cate_id, campaign_id, customer, brand, price): brand may be `NULL`;
- `user_profile.csv` (userid, cms_segid, cms_group_id, final_gender_code, age_level, pvalue_level,
  shopping_level, occupation, new_user_class_level): the header's last name ends with a space, missing
  values are empty fields;
- `behavior_log.csv` (user, time_stamp, btag, cate, brand): 700M behaviours (pv, cart, fav, buy) over
  22 days, about 23 GB.

SAML's protocol: impressions of users without a profile are dropped; the scenario is the city level
`new_user_class_level`, whose missing value is its own scenario, "missing" (SAML counts 5 scenarios:
levels 1-4 and missing; dropping them instead would leave about 18M of the 24.6M samples SAML reports);
each impression carries the user's last 15 behaviours (category, brand, behaviour type and the seconds
before the impression) strictly before its timestamp; 2017-05-06..05-11 train, 05-12 validates (the end
of SAML's training week, for early stopping only), 05-13 tests.

The behaviour log never sits in memory whole: `mscbench.data.sequences` partitions impressions and
behaviours on disk by a hash of the user into buckets and builds the sequences bucket by bucket, so peak
memory is about one bucket.
"""

from __future__ import annotations

import math
import shutil
import tempfile
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import polars as pl

from mscbench.data import sequences
from mscbench.data.download import extracted, is_archive
from mscbench.data.errors import DataError
from mscbench.data.files import fingerprint
from mscbench.data.prepare import PrepareResult, Progress, ignore, prepare
from mscbench.data.spec import DatasetSpec, SequenceColumn, SparseColumn, TimeSplit

NAME = "alimama"
PREPARER_VERSION = "1"
SEQUENCE_LENGTH = 15
CHINA = timezone(timedelta(hours=8))  # the data's day boundaries (BARS: 1494032110 is 2017-05-06 08:55:10)
VALID_DAY, TEST_DAY = date(2017, 5, 12), date(2017, 5, 13)
MISSING_CITY = "missing"
BUCKET_BYTES = 256 << 20  # behaviour-log bytes per bucket: about 0.5 GB of memory per bucket at full scale
BAD_TIME_TOLERANCE = 1e-4  # share of impressions whose time_stamp may fail to parse (dropped, counted)


@dataclass(frozen=True)
class RawTable:
    file: str
    columns: tuple[str, ...]
    time: str | None = None  # an integer column of Unix seconds; every other column is read as text

    def schema(self) -> dict[str, pl.DataType]:
        return {name: pl.String for name in self.columns}


RAW_SAMPLE = RawTable("raw_sample.csv", ("user", "time_stamp", "adgroup_id", "pid", "nonclk", "clk"),
                      "time_stamp")
AD_FEATURE = RawTable("ad_feature.csv",
                      ("adgroup_id", "cate_id", "campaign_id", "customer", "brand", "price"))
USER_PROFILE = RawTable("user_profile.csv", (
    "userid", "cms_segid", "cms_group_id", "final_gender_code", "age_level", "pvalue_level", "shopping_level",
    "occupation", "new_user_class_level"))
BEHAVIOR_LOG = RawTable("behavior_log.csv", ("user", "time_stamp", "btag", "cate", "brand"), "time_stamp")
TABLES = (RAW_SAMPLE, AD_FEATURE, USER_PROFILE, BEHAVIOR_LOG)

USER_FEATURES = USER_PROFILE.columns[1:]
ITEM_FEATURES = ("adgroup_id", "cate_id", "campaign_id", "customer", "brand")
HISTORY = {"hist_cate": "cate", "hist_brand": "brand", "hist_btag": "btag"}  # sequence -> behaviour column
HISTORY_TARGET = {"hist_cate": "cate_id", "hist_brand": "brand", "hist_btag": None}


def day_start(day: date) -> int:
    return int(datetime(day.year, day.month, day.day, tzinfo=CHINA).timestamp())


def alimama_spec(fingerprint: dict[str, str], notes: dict[str, object]) -> DatasetSpec:
    return DatasetSpec(
        name=NAME, label="clk", scenario="city_level",
        sparse=(SparseColumn("user", "user"), *(SparseColumn(name, "user") for name in USER_FEATURES),
                *(SparseColumn(name, "item") for name in ITEM_FEATURES),
                SparseColumn("pid", "context"), SparseColumn("hour", "context")),
        dense=("log_price",),
        sequences=tuple(SequenceColumn(name, HISTORY_TARGET[name], SEQUENCE_LENGTH) for name in HISTORY),
        sequence_gap="hist_gap", user="user",
        split=TimeSplit("time_stamp", valid_from=day_start(VALID_DAY), test_from=day_start(TEST_DAY)),
        fingerprint={**fingerprint, "alimama_preparer": PREPARER_VERSION}, notes=notes,
    )


def prepare_alimama(raw_dir: Path, data_dir: Path, progress: Progress | None = None,
                    buckets: int | None = None, force: bool = False) -> PrepareResult:
    """Prepare the Alimama raw files in `raw_dir` (plain CSVs or the published archives)."""
    report = progress or ignore
    files = {table.file: locate(Path(raw_dir), table, Path(data_dir) / ".raw" / NAME) for table in TABLES}
    tables = {table.file: scan(files[table.file], table) for table in TABLES}
    report("checking the impressions and the user profiles")
    impressions, notes = checked_impressions(files[RAW_SAMPLE.file], tables)
    count = buckets or max(1, math.ceil(files[BEHAVIOR_LOG.file].stat().st_size / BUCKET_BYTES))
    spec = alimama_spec(fingerprint(files.values()), {**notes, "buckets": count})
    Path(data_dir).mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".alimama-buckets-", dir=data_dir))  # beside the output: same disk
    try:
        behaviours = tables[BEHAVIOR_LOG.file]
        return prepare(spec, lambda: with_histories(impressions, behaviours, work, count, report), data_dir, progress,
                       force)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def locate(raw_dir: Path, table: RawTable, cache: Path) -> Path:
    """The table's CSV in `raw_dir`, extracted (once, into `cache`) from its archive where needed."""
    if (raw_dir / table.file).is_file():
        return raw_dir / table.file
    for archive in sorted(raw_dir.glob(f"{table.file}.*")):
        if is_archive(archive):
            found = sorted(extracted(archive, cache / archive.name).rglob(table.file))
            if found:
                return found[0]
            raise DataError(f"{archive} holds no {table.file}")
    raise DataError(f"{raw_dir}: {table.file} (or {table.file}.tar.gz) not found; download the four Alimama "
                    f"files from https://tianchi.aliyun.com/dataset/56 into that folder")


def scan(path: Path, table: RawTable) -> pl.LazyFrame:
    """The table as text columns (the header checked, its names' stray spaces tolerated)."""
    with open(path, encoding="utf-8", errors="replace") as stream:
        header = [name.strip() for name in stream.readline().lstrip("\ufeff").rstrip("\r\n").split(",")]
    if tuple(header) != table.columns:
        raise DataError(f"{path}: line 1 has columns {','.join(header)}; expected {','.join(table.columns)}")
    schema = table.schema()
    if table is BEHAVIOR_LOG:
        schema["time_stamp"] = pl.Int64  # 700M rows: a value that does not parse stops the scan (named)
    return pl.scan_csv(path, has_header=False, skip_rows=1, schema=schema, null_values=["", "NULL"])


def checked_impressions(path: Path, tables: dict[str, pl.LazyFrame]) -> tuple[pl.LazyFrame, dict]:
    """Impressions joined with their user profile and ad; the counts of dropped rows for the manifest."""
    samples = tables[RAW_SAMPLE.file].with_row_index("line", offset=2)
    time = pl.col("time_stamp").cast(pl.Int64, strict=False)
    timed = samples.with_columns(time).drop_nulls("time_stamp").drop("line")
    profiles = tables[USER_PROFILE.file].rename({"userid": "user"}).unique("user", keep="first")
    rows, bad, first_bad, without_profile = pl.collect_all([
        samples.select(pl.len()), samples.select(time.is_null().sum()),
        samples.filter(time.is_null()).select("line", "time_stamp").head(1),
        timed.join(profiles, on="user", how="anti").select(pl.len())], engine="streaming")
    rows, bad, without_profile = rows.item(), bad.item(), without_profile.item()
    if bad > BAD_TIME_TOLERANCE * rows:
        line, value = first_bad.row(0)
        raise DataError(f"{path}: line {line}: time_stamp {value!r} is not Unix seconds (an integer); "
                        f"{bad:,} of {rows:,} rows are like it")
    ads = tables[AD_FEATURE.file].unique("adgroup_id", keep="first")
    local = pl.col("time_stamp") + 8 * 3600
    impressions = (timed.join(profiles, on="user", how="inner").join(ads, on="adgroup_id", how="left")
                   .with_columns(city_level=pl.col("new_user_class_level").fill_null(MISSING_CITY),
                                 hour=(local % 86_400 // 3600).cast(pl.String),
                                 log_price=pl.col("price").cast(pl.Float64, strict=False).log1p(),
                                 clk=pl.col("clk").cast(pl.Int8, strict=False)))
    notes = {"raw_impressions": rows, "dropped_without_profile": without_profile, "dropped_bad_time": bad}
    return impressions, notes


def with_histories(impressions: pl.LazyFrame, behaviours: pl.LazyFrame, work: Path, buckets: int,
                   report: Progress) -> pl.LazyFrame:
    """The impressions with their behaviour sequences, built bucket by bucket on disk."""
    # the users in memory (bounded by distinct users): a lazy build side would hold up the streamed log
    users = impressions.select("user").unique().collect(engine="streaming")
    last_time = impressions.select(pl.col("time_stamp").max()).collect(engine="streaming").item()
    relevant = behaviours.join(users.lazy(), on="user", how="semi").filter(pl.col("time_stamp") < last_time)
    try:
        return sequences.with_histories(impressions, [behaviour_history(relevant)], "user", "time_stamp",
                                        work, buckets, report)
    except pl.exceptions.ComputeError as error:
        raise DataError(f"{NAME}: a raw file does not parse: {str(error).splitlines()[0]}") from None


def behaviour_history(behaviours: pl.LazyFrame) -> sequences.History:
    return sequences.History(behaviours, HISTORY, SEQUENCE_LENGTH, gap="hist_gap")


def histories(impressions: pl.DataFrame, behaviours: pl.DataFrame) -> pl.DataFrame:
    """`impressions` with each one's last `SEQUENCE_LENGTH` behaviours strictly before its timestamp."""
    return sequences.last_events(impressions, behaviours, behaviour_history(behaviours.lazy()), "user",
                                 "time_stamp")
