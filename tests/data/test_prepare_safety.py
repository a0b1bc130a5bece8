"""Preparing under stress: two processes at once, kill -9, damaged prepared files, hostile names and paths."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import polars as pl
import pytest

from mscbench.cli import main
from mscbench.data.card import load_card
from mscbench.data.errors import DataError
from mscbench.data.manifest import MANIFEST_FILE, read_manifest
from mscbench.data.names import checked_identifier
from mscbench.data.prepare import dataset_dir, find_prepared, list_prepared, prepare, prepare_synthetic
from mscbench.data.sources import prepare_source
from mscbench.files import current_umask
from tests.test_prepare import raw_log, shop_spec

ROOT = Path(__file__).resolve().parents[2]
SHOP = ROOT / "examples" / "shop"
ROWS = 2000

# A prepare of the synthetic dataset in its own process that stops at `at` until the file "go" exists
# (after saying "started"), so that a test can start a second process, or kill this one, at that point.
GATED_PREPARE = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    import mscbench.data.prepare as preparing

    data_dir, gate, at, rows = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3], int(sys.argv[4])
    original = getattr(preparing, at)

    def gated(*args):
        (gate / "started").touch()
        while not (gate / "go").exists():
            time.sleep(0.02)
        return original(*args)

    setattr(preparing, at, gated)
    result = preparing.prepare_synthetic(data_dir, rows=rows, progress=lambda line: print(line, flush=True))
    print("reused" if result.reused else "prepared", flush=True)
""")


def start_prepare(tmp_path: Path, name: str, at: str) -> tuple[subprocess.Popen, Path]:
    (tmp_path / "gate").mkdir(exist_ok=True)
    output = tmp_path / f"{name}.out"
    with open(output, "w") as sink:
        process = subprocess.Popen([sys.executable, "-c", GATED_PREPARE, str(tmp_path / "data"),
                                    str(tmp_path / "gate"), at, str(ROWS)], stdout=sink, stderr=subprocess.STDOUT, cwd=ROOT)
    return process, output


