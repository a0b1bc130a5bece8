"""Raw input a card reads: any file name, non-finite numbers, unreadable files (one line, exit code 2),
and the surprises that are warned about and noted in the manifest."""

from __future__ import annotations

import gzip
import json
import struct
import textwrap

import numpy as np
import polars as pl
import pytest
from rich.console import Console

from mscbench import cli as cli_module
from mscbench.cli import main
from mscbench.data.card import check_card_data, load_card, prepare_card
from mscbench.data.manifest import MANIFEST_FILE
from mscbench.data.prepare import list_prepared
from mscbench.eval.evaluation import evaluate_predictions
from mscbench.results.record import DatasetRef, RunRecord
from mscbench.results.report import compare_runs
from tests.data import test_card

HEADER = "user_id,item_id,clicked,country,price,ts\n"
ROWS = [f"u{n % 7},i{n % 11},{int(n % 3 == 0)},{'fr' if n % 2 else 'de'},{n + 0.5},{1700000000 + 3600 * n}"
        for n in range(200)]
CARD = textwrap.dedent(test_card.CARD).replace('path = "events.csv"', 'path = "PATH"')


@pytest.fixture(autouse=True)
def wide_console(monkeypatch):
    monkeypatch.setattr(cli_module, "console", Console(width=200))
    monkeypatch.setattr(cli_module, "errors", Console(width=400, stderr=True))


def text(rows: list[str] = ROWS, header: str = HEADER) -> bytes:
    return (header + "\n".join(rows) + "\n").encode()


def zstd_frame(data: bytes) -> bytes:
    """A zstd frame holding `data` in one raw (stored) block: what `zstd` writes, without compressing."""
    return b"\x28\xb5\x2f\xfd\xa0" + struct.pack("<I", len(data)) + ((len(data) << 3) | 1).to_bytes(3, "little") + data


def write_case(directory, data: bytes, path: str = "events.csv", card: str = CARD):
    (directory / path).write_bytes(data)
    card_path = directory / "shop.toml"
    card_path.write_text(card.replace("PATH", path))
    return card_path


