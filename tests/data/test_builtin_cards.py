"""The built-in card sources prepare from tiny raw file sets written in each publisher's exact layout."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import polars as pl
import pytest

from mscbench.data.card import load_card
from mscbench.data.sources import SOURCES, prepare_source, source_states

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data"
ROWS = 40


def events(count: int = ROWS):
    """(user, item, positive, time) rows: 4 users, 5 items, both classes in every stretch of time."""
    return [(1 + n % 4, 10 + n % 5, n % 3 != 0, 978_300_000 + 60 * n) for n in range(count)]


def test_every_builtin_card_parses_and_names_its_source():
    for source in SOURCES.values():
        if source.card is not None:
            card = load_card(source.card)
            assert card.source and card.source.homepage and card.source.files, source.name


def test_movielens_1m_layout(tmp_path):
    ratings = "".join(f"{u}::{i}::{5 if p else 2}::{t}\n" for u, i, p, t in events())
    users = "".join(f"{u}::{'MF'[u % 2]}::{[1, 18, 25, 35][u - 1]}::{u + 3}::4806{u}\n" for u in range(1, 5))
    movies = "".join(f"{i}::Café {i} (1999)::Drama|Comedy\n" for i in range(10, 15))
    for name, text in (("ratings.dat", ratings), ("users.dat", users), ("movies.dat", movies)):
        (tmp_path / name).write_bytes(text.encode("latin-1"))
    manifest = prepare_source("movielens", tmp_path, tmp_path / "data").manifest
    assert manifest.scenario.names == ["1", "18", "25", "35"]  # age groups
    assert sum(manifest.rows(s) for s in ("train", "valid", "test")) == ROWS
    assert manifest.sequences[0].name == "hist_movie" and manifest.user == "user_id"


KUAIRAND_LOG = ("user_id,video_id,date,hourmin,time_ms,is_click,is_like,is_follow,is_comment,is_forward,"
                "is_hate,long_view,play_time_ms,duration_ms,profile_stay_time,comment_stay_time,"
                "is_profile_enter,is_rand,tab")
KUAIRAND_USERS = ("user_id,user_active_degree,is_lowactive_period,is_live_streamer,is_video_author,"
                  "follow_user_num,follow_user_num_range,fans_user_num,fans_user_num_range,friend_user_num,"
                  "friend_user_num_range,register_days,register_days_range,"
                  + ",".join(f"onehot_feat{k}" for k in range(18)))
KUAIRAND_VIDEOS = ("video_id,author_id,video_type,upload_dt,upload_type,visible_status,video_duration,"
                   "server_width,server_height,music_id,music_type,tag")


def test_kuairand_pure_layout(tmp_path):
    rows = [f"{u},{i},20220408,1530,{t * 1000}.0,{int(p)},0,0,0,0,0,1,5822,19960.0,0,0,0,0,{u % 2}"
            for u, i, p, t in events()]
    (tmp_path / "log_standard_4_08_to_4_21_pure.csv").write_text("\n".join([KUAIRAND_LOG, *rows[:20]]) + "\n")
    (tmp_path / "log_standard_4_22_to_5_08_pure.csv").write_text("\n".join([KUAIRAND_LOG, *rows[20:]]) + "\n")
    users = [f"{u},high_active,0,0,0,5,(0;10],3,(0;10],0,0,300,\"(180,365]\"," + ",".join(["0"] * 18)
             for u in range(1, 5)]
    (tmp_path / "user_features_pure.csv").write_text("\n".join([KUAIRAND_USERS, *users]) + "\n")
    videos = [f"{i},{i + 100},NORMAL,2022-04-01,ShortImport,public,{19960 if i % 2 else ''},720,1280,,,8"
              for i in range(10, 15)]
    (tmp_path / "video_features_basic_pure.csv").write_text("\n".join([KUAIRAND_VIDEOS, *videos]) + "\n")
    manifest = prepare_source("kuairand", tmp_path, tmp_path / "data").manifest
    assert manifest.scenario.names == ["other"]  # both tabs have fewer than min_train_rows: merged
    assert manifest.scenario.merged == ["0", "1"]
    assert manifest.notes["unmatched_rows"] == {"users": 0, "videos": 0}


IJCAI_HEADER = ("instance_id item_id item_category_list item_property_list item_brand_id item_city_id "
                "item_price_level item_sales_level item_collected_level item_pv_level user_id user_gender_id "
                "user_age_level user_occupation_id user_star_level context_id context_timestamp "
                "context_page_id predict_category_property shop_id shop_review_num_level "
                "shop_review_positive_rate shop_star_level shop_score_service shop_score_delivery "
                "shop_score_description is_trade")


def test_ijcai18_layout(tmp_path):
    start = 1537200000  # 2018-09-18 00:00 Beijing time
    lines = [IJCAI_HEADER]
    for n, (u, i, p, _) in enumerate(events(70)):
        category = "7908382889764677758;" + ("5799347067982556520" if n % 2 else "2011981573061447208")
        lines.append(f"{n} {i} {category} 2072967855524022579;5131280576272319091 -1 {i + 7} 3 3 4 14 "
                     f"{u} 0 1003 2002 3006 {n + 900} {start + n * 8600} 4006 {category}:-1 {u + 50} 15 "
                     f"1.0 5015 1.0 1.0 1.0 {int(p and n % 5 == 0)}")
    (tmp_path / "round1_ijcai_18_train_20180301.txt").write_text("\n".join(lines) + "\n")
    manifest = prepare_source("ijcai18", tmp_path, tmp_path / "data").manifest
    assert manifest.notes["split"]["test_from"] == 1537718400  # 2018-09-24 00:00 in UTC+8
    assert manifest.rows("test") == 9  # rows 61..69 fall on the last day
    assert manifest.scenario.merged == ["2011981573061447208", "5799347067982556520"]


def test_aliccp_raw_layout(tmp_path):
    def features(*pairs):
        return "\x01".join(f"{field}\x02{field}_{value}\x03{1.0}" for field, value in pairs)

    for split, offset in (("train", 0), ("test", 1000)):
        skeleton, common = [], []
        for n, (u, i, p, _) in enumerate(events()):
            listed = features(("205", i), ("206", i % 3), ("301", 1 + n % 3), ("508", i))
            skeleton.append(f"{offset + n},{int(p)},{int(p and n % 4 == 0)},c{u},4,{listed}")
        for u in range(1, 5):
            common.append(f"c{u},3,{features(('101', u), ('121', u % 2), ('109_14', u))}")
        (tmp_path / f"sample_skeleton_{split}.csv").write_text("\n".join(skeleton) + "\n")
        (tmp_path / f"common_features_{split}.csv").write_text("\n".join(common) + "\n")
    result = prepare_source("aliccp", tmp_path, tmp_path / "data")
    manifest = result.manifest
    assert manifest.scenario.names == ["301_1", "301_2", "301_3"]
    assert manifest.rows("test") == ROWS and manifest.rows("train") + manifest.rows("valid") == ROWS
    train = pl.read_parquet(result.path / "train.parquet")
    assert train["101"].min() >= 2  # every user id came from the common features: none out of vocabulary


def test_amazon_2014_layout(tmp_path):
    with gzip.open(tmp_path / "reviews_Electronics.json.gz", "wt") as stream:
        for u, i, p, t in events():
            stream.write(json.dumps({"reviewerID": f"A{u}X", "asin": f"B00{i}", "reviewerName": "x",
                                     "helpful": [0, 0], "reviewText": "ok", "overall": 5.0 if p else 2.0,
                                     "summary": "s", "unixReviewTime": t, "reviewTime": "01 1, 2001"}) + "\n")
    categories = {10: ["Electronics", "Camera & Photo", "Lenses"], 11: ["Electronics", "Headphones"],
                  12: ["Electronics", "Home Audio & Theater"], 13: ["Electronics", "Car Electronics & GPS"],
                  14: ["Books", "Fiction"]}
    with gzip.open(tmp_path / "meta_Electronics.json.gz", "wt") as stream:
        for i, path in categories.items():
            stream.write(repr({"asin": f"B00{i}", "title": "It's a 'thing'", "categories": [path]}) + "\n")
    manifest = prepare_source("amazon", tmp_path, tmp_path / "data").manifest
    assert manifest.scenario.names == ["CG", "CP", "HA", "HP"]
    assert sum(manifest.rows(s) for s in ("train", "valid", "test")) == ROWS - ROWS // 5  # item 14: no scenario


def test_datasets_lists_every_source_with_its_state(tmp_path):
    raw = tmp_path / "raw" / "ijcai18"
    raw.mkdir(parents=True)
    (raw / "round1_ijcai_18_train_20180301.txt").write_text(IJCAI_HEADER + "\n")
    states = {state.name: state.state for state in source_states(tmp_path)}
    assert states["ijcai18"] == "raw present" and states["movielens"] == "not downloaded"
    assert states["synthetic"] == "generated on prepare"
    assert set(states) == set(SOURCES)


@pytest.mark.skipif(not (SHARED / "kuairand").is_dir(), reason="../shared/data is absent")
def test_kuairand_sample_columns_match_the_card():
    """The shared (preprocessed) KuaiRand sample carries the joined columns the card reads."""
    card = load_card(SOURCES["kuairand"].card)
    columns = pl.read_csv(SHARED / "kuairand" / "kuairand_sample.csv", n_rows=1).columns
    from_logs_and_users = [c for c in card.features.sparse if c not in ("author_id", "upload_type", "music_type", "tag")]
    assert set(from_logs_and_users) <= set(columns) and card.scenario.column in columns
