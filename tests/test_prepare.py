"""The generic preparer on a hand-made log (exact ids and values), its lifecycle, the synthetic dataset."""

from __future__ import annotations

import dataclasses
import math
import os
from pathlib import Path

import polars as pl
import pytest

from mscbench.data.errors import DataError
from mscbench.data.manifest import MANIFEST_FILE, OOV_ID, read_manifest
from mscbench.data.prepare import (
    FIRST_ID,
    USER_KEY,
    dataset_dir,
    encoded_ids,
    find_prepared,
    list_prepared,
    prepare,
    prepare_synthetic,
)
from mscbench.data.spec import DatasetSpec, SequenceColumn, SparseColumn, TimeSplit


def raw_log() -> pl.DataFrame:
    """Days 1-2 train, day 3 validates, day 4 tests; "es" and user u9 and item 99 appear in test only."""
    return pl.DataFrame({
        "day": [1, 1, 2, 2, 3, 3, 4, 4],
        "country": ["fr", "de", "fr", "de", "fr", "de", "fr", "es"],
        "user": ["u1", "u2", "u1", "u3", "u2", "u1", "u9", "u1"],
        "item": [10, 11, 10, 12, 10, 13, 99, 10],
        "price": [1.0, 3.0, None, 5.0, 7.0, 9.0, 3.0, None],
        "hist": [[], [10], [10, 11, 20], [21, 22, 23, 24], [10], [], None, [99, 10]],
        "gap": [[], [5], [100, 3, 1], [1, 2, 3, 4], [7], [], None, [0, 2**40]],
        "clicked": [0, 1, 1, 0, 1, 0, 1, 0],
    })


def shop_spec(**changes) -> DatasetSpec:
    return dataclasses.replace(DatasetSpec(
        name="shop", label="clicked", scenario="country",
        sparse=(SparseColumn("user", "user"), SparseColumn("item", "item")),
        split=TimeSplit("day", valid_from=3, test_from=4), dense=("price",),
        sequences=(SequenceColumn("hist", "item", 3),), sequence_gap="gap", user="user",
        fingerprint={"raw": "hand-made"},
    ), **changes)


def prepared(data_dir: Path, frame: pl.DataFrame | None = None, **changes):
    frame = raw_log() if frame is None else frame
    return prepare(shop_spec(**changes), lambda: frame.lazy(), data_dir)


def split(result, name: str) -> pl.DataFrame:
    return pl.read_parquet(result.path / result.manifest.splits[name])


def test_vocabularies_come_from_training_rows_only(tmp_path):
    result = prepared(tmp_path)
    train, valid, test = (split(result, name) for name in ("train", "valid", "test"))
    # item: 10 (seen 4 times) -> 2, 11 (2) -> 3, then 12, 20, 22, 23, 24 once each, by value
    assert train["item"].to_list() == [2, 3, 2, 4]
    assert valid["item"].to_list() == [2, OOV_ID]  # 13 appears in validation only
    assert test["item"].to_list() == [OOV_ID, 2]  # 99 appears in test only
    assert test["user"].to_list() == [OOV_ID, 2]  # u9 is new, u1 was trained on
    features = {f.name: f for f in result.manifest.sparse}
    assert features["item"].vocab_size == 7 + 2 and features["user"].vocab_size == 3 + 2
    assert 0 not in pl.concat([train, valid, test])["item"].to_list()  # 0 is padding only


@pytest.mark.parametrize("values, vocabulary", [
    (["b", None, "zz", "a", "b"], ["b", "a"]),
    ([10, 3, None, 7, 3], [3, 10]),  # ids read as numbers: matched by value, in the vocabulary's order
    (["x"], []),  # nothing seen in training: everything out of vocabulary
])
def test_encoded_ids_are_vocabulary_positions_and_oov_for_the_rest(values, vocabulary):
    expected = [FIRST_ID + vocabulary.index(v) if v in vocabulary else OOV_ID for v in values]
    column = pl.Series("value", values)
    vocabulary = pl.Series(vocabulary, dtype=column.dtype)
    encoded = column.to_frame().select(encoded_ids(pl.col("value"), vocabulary)).to_series()
    assert encoded.to_list() == expected
    lists = pl.DataFrame({"lists": [values]}).select(
        pl.col("lists").list.eval(encoded_ids(pl.element(), vocabulary)))  # sequences: inside their lists
    assert lists.to_series().to_list() == [expected]


