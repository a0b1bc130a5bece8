"""Writes the example shop log (events.csv, users.csv) once; run from the repository root:
python examples/shop/generate.py. Deterministic: a hidden click model with a base rate per country and
category preferences that differ by country, so per-scenario models have something to find."""

from pathlib import Path

import numpy as np
import polars as pl

ROWS, USERS, ITEMS, CATEGORIES = 8000, 400, 300, 12
COUNTRIES = np.array(["de", "es", "fr", "it", "lu"])
HERE = Path(__file__).parent

rng = np.random.default_rng(7)
home = rng.choice(len(COUNTRIES), USERS, p=[0.35, 0.25, 0.2, 0.17, 0.03])
user = rng.zipf(1.3, ROWS) % USERS
item = rng.zipf(1.2, ROWS) % ITEMS
category = item % CATEGORIES
country = home[user]
taste = rng.normal(0, 1.5, (len(COUNTRIES), CATEGORIES))
logit = np.array([-2.0, -1.6, -1.8, -1.4, -1.2])[country] + taste[country, category] + rng.normal(0, 0.4, USERS)[user]
clicked = (rng.random(ROWS) < 1 / (1 + np.exp(-logit))).astype(int)
price = np.round(rng.lognormal(3, 0.6, ROWS), 2).astype(str)
price[rng.random(ROWS) < 0.01] = ""
pl.DataFrame({
    "user_id": user, "item_id": item, "category": category, "country": COUNTRIES[country], "price": price,
    "time": pl.from_epoch(pl.Series(1717200000 + np.sort(rng.integers(0, 60 * 86400, ROWS))), "s")
    .dt.strftime("%Y-%m-%d %H:%M:%S"),
    "clicked": clicked,
}).write_csv(HERE / "events.csv")
pl.DataFrame({"user_id": np.arange(USERS), "age_group": rng.choice(["18-24", "25-34", "35-49", "50+"], USERS),
              "member": rng.choice(["yes", "no"], USERS)}).write_csv(HERE / "users.csv")
