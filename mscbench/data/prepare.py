"""The generic preparer: a raw impression log and its spec -> a prepared dataset.

Output, in `<data-dir>/<name>/<variant>/`: `train.parquet`, `valid.parquet`, `test.parquet` and, last,
`manifest.json`. Each Parquet holds the encoded columns under their raw names: sparse ids (Int64; 0 is
padding, 1 out-of-vocabulary, vocabularies from the training split only), standardised dense values
(Float32, training mean and standard deviation, missing -> 0), sequences as fixed-size arrays
(left-padded with 0, most recent last), bucketised sequence time gaps, the scenario id, the label
(Float32), the oracle probability, and `user_key` (a hash of the raw user, so that users unseen in
training stay apart in GAUC even though they share the out-of-vocabulary id).

Everything is written into a hidden staging folder of this process's own beside the target and renamed
into place, so a folder without a manifest never looks prepared (nor is listed or found); the queries are
lazy polars plans that stream. One process at a time prepares a dataset (a lock file beside it): a second
`prepare` of the same dataset waits for the first, then finds its result ("already prepared") when the
inputs are the same. The manifest records each file's size and sha256: `find_prepared` checks the sizes
(cheap), and `prepare` prepares again when a file no longer matches.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import math
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from mscbench.data.errors import DataError
from mscbench.data.files import staging_folder
from mscbench.data.manifest import (
    MANIFEST_FILE,
    OOV_ID,
    SPLITS,
    Manifest,
    ScenarioInfo,
    SequenceFeature,
    SparseFeature,
    file_record,
    mismatched_files,
    read_manifest,
    write_manifest,
)
from mscbench.data.names import checked_identifier
from mscbench.data.sources.synthetic import DEFAULT_ROWS, SyntheticParams, generate_in_chunks, synthetic_spec
from mscbench.data.spec import SPLIT_COLUMN, DatasetSpec
from mscbench.files import exclusive

PREPARER_VERSION = "1"
DEFAULT_VARIANT = "default"
FIRST_ID = OOV_ID + 1
GAP_BUCKETS = 32  # bucket = min(floor(log2(seconds + 1)), 31), at least 1 so that 0 stays padding
USER_KEY = "user_key"

Progress = Callable[[str], None]


@dataclass(frozen=True)
class PrepareResult:
    path: Path
    manifest: Manifest
    reused: bool  # an identical complete dataset was already there; nothing was written


@dataclass(frozen=True)
class TrainingStatistics:
    counts: pl.DataFrame  # split, scenario (raw), rows, positives
    scenarios: list  # raw scenario values, sorted: index = scenario id
    vocabularies: dict[str, pl.Series]  # sparse column -> raw values in id order (from FIRST_ID)
    dense_mean: dict[str, float]
    dense_std: dict[str, float]
    dense_scale: dict[str, float]  # a power of two near the column's largest magnitude (see `dense_scales`)


def dataset_dir(data_dir: Path, name: str, variant: str = DEFAULT_VARIANT) -> Path:
    """`<data_dir>/<name>/<variant>`; names that are not plain identifiers (`../x`) are refused."""
    return Path(data_dir) / checked_identifier(name, "dataset name") / checked_identifier(variant, "variant")


def complete_manifest(directory: Path) -> Manifest | None:
    """The manifest of a complete prepared dataset; None when absent or unreadable (prepare again)."""
    if not (Path(directory) / MANIFEST_FILE).is_file():
        return None
    try:
        return read_manifest(directory)
    except ValueError:
        return None


def list_prepared(data_dir: Path) -> list[tuple[str, str, Manifest]]:
    """(name, variant, manifest) of every complete prepared dataset, sorted (staging folders are hidden)."""
    found = []
    for manifest_path in sorted(Path(data_dir).glob(f"[!.]*/[!.]*/{MANIFEST_FILE}")):
        directory = manifest_path.parent
        manifest = complete_manifest(directory)
        if manifest is not None:
            found.append((directory.parent.name, directory.name, manifest))
    return found


def find_prepared(data_dir: Path, dataset: str) -> Path:
    """The directory of `NAME/VARIANT`, or of `NAME` alone: its "default" variant, else its only one."""
    name, _, variant = dataset.partition("/")
    variants = {v: manifest for n, v, manifest in list_prepared(data_dir) if n == name}
    if not variant and DEFAULT_VARIANT in variants:
        variant = DEFAULT_VARIANT
    elif not variant and len(variants) == 1:
        variant, = variants
    elif not variant and variants:
        raise DataError(f"dataset {name!r} has several prepared variants ({', '.join(variants)}): "
                        f"name one as {name}/VARIANT")
    if variant not in variants:
        manifest = dataset_dir(data_dir, name, variant or DEFAULT_VARIANT) / MANIFEST_FILE
        if manifest.is_file():
            read_manifest(manifest.parent)  # not listed because it is corrupt: say so
        raise DataError(f"dataset {dataset!r} is not prepared in {data_dir}: run `mscbench prepare {name}`")
    directory = dataset_dir(data_dir, name, variant)
    problems = mismatched_files(directory, variants[variant], with_hash=False)
    if problems:
        raise DataError(f"{problems[0]}: the prepared dataset {name}/{variant} is damaged; rebuild it with "
                        f"`mscbench prepare {name} --force` (and the options it was prepared with)")
    return directory


def prepare_synthetic(data_dir: Path, rows: int | None = None, scenarios: int = 5, seed: int = 0,
                      progress: Progress | None = None, force: bool = False) -> PrepareResult:
    """Generate and prepare the synthetic dataset (variant "default" for the default arguments)."""
    params = SyntheticParams(DEFAULT_ROWS if rows is None else rows, scenarios, seed)
    spec = synthetic_spec(params)
    report = progress or ignore
    with contextlib.ExitStack() as cleanup:

        def load() -> pl.LazyFrame:
            """The generated log written frame by frame (bounded memory) into a scratch folder that lives
            until the prepared files are written, then read back as one stream. Named as a staging folder
            of the target, so the next prepare of it removes the scratch a killed one left."""
            report(f"generating {params.rows:,} synthetic impressions")
            target = dataset_dir(data_dir, spec.name, spec.variant)
            scratch = staging_folder(target.parent, f".{target.name}.partial-scratch-")
            cleanup.callback(shutil.rmtree, scratch, ignore_errors=True)
            for number, frame in enumerate(generate_in_chunks(params)[0]):  # the logit's parts are not kept
                frame.write_parquet(scratch / f"{number:06d}.parquet")
            return pl.scan_parquet(scratch / "*.parquet")

        return prepare(spec, load, data_dir, progress, force)


def prepare_synthetic_source(raw_dir: Path | None, data_dir: Path, progress: Progress | None = None,
                             rows: int | None = None, scenarios: int = 5, seed: int = 0,
                             force: bool = False) -> PrepareResult:
    """The registry's preparer for "synthetic": nothing is read from `raw_dir`."""
    return prepare_synthetic(data_dir, rows=rows, scenarios=scenarios, seed=seed, progress=progress, force=force)


