"""Alimama from hand-made raw files in the publisher's exact format (header quirks, NULL, empty fields)."""

from __future__ import annotations

import tarfile
from datetime import date
from pathlib import Path

import polars as pl
import pytest

from mscbench.data.errors import DataError
from mscbench.data.manifest import OOV_ID
from mscbench.data.sources.alimama import BEHAVIOR_LOG, day_start, histories, prepare_alimama


def at(day: int, hour: int, minute: int = 0) -> int:
    return day_start(date(2017, 5, day)) + hour * 3600 + minute * 60


PROFILES = """userid,cms_segid,cms_group_id,final_gender_code,age_level,pvalue_level,shopping_level,occupation,new_user_class_level 
1,0,5,2,5,,3,0,2
2,0,3,1,2,1,3,0,
4,0,1,2,3,2,3,1,1
"""
ADS = """adgroup_id,cate_id,campaign_id,customer,brand,price
10,100,1000,1,500,170.0
11,101,1001,2,NULL,25.5
12,999,1002,3,501,9.9
"""  # category 999 is only ever shown on the test day
IMPRESSIONS = [  # user, time, adgroup, clk
    (1, at(6, 12), 10, 0), (1, at(7, 9), 11, 1), (2, at(8, 10), 10, 1), (4, at(9, 10), 11, 0),
    (3, at(9, 11), 10, 1), (1, at(12, 10), 10, 0), (4, at(12, 11), 11, 1),
    (1, at(13, 10), 12, 1), (2, at(13, 11), 10, 0), (4, at(13, 12), 11, 1),
]
BEHAVIOURS = [  # user, time, btag, cate, brand
    (1, at(6, 11), "pv", "100", "500"),
    (1, at(6, 12), "cart", "777", "777"),  # the same second as user 1's first impression: not before it
    (1, at(6, 13), "fav", "778", "NULL"),  # after it
    (1, at(13, 8), "pv", "888", "502"),  # after the training days, before the test impression
    (3, at(8, 8), "buy", "100", "500"),
]


def write_raw(folder: Path, impressions=IMPRESSIONS, behaviours=BEHAVIOURS) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "user_profile.csv").write_text(PROFILES)
    (folder / "ad_feature.csv").write_text(ADS)
    (folder / "raw_sample.csv").write_text("user,time_stamp,adgroup_id,pid,nonclk,clk\n" + "".join(
        f"{u},{t},{a},430548_1007,{1 - c},{c}\n" for u, t, a, c in impressions))
    (folder / "behavior_log.csv").write_text("user,time_stamp,btag,cate,brand\n" + "".join(
        f"{u},{t},{b},{c},{br}\n" for u, t, b, c, br in behaviours))
    return folder


def test_a_sequence_holds_only_behaviours_strictly_before_the_impression():
    impressions = pl.DataFrame({"user": ["1", "1", "2"], "time_stamp": [at(6, 12), at(7, 9), at(8, 10)]})
    behaviours = pl.DataFrame([(str(u), t, b, c, None if br == "NULL" else br) for u, t, b, c, br in BEHAVIOURS],
                              schema=BEHAVIOR_LOG.schema() | {"time_stamp": pl.Int64}, orient="row")
    built = histories(impressions, behaviours).sort("time_stamp")
    assert built["hist_cate"].to_list() == [["100"], ["100", "777", "778"], []]
    assert built["hist_btag"].to_list() == [["pv"], ["pv", "cart", "fav"], []]
    assert built["hist_brand"].to_list() == [["500"], ["500", "777", None], []]
    assert built["hist_gap"].to_list()[1] == [at(7, 9) - at(6, 11), at(7, 9) - at(6, 12), at(7, 9) - at(6, 13)]


def test_a_sequence_keeps_the_last_fifteen_behaviours():
    behaviours = pl.DataFrame({"user": ["1"] * 20, "time_stamp": list(range(20)), "btag": ["pv"] * 20,
                               "cate": [str(i) for i in range(20)], "brand": ["b"] * 20})
    built = histories(pl.DataFrame({"user": ["1"], "time_stamp": [19]}), behaviours)
    assert built["hist_cate"].to_list() == [[str(i) for i in range(4, 19)]]


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    root = tmp_path_factory.mktemp("alimama")
    return prepare_alimama(write_raw(root / "raw"), root / "data", buckets=3)


def rows(result, split: str) -> pl.DataFrame:
    return pl.read_parquet(result.path / f"{split}.parquet")


