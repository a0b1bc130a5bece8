"""The built-in synthetic multi-scenario dataset: a known hidden click model, so oracle AUCs are known.

The world (all numpy, vectorised, deterministic by seed):

- Scenarios `s0..s{S-1}` with geometric traffic shares, the smallest about a fifth of the largest
  (5 scenarios: 40/26/17/11/7%, ratio 0.65).
  Each user belongs to one home scenario (like a country); items are shared by all scenarios.
- Users and items have Zipf popularity (exponents 0.8 and 1.0). Each item has one category (40
  categories, Zipf popularity) and a latent vector near its category's. Each user has three favourite
  categories with Dirichlet weights and a latent vector mixed from them.
- Every user has a behaviour log (items drawn from their interests, timestamps from 3 days before the
  first impression day to the last). An impression's sequence is the user's last 15 behaviours strictly
  before it (fewer for new users), with the seconds between each behaviour and the impression.
- Impressions: 8 days (days 1-7 train, day 7 being the validation slice; day 8 test), a diurnal
  hour, a device whose mix differs by scenario; half the items come from the user's interests, half
  from global popularity.

The hidden logit of an impression in scenario s (group g(s)) is

    logit = b_s + shared + group_g + strength_s * specific_s + sequence

- shared: user-item latent dot, user and item biases, age x category, gender x category, device, hour,
  price and user activity effects;
- group_g: scenarios come in groups of similar ones (two or three consecutive scenarios: {s0, s1},
  {s2, s3, s4} by default); each group prefers a latent direction of items and some categories, so a
  small scenario can learn from its bigger sibling;
- specific_s: the scenario's own latent direction, category and device preferences, scaled by
  `strength_s`, which grows from 0.5 for s0 to 2.0 for the last (smallest) scenario;
- sequence: similarity of the target item's latent to the recency-weighted sequence latents;
- b_s: solved so that scenario CTRs spread from 5% to 20% (assigned to scenarios by the seed).

Each part is scaled to a fixed standard deviation (`PART_STD`), so per-scenario oracle AUCs are about
0.75-0.80 at the default size (small samples spread wider). The scenario-specific part matters most
for the small scenarios, s4 then s3: with the default arguments, dropping it from the oracle costs
0.08 AUC in s4 and 0.05 in s3 but 0.005 in s0, and after two epochs a tower per scenario
(`shared_bottom`) beats `dnn` by about 0.06 AUC in s4.
`true_prob` keeps the click probability; `generate_with_parts` also returns the logit's parts.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, fields

import numpy as np
import polars as pl

from mscbench.data.errors import DataError
from mscbench.data.spec import DatasetSpec, SequenceColumn, SparseColumn, TimeSplit

GENERATOR_VERSION = "1"
DEFAULT_ROWS = 1_000_000
DEFAULT_SCENARIOS = 5
SEQUENCE_LENGTH = 15
DAYS = 8
DAY_SECONDS = 86_400
HISTORY_START = -3 * DAY_SECONDS  # behaviours start before the first impression day
CATEGORIES = 40
LATENT_DIM = 8
FAVOURITES = 3
AGE_BUCKETS = 7
GENDERS = np.array(["f", "m", "unknown"])
DEVICES = 4
HOUR_BUCKET = 4  # hours per context bucket
SMALLEST_SHARE = 0.65 ** 4  # traffic of the smallest scenario relative to the largest
CTR_RANGE = (0.05, 0.20)
INTEREST_SHARE = 0.5  # impressions whose item comes from the user's interests (the rest: popularity)
WANDER = 0.15  # behaviours outside the user's favourite categories
MISSING_PRICE = 0.03
# Standard deviation of each logit part over the data (the specific part per scenario, before its
# strength): sets the oracle AUCs near 0.75 and how much each part matters.
PART_STD = {"shared": 0.65, "group": 0.4, "specific": 0.45, "sequence": 0.4}
RECENCY_DAYS = 2.0  # behaviour weight decays as exp(-age / RECENCY_DAYS)
CHUNK_ROWS = 1 << 18  # impressions per chunk of the sequence work and of the written frames


@dataclass(frozen=True)
class SyntheticParams:
    rows: int = DEFAULT_ROWS
    scenarios: int = DEFAULT_SCENARIOS
    seed: int = 0

    def __post_init__(self) -> None:
        if self.rows < 1000 or self.scenarios < 1:
            raise DataError(f"synthetic data needs --rows >= 1000 and --scenarios >= 1, "
                            f"got {self.rows} and {self.scenarios}")

    @property
    def users(self) -> int:
        return max(200, self.rows // 100)

    @property
    def items(self) -> int:
        return max(100, self.rows // 200)

    @property
    def variant(self) -> str:
        if self == SyntheticParams():
            return "default"
        return f"rows{self.rows}-sc{self.scenarios}-seed{self.seed}"

    def fingerprint(self) -> dict[str, str]:
        return {"generator": "mscbench.synthetic", "generator_version": GENERATOR_VERSION,
                "rows": str(self.rows), "scenarios": str(self.scenarios), "seed": str(self.seed)}


def traffic_shares(scenarios: int) -> np.ndarray:
    shares = SMALLEST_SHARE ** (np.arange(scenarios) / max(scenarios - 1, 1))
    return shares / shares.sum()


def scenario_groups(scenarios: int) -> np.ndarray:
    """Group id per scenario: consecutive pairs, the last group taking a leftover third."""
    groups = np.arange(scenarios) // 2
    if scenarios % 2 and scenarios > 1:
        groups[-1] = groups[-2]
    return groups


def specific_strength(scenarios: int) -> np.ndarray:
    return np.linspace(0.5, 2.0, scenarios)


def scenario_names(scenarios: int) -> list[str]:
    width = len(str(scenarios - 1))
    return [f"s{s:0{width}d}" for s in range(scenarios)]


class BlockSampler:
    """Draws indices with probability proportional to `weight`, restricted to one block per draw."""

    def __init__(self, block: np.ndarray, weight: np.ndarray, blocks: int):
        self.order = np.argsort(block, kind="stable")
        self.cumulative = np.concatenate([[0.0], np.cumsum(weight[self.order])])
        edges = np.searchsorted(block[self.order], np.arange(blocks + 1))
        self.low, self.high = self.cumulative[edges[:-1]], self.cumulative[edges[1:]]
        self.first, self.last = edges[:-1], edges[1:] - 1

    def draw(self, rng: np.random.Generator, block: np.ndarray) -> np.ndarray:
        target = self.low[block] + rng.random(len(block)) * (self.high[block] - self.low[block])
        position = np.searchsorted(self.cumulative, target, side="right") - 1
        return self.order[np.clip(position, self.first[block], self.last[block])]


def zipf_weights(count: int, exponent: float) -> np.ndarray:
    return 1.0 / np.arange(1, count + 1) ** exponent


@dataclass(frozen=True)
class Catalogue:
    category: np.ndarray  # [I]
    latent: np.ndarray  # [I, k]
    price: np.ndarray  # [I], NaN where missing
    popularity: BlockSampler  # one block: the whole catalogue
    within_category: BlockSampler
    category_weight: np.ndarray  # [C]
    category_latent: np.ndarray  # [C, k]


def make_catalogue(rng: np.random.Generator, items: int) -> Catalogue:
    category_weight = zipf_weights(CATEGORIES, 0.8)
    category_weight /= category_weight.sum()
    category = rng.choice(CATEGORIES, items, p=category_weight)
    category_latent = rng.normal(size=(CATEGORIES, LATENT_DIM))
    noise = rng.normal(size=(items, LATENT_DIM))
    latent = (0.8 * category_latent[category] + 0.6 * noise) / np.sqrt(LATENT_DIM)
    popularity = zipf_weights(items, 1.0)[rng.permutation(items)]
    price = np.exp(rng.normal(3.0, 0.8, CATEGORIES)[category] + rng.normal(0.0, 0.5, items))
    price[rng.random(items) < MISSING_PRICE] = np.nan
    return Catalogue(category, latent, price, BlockSampler(np.zeros(items, np.int64), popularity, 1),
                     BlockSampler(category, popularity, CATEGORIES), category_weight, category_latent)


@dataclass(frozen=True)
class Population:
    scenario: np.ndarray  # [U] home scenario
    sampler: BlockSampler  # users of one scenario, by popularity
    expected_impressions: np.ndarray  # [U]
    age: np.ndarray
    gender: np.ndarray
    favourite: np.ndarray  # [U, FAVOURITES] categories
    interest: np.ndarray  # [U, FAVOURITES] cumulative weights
    latent: np.ndarray  # [U, k]
    activity: np.ndarray  # [U] sessions per week


def make_population(rng: np.random.Generator, params: SyntheticParams, catalogue: Catalogue) -> Population:
    users, shares = params.users, traffic_shares(params.scenarios)
    scenario = np.minimum(np.searchsorted(np.cumsum(shares), (np.arange(users) + 0.5) / users),
                          params.scenarios - 1)
    counts = np.bincount(scenario, minlength=params.scenarios)
    weight = np.concatenate([zipf_weights(n, 0.8) / zipf_weights(n, 0.8).sum() for n in counts])
    expected = weight * params.rows * shares[scenario]
    favourite = rng.choice(CATEGORIES, (users, FAVOURITES), p=catalogue.category_weight)
    mix = rng.dirichlet(np.ones(FAVOURITES), users)
    latent = ((mix[:, :, None] * catalogue.category_latent[favourite]).sum(1)
              + 0.5 * rng.normal(size=(users, LATENT_DIM))) / np.sqrt(LATENT_DIM)
    activity = np.exp(0.5 * np.log1p(expected) + rng.normal(0.0, 0.5, users))
    return Population(
        scenario, BlockSampler(scenario, weight, params.scenarios), expected,
        rng.choice(AGE_BUCKETS, users, p=[0.08, 0.22, 0.25, 0.19, 0.13, 0.08, 0.05]),
        rng.choice(len(GENDERS), users, p=[0.48, 0.46, 0.06]), favourite, np.cumsum(mix, axis=1), latent,
        activity,
    )


def interest_items(rng: np.random.Generator, user: np.ndarray, population: Population,
                   catalogue: Catalogue, wander: float) -> np.ndarray:
    """Items drawn from each user's favourite categories (a `wander` share from any category)."""
    slot = (rng.random(len(user))[:, None] > population.interest[user]).sum(1).clip(max=FAVOURITES - 1)
    category = population.favourite[user, slot]
    wandering = rng.random(len(user)) < wander
    category[wandering] = rng.choice(CATEGORIES, wandering.sum(), p=catalogue.category_weight)
    return catalogue.within_category.draw(rng, category)