def wait_until(condition, what: str, seconds: float = 60.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def leftovers(data_dir: Path) -> list[str]:
    """Hidden files and folders beside the prepared datasets (staging, retired, lock files)."""
    return sorted(str(path.relative_to(data_dir)) for path in data_dir.glob("*/.*"))


def test_a_second_prepare_of_the_same_dataset_waits_for_the_first_then_finds_it_prepared(tmp_path):
    first, first_output = start_prepare(tmp_path, "first", "generate_in_chunks")
    wait_until((tmp_path / "gate" / "started").exists, "the first prepare to start")
    second, second_output = start_prepare(tmp_path, "second", "generate_in_chunks")
    waiting = f"waiting: process {first.pid} is preparing synthetic/"
    wait_until(lambda: waiting in second_output.read_text(), f"{waiting!r} from the second prepare")
    (tmp_path / "gate" / "go").touch()
    assert first.wait(timeout=120) == 0 and second.wait(timeout=120) == 0
    assert first_output.read_text().splitlines()[-1] == "prepared"
    assert second_output.read_text().splitlines()[-1] == "reused"
    [(name, variant, manifest)] = list_prepared(tmp_path / "data")
    directory = find_prepared(tmp_path / "data", f"{name}/{variant}")
    assert sum(pl.read_parquet(directory / f"{split}.parquet").height for split in manifest.splits) == ROWS
    assert leftovers(tmp_path / "data") == []


def test_a_prepare_killed_before_its_manifest_leaves_nothing_prepared_and_the_next_one_succeeds(tmp_path):
    killed, _ = start_prepare(tmp_path, "killed", "write_manifest")  # every Parquet written, then stopped
    wait_until((tmp_path / "gate" / "started").exists, "the prepare to write its Parquet files")
    os.kill(killed.pid, signal.SIGKILL)
    killed.wait(timeout=30)
    data_dir = tmp_path / "data"
    [scratch] = data_dir.glob("synthetic/.*.partial-scratch-*")  # the generated log, read by the prepare
    [staging] = [path for path in data_dir.glob("synthetic/.*.partial-*") if path.is_dir() and path != scratch]
    assert sorted(p.name for p in staging.iterdir()) == ["test.parquet", "train.parquet", "valid.parquet"]
    assert list_prepared(data_dir) == []
    with pytest.raises(DataError, match="is not prepared"):
        find_prepared(data_dir, "synthetic")
    result = prepare_synthetic(data_dir, rows=ROWS)  # the lock died with its holder: no wait
    assert not result.reused and result.manifest.rows("train") > 0
    assert leftovers(data_dir) == []  # the killed prepare's staging and scratch folders and lock file are gone


def test_leftovers_of_a_prepare_killed_while_publishing_are_not_prepared_and_are_cleaned(tmp_path):
    first = prepare(shop_spec(), lambda: raw_log().lazy(), tmp_path)
    assert first.path.stat().st_mode & 0o777 == 0o777 & ~current_umask()  # not mkdtemp's 0700
    for name in (".default.retired", ".default.partial-x1y2"):  # killed between its two renames
        shutil.copytree(first.path, first.path.parent / name)
    first.path.rename(first.path.parent / ".default.partial-z3")
    assert list_prepared(tmp_path) == []
    again = prepare(shop_spec(), lambda: raw_log().lazy(), tmp_path)
    assert not again.reused and leftovers(tmp_path) == []


# ------------------------------------------------------------------------------- damaged prepared files


def test_a_truncated_split_is_named_at_load_and_prepared_again(tmp_path):
    first = prepare(shop_spec(), lambda: raw_log().lazy(), tmp_path)
    recorded = read_manifest(first.path).files["train.parquet"]
    assert recorded["size"] == (first.path / "train.parquet").stat().st_size and len(recorded["sha256"]) == 64
    train = first.path / "train.parquet"
    train.write_bytes(train.read_bytes()[:100])
    with pytest.raises(DataError, match=r"train.parquet has 100 bytes, its manifest says [\d,]+: the prepared "
                                        r"dataset shop/default is damaged; rebuild it with `mscbench prepare "
                                        r"shop --force`"):
        find_prepared(tmp_path, "shop")
    warnings = []
    again = prepare(shop_spec(), lambda: raw_log().lazy(), tmp_path, warnings.append)
    assert not again.reused and any("train.parquet has 100 bytes" in line for line in warnings)
    assert find_prepared(tmp_path, "shop") == again.path
    assert pl.read_parquet(again.path / "train.parquet").height == first.manifest.rows("train")


def test_a_garbled_split_of_the_same_size_is_prepared_again_and_force_rebuilds_an_intact_one(tmp_path):
    first = prepare(shop_spec(), lambda: raw_log().lazy(), tmp_path)
    test = first.path / "test.parquet"
    garbled = bytearray(test.read_bytes())
    garbled[len(garbled) // 2] ^= 0xFF
    test.write_bytes(bytes(garbled))
    again = prepare(shop_spec(), lambda: raw_log().lazy(), tmp_path)
    assert not again.reused and pl.read_parquet(test).height == first.manifest.rows("test")
    assert prepare(shop_spec(), lambda: raw_log().lazy(), tmp_path).reused
    assert not prepare(shop_spec(), lambda: raw_log().lazy(), tmp_path, force=True).reused


def test_a_manifest_written_before_file_records_still_loads_unverified(tmp_path):
    first = prepare(shop_spec(), lambda: raw_log().lazy(), tmp_path)
    raw = json.loads((first.path / MANIFEST_FILE).read_text())
    del raw["files"]
    raw["schema"] = 1
    (first.path / MANIFEST_FILE).write_text(json.dumps(raw))
    assert read_manifest(first.path).files == {}
    assert find_prepared(tmp_path, "shop") == first.path
    assert prepare(shop_spec(), lambda: raw_log().lazy(), tmp_path).reused


def test_prepare_force_on_the_command_line(tmp_path, capsys):
    arguments = ["prepare", "shop", "--card", str(SHOP / "shop.toml"), "--raw-dir", str(SHOP),
                 "--data-dir", str(tmp_path)]
    assert main(arguments) == 0
    assert main(arguments) == 0 and "already prepared" in capsys.readouterr().out
    assert main([*arguments, "--force"]) == 0 and "already prepared" not in capsys.readouterr().out


# ------------------------------------------------------------------------------ hostile names and paths


@pytest.mark.parametrize("name", ["../victim", "..", ".", "/tmp/victim", "a/b", "a\\b", ".hidden", "", "a b",
                                  "x" * 101, "a\x00b", "shop\n"])
def test_a_dataset_name_that_is_not_a_plain_name_is_refused(name):
    with pytest.raises(DataError, match="is not a plain name: use letters, digits"):
        checked_identifier(name, "dataset name")


@pytest.mark.parametrize("name", ["shop", "movielens-small", "shop.v2", "A_1", "x" * 100])
def test_plain_names_are_accepted(name):
    assert checked_identifier(name, "dataset name") == name


def test_prepare_of_a_path_as_dataset_name_writes_nothing_and_leaves_the_victim(tmp_path, capsys):
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "precious.txt").write_text("keep me")
    data_dir = tmp_path / "data"
    assert main(["prepare", "../victim", "--card", str(SHOP / "shop.toml"), "--raw-dir", str(SHOP),
                 "--data-dir", str(data_dir)]) == 2
    assert "dataset name '../victim' is not a plain name" in capsys.readouterr().err
    assert [p.name for p in victim.iterdir()] == ["precious.txt"] and not data_dir.exists()
    assert main(["prepare", "../victim", "--download", "--data-dir", str(data_dir)]) == 2
    assert not data_dir.exists()


def test_a_variant_that_is_a_path_is_refused_before_anything_is_written(tmp_path):
    with pytest.raises(DataError, match="variant '../../x' is not a plain name"):
        prepare(shop_spec(variant="../../x"), lambda: raw_log().lazy(), tmp_path / "data")
    with pytest.raises(DataError, match="dataset name 'a/b'"):
        dataset_dir(tmp_path, "a/b")
    assert list(tmp_path.iterdir()) == []


def write_card(directory: Path, table: str = "", source: str = "") -> Path:
    card = directory / "card.toml"
    card.write_text((SHOP / "shop.toml").read_text().replace('path = "events.csv"', table or 'path = "events.csv"')
                    + source)
    return card


@pytest.mark.parametrize("path", ["../events.csv", "/etc/events.csv", "sub/../../events.csv", "~/events.csv",
                                  "..\\\\events.csv"])
def test_a_table_path_outside_the_raw_dir_is_refused_unless_allowed(tmp_path, path):
    with pytest.raises(DataError, match=r"\[tables.events\]: path .* leaves --raw-dir; .*allow_outside_raw_dir"):
        load_card(write_card(tmp_path, f'path = "{path}"'))


def test_allow_outside_raw_dir_reads_a_table_outside_it(tmp_path, capsys):
    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "users.csv").write_text((SHOP / "users.csv").read_text())
    (tmp_path / "events.csv").write_text((SHOP / "events.csv").read_text())
    card = write_card(tmp_path, 'path = "../events.csv"\nallow_outside_raw_dir = true')
    assert main(["card", "check", str(card), "--raw-dir", str(raw)]) == 0
    assert "8,000 rows" in capsys.readouterr().out


