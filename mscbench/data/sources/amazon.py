"""Amazon Electronics reviews (McAuley et al., 2014 release) with MI-DPG's 10 categories as scenarios.

What a card cannot say: the metadata file `meta_Electronics.json.gz` holds one Python literal per line
(single quotes, not JSON), and an item's scenario is the second level of its category path under
"Electronics", kept only where it is one of the 10 categories the MI-DPG paper names. The reviews
(`reviews_Electronics.json.gz`, JSON lines) are streamed into Parquet; the metadata is read line by line
into (asin, category). `mscbench/data/cards/amazon.toml` describes both tables; the card preparer does the rest.
"""

from __future__ import annotations

import ast
import gzip
import re
from pathlib import Path

import polars as pl

from mscbench.data.card import prepare_converted, raw_file
from mscbench.data.errors import DataError
from mscbench.data.prepare import PrepareResult, Progress
from mscbench.data.sources import SOURCES

REVIEWS = "reviews_Electronics.json.gz"
METADATA = "meta_Electronics.json.gz"
ROOT = "Electronics"
# The MI-DPG paper's names (its abbreviation in brackets); matched to Amazon's category names by words.
SCENARIOS = {"TV": "Television Video", "SS": "Security Surveillance", "CG": "Car Electronics GPS",
             "WT": "Wearable Technology", "CA": "Computers Accessories", "CP": "Camera Photo",
             "HA": "Home Audio", "PV": "Portable Audio Video", "HP": "Headphones", "AS": "Accessories Supplies"}


def prepare_amazon(raw_dir: Path | None, data_dir: Path, progress: Progress | None = None,
                   name: str | None = None, force: bool = False) -> PrepareResult:
    return prepare_converted(SOURCES["amazon"].card, convert, raw_dir, data_dir, progress, name, force)


def convert(raw_dir: Path, workdir: Path) -> None:
    reviews = pl.scan_ndjson(raw_file(raw_dir, REVIEWS), infer_schema_length=1000)
    reviews.select(pl.col("reviewerID", "asin", "overall", "unixReviewTime").cast(pl.String)) \
        .sink_parquet(workdir / "reviews.parquet", engine="streaming")
    items = item_scenarios(raw_file(raw_dir, METADATA))
    if items.is_empty():
        raise DataError(f"{raw_dir / METADATA}: no item falls in one of the 10 MI-DPG categories "
                        f"({', '.join(SCENARIOS.values())})")
    items.write_parquet(workdir / "items.parquet")


def item_scenarios(path: Path) -> pl.DataFrame:
    """(asin, scenario) of every item whose category path under Electronics is one of the 10."""
    asins, scenarios = [], []
    with gzip.open(path, "rt", encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                item = ast.literal_eval(line)
            except (ValueError, SyntaxError):
                raise DataError(f"{path.name} line {number}: expected one Python dict literal "
                                f"({{'asin': ..., 'categories': [[...]]}})") from None
            scenario = scenario_of(item.get("categories", []))
            if scenario:
                asins.append(item["asin"])
                scenarios.append(scenario)
    return pl.DataFrame({"asin": asins, "category": scenarios}, schema={"asin": pl.String, "category": pl.String})


def scenario_of(paths: list[list[str]]) -> str | None:
    for path in paths:
        if len(path) > 1 and path[0] == ROOT:
            found = matching_scenario(path[1])
            if found:
                return found
    return None


def matching_scenario(category: str) -> str | None:
    """The abbreviation of the MI-DPG category whose words all appear in `category`."""
    words = set(re.findall(r"[a-z]+", category.lower()))
    return next((short for short, name in SCENARIOS.items() if set(name.lower().split()) <= words), None)