def test_sequences_share_the_target_vocabulary_and_are_left_padded(tmp_path):
    result = prepared(tmp_path)
    # 21 is cut by max_len 3, so it never enters the vocabulary
    assert split(result, "train")["hist"].to_list() == [[0, 0, 0], [0, 0, 2], [2, 3, 5], [6, 7, 8]]
    assert split(result, "test")["hist"].to_list() == [[0, 0, 0], [0, OOV_ID, 2]]
    sequence = result.manifest.sequences[0]
    assert (sequence.table, sequence.target, sequence.vocab_size, sequence.max_len) == ("item", "item", 9, 3)


def test_time_gaps_are_log2_buckets_with_zero_kept_for_padding(tmp_path):
    result = prepared(tmp_path)
    assert split(result, "train")["gap"].to_list() == [[0, 0, 0], [0, 0, 2], [6, 2, 1], [1, 2, 2]]
    assert split(result, "test")["gap"].to_list() == [[0, 0, 0], [0, 1, 31]]  # 0 s -> 1; 2^40 s -> 31


def test_dense_values_are_standardised_with_training_statistics(tmp_path):
    result = prepared(tmp_path)
    mean, std = 3.0, math.sqrt(8 / 3)  # training prices 1, 3, 5 (one missing)
    assert split(result, "train")["price"].to_list() == pytest.approx([-2 / std, 0.0, 0.0, 2 / std])
    assert split(result, "valid")["price"].to_list() == pytest.approx([(7 - mean) / std, (9 - mean) / std])
    assert split(result, "test")["price"].to_list() == [0.0, 0.0]  # 3.0 is the mean; missing -> 0
    assert result.manifest.notes["dense_mean"] == {"price": pytest.approx(mean)}


def test_scenarios_are_sorted_with_counts_per_split(tmp_path):
    result = prepared(tmp_path)
    scenario = result.manifest.scenario
    assert scenario.names == ["de", "es", "fr"]
    assert scenario.rows == {"train": [2, 0, 2], "valid": [1, 0, 1], "test": [0, 1, 1]}
    assert scenario.positives == {"train": [1, 0, 1], "valid": [0, 0, 1], "test": [0, 0, 1]}
    assert split(result, "test")["country"].to_list() == [2, 1]
    assert split(result, "train")["clicked"].dtype == pl.Float32


def test_user_key_keeps_users_unseen_in_training_apart(tmp_path):
    keys = split(prepared(tmp_path), "test")[USER_KEY].to_list()
    assert keys[0] != keys[1]


def test_rows_without_a_time_are_left_out_and_counted(tmp_path):
    result = prepared(tmp_path, raw_log().with_columns(day=pl.when(pl.col("item") == 13).then(None)
                                                        .otherwise(pl.col("day"))))
    assert result.manifest.scenario.rows["valid"] == [0, 0, 1]
    assert result.manifest.notes["rows_without_split"] == 1


def test_min_count_sends_rare_values_to_out_of_vocabulary(tmp_path):
    result = prepared(tmp_path, min_count=2)
    assert split(result, "train")["item"].to_list() == [2, 3, 2, OOV_ID]
    assert {f.name: f.vocab_size for f in result.manifest.sparse} == {"user": 3, "item": 4}


def test_rerun_with_the_same_inputs_is_a_no_op(tmp_path):
    first = prepared(tmp_path)
    stamp = (first.path / MANIFEST_FILE).stat().st_mtime_ns
    loads = []
    again = prepare(shop_spec(), lambda: loads.append(1) or raw_log().lazy(), tmp_path)
    assert again.reused and not first.reused and not loads
    assert (again.path / MANIFEST_FILE).stat().st_mtime_ns == stamp
    assert again.manifest == first.manifest


def test_changed_inputs_replace_the_old_dataset(tmp_path):
    prepared(tmp_path)
    changed = prepared(tmp_path, fingerprint={"raw": "edited"})
    assert not changed.reused and read_manifest(changed.path).fingerprint["raw"] == "edited"
    assert sorted(p.name for p in changed.path.parent.iterdir()) == ["default"]