SOURCE = """
[source]
homepage = "https://example.com"
[[source.files]]
name = "{name}"
url = "{url}"
"""


@pytest.mark.parametrize("name", ["../../x", "/tmp/x", "a/b.csv", "..", "", "a\\b.csv"])
def test_a_download_name_that_is_not_a_plain_file_name_is_refused(tmp_path, capsys, name):
    card = write_card(tmp_path, source=SOURCE.format(name=name.replace("\\", "\\\\"), url="https://example.com/x"))
    with pytest.raises(DataError, match=rf"\[source\] file 1: name {re.escape(repr(name))} must be a plain file name"):
        load_card(card)
    assert main(["card", "check", str(card), "--raw-dir", str(SHOP)]) == 2
    assert "plain file name" in capsys.readouterr().err


@pytest.mark.parametrize("url", ["file:///etc/passwd", "ftp://example.com/x", "example.com/x", "http:///x"])
def test_a_download_url_that_is_not_http_is_refused(tmp_path, url):
    card = write_card(tmp_path, source=SOURCE.format(name="events.csv", url=url))
    with pytest.raises(DataError, match=rf"url '{url}' must be an http:// or https:// address"):
        load_card(card)


def test_the_built_in_cards_pass_the_name_checks():
    for name in ("synthetic", "movielens-small", "alimama"):
        assert checked_identifier(name, "dataset name") == name
    with pytest.raises(DataError, match="dataset name"):
        prepare_source("../synthetic", None, Path("unused"))
    assert dataset_dir(Path("d"), "movielens-small") == Path("d/movielens-small/default")
