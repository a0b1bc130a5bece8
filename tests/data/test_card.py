"""Dataset cards: the schema and its errors, every raw layout, joins, splits, sequences, bad input."""

from __future__ import annotations

import gzip
import textwrap
from pathlib import Path

import polars as pl
import pytest

from mscbench.data.card import check_card_data, load_card, parse_card, prepare_card
from mscbench.data.errors import DataError
from mscbench.data.prepare import list_prepared

EVENTS = """\
user_id,item_id,clicked,country,price,ts
u1,i1,1,fr,1.5,100
u1,i2,0,fr,2.5,200
u2,i1,1,de,x,300
u2,i3,0,de,4.0,400
u3,i2,1,fr,,500
u3,i1,0,de,6.0,600
u1,i3,1,fr,7.0,700
u2,i2,0,de,8.0,800
u3,i3,1,fr,9.0,900
u1,i1,0,de,10.0,1000
"""


def write_card(directory: Path, body: str, name: str = "shop.toml") -> Path:
    path = directory / name
    path.write_text(textwrap.dedent(body))
    return path


CARD = """\
    name = "shop"
    [tables.events]
    path = "events.csv"
    [label]
    column = "clicked"
    positive = "== 1"
    [scenario]
    column = "country"
    [features]
    sparse = ["user_id", "item_id"]
    dense = ["price"]
    user = "user_id"
    [split]
    by = "time"
    time_column = "ts"
    test_fraction = 0.2
    valid_fraction = 0.25
    """


@pytest.fixture
def shop(tmp_path):
    (tmp_path / "events.csv").write_text(EVENTS)
    return tmp_path


def prepared(raw_dir: Path, card_text: str = CARD, data_dir: Path | None = None):
    card = load_card(write_card(raw_dir, card_text))
    return prepare_card(card, raw_dir, data_dir or raw_dir / "data")


def split(result, name: str) -> pl.DataFrame:
    return pl.read_parquet(result.path / f"{name}.parquet")


def test_time_split_takes_the_last_rows_for_test_and_the_end_of_training_for_valid(shop):
    result = prepared(shop)
    manifest = result.manifest
    # 10 rows by time: the last 20% (ts 900, 1000) test; the last 25% of the first 80% of rows validate
    assert manifest.notes["split"] == {"by": "time", "column": "ts", "valid_from": 700, "test_from": 900}
    assert (manifest.rows("train"), manifest.rows("valid"), manifest.rows("test")) == (6, 2, 2)
    assert manifest.scenario.names == ["de", "fr"] and manifest.scenario.column == "scenario"
    assert split(result, "train")["clicked"].to_list() == [1, 0, 1, 0, 1, 0]


def test_a_dense_value_that_does_not_parse_is_missing_and_reported(shop):
    manifest = prepared(shop).manifest
    assert manifest.notes["unparsable_dense"] == {"price": 1}  # "x"; the empty field is simply missing
    assert manifest.notes["dense_mean"]["price"] == pytest.approx((1.5 + 2.5 + 4.0 + 6.0) / 4)


def test_vocabularies_come_from_training_rows_only(tmp_path):
    (tmp_path / "events.csv").write_text(EVENTS.replace("u1,i1,0,de,10.0,1000", "u9,i9,0,de,10.0,1000"))
    result = prepared(tmp_path)
    assert split(result, "test")["item_id"].to_list()[-1] == 1  # i9 appears in test only: out of vocabulary
    assert {f.name: f.vocab_size for f in result.manifest.sparse} == {"user_id": 5, "item_id": 5}


def test_headerless_pipe_separated_gzip_file_with_a_join(tmp_path):
    with gzip.open(tmp_path / "events.txt.gz", "wt") as stream:
        stream.write("".join("|".join(line.split(",")[:4] + [line.split(",")[5]]) + "\n"
                             for line in EVENTS.splitlines()[1:]))
    (tmp_path / "users.tsv").write_text("uid\tage\nu1\t30\nu2\t40\n")
    card = CARD.replace('path = "events.csv"', '''path = "events.txt.gz"
    separator = "|"
    header = false
    columns = ["user_id", "item_id", "clicked", "country", "ts"]
    [tables.users]
    path = "users.tsv"
    separator = "\\t"
    join = { on = { user_id = "uid" }, how = "left" }''').replace('dense = ["price"]', 'dense = ["age"]')
    result = prepared(tmp_path, card)
    assert result.manifest.notes["unmatched_rows"] == {"users": 3}  # u3's rows match no user
    assert result.manifest.rows("train") == 6


def test_inner_join_drops_unmatched_rows_and_parquet_tables_read_like_text(tmp_path):
    frame = pl.read_csv(EVENTS.encode(), schema_overrides={"user_id": pl.String})
    frame.with_columns(pl.col("ts").cast(pl.Int64)).write_parquet(tmp_path / "events.parquet")
    pl.DataFrame({"user_id": ["u1", "u2"], "segment": [1, 2]}).write_parquet(tmp_path / "users.parquet")
    card = CARD.replace('path = "events.csv"', '''path = "events.parquet"
    [tables.users]
    path = "users.parquet"
    join = { on = "user_id", how = "inner" }''').replace('sparse = ["user_id", "item_id"]',
                                                         'sparse = ["user_id", "item_id", "segment"]')
    result = prepared(tmp_path, card)
    assert sum(result.manifest.rows(s) for s in ("train", "valid", "test")) == 7
    assert result.manifest.notes["unmatched_rows"] == {"users": 3}