def prepare(spec: DatasetSpec, load: Callable[[], pl.LazyFrame], data_dir: Path,
            progress: Progress | None = None, force: bool = False) -> PrepareResult:
    """Prepare `load()` as `spec` says, unless an identical, intact dataset already exists (or `force`)."""
    report = progress or ignore
    target = dataset_dir(data_dir, spec.name, spec.variant)
    fingerprint = {**spec.fingerprint, "spec": spec_digest(spec)}
    try:
        target.parent.mkdir(parents=True, exist_ok=True)  # where the lock file goes
    except OSError as error:
        raise unwritable(target, error) from error
    lock = target.with_name(f".{target.name}.lock")
    with exclusive(lock, lambda holder: report(f"waiting: {holder} is preparing {spec.name}/{spec.variant}")):
        existing = None if force else reusable(target, fingerprint, report)
        if existing is not None:
            report(f"{target} is already prepared with the same inputs")
            return PrepareResult(target, existing, reused=True)
        staging = fresh_staging(target)
        try:
            manifest = write_prepared(spec, load(), staging, fingerprint, report)
            publish(staging, target)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
    report(f"prepared {target}")
    return PrepareResult(target, manifest, reused=False)


def reusable(target: Path, fingerprint: dict[str, str], report: Progress) -> Manifest | None:
    """The manifest of `target` when it was prepared from the same inputs and its files are intact."""
    existing = complete_manifest(target)
    if existing is None or existing.fingerprint != fingerprint or existing.preparer_version != PREPARER_VERSION:
        return None
    damaged = mismatched_files(target, existing, with_hash=True)
    for problem in damaged:
        report(f"warning: {problem}: preparing it again")
    return None if damaged else existing


