"""Generated malformed raw files through `card check` and `prepare --card`, as the command line runs them:
exit code 0 or 2, never a traceback, nothing written outside --data-dir, and a prepared dataset only when
every one of its files was written."""

from __future__ import annotations

import gzip
import io
import random
from pathlib import Path

import polars as pl
import pytest
from rich.console import Console

from mscbench import cli as cli_module
from mscbench.cli import main
from mscbench.data.prepare import list_prepared
from tests.data.test_card_input import CARD, zstd_frame

CASES = 240
SEED = 16
HEADER = ["user_id", "item_id", "clicked", "country", "price", "ts"]
FUZZ_CARD = CARD.replace('path = "PATH"', 'path = "PATH"\nseparator = "SEPARATOR"')
ODD_VALUES = ["inf", "-inf", "nan", "NaN", "1e999", "-1e308", "1.7976931348623157e308", "", " ", "x", '"', "é",
              "0x10", "1,5", "\x00", "\ufeff", "null", "9" * 40]


def good_rows(rng: random.Random) -> list[list[str]]:
    return [[f"u{rng.randrange(9)}", f"i{rng.randrange(13)}", str(n % 3 == 0 and 1 or 0), rng.choice("ab"),
             f"{rng.uniform(0, 50):.3f}", str(1_700_000_000 + 600 * n)] for n in range(rng.randrange(30, 80))]


def lines(rows: list[list[str]], separator: str) -> str:
    return "".join(separator.join(row) + "\n" for row in [HEADER, *rows])


def mutated(rng: random.Random) -> tuple[bytes, str, str]:
    """(file bytes, file name, separator named in the card): one or more faults of a generated log."""
    separator = rng.choice([",", ",", "\t", ";", "|"])
    rows = good_rows(rng)
    for _ in range(rng.randrange(0, 4)):
        row = rng.choice(rows)
        kind = rng.randrange(4)
        if kind == 0:
            row[rng.randrange(len(row))] = rng.choice(ODD_VALUES)
        elif kind == 1:
            del row[rng.randrange(len(row))]  # a missing field
        elif kind == 2:
            row.insert(rng.randrange(len(row)), rng.choice(ODD_VALUES))  # an extra field
        else:
            rows.insert(rng.randrange(len(rows)), [""])  # a blank line
    text = lines(rows, rng.choice([separator] * 4 + [",", "\t", "::"]))  # sometimes not the card's
    encoded = text.encode(rng.choice(["utf-8"] * 6 + ["latin-1", "utf-16"]), errors="replace")
    if rng.random() < 0.2:
        encoded = encoded.replace(b"\n", b"\r\n")
    if rng.random() < 0.3:  # flipped, dropped or inserted bytes
        data = bytearray(encoded)
        for _ in range(rng.randrange(1, 6)):
            position = rng.randrange(len(data))
            data[position:position + rng.randrange(0, 3)] = bytes(rng.randrange(256) for _ in range(rng.randrange(3)))
        encoded = bytes(data)
    name = "events.csv"
    wrapping = rng.randrange(10)
    if wrapping == 0:
        encoded, name = gzip.compress(encoded), rng.choice(["events.csv.gz", "events.log"])
    elif wrapping == 1:
        encoded, name = zstd_frame(encoded[: (1 << 17) - 1]), rng.choice(["events.csv.zst", "part-00000"])
    elif wrapping == 2:
        encoded = bytes(rng.randrange(256) for _ in range(rng.randrange(0, 400)))  # nothing but noise
        name = rng.choice(["events.csv", "events.parquet", "u.data"])
    elif wrapping == 3:
        parquet = io.BytesIO()
        pl.read_csv(lines(good_rows(rng), ",").encode(), infer_schema=False).write_parquet(parquet)
        encoded, name = parquet.getvalue(), rng.choice(["events.parquet", "events.bin"])
    if rng.random() < 0.25:  # truncated, wherever the cut falls
        encoded = encoded[: rng.randrange(len(encoded) + 1)]
    return encoded, name, separator


def tree(root: Path, skip: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and skip not in p.parents}


@pytest.fixture(autouse=True)
def wide_console(monkeypatch):
    monkeypatch.setattr(cli_module, "console", Console(width=200))
    monkeypatch.setattr(cli_module, "errors", Console(width=400, stderr=True))


def test_malformed_files_stop_with_one_line_or_prepare_completely(tmp_path, capsys):
    rng = random.Random(SEED)
    outcomes = {"prepared": 0, "refused": 0}
    for case in range(CASES):
        root = tmp_path / f"case{case}"
        raw, data = root / "raw", root / "data"
        raw.mkdir(parents=True)
        encoded, name, separator = mutated(rng)
        (raw / name).write_bytes(encoded)
        card = root / "shop.toml"
        card.write_text(FUZZ_CARD.replace("PATH", name).replace("SEPARATOR", separator.replace("\t", "\\t")))
        before = tree(root, data)
        codes = []
        for args in (["card", "check", card, "--raw-dir", raw],
                     ["prepare", "shop", "--card", card, "--raw-dir", raw, "--data-dir", data]):
            codes.append(main([str(arg) for arg in args]))
            err = capsys.readouterr().err
            assert codes[-1] in (0, 2), (case, name, encoded[:200])
            if codes[-1] == 2:  # one line (rich may wrap it), and it is the error
                assert err.startswith("error: ") and "Traceback" not in err, (case, err)
        assert tree(root, data) == before, case  # nothing written beside --data-dir, the raw file untouched
        prepared = list_prepared(data)
        if codes[1] == 0:
            (_, _, manifest), = prepared
            for split in ("train", "valid", "test"):
                assert pl.read_parquet(data / "shop" / "default" / f"{split}.parquet").height == manifest.rows(split)
        else:
            assert prepared == [] and not any(p.is_file() for p in data.rglob("*")), case
        assert codes[0] == codes[1], (case, codes)  # `card check` and prepare agree
        outcomes["prepared" if codes[1] == 0 else "refused"] += 1
    assert outcomes["prepared"] > CASES // 10 and outcomes["refused"] > CASES // 4, outcomes