def test_latin1_file_with_a_multi_character_separator(tmp_path):
    text = "".join(f"{u}::{i}::{c}::{s}::{t}\n" for u, i, c, s, t in
                   [("1", "10", "5", "Café", "1"), ("2", "11", "2", "Café", "2"), ("1", "11", "4", "Thé", "3"),
                    ("2", "10", "1", "Thé", "4"), ("1", "12", "5", "Café", "5")])
    (tmp_path / "ratings.dat").write_bytes(text.encode("latin-1"))
    card = """\
        name = "latin"
        [tables.ratings]
        path = "ratings.dat"
        separator = "::"
        header = false
        columns = ["user", "item", "rating", "place", "time"]
        encoding = "latin1"
        [label]
        column = "rating"
        positive = ">= 4"
        [scenario]
        column = "place"
        [features]
        sparse = ["user", "item"]
        [split]
        by = "time"
        time_column = "time"
        test_fraction = 0.2
        valid_fraction = 0.0
        """
    result = prepared(tmp_path, card)
    assert result.manifest.scenario.names == ["Café", "Thé"]
    assert result.manifest.scenario.positives["train"] == [1, 1]


def test_label_list_scenario_buckets_and_min_train_rows_merge(shop):
    card = CARD.replace('positive = "== 1"', 'positive = [1]').replace('column = "country"', '''buckets = { column = "ts", edges = [300, 600] }
    min_train_rows = 3''')
    manifest = prepared(shop, card).manifest
    # train rows (ts < 700): <300: 2, 300-600: 3, >=600: 1 -> "<300" and ">=600" merge into other
    assert manifest.scenario.names == ["300-600", "other"]
    assert manifest.scenario.merged == ["<300", ">=600"]
    assert manifest.scenario.rows["train"] == [3, 3]


def test_first_value_of_a_delimited_scenario_column(tmp_path):
    (tmp_path / "events.csv").write_text(EVENTS.replace(",fr,", ",fr|x,").replace(",de,", ",de|fr,"))
    card = CARD.replace('column = "country"', 'column = "country"\n    separator = "|"')
    assert prepared(tmp_path, card).manifest.scenario.names == ["de", "fr"]


def test_random_split_is_seeded(shop):
    card = CARD.replace('by = "time"', 'by = "random"\n    seed = 3').replace("test_fraction = 0.2", "test_fraction = 0.3")
    first = prepared(shop, card, shop / "a").manifest
    again = prepared(shop, card, shop / "b").manifest
    assert first.scenario.rows == again.scenario.rows
    assert sum(first.rows(s) for s in ("train", "valid", "test")) == 10
    assert first.notes["split"]["by"] == "random"


def test_column_split(tmp_path):
    names = ["train"] * 6 + ["valid", "test", "test", "nonsense"]
    lines = EVENTS.splitlines()
    (tmp_path / "events.csv").write_text("\n".join([lines[0] + ",part"] + [f"{line},{name}" for line, name in
                                                                            zip(lines[1:], names)]) + "\n")
    card = CARD.replace('by = "time"', 'by = "column"\n    column = "part"')
    manifest = prepared(tmp_path, card).manifest
    assert (manifest.rows("train"), manifest.rows("valid"), manifest.rows("test")) == (6, 1, 2)
    assert manifest.notes["rows_without_split"] == 1


def test_built_sequence_sees_only_events_strictly_before_the_impression(tmp_path):
    # u1 sees a at 1, then b AND c at the same time 2, then d at 3. A leak would put b into c's history
    # (or c into b's); strictly before gives both b and c the history [a], and d the history [a, b, c].
    (tmp_path / "events.csv").write_text("user,item,click,page,t,part\n"
                                         "u1,a,1,p,1,train\nu1,b,0,p,2,train\nu1,c,1,p,2,train\n"
                                         "u1,d,0,p,3,train\nu2,a,1,p,4,test\nu2,b,0,p,5,test\n")
    card = """\
        name = "seq"
        [tables.events]
        path = "events.csv"
        [label]
        column = "click"
        [scenario]
        column = "page"
        [features]
        sparse = ["user", "item"]
        user = "user"
        [[features.sequence]]
        name = "history"
        from = "item"
        max_len = 3
        [split]
        by = "column"
        column = "part"
        time_column = "t"
        """
    result = prepared(tmp_path, card)
    train = split(result, "train")
    names = dict(zip(train["item"].to_list(), ["a", "b", "c", "d"])) | {0: "."}
    histories = ["".join(names[i] for i in row) for row in train["history"].to_list()]
    assert histories[:3] == ["...", "..a", "..a"] and sorted(histories[3]) == sorted("abc")
    assert split(result, "test")["history"].to_list() == [[0, 0, 0], [0, 0, names_id(names, "a")]]