def ignore(message: str) -> None:
    """The progress callback used when the caller gives none."""


def spec_digest(spec: DatasetSpec) -> str:
    """Identifies everything in the spec but the raw input (which its fingerprint identifies)."""
    text = repr(dataclasses.replace(spec, fingerprint={}))
    if spec.scenario_order:
        text += f" scenario_order={spec.scenario_order!r}"
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def fresh_staging(target: Path) -> Path:
    """A new hidden folder of this process's own beside `target`. Called with the dataset's lock held, so
    any other staging or retired folder of `target` is a leftover of a killed prepare: removed first."""
    try:
        if target.exists() and complete_manifest(target) is None:
            shutil.rmtree(target)
        for leftover in [*target.parent.glob(f".{target.name}.partial*"), retired_dir(target)]:
            shutil.rmtree(leftover, ignore_errors=True)
        return staging_folder(target.parent, f".{target.name}.partial-")
    except OSError as error:
        raise unwritable(target, error) from error


def unwritable(target: Path, error: OSError) -> DataError:
    return DataError(f"cannot write prepared data under {target.parent} ({error.strerror or error}): "
                     f"pass a writable --data-dir or fix its permissions")


def retired_dir(target: Path) -> Path:
    """Where the previous version of `target` waits while the new one is renamed into place."""
    return target.with_name(f".{target.name}.retired")


def publish(staging: Path, target: Path) -> None:
    """Move the complete `staging` folder to `target`, replacing an older version of it."""
    retired = retired_dir(target)
    shutil.rmtree(retired, ignore_errors=True)
    if target.exists():
        target.rename(retired)
    staging.rename(target)
    shutil.rmtree(retired, ignore_errors=True)


def write_prepared(spec: DatasetSpec, frame: pl.LazyFrame, directory: Path, fingerprint: dict[str, str],
                   report: Progress) -> Manifest:
    frame = checked(frame, spec).with_columns(spec.split.assign())
    report("counting scenarios and building vocabularies from the training split")
    statistics = training_statistics(frame, spec)
    for warning in one_class_warnings(spec, statistics):
        report(f"warning: {warning}")
    report("writing the encoded splits")
    encoded = encode(frame, spec, statistics)
    for split in SPLITS:  # one sink at a time: sinks collected together make polars cache their shared input
        encoded.filter(pl.col(SPLIT_COLUMN) == split).drop(SPLIT_COLUMN).sink_parquet(
            directory / f"{split}.parquet", engine="streaming")
    files = {f"{split}.parquet": file_record(directory / f"{split}.parquet") for split in SPLITS}
    manifest = build_manifest(spec, statistics, fingerprint, files)
    write_manifest(directory, manifest)
    return manifest