def test_interrupted_prepare_leaves_nothing_that_looks_prepared(tmp_path, monkeypatch):
    def interrupted(directory, manifest):
        raise KeyboardInterrupt

    monkeypatch.setattr("mscbench.data.prepare.write_manifest", interrupted)
    with pytest.raises(KeyboardInterrupt):
        prepared(tmp_path)
    assert list((tmp_path / "shop").iterdir()) == []
    assert list_prepared(tmp_path) == []


def test_a_folder_without_manifest_is_not_prepared_and_a_rerun_cleans_it(tmp_path):
    leftover = dataset_dir(tmp_path, "shop")
    leftover.mkdir(parents=True)
    (leftover / "train.parquet").write_text("half written")
    assert list_prepared(tmp_path) == []
    with pytest.raises(DataError, match="run `mscbench prepare shop`"):
        find_prepared(tmp_path, "shop")
    result = prepared(tmp_path)
    assert not result.reused and split(result, "train").height == 4
    assert [(name, variant) for name, variant, _ in list_prepared(tmp_path)] == [("shop", "default")]


def test_unwritable_data_directory_is_a_clear_error(tmp_path):
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    with pytest.raises(DataError, match="--data-dir"):
        prepared(blocker)


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes through permissions")
def test_read_only_data_directory_is_a_clear_error(tmp_path):
    tmp_path.chmod(0o500)
    try:
        with pytest.raises(DataError, match="--data-dir"):
            prepared(tmp_path / "data")
    finally:
        tmp_path.chmod(0o700)


def test_bad_inputs_are_one_line_errors(tmp_path):
    with pytest.raises(DataError, match="column\\(s\\) price not found"):
        prepared(tmp_path, raw_log().drop("price"))
    with pytest.raises(DataError, match="values other than 0 and 1"):
        prepared(tmp_path, raw_log().with_columns(clicked=pl.lit(2)))
    with pytest.raises(DataError, match="no training rows"):
        prepared(tmp_path, split=TimeSplit("day", valid_from=0, test_from=1))
    with pytest.raises(DataError, match="list of its target"):
        prepared(tmp_path, raw_log().with_columns(hist=pl.col("hist").cast(pl.List(pl.String))))
    assert list_prepared(tmp_path) == []


def test_find_prepared_resolves_names_and_variants(tmp_path):
    prepared(tmp_path)
    prepared(tmp_path, variant="small")
    assert find_prepared(tmp_path, "shop") == dataset_dir(tmp_path, "shop")
    assert find_prepared(tmp_path, "shop/small") == dataset_dir(tmp_path, "shop", "small")
    (dataset_dir(tmp_path, "shop") / MANIFEST_FILE).unlink()
    assert find_prepared(tmp_path, "shop") == dataset_dir(tmp_path, "shop", "small")
    prepared(tmp_path, variant="large")
    with pytest.raises(DataError, match="several prepared variants"):
        find_prepared(tmp_path, "shop")
    with pytest.raises(DataError, match="dataset 'movies' is not prepared"):
        find_prepared(tmp_path, "movies")


def test_prepare_synthetic_writes_a_complete_dataset_once(tmp_path):
    messages = []
    result = prepare_synthetic(tmp_path, rows=3000, seed=1, progress=messages.append)
    manifest = result.manifest
    assert result.path == dataset_dir(tmp_path, "synthetic", "rows3000-sc5-seed1") and not result.reused
    assert manifest.scenario.names == ["s0", "s1", "s2", "s3", "s4"]
    assert sum(manifest.rows(name) for name in ("train", "valid", "test")) == 3000
    assert manifest.notes["split"] == {"by": "time", "column": "day", "valid_from": 7, "test_from": 8}
    assert (manifest.oracle, manifest.sequence_gap, manifest.user) == ("true_prob", "hist_gap", "user_id")
    assert manifest.fingerprint["seed"] == "1" and manifest.fingerprint["generator"] == "mscbench.synthetic"
    assert [s.table for s in manifest.sequences] == ["item_id", "category"]
    assert any("generating" in message for message in messages)
    assert prepare_synthetic(tmp_path, rows=3000, seed=1).reused