@dataclass(frozen=True)
class BehaviourLog:
    key: np.ndarray  # sorted user * span + time: one user's behaviours are contiguous and in time order
    time: np.ndarray
    item: np.ndarray


def make_behaviours(rng: np.random.Generator, population: Population, catalogue: Catalogue) -> BehaviourLog:
    counts = rng.poisson(3.0 + 0.5 * population.expected_impressions).clip(max=200)
    user = np.repeat(np.arange(len(counts)), counts)
    time = rng.integers(HISTORY_START, DAYS * DAY_SECONDS, len(user))
    order = np.argsort(behaviour_key(user, time), kind="stable")
    user, time = user[order], time[order]
    item = interest_items(rng, user, population, catalogue, WANDER)
    return BehaviourLog(behaviour_key(user, time), time, item)


def behaviour_key(user: np.ndarray, time: np.ndarray) -> np.ndarray:
    return user * (DAYS * DAY_SECONDS - HISTORY_START) + (time - HISTORY_START)


def last_behaviours(log: BehaviourLog, user: np.ndarray, time: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """[N, L] indices into the log of each impression's last L behaviours strictly before it; a mask."""
    end = np.searchsorted(log.key, behaviour_key(user, time), side="left")  # first behaviour not before
    start = np.searchsorted(log.key, behaviour_key(user, np.full_like(time, HISTORY_START)), side="left")
    index = end[:, None] - SEQUENCE_LENGTH + np.arange(SEQUENCE_LENGTH)  # [N, L], most recent last
    present = index >= start[:, None]
    return np.where(present, index, 0), present


@dataclass(frozen=True)
class HiddenModel:
    """The parameters of the click model (see the module docstring)."""

    user_bias: np.ndarray
    item_bias: np.ndarray
    age_category: np.ndarray
    gender_category: np.ndarray
    device: np.ndarray
    hour: np.ndarray
    group: np.ndarray  # [S] group id
    group_direction: np.ndarray  # [G, k]
    group_category: np.ndarray  # [G, C]
    strength: np.ndarray  # [S]
    specific_direction: np.ndarray  # [S, k]
    specific_category: np.ndarray  # [S, C]
    specific_device: np.ndarray  # [S, D]
    device_mix: np.ndarray  # [S, D] device probabilities
    ctr: np.ndarray  # [S] target click-through rates


def make_hidden_model(rng: np.random.Generator, params: SyntheticParams) -> HiddenModel:
    scenarios, groups = params.scenarios, scenario_groups(params.scenarios)
    normal = rng.normal
    return HiddenModel(
        user_bias=normal(0, 0.3, params.users), item_bias=normal(0, 0.3, params.items),
        age_category=normal(0, 0.3, (AGE_BUCKETS, CATEGORIES)),
        gender_category=normal(0, 0.2, (len(GENDERS), CATEGORIES)),
        device=normal(0, 0.2, DEVICES), hour=normal(0, 0.2, 24 // HOUR_BUCKET),
        group=groups, group_direction=normal(0, 0.4, (groups.max() + 1, LATENT_DIM)),
        group_category=normal(0, 1.0, (groups.max() + 1, CATEGORIES)),
        strength=specific_strength(scenarios), specific_direction=normal(0, 0.4, (scenarios, LATENT_DIM)),
        specific_category=normal(0, 1.0, (scenarios, CATEGORIES)),
        specific_device=normal(0, 0.5, (scenarios, DEVICES)),
        device_mix=rng.dirichlet(np.full(DEVICES, 2.0), scenarios),
        ctr=rng.permutation(np.geomspace(*CTR_RANGE, scenarios)),
    )


@dataclass(frozen=True)
class Impressions:
    scenario: np.ndarray
    user: np.ndarray
    item: np.ndarray
    time: np.ndarray
    hour: np.ndarray
    device: np.ndarray

    def __getitem__(self, rows: slice | np.ndarray) -> Impressions:
        return Impressions(*(getattr(self, f.name)[rows] for f in fields(Impressions)))


def make_impressions(rng: np.random.Generator, params: SyntheticParams, population: Population,
                     catalogue: Catalogue, model: HiddenModel) -> Impressions:
    rows = params.rows
    scenario = rng.choice(params.scenarios, rows, p=traffic_shares(params.scenarios))
    user = population.sampler.draw(rng, scenario)
    from_interest = rng.random(rows) < INTEREST_SHARE
    item = catalogue.popularity.draw(rng, np.zeros(rows, np.int64))
    item[from_interest] = interest_items(rng, user[from_interest], population, catalogue, 0.0)
    diurnal = 1.0 + 0.8 * np.sin((np.arange(24) - 13) * np.pi / 12)
    hour = rng.choice(24, rows, p=diurnal / diurnal.sum())
    time = rng.integers(0, DAYS, rows) * DAY_SECONDS + hour * 3600 + rng.integers(0, 3600, rows)
    device_draw = rng.random(rows)
    mix = np.cumsum(model.device_mix, axis=1)
    device = np.concatenate([(device_draw[part][:, None] > mix[scenario[part]]).sum(1).clip(max=DEVICES - 1)
                             for part in chunks(rows)])  # by chunks: [rows, DEVICES] at once is large
    return Impressions(scenario, user, item, time, hour, device)


def chunks(rows: int) -> list[slice]:
    """Consecutive slices of at most CHUNK_ROWS rows: the per-row work that needs [rows, L] arrays runs on one
    at a time, so that memory does not grow with those arrays."""
    return [slice(start, min(start + CHUNK_ROWS, rows)) for start in range(0, rows, CHUNK_ROWS)]


def scaled(values: np.ndarray, std: float, block: np.ndarray) -> np.ndarray:
    """`values` scaled so that their standard deviation within each block is `std`."""
    count = np.maximum(np.bincount(block), 1)
    mean = np.bincount(block, values) / count
    spread = np.sqrt(np.bincount(block, (values - mean[block]) ** 2) / count)
    return values * (std / np.maximum(spread, 1e-12))[block]


def standardised(values: np.ndarray) -> np.ndarray:
    return (values - np.nanmean(values)) / np.nanstd(values)


@dataclass(frozen=True)
class World:
    """Everything drawn before the clicks, impressions in time order."""

    params: SyntheticParams
    catalogue: Catalogue
    population: Population
    model: HiddenModel
    log: BehaviourLog
    impressions: Impressions


def draw_world(rng: np.random.Generator, params: SyntheticParams) -> World:
    catalogue = make_catalogue(rng, params.items)
    population = make_population(rng, params, catalogue)
    model = make_hidden_model(rng, params)
    log = make_behaviours(rng, population, catalogue)
    impressions = make_impressions(rng, params, population, catalogue, model)
    return World(params, catalogue, population, model, log,
                 impressions[np.argsort(impressions.time, kind="stable")])


@dataclass(frozen=True)
class Sequences:
    """Each impression's last behaviours, left-padded [N, L]: items, seconds before it, present or not."""

    history: np.ndarray
    gap: np.ndarray
    present: np.ndarray


def sequences(world: World, impressions: Impressions) -> Sequences:
    index, present = last_behaviours(world.log, impressions.user, impressions.time)
    gap = impressions.time[:, None] - world.log.time[index]  # [N, L] seconds, > 0 where present
    return Sequences(world.log.item[index], gap, present)


def unscaled_parts(world: World, impressions: Impressions, sequence: Sequences) -> dict[str, np.ndarray]:
    """The terms of the hidden logit before scaling (the specific part before its strength), each [N]."""
    model, population, catalogue = world.model, world.population, world.catalogue
    s, u, i = impressions.scenario, impressions.user, impressions.item
    category, latent, group = catalogue.category[i], catalogue.latent[i], model.group[s]
    shared = ((population.latent[u] * latent).sum(1) + model.user_bias[u] + model.item_bias[i]
              + model.age_category[population.age[u], category]
              + model.gender_category[population.gender[u], category]
              + model.device[impressions.device] + model.hour[impressions.hour // HOUR_BUCKET]
              - 0.25 * np.nan_to_num(standardised(np.log(catalogue.price))[i])
              + 0.2 * standardised(np.log(population.activity))[u])
    group_part = (model.group_direction[group] * latent).sum(1) + model.group_category[group, category]
    specific = ((model.specific_direction[s] * latent).sum(1) + model.specific_category[s, category]
                + model.specific_device[s, impressions.device])
    similarity = sequence_similarity(catalogue, i, sequence.history, sequence.present, sequence.gap)
    return {"shared": shared, "group": group_part, "specific": specific, "sequence": similarity}


def logit_parts(world: World) -> dict[str, np.ndarray]:
    """The terms of the hidden logit (without the scenario bias), each [N]; the sequences are built chunk
    by chunk, the scaling sees every row."""
    raw = {name: np.empty(world.params.rows) for name in PART_STD}
    for rows in chunks(world.params.rows):
        impressions = world.impressions[rows]
        for name, values in unscaled_parts(world, impressions, sequences(world, impressions)).items():
            raw[name][rows] = values
    s = world.impressions.scenario
    everywhere = np.zeros_like(s)
    return {"shared": scaled(raw.pop("shared"), PART_STD["shared"], everywhere),
            "group": scaled(raw.pop("group"), PART_STD["group"], everywhere),
            "specific": world.model.strength[s] * scaled(raw.pop("specific"), PART_STD["specific"], s),
            "sequence": scaled(raw.pop("sequence"), PART_STD["sequence"], everywhere)}


def sequence_similarity(catalogue: Catalogue, item: np.ndarray, history: np.ndarray, present: np.ndarray,
                        age_seconds: np.ndarray) -> np.ndarray:
    """Recency-weighted mean latent dot of the target item with its behaviour sequence; 0 if empty."""
    weight = np.where(present, np.exp(-age_seconds / (RECENCY_DAYS * DAY_SECONDS)), 0.0)  # [N, L]
    interest = np.zeros((len(item), LATENT_DIM))
    for position in range(SEQUENCE_LENGTH):  # one position at a time: an [N, L, k] gather is too big
        interest += weight[:, position, None] * catalogue.latent[history[:, position]]
    return (catalogue.latent[item] * interest).sum(1) / np.maximum(weight.sum(1), 1e-12)


def calibrated_bias(logit: np.ndarray, scenario: np.ndarray, ctr: np.ndarray) -> np.ndarray:
    """Per-scenario bias b_s with mean sigmoid(b_s + logit) equal to the target CTR (bisection)."""
    low, high = np.full(len(ctr), -15.0), np.full(len(ctr), 15.0)
    counts = np.maximum(np.bincount(scenario, minlength=len(ctr)), 1)
    for _ in range(40):
        middle = (low + high) / 2
        rate = np.bincount(scenario, sigmoid(middle[scenario] + logit), minlength=len(ctr)) / counts
        too_high = rate > ctr
        high, low = np.where(too_high, middle, high), np.where(too_high, low, middle)
    return (low + high) / 2


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def generate(params: SyntheticParams = SyntheticParams()) -> pl.DataFrame:
    """The raw impression log: one row per impression, in time order."""
    frame, _ = generate_with_parts(params)
    return frame


def generate_with_parts(params: SyntheticParams) -> tuple[pl.DataFrame, dict[str, np.ndarray]]:
    """The raw log and, aligned with its rows, the hidden logit's parts (their sum is the logit)."""
    frames, parts = generate_in_chunks(params)
    return pl.concat(list(frames)), parts


def generate_in_chunks(params: SyntheticParams) -> tuple[Iterator[pl.DataFrame], dict[str, np.ndarray]]:
    """The raw log as consecutive frames of at most CHUNK_ROWS rows (built as they are taken), and the
    logit's parts. Every random number is drawn here, in the same order whatever the chunk size; the
    frames only gather what was drawn, so writing them one at a time keeps memory bounded."""
    rng = np.random.default_rng(params.seed)
    world = draw_world(rng, params)
    parts = logit_parts(world)
    logit = sum(parts.values())
    parts["bias"] = calibrated_bias(logit, world.impressions.scenario, world.model.ctr)[world.impressions.scenario]
    probability = sigmoid(parts["bias"] + logit)
    click = rng.random(params.rows) < probability
    frames = (raw_frame(world, world.impressions[rows], probability[rows], click[rows])
              for rows in chunks(params.rows))
    return frames, parts


def ragged(values: np.ndarray, present: np.ndarray) -> pl.Series:
    """A list column from left-padded [N, L] values: only the present (rightmost) entries."""
    frame = pl.DataFrame({"values": values, "length": present.sum(1)})
    kept = pl.col("values").arr.to_list().list.slice(SEQUENCE_LENGTH - pl.col("length"), pl.col("length"))
    return frame.select(kept).to_series()


def raw_frame(world: World, impressions: Impressions, probability: np.ndarray, click: np.ndarray) -> pl.DataFrame:
    u, i = impressions.user, impressions.item
    population, catalogue = world.population, world.catalogue
    sequence = sequences(world, impressions)
    names = np.array(scenario_names(world.params.scenarios))
    return pl.DataFrame({
        "scenario": names[impressions.scenario],
        "day": impressions.time // DAY_SECONDS + 1,
        "timestamp": impressions.time,
        "user_id": u,
        "age": population.age[u],
        "gender": GENDERS[population.gender[u]],
        "item_id": i,
        "category": catalogue.category[i],
        "device": impressions.device,
        "hour": impressions.hour // HOUR_BUCKET,
        "price": pl.Series(catalogue.price[i], nan_to_null=True),
        "user_activity": population.activity[u],
        "hist_item": ragged(sequence.history, sequence.present),
        "hist_category": ragged(catalogue.category[sequence.history], sequence.present),
        "hist_gap": ragged(sequence.gap, sequence.present),
        "click": click.astype(np.int8),
        "true_prob": probability,
    })


def synthetic_spec(params: SyntheticParams) -> DatasetSpec:
    return DatasetSpec(
        name="synthetic", variant=params.variant, label="click", scenario="scenario",
        sparse=(SparseColumn("user_id", "user"), SparseColumn("age", "user"), SparseColumn("gender", "user"),
                SparseColumn("item_id", "item"), SparseColumn("category", "item"),
                SparseColumn("device", "context"), SparseColumn("hour", "context")),
        dense=("price", "user_activity"),
        sequences=(SequenceColumn("hist_item", "item_id", SEQUENCE_LENGTH),
                   SequenceColumn("hist_category", "category", SEQUENCE_LENGTH)),
        sequence_gap="hist_gap", user="user_id", oracle="true_prob",
        split=TimeSplit("day", valid_from=DAYS - 1, test_from=DAYS),
        fingerprint=params.fingerprint(),
    )
