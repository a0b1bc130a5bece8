"""AliExpress from the shared joined sample and from hand-made files in the publisher's per-country layout."""

from __future__ import annotations

import io
import shutil
import zipfile
from pathlib import Path

import polars as pl
import pytest

from mscbench.data.errors import DataError
from mscbench.data.sources.aliexpress import CATEGORICAL, NUMERICAL, prepare_aliexpress

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "aliexpress"


@pytest.mark.skipif(not SHARED.is_dir(), reason="../shared/data/aliexpress is absent")
def test_the_shared_joined_sample_prepares(tmp_path):
    country = tmp_path / "raw" / "AliExpress_NL"
    country.mkdir(parents=True)
    shutil.copy(SHARED / "aliexpress_train_sample.csv", country / "train.csv")
    shutil.copy(SHARED / "aliexpress_test_sample.csv", country / "test.csv")
    manifest = prepare_aliexpress(tmp_path / "raw", tmp_path / "data").manifest
    assert manifest.scenario.names == ["NL"]
    assert manifest.rows("train") + manifest.rows("valid") == 100 and manifest.rows("test") == 20
    assert [f.name for f in manifest.sparse] == list(CATEGORICAL) and manifest.dense == list(NUMERICAL)
    assert manifest.scenario.positives["test"] == [10]  # the sample's test clicks
    conversion = prepare_aliexpress(tmp_path / "raw", tmp_path / "data", label="conversion").manifest
    assert conversion.variant == "conversion" and conversion.scenario.positives["test"] == [2]


def publisher_rows(searches: list[int], outcomes: list[int], seed: int) -> tuple[str, str]:
    """A user file (33 columns, one row per search) and an item file (49, one row per shown item)."""
    users = "".join(",".join([str(s), *(str((s + i + seed) % 5) for i in range(7)),
                              *(f"0.{(s * i) % 97}" for i in range(23)), "1", "2"]) + "\n" for s in searches)
    items = "".join(",".join([str(s), *(f"0.{(s + i) % 89}" for i in range(17)), str(k % 3),
                              *(f"0.{i}" for i in range(14)), "7", "8", "9", "0.5", "0.25", "0.125", "3", "4", "5",
                              *(f"0.{i}" for i in range(6)), str(outcome)]) + "\n"
                    for k, (s, outcome) in enumerate(zip(searches * 2, outcomes)))
    return users, items


def publisher_zip(folder: Path, country: str) -> None:
    """aliexpress_<CC>_datasets.zip holding the four zipped CSVs, as the publisher ships them."""
    code = country.lower()
    outer = io.BytesIO()
    with zipfile.ZipFile(outer, "w") as bundle:
        for split, searches in (("train", list(range(1, 21))), ("test", [31, 32])):
            users, items = publisher_rows(searches, [0, 1, 2, 0] * 10, seed=len(country))
            for kind, text in (("user", users), ("item", items)):
                inner = io.BytesIO()
                with zipfile.ZipFile(inner, "w") as small:
                    small.writestr(f"{code}_{kind}_{split}.csv", text)
                bundle.writestr(f"aliexpress_{country}_datasets/{code}_{kind}_{split}.zip", inner.getvalue())
    (folder / f"aliexpress_{country}_datasets.zip").write_bytes(outer.getvalue())


def test_the_publishers_archives_join_users_and_items(tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    publisher_zip(raw, "ES")
    publisher_zip(raw, "US")
    result = prepare_aliexpress(raw, tmp_path / "data")
    manifest = result.manifest
    assert manifest.scenario.names == ["ES", "US"]
    # 20 train searches x 2 shown items each, 2 test searches x 2 items; outcomes 0,1,2,0 -> clicks 1 of 2
    assert [manifest.rows("train") + manifest.rows("valid"), manifest.rows("test")] == [80, 8]
    assert manifest.scenario.positives["test"] == [2, 2]
    train = pl.read_parquet(result.path / "train.parquet")
    assert train.columns[:2] == ["country", "click"] and len(train.columns) == 2 + 16 + 63
    conversions = prepare_aliexpress(raw, tmp_path / "data", label="conversion").manifest
    assert conversions.scenario.positives["test"] == [1, 1]  # outcome 2 = clicked and bought


def test_bad_input_is_a_clear_error(tmp_path):
    with pytest.raises(DataError, match="no AliExpress country found"):
        prepare_aliexpress(tmp_path, tmp_path / "data")
    country = tmp_path / "AliExpress_FR"
    country.mkdir()
    (country / "train.csv").write_text("search_id,click\n1,0\n")
    (country / "test.csv").write_text("search_id,click\n1,0\n")
    with pytest.raises(DataError, match=r"train.csv: line 1 has columns search_id,click,... \(2 in all\)"):
        prepare_aliexpress(tmp_path, tmp_path / "data")
    with pytest.raises(DataError, match="label 'buy' is not one of click, conversion"):
        prepare_aliexpress(tmp_path, tmp_path / "data", label="buy")