def checked(frame: pl.LazyFrame, spec: DatasetSpec) -> pl.LazyFrame:
    """`frame`, after checking that it has every column the spec names, with compatible types."""
    schema = frame.collect_schema()
    missing = [name for name in spec.columns() if name not in schema]
    if missing:
        raise DataError(f"{spec.name}: column(s) {', '.join(missing)} not found; the data has "
                        f"{', '.join(schema.names())}")
    sparse = {column.name for column in spec.sparse}
    for sequence in spec.sequences:
        own_table = sequence.target is None and isinstance(schema[sequence.name], pl.List)
        expected = pl.List(schema[sequence.target]) if sequence.target in sparse else None
        if not own_table and schema[sequence.name] != expected:
            raise DataError(f"{spec.name}: sequence {sequence.name!r} must be a list of its target sparse "
                            f"column {sequence.target!r}'s values, found {schema[sequence.name]}")
    if len({sequence.max_len for sequence in spec.sequences}) > 1:
        raise DataError(f"{spec.name}: all sequences must have the same max_len")
    if spec.sequence_gap and not isinstance(schema[spec.sequence_gap], pl.List):
        raise DataError(f"{spec.name}: sequence gap column {spec.sequence_gap!r} must be a list of seconds")
    return frame


def binary_label(spec: DatasetSpec) -> pl.Expr:
    return pl.col(spec.label).cast(pl.Float64, strict=False)


def numeric(name: str) -> pl.Expr:
    """A dense column as floats; values that do not parse, NaN and infinities count as missing."""
    return finite(pl.col(name))


def finite(values: pl.Expr) -> pl.Expr:
    """`values` as floats where they are finite numbers, else null."""
    number = values.cast(pl.Float64, strict=False)
    return pl.when(number.is_finite()).then(number)


def training_statistics(frame: pl.LazyFrame, spec: DatasetSpec) -> TrainingStatistics:
    """Rows and positives per split and scenario; vocabularies and dense statistics from training rows."""
    train = frame.filter(pl.col(SPLIT_COLUMN) == "train")
    label = binary_label(spec)
    counts_query = frame.group_by(SPLIT_COLUMN, spec.scenario).agg(
        rows=pl.len(), positives=label.sum(), not_binary=(~label.is_in([0.0, 1.0]).fill_null(False)).sum(),
        **{f"largest:{name}": numeric(name).abs().max() for name in spec.dense})
    tables = [column.name for column in spec.sparse] + [s.name for s in spec.sequences if s.target is None]
    # one at a time: queries collected together share their input, which polars then caches whole
    counts = counts_query.collect(engine="streaming")
    scale = dense_scales(counts, spec)
    dense_query = train.select(*(scaled(name, scale).mean().alias(f"mean:{name}") for name in spec.dense),
                               *(scaled(name, scale).std(ddof=0).alias(f"std:{name}") for name in spec.dense))
    dense, *vocabularies = [query.collect(engine="streaming")
                            for query in [dense_query, *(vocabulary_query(train, spec, table) for table in tables)]]
    scenarios = checked_counts(counts, spec)
    return TrainingStatistics(
        counts=counts, scenarios=scenarios,
        vocabularies={table: values["value"] for table, values in zip(tables, vocabularies)},
        dense_mean={name: (dense[f"mean:{name}"].item() or 0.0) * scale[name] for name in spec.dense},
        dense_std={name: (dense[f"std:{name}"].item() or 0.0) * scale[name] or 1.0 for name in spec.dense},
        dense_scale=scale,
    )


def dense_scales(counts: pl.DataFrame, spec: DatasetSpec) -> dict[str, float]:
    """Per dense column, the largest power of two at or below its largest magnitude. Statistics are computed
    on values divided by it (then within +-2), so that sums of values near 1e308 (or of their squares) cannot
    overflow; dividing by a power of two is exact, so ordinary values get the very numbers they would get
    undivided."""
    largest = {name: counts[f"largest:{name}"].max() for name in spec.dense}
    return {name: math.ldexp(1.0, math.frexp(value)[1] - 1) if value else 1.0 for name, value in largest.items()}


def scaled(name: str, scale: dict[str, float]) -> pl.Expr:
    return numeric(name) / scale[name]