def cli(capsys, *args) -> tuple[int, str, str]:
    code = main([str(arg) for arg in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def check_and_prepare(capsys, directory, card_path) -> list[tuple[int, str]]:
    """`card check` and `prepare --card` on the same files: (exit code, stderr) of each."""
    data = directory / "data"
    return [cli(capsys, "card", "check", card_path, "--raw-dir", directory)[::2],
            cli(capsys, "prepare", "shop", "--card", card_path, "--raw-dir", directory, "--data-dir", data)[::2]]


def standardised_price(result) -> np.ndarray:
    return pl.read_parquet(result.path / "train.parquet")["price"].to_numpy()


# ------------------------------------------------------------------------ non-finite dense values


@pytest.mark.parametrize("bad", ["inf", "-inf", "NaN", "1e400"])
def test_a_non_finite_dense_value_is_missing_not_a_column_of_nan(tmp_path, bad):
    rows = [row.replace(",10.5,", f",{bad},") for row in ROWS]
    card = load_card(write_case(tmp_path, text(rows)))
    result = prepare_card(card, tmp_path, tmp_path / "data")
    price = standardised_price(result)
    assert np.isfinite(price).all() and np.abs(price).max() > 1.0
    assert result.manifest.notes["unparsable_dense"] == {"price": 1}
    training = result.manifest.rows("train")  # the first rows: they are in time order
    assert result.manifest.notes["dense_mean"]["price"] == pytest.approx(
        np.mean([n + 0.5 for n in range(training) if n != 10]))
    report = check_card_data(card, tmp_path)
    assert any("'price': 1 values are not finite numbers (counted as missing)" in w for w in report.warnings)


def test_values_near_the_float_limit_do_not_overflow_the_statistics(tmp_path):
    rows = [row.replace(",10.5,", ",1e308,").replace(",11.5,", ",-1.7e308,") for row in ROWS]
    result = prepare_card(load_card(write_case(tmp_path, text(rows))), tmp_path, tmp_path / "data")
    price = standardised_price(result)
    assert np.isfinite(price).all()
    mean, std = result.manifest.notes["dense_mean"]["price"], result.manifest.notes["dense_std"]["price"]
    assert np.isfinite([mean, std]).all() and std > 1e306
    assert price[10] == pytest.approx((1e308 - mean) / std, rel=1e-6)


def test_dense_statistics_are_exactly_the_undivided_ones(tmp_path):
    """Dividing by a power of two before summing changes no bit of ordinary statistics."""
    values = np.random.default_rng(0).lognormal(3.0, 2.0, 200)
    rows = [row.replace(f",{n + 0.5},", f",{value:.17g},") for n, (row, value) in enumerate(zip(ROWS, values))]
    card = load_card(write_case(tmp_path, text(rows)))
    result = prepare_card(card, tmp_path, tmp_path / "data")
    train = pl.Series(values[:result.manifest.rows("train")])  # the rows are in time order
    assert result.manifest.notes["dense_mean"]["price"] == train.mean()
    assert result.manifest.notes["dense_std"]["price"] == train.std(ddof=0)


# ------------------------------------------------------------------ unreadable files: one line, exit 2


def truncated_gzip() -> bytes:
    return gzip.compress(text())[:300]


UNREADABLE = [
    ("not UTF-8", text(ROWS[:5] + ["u1,i1,1,Zürich,1.0,1700000000".encode("latin-1").decode("latin-1")] + ROWS[5:])
     .replace("Zürich".encode(), "Zürich".encode("latin-1")), "events.csv",
     "events.csv line 7 is not UTF-8 text: set encoding = \"latin1\" in [tables.events]"),
    ("empty file", b"", "events.csv", "events.csv is empty"),
    ("0-byte .gz", b"", "events.csv.gz", "events.csv.gz is empty"),
    ("truncated .gz", truncated_gzip(), "events.csv.gz", "events.csv.gz cannot be read (unexpected end of file)"),
    ("0-byte .zst", b"", "events.csv.zst", "events.csv.zst is empty"),
    ("truncated .zst", zstd_frame(text())[:-40], "events.zst", "events.zst cannot be read (incomplete frame)"),
    ("missing field", text(ROWS[:150] + ["u1,i1,1,fr,1700000000"] + ROWS[150:]), "events.csv",
     "events.csv line 152: expected 6 fields separated by ',', found 5"),
    ("extra field", text(ROWS[:3] + ["u1,i1,1,fr,1.0,1700000000,x"] + ROWS[3:]), "events.csv",
     "events.csv line 5: expected 6 fields separated by ',', found 7"),
    ("garbled Parquet", b"PAR1" + bytes(range(256)) * 3 + b"PAR1", "events.parquet",
     "events.parquet is not a readable Parquet file"),
]


@pytest.mark.parametrize("data, path, message", [case[1:] for case in UNREADABLE], ids=[c[0] for c in UNREADABLE])
def test_an_unreadable_file_is_one_line_naming_it_and_check_agrees_with_prepare(tmp_path, capsys, data, path,
                                                                               message):
    card_path = write_case(tmp_path, data, path)
    for code, err in check_and_prepare(capsys, tmp_path, card_path):
        assert code == 2 and message in " ".join(err.split()) and "Traceback" not in err
        assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "data").exists() or list_prepared(tmp_path / "data") == []


def test_a_missing_field_far_down_is_refused_not_dropped(tmp_path):
    """Beyond the 0.1% of unreadable labels that are tolerated, a short row was dropped and counted."""
    rows = ROWS * 10
    rows[1500] = "u1,i1,fr,1.0,1700000000"
    card = load_card(write_case(tmp_path, text(rows)))
    with pytest.raises(Exception, match="line 1502: expected 6 fields separated by ',', found 5"):
        check_card_data(card, tmp_path)


def test_quoted_separators_and_crlf_lines_are_not_ragged(tmp_path):
    rows = [row.replace("u1,", '"u,1",', 1) for row in ROWS]
    data = text(rows).replace(b"\n", b"\r\n")
    report = check_card_data(load_card(write_case(tmp_path, data)), tmp_path)
    assert report.rows == 200


def test_a_prepared_manifest_with_wrong_contents_is_one_line(tmp_path, capsys):
    data = tmp_path / "data"
    assert cli(capsys, "prepare", "synthetic", "--rows", "2000", "--data-dir", data)[0] == 0
    manifest = next(data.rglob(MANIFEST_FILE))
    content = json.loads(manifest.read_text())
    for wrong in ({**content, "scenario": {**content["scenario"], "names": "s0"}},
                  {**content, "sparse": [{"name": "user_id"}]}, [], {"schema": 1}):
        manifest.write_text(json.dumps(wrong))
        code, out, err = cli(capsys, "datasets", "--data-dir", data)
        assert code == 0 and "synthetic/" not in out  # not listed: it is not a complete dataset
        code, _, err = cli(capsys, "train", "dnn", "--dataset", "synthetic/rows2000-sc5-seed0", "--data-dir", data,
                           "--runs-dir", tmp_path / "runs")
        assert code == 2 and "manifest.json is corrupt" in err and "re-run `mscbench prepare`" in err
        assert "Traceback" not in err


@pytest.mark.parametrize("rows", ["0", "-5"])
def test_prepare_synthetic_with_no_rows_is_an_error(tmp_path, capsys, rows):
    code, _, err = cli(capsys, "prepare", "synthetic", "--rows", rows, "--data-dir", tmp_path / "data")
    assert code == 2 and f"needs --rows >= 1000 and --scenarios >= 1, got {rows}" in err
    assert not (tmp_path / "data").exists() or list_prepared(tmp_path / "data") == []


# ------------------------------------------------------------------- surprises: warned and noted


def test_a_label_with_a_third_value_is_warned_and_noted(tmp_path):
    rows = [row.replace(",0,fr,", ",2,fr,") for row in ROWS]
    card = load_card(write_case(tmp_path, text(rows)))
    report = check_card_data(card, tmp_path)
    assert report.notes["label_values"] == 3
    assert any("label 'clicked' has 3 distinct values (from '0' to '2'): positive '== 1' makes every other "
               "value negative" in w for w in report.warnings)
    threshold = load_card(write_case(tmp_path, text(rows), card=CARD.replace('"== 1"', '">= 1"')))
    assert not any("distinct values" in w for w in check_card_data(threshold, tmp_path).warnings)


def test_blank_lines_are_skipped_and_counted_not_unreadable_rows(tmp_path):
    data = text(ROWS[:100] + [""] * 3 + ["  "] + ROWS[100:]) + b"\n"
    card = load_card(write_case(tmp_path, data))
    result = prepare_card(card, tmp_path, tmp_path / "data")
    assert result.manifest.notes["empty_lines"] == {"events.csv": 5}
    assert result.manifest.notes["unreadable_label_rows"] == 0
    assert sum(result.manifest.rows(split) for split in ("train", "valid", "test")) == 200
    assert "events.csv: 5 empty lines skipped" in check_card_data(card, tmp_path).warnings


JOINED = CARD.replace("[label]", """[tables.users]
path = "users.csv"
join = { on = "user_id" }
[label]""").replace('sparse = ["user_id", "item_id"]', 'sparse = ["user_id", "item_id", "segment"]')


def test_a_repeated_join_key_and_a_column_named_twice_are_warned_and_noted(tmp_path):
    (tmp_path / "users.csv").write_text("user_id,segment,price\n" + "".join(
        f"u{n},{'ab'[n % 2]},9\n" for n in range(7)) + "u1,c,9\nu2,d,9\n")
    card = load_card(write_case(tmp_path, text(), card=JOINED))
    report = check_card_data(card, tmp_path)
    assert report.notes["duplicate_join_rows"] == {"users": 2}
    assert report.notes["columns_named_twice"] == ["price"]
    assert any("2 rows of users.csv repeat a join key" in w for w in report.warnings)
    assert any("column 'price' is named more than once" in w for w in report.warnings)
    result = prepare_card(card, tmp_path, tmp_path / "data")
    assert result.manifest.notes["duplicate_join_rows"] == {"users": 2}


def test_a_header_naming_a_column_twice_is_warned(tmp_path):
    header = HEADER.replace(",ts\n", ",ts,price\n")
    card = load_card(write_case(tmp_path, text([row + ",7" for row in ROWS], header)))
    report = check_card_data(card, tmp_path)
    assert report.notes["columns_named_twice"] == ["price"]


# --------------------------------------------------------------------------------- any file name


MOVIELENS_100K = """\
name = "ml100k"
[tables.ratings]
path = "u.data"
separator = "\\t"
header = false
columns = ["user_id", "item_id", "rating", "timestamp"]
[label]
column = "rating"
positive = ">= 4"
[scenario]
buckets = { column = "rating_count", edges = [2, 3] }
[features]
sparse = ["user_id", "item_id"]
[split]
time_column = "timestamp"
test_fraction = 0.2
valid_fraction = 0.0
"""


def test_a_tab_separated_file_without_a_known_suffix_like_movielens_100k(tmp_path):
    lines = "".join(f"{196 + n % 9}\t{242 + n % 13}\t{1 + n % 5}\t{881250949 + 60 * n}\n" for n in range(300))
    (tmp_path / "u.data").write_text(lines)
    card = MOVIELENS_100K.replace('buckets = { column = "rating_count", edges = [2, 3] }', 'column = "rating"')
    result = prepare_card(load_card(write_case(tmp_path, lines.encode(), "u.data", card)), tmp_path, tmp_path / "d")
    assert result.manifest.scenario.names == ["1", "2", "3", "4", "5"]
    assert sum(result.manifest.rows(split) for split in ("train", "valid", "test")) == 300


@pytest.mark.parametrize("compress", [gzip.compress, zstd_frame], ids=["gzip", "zstd"])
def test_compression_and_parquet_are_recognised_by_content(tmp_path, compress):
    write_case(tmp_path, compress(text()), "part-00000")
    assert check_card_data(load_card(tmp_path / "shop.toml"), tmp_path).rows == 200
    frame = pl.read_csv(text(), infer_schema=False)
    frame.write_parquet(tmp_path / "events.log")
    card = load_card(write_case(tmp_path, (tmp_path / "events.log").read_bytes(), "events.log"))
    assert check_card_data(card, tmp_path).rows == 200


def test_format_says_how_to_read_a_file_whatever_its_name(tmp_path):
    card = load_card(write_case(tmp_path, text(), "events.parquet", CARD.replace('path = "PATH"',
                                                                                  'path = "PATH"\nformat = "csv"')))
    assert check_card_data(card, tmp_path).rows == 200


def test_a_latin1_gzip_file_without_a_suffix(tmp_path):
    data = text([row.replace(",fr,", ",Zürich,") for row in ROWS]).decode().encode("latin-1")
    card = write_case(tmp_path, gzip.compress(data), "events.log",
                      CARD.replace('path = "PATH"', 'path = "PATH"\nencoding = "latin1"'))
    report = check_card_data(load_card(card), tmp_path)
    assert sorted(report.per_scenario["scenario"].unique()) == ["Zürich", "de"]


# ----------------------------------------------------------------------------- bucket order


def test_bucketed_scenarios_keep_the_order_of_their_edges(tmp_path, capsys):
    ages = [18, 30, 40, 50, 22, 33, 47, 60]
    rows = [f"{row},{ages[n % len(ages)]}" for n, row in enumerate(ROWS)]
    card_text = CARD.replace('column = "country"', 'buckets = { column = "age", edges = [25, 35, 45] }')
    card_path = write_case(tmp_path, text(rows, HEADER.replace("\n", ",age\n")), card=card_text)
    order = ["<25", "25-35", "35-45", ">=45"]
    report = check_card_data(load_card(card_path), tmp_path)
    assert list(dict.fromkeys(report.per_scenario["scenario"])) == order
    code, out, _ = cli(capsys, "card", "check", card_path, "--raw-dir", tmp_path)
    assert code == 0 and [out.index(f"│ {name} ") for name in order] == sorted(out.index(f"│ {name} ") for name in order)
    result = prepare_card(load_card(card_path), tmp_path, tmp_path / "data")
    assert result.manifest.scenario.names == order
    # the report keeps the order it gets from the runs (the manifest's), never sorting names as text
    label, scenario = np.arange(40) % 2, np.arange(40) % 4
    metrics = evaluate_predictions(label, (label + np.arange(40) / 80) / 2, scenario, order)
    record = RunRecord(run_id="r", model="dnn", seed=0, dataset=DatasetRef("buckets", "v", "f"), metrics=metrics)
    assert compare_runs([record], "dnn").scopes[1:] == order