def test_scenarios_are_city_levels_with_missing_as_the_fifth(prepared):
    scenario = prepared.manifest.scenario
    assert scenario.names == ["1", "2", "missing"]
    assert scenario.rows == {"train": [1, 2, 1], "valid": [1, 1, 0], "test": [1, 1, 1]}


def test_impressions_without_a_profile_are_dropped_and_counted(prepared):
    notes = prepared.manifest.notes
    assert notes["raw_impressions"] == 10 and notes["dropped_without_profile"] == 1
    assert sum(prepared.manifest.rows(split) for split in ("train", "valid", "test")) == 9


def test_no_leak_into_sequences_or_vocabularies(prepared):
    manifest = prepared.manifest
    cate = {f.name: f for f in manifest.sequences}["hist_cate"]
    # training values of the category table: 100 (x4), 101 (x2), 777, 778: ids 2..5, so 6 rows in all
    assert cate.table == "cate_id" and cate.vocab_size == 6
    train = rows(prepared, "train").sort("hour")
    first = train.filter(pl.col("hist_cate").arr.get(14) != 0)
    nonzero = [[v for v in seq if v] for seq in first["hist_cate"].to_list()]
    assert sorted(nonzero, key=len) == [[2], [2, 4, 5]]  # not [2, 4]: the same-second cart stays out
    test = rows(prepared, "test").filter(pl.col("city_level") == 1)  # user 1, city level 2
    assert test["cate_id"].to_list() == [OOV_ID]  # category 999 appears on the test day only
    assert test["hist_cate"].to_list()[0][-1] == OOV_ID  # 888: behaviour after the training days
    btag = {f.name: f for f in manifest.sequences}["hist_btag"]
    assert btag.table == "hist_btag" and btag.target is None and btag.vocab_size == 2 + 3  # pv, cart, fav


def test_the_bucket_count_does_not_change_the_result(prepared, tmp_path):
    other = prepare_alimama(write_raw(tmp_path / "raw"), tmp_path / "data", buckets=1)
    assert other.manifest.scenario == prepared.manifest.scenario
    for split in ("train", "valid", "test"):
        key = ["user_key", "hour", "adgroup_id"]
        assert rows(other, split).sort(key).equals(rows(prepared, split).sort(key))


def test_the_published_archives_are_read_as_they_come(tmp_path):
    plain = write_raw(tmp_path / "plain")
    archives = tmp_path / "archives"
    archives.mkdir()
    for csv in plain.iterdir():
        with tarfile.open(archives / f"{csv.name}.tar.gz", "w:gz") as bundle:
            bundle.add(csv, arcname=csv.name)
    result = prepare_alimama(archives, tmp_path / "data", buckets=2)
    assert result.manifest.rows("train") == 4


def test_a_replaced_archive_is_prepared_from_its_new_contents(tmp_path):
    def archive(impressions) -> None:
        plain = write_raw(tmp_path / "plain", impressions=impressions)
        for csv in plain.iterdir():
            with tarfile.open(tmp_path / "archives" / f"{csv.name}.tar.gz", "w:gz") as bundle:
                bundle.add(csv, arcname=csv.name)

    (tmp_path / "archives").mkdir()
    archive(IMPRESSIONS)
    first = prepare_alimama(tmp_path / "archives", tmp_path / "data", buckets=2)
    archive(IMPRESSIONS + [(2, at(7, 10), 10, 1)])  # one more training impression, same archive names
    second = prepare_alimama(tmp_path / "archives", tmp_path / "data", buckets=2)
    assert not second.reused and second.manifest.fingerprint != first.manifest.fingerprint
    assert [first.manifest.rows("train"), second.manifest.rows("train")] == [4, 5]


def test_bad_input_is_a_clear_error(tmp_path):
    raw = write_raw(tmp_path / "raw")
    (raw / "behavior_log.csv").unlink()
    with pytest.raises(DataError, match="behavior_log.csv .*not found"):
        prepare_alimama(raw, tmp_path / "data")
    write_raw(raw)
    (raw / "ad_feature.csv").write_text(ADS.replace("customer,", "advertiser,"))
    with pytest.raises(DataError, match="ad_feature.csv: line 1 has columns adgroup_id,cate_id,campaign_id,"
                                        "advertiser,brand,price; expected .*customer"):
        prepare_alimama(raw, tmp_path / "data")
    write_raw(raw, impressions=[(1, "2017-05-06 12:00:00", 10, 0), *IMPRESSIONS])
    with pytest.raises(DataError, match="raw_sample.csv: line 2: time_stamp '2017-05-06 12:00:00' is not"):
        prepare_alimama(raw, tmp_path / "data")
    assert not (tmp_path / "data" / "alimama").exists()