def vocabulary_query(train: pl.LazyFrame, spec: DatasetSpec, table: str) -> pl.LazyFrame:
    """Training values of the sparse column and the sequences sharing `table`, most frequent first."""
    sparse = [train.select(pl.col(c.name).alias("value")) for c in spec.sparse if c.name == table]
    values = sparse + [train.select(pl.col(s.name).list.tail(s.max_len).explode().alias("value"))
                       for s in spec.sequences if s.table == table]
    return (pl.concat(values).drop_nulls().group_by("value").agg(count=pl.len())
            .filter(pl.col("count") >= spec.min_count)
            .sort(["count", "value"], descending=[True, False]))


def checked_counts(counts: pl.DataFrame, spec: DatasetSpec) -> list:
    """The raw scenario values (`spec.scenario_order` first, then sorted), after checking the label, the
    scenarios and the training split."""
    not_binary = counts["not_binary"].sum()
    if not_binary:
        raise DataError(f"{spec.name}: label column {spec.label!r} has {not_binary} values other than 0 "
                        f"and 1: map it to 0/1 first")
    if counts[spec.scenario].null_count():
        raise DataError(f"{spec.name}: scenario column {spec.scenario!r} has missing values: "
                        f"fill or drop them")
    if counts.filter(pl.col(SPLIT_COLUMN) == "train").is_empty():
        raise DataError(f"{spec.name}: the split {spec.split.describe()} leaves no training rows: "
                        f"check its boundaries")
    rank = {name: index for index, name in enumerate(spec.scenario_order)}
    return sorted(counts[spec.scenario].unique().sort().to_list(), key=lambda value: rank.get(value, len(rank)))


def encode(frame: pl.LazyFrame, spec: DatasetSpec, statistics: TrainingStatistics) -> pl.LazyFrame:
    """The prepared columns (and the split): ids, standardised values, padded sequences."""
    length = spec.sequences[0].max_len if spec.sequences else 0
    vocabularies = statistics.vocabularies
    columns = [
        pl.col(SPLIT_COLUMN),
        position(pl.col(spec.scenario), pl.Series(statistics.scenarios), strict=True),
        binary_label(spec).cast(pl.Float32),
        *(encoded_ids(pl.col(column.name), vocabularies[column.name]) for column in spec.sparse),
        *(standardised(name, statistics).fill_null(0.0).cast(pl.Float32) for name in spec.dense),
        *(left_padded(pl.col(sequence.name).list.tail(length)
                      .list.eval(encoded_ids(pl.element(), vocabularies[sequence.table])), length)
          .alias(sequence.name) for sequence in spec.sequences),
    ]
    if spec.sequence_gap:
        gaps = pl.col(spec.sequence_gap).list.tail(length).list.eval(gap_bucket(pl.element()))
        columns.append(left_padded(gaps, length).alias(spec.sequence_gap))
    if spec.user:
        columns.append(pl.col(spec.user).hash(seed=0).reinterpret(signed=True).alias(USER_KEY))
    if spec.oracle:
        columns.append(pl.col(spec.oracle).cast(pl.Float64))
    return frame.select(columns)


def standardised(name: str, statistics: TrainingStatistics) -> pl.Expr:
    """(value - mean) / std, computed on values divided by the column's scale (exact, and cannot overflow)."""
    scale = statistics.dense_scale[name]
    return ((scaled(name, statistics.dense_scale) - statistics.dense_mean[name] / scale)
            / (statistics.dense_std[name] / scale)).alias(name)


def encoded_ids(values: pl.Expr, vocabulary: pl.Series) -> pl.Expr:
    """FIRST_ID + the value's position in `vocabulary`; OOV_ID for a value not in it or missing."""
    return (position(values, vocabulary) + FIRST_ID).fill_null(OOV_ID)


def position(values: pl.Expr, vocabulary: pl.Series, strict: bool = False) -> pl.Expr:
    """Each value's position in `vocabulary` (not in it: null, or an error if `strict`).

    A cast to an Enum of the vocabulary, whose physical value is that position, rather than
    `replace_strict`: polars streams a cast row by row, while a replace buffered the whole split in
    memory (3.6 GiB of the 8M-row training split of benchmarks/prepare_card.py)."""
    categories = pl.Enum(vocabulary.cast(pl.String))
    return values.cast(pl.String).cast(categories, strict=strict).to_physical().cast(pl.Int64)


