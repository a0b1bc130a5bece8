"""Raw files in the exact Alimama (Tianchi 56) format at a chosen scale, for measuring `prepare alimama`.

    python -m benchmarks.alimama_raw --scale 0.05 --out /tmp/alimama-0.05
    /usr/bin/time -v mscbench prepare alimama --raw-dir /tmp/alimama-0.05 --data-dir /tmp/prepared

Scale 1 matches the published sizes (26M impressions of 1.14M users, 700M behaviours over 22 days,
846,811 ads, 1,061,768 profiles); the format facts are the publisher's: headers (user_profile's with
its trailing space), `NULL` brands, empty profile fields (pvalue_level ~54%, city level ~32%), pid
strings, UTC+8 days. Deterministic for a scale and seed; behaviours are written in chunks, so memory
stays small at any scale. The click model is noise: this measures preparation, not learning.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import polars as pl

from mscbench.data.sources.alimama import TEST_DAY, USER_PROFILE, day_start

FULL = {"impressions": 26_557_961, "users": 1_141_729, "profiles": 1_061_768, "ads": 846_811,
        "behaviours": 723_268_134, "categories": 12_960, "brands": 461_497}
BEHAVIOUR_DAYS, IMPRESSION_DAYS = 22, 8
CHUNK = 5_000_000
END = day_start(TEST_DAY) + 86_400


def generate(scale: float, out: Path, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    size = {name: max(10, round(count * scale)) for name, count in FULL.items()}
    out.mkdir(parents=True, exist_ok=True)
    write_profiles(rng, size, out / "user_profile.csv")
    write_ads(rng, size, out / "ad_feature.csv")
    activity = rng.lognormal(0.0, 1.0, size["users"])  # one user's share of impressions and behaviours
    activity /= activity.sum()
    write_samples(rng, size, activity, out / "raw_sample.csv")
    write_behaviours(rng, size, activity, out / "behavior_log.csv")


def zipf_ids(rng: np.random.Generator, count: int, size: int, exponent: float = 1.1) -> np.ndarray:
    return (rng.zipf(exponent, size) - 1) % count + 1


def write_profiles(rng: np.random.Generator, size: dict[str, int], path: Path) -> None:
    users = rng.permutation(size["users"])[:size["profiles"]] + 1  # some users have no profile
    n = len(users)

    def sometimes_empty(values: np.ndarray, share: float) -> pl.Series:
        return pl.Series(values.astype(str)).scatter(np.flatnonzero(rng.random(n) < share), None)

    frame = pl.DataFrame({
        "userid": users, "cms_segid": rng.integers(0, 97, n), "cms_group_id": rng.integers(0, 13, n),
        "final_gender_code": rng.integers(1, 3, n), "age_level": rng.integers(0, 7, n),
        "pvalue_level": sometimes_empty(rng.integers(1, 4, n), 0.54),
        "shopping_level": rng.integers(1, 4, n), "occupation": rng.integers(0, 2, n),
        "new_user_class_level": sometimes_empty(rng.integers(1, 5, n), 0.32)})
    with open(path, "w") as stream:
        stream.write(",".join(USER_PROFILE.columns) + " \n")  # the publisher's trailing space
        frame.write_csv(stream, include_header=False)


def write_ads(rng: np.random.Generator, size: dict[str, int], path: Path) -> None:
    n = size["ads"]
    brand = zipf_ids(rng, size["brands"], n).astype(str).astype(object)
    brand[rng.random(n) < 0.3] = "NULL"
    pl.DataFrame({
        "adgroup_id": np.arange(1, n + 1), "cate_id": zipf_ids(rng, size["categories"], n),
        "campaign_id": rng.integers(1, n // 2 + 2, n), "customer": rng.integers(1, n // 3 + 2, n),
        "brand": brand.astype(str), "price": np.round(np.exp(rng.normal(4.5, 1.2, n)), 2)}).write_csv(path)


def write_samples(rng: np.random.Generator, size: dict[str, int], activity: np.ndarray, path: Path) -> None:
    n = size["impressions"]
    clicked = rng.random(n) < 0.05
    pl.DataFrame({
        "user": rng.choice(len(activity), n, p=activity) + 1, "time_stamp": END - rng.integers(1, IMPRESSION_DAYS * 86_400, n),
        "adgroup_id": zipf_ids(rng, size["ads"], n),
        "pid": np.where(rng.random(n) < 0.6, "430548_1007", "430539_1007"),
        "nonclk": (~clicked).astype(np.int8), "clk": clicked.astype(np.int8)}).write_csv(path)


def write_behaviours(rng: np.random.Generator, size: dict[str, int], activity: np.ndarray, path: Path) -> None:
    with open(path, "w") as stream:
        stream.write("user,time_stamp,btag,cate,brand\n")
        for start in range(0, size["behaviours"], CHUNK):
            n = min(CHUNK, size["behaviours"] - start)
            pl.DataFrame({
                "user": rng.choice(len(activity), n, p=activity) + 1,
                "time_stamp": END - rng.integers(1, BEHAVIOUR_DAYS * 86_400, n),
                "btag": rng.choice(["pv", "cart", "fav", "buy"], n, p=[0.9, 0.04, 0.03, 0.03]),
                "cate": zipf_ids(rng, size["categories"], n),
                "brand": zipf_ids(rng, size["brands"], n)}).write_csv(stream, include_header=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=0.05, help="share of the published sizes")
    parser.add_argument("--out", type=Path, default=None, help="folder (default: /tmp/alimama-SCALE)")
    parser.add_argument("--seed", type=int, default=0)
    arguments = parser.parse_args()
    generate(arguments.scale, arguments.out or Path(f"/tmp/alimama-{arguments.scale}"), arguments.seed)


if __name__ == "__main__":
    main()