def names_id(names: dict[int, str], value: str) -> int:
    return next(i for i, name in names.items() if name == value)


def test_stored_delimited_sequence(tmp_path):
    (tmp_path / "events.csv").write_text("user,item,click,page,t,clicked_items\n"
                                         "u1,a,1,p,1,\nu1,b,0,p,2,a\nu2,a,1,p,3,a|b\nu2,b,0,q,4,a|b|zz\n")
    card = CARD.replace('sparse = ["user_id", "item_id"]\n    dense = ["price"]\n    user = "user_id"', '''sparse = ["user", "item"]
    [[features.sequence]]
    name = "clicked_items"
    from = "item"
    column = "clicked_items"
    separator = "|"
    max_len = 2''').replace('column = "clicked"', 'column = "click"').replace('"country"', '"page"') \
        .replace('"ts"', '"t"').replace("test_fraction = 0.2", "test_fraction = 0.25").replace("0.25\n    valid", "0.25\n    valid")
    result = prepared(tmp_path, card.replace("valid_fraction = 0.25", "valid_fraction = 0.0"))
    assert split(result, "test")["clicked_items"].to_list() == [[3, 1]]  # "b" then unseen "zz"


CARD_ERRORS = [
    ('[label]\n    column = "clicked"', '[label]\n    colum = "clicked"', "no key 'colum' \\(did you mean 'column'\\?\\)"),
    ('name = "shop"', 'name = "shop"\n    nmae = "x"', "has no key 'nmae' \\(did you mean 'name'\\?\\)"),
    ('dense = ["price"]', 'dense = ["price", "item_id"]', "'item_id' more than once"),
    ('positive = "== 1"', 'positive = "about 1"', "positive must be a comparison"),
    ('test_fraction = 0.2', 'test_fraction = "a lot"', "\\[split\\]: test_fraction must be a number"),
    ('by = "time"', 'by = "hash"', "by must be one of"),
    ('user = "user_id"', 'user = "country"', "user 'country' must be one of sparse"),
]


@pytest.mark.parametrize("old, new, message", CARD_ERRORS)
def test_card_errors_name_the_card_the_key_and_what_was_expected(tmp_path, old, new, message):
    path = write_card(tmp_path, CARD.replace(old, new))
    with pytest.raises(DataError, match=message) as error:
        load_card(path)
    assert str(path) in str(error.value) and "\n" not in str(error.value)


DATA_ERRORS = [
    (EVENTS, CARD.replace('path = "events.csv"', 'path = "missing.csv"'), "missing.csv does not exist"),
    (EVENTS, CARD.replace('dense = ["price"]', 'dense = ["cost"]'),
     "column 'cost' is in no table \\(events.csv has user_id, item_id, clicked, country, price, ts\\)"),
    (EVENTS, CARD.replace('positive = "== 1"', 'positive = ">= 0"'), "every row positive: the label is not binary"),
    (EVENTS.replace(",100\n", ",yesterday\n"), CARD, "time column 'ts' cannot be read on 1 of 10 rows.*'yesterday'"),
    (EVENTS, CARD.replace('[split]', '[tables.users]\n    path = "events.csv"\n    join = { on = { user_id = "item_id" } }\n    [split]'),
     "matches none of the 10 fact rows"),
    (EVENTS.replace("u2,i2,0,de,8.0,800", "u2,i2,0,de,8.0,800,extra"), CARD,
     "events.csv line 9: expected 6 fields separated by ',', found 7"),
]


@pytest.mark.parametrize("events, card, message", DATA_ERRORS)
def test_bad_raw_data_is_a_one_line_error_and_nothing_is_written(tmp_path, events, card, message):
    (tmp_path / "events.csv").write_text(events)
    with pytest.raises(DataError, match=message) as error:
        prepared(tmp_path, card)
    assert "\n" not in str(error.value)
    assert list_prepared(tmp_path / "data") == []
    assert [p for p in (tmp_path / "data").rglob("*") if p.is_file()] == []


def test_one_class_test_scenario_is_kept_and_warned(shop):
    messages = []
    card = load_card(write_card(shop, CARD))
    result = prepare_card(card, shop, shop / "data", messages.append)
    assert result.manifest.notes["one_class_test_scenarios"] == ["de", "fr"]  # one test row each
    assert any(m.startswith("warning:") and "'de'" in m for m in messages)


def test_check_reports_per_scenario_counts_without_preparing(shop):
    report = check_card_data(load_card(write_card(shop, CARD)), shop)
    train = report.per_scenario.filter(pl.col("split") == "train")
    assert train.select("scenario", "rows", "positives").rows() == [("de", 3, 1), ("fr", 3, 2)]
    assert not (shop / "data").exists()


def test_parse_card_needs_tables_label_and_scenario():
    with pytest.raises(DataError, match="needs at least one \\[tables.NAME\\]"):
        parse_card({"name": "x"}, "card x.toml")