def gap_bucket(seconds: pl.Expr) -> pl.Expr:
    """log2 buckets of the time from a behaviour to the impression; 0 is left for padding."""
    return (seconds.cast(pl.Float64).clip(lower_bound=0.0).add(1.0).log(2).floor()
            .clip(1, GAP_BUCKETS - 1).cast(pl.Int64))


def left_padded(lists: pl.Expr, length: int) -> pl.Expr:
    """Lists of at most `length` ids as fixed-size arrays, left-padded with 0 (a missing list: all 0)."""
    padding = pl.lit([0] * length, dtype=pl.List(pl.Int64))
    present = lists.fill_null(pl.lit([], dtype=pl.List(pl.Int64)))
    return pl.concat_list(padding, present).list.tail(length).list.to_array(length)


def build_manifest(spec: DatasetSpec, statistics: TrainingStatistics, fingerprint: dict[str, str],
                   files: dict[str, dict[str, object]]) -> Manifest:
    vocab_size = {name: len(values) + FIRST_ID for name, values in statistics.vocabularies.items()}
    return Manifest(
        name=spec.name, variant=spec.variant, preparer_version=PREPARER_VERSION, label=spec.label,
        sparse=[SparseFeature(c.name, vocab_size[c.name], c.name, c.side) for c in spec.sparse],
        dense=list(spec.dense),
        sequences=[SequenceFeature(s.name, vocab_size[s.table], s.table, s.max_len, s.target)
                   for s in spec.sequences],
        scenario=scenario_info(spec, statistics),
        splits={split: f"{split}.parquet" for split in SPLITS},
        user=spec.user, oracle=spec.oracle, sequence_gap=spec.sequence_gap, fingerprint=fingerprint, files=files,
        notes={**spec.notes, "split": spec.split.describe(),
               "rows_without_split": rows_without_split(statistics), "min_count": spec.min_count,
               "dense_mean": statistics.dense_mean, "dense_std": statistics.dense_std,
               "one_class_test_scenarios": one_class_test_scenarios(spec, statistics)},
    )


def rows_without_split(statistics: TrainingStatistics) -> int:
    return int(statistics.counts.filter(pl.col(SPLIT_COLUMN).is_null())["rows"].sum())


def scenario_info(spec: DatasetSpec, statistics: TrainingStatistics) -> ScenarioInfo:
    def per_scenario(split: str, measure: str) -> list[int]:
        rows = statistics.counts.filter(pl.col(SPLIT_COLUMN) == split)
        found = dict(zip(rows[spec.scenario].to_list(), rows[measure].to_list()))
        return [int(found.get(value, 0)) for value in statistics.scenarios]

    return ScenarioInfo(
        column=spec.scenario, names=[str(value) for value in statistics.scenarios],
        rows={split: per_scenario(split, "rows") for split in SPLITS},
        positives={split: per_scenario(split, "positives") for split in SPLITS},
        merged=list(spec.merged_scenarios),
    )


def one_class_test_scenarios(spec: DatasetSpec, statistics: TrainingStatistics) -> list[str]:
    """Scenarios whose test rows are all positive or all negative: kept, but their AUC is "n/a"."""
    test = statistics.counts.filter(pl.col(SPLIT_COLUMN) == "test")
    one_class = test.filter((pl.col("positives") == 0) | (pl.col("positives") == pl.col("rows")))
    return sorted(str(value) for value in one_class[spec.scenario].to_list())


def one_class_warnings(spec: DatasetSpec, statistics: TrainingStatistics) -> list[str]:
    return [f"{spec.name}: scenario {name!r} has one class only in the test split: kept, its AUC will be "
            f"n/a" for name in one_class_test_scenarios(spec, statistics)]
