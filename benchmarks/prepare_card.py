"""A generated fact table prepared from a dataset card: time and peak memory of `prepare --card`.

    python -m benchmarks.prepare_card --rows 10000000 --out /tmp/card-bench
    (writes /tmp/card-bench/raw/events.csv, users.csv, shop.toml, then runs, under /usr/bin/time -v,
     mscbench prepare shop --card shop.toml --raw-dir raw --data-dir prepared, and prints the summary)

The table is written in chunks (bounded memory at any size): a user, an item, a category, a country
(8 scenarios, one small enough to merge into "other"), a price with a few unparsable values, a Unix time
over 30 days and a 0/1 click; a users table is joined on the user. `--sequence` adds a behaviour
sequence built from the fact table (the user's last 15 items strictly before each impression).
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import polars as pl

CHUNK = 1_000_000
USERS, ITEMS, DAYS = 500_000, 200_000, 30
START = 1_700_000_000
COUNTRIES = np.array(["us", "de", "fr", "es", "it", "nl", "pl", "lu"])
SHARES = np.array([0.3, 0.2, 0.15, 0.12, 0.1, 0.08, 0.0499, 0.0001])

CARD = """\
name = "shop"
[tables.events]
path = "events.csv"
[tables.users]
path = "users.csv"
join = {{ on = "user_id" }}
[label]
column = "clicked"
[scenario]
column = "country"
min_train_rows = 5000
[features]
sparse = ["user_id", "item_id", "category", "segment"]
dense = ["price"]
user = "user_id"
{sequence}
[split]
by = "time"
time_column = "ts"
test_fraction = 0.1
valid_fraction = 0.1
"""
SEQUENCE = """[[features.sequence]]
name = "hist_item"
from = "item_id"
max_len = 15"""


def generate(rows: int, raw: Path, seed: int = 0) -> None:
    raw.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    with open(raw / "events.csv", "w") as stream:
        stream.write("user_id,item_id,category,country,price,ts,clicked\n")
        stream.writelines(chunk(rng, min(CHUNK, rows - start)).write_csv(include_header=False) for start in range(0, rows, CHUNK))
    pl.DataFrame({"user_id": np.arange(USERS), "segment": rng.integers(0, 20, USERS)}) \
        .write_csv(raw / "users.csv")


def chunk(rng: np.random.Generator, size: int) -> pl.DataFrame:
    item = rng.zipf(1.3, size) % ITEMS
    price = np.round(rng.lognormal(3, 0.8, size), 2).astype(str)
    price[rng.random(size) < 0.001] = "n/a"  # real files have them: counted as missing, reported
    return pl.DataFrame({
        "user_id": rng.zipf(1.2, size) % USERS, "item_id": item, "category": item % 500,
        "country": rng.choice(COUNTRIES, size, p=SHARES), "price": price,
        "ts": START + rng.integers(0, DAYS * 86_400, size), "clicked": (rng.random(size) < 0.05).astype(np.int8),
    })


def measure(out: Path, with_sequence: bool) -> dict[str, str]:
    card = out / "shop.toml"
    card.write_text(CARD.format(sequence=SEQUENCE if with_sequence else ""))
    command = ["/usr/bin/time", "-v", str(Path(sys.executable).parent / "mscbench"), "prepare", "shop", "--card", str(card),
               "--raw-dir", str(out / "raw"), "--data-dir", str(out / "prepared")]
    finished = subprocess.run(command, capture_output=True, text=True, check=False)
    if finished.returncode != 0:
        raise SystemExit(finished.stderr[-2000:])
    report = dict(re.findall(r"^\s*(.+?): (.+)$", finished.stderr, re.MULTILINE))
    return {"wall": report["Elapsed (wall clock) time (h:mm:ss or m:ss)"],
            "peak_rss_mib": f"{int(report['Maximum resident set size (kbytes)']) / 1024:,.0f}",
            "output": finished.stdout.strip().splitlines()[-1] if finished.stdout.strip() else ""}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--out", type=Path, default=Path("/tmp/card-bench"))
    parser.add_argument("--sequence", action="store_true", help="also build a 15-item behaviour sequence")
    arguments = parser.parse_args()
    raw = arguments.out / "raw"
    if not (raw / "events.csv").exists():
        started = time.perf_counter()
        generate(arguments.rows, raw)
        print(f"generated {arguments.rows:,} rows ({(raw / 'events.csv').stat().st_size / 2**20:,.0f} MiB) "
              f"in {time.perf_counter() - started:.0f} s")
    result = measure(arguments.out, arguments.sequence)
    print(f"prepare --card ({'with' if arguments.sequence else 'without'} a built sequence): "
          f"wall {result['wall']}, peak RSS {result['peak_rss_mib']} MiB\n{result['output']}")


if __name__ == "__main__":
    main()
