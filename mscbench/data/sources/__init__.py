"""The registry of built-in datasets: name -> dataset card and/or Python preparer.

A source whose raw layout a card can say in full is a card alone (`mscbench/data/cards/<name>.toml`, package
data), prepared by the generic card preparer. A source needing Python for what a card cannot say names a preparer function as
"module:function"; it is imported only when used, because preparers import `mscbench.data.prepare`,
which imports this package (a direct import here would be circular). A preparer is called as
`preparer(raw_dir=..., data_dir=..., progress=..., **options)` and returns a `PrepareResult`.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from mscbench.data.errors import DataError
from mscbench.data.names import checked_identifier

CARDS_DIR = Path(__file__).resolve().parents[1] / "cards"  # the built-in cards: package data, in the wheel


@dataclass(frozen=True)
class Source:
    name: str
    card: Path | None = None  # the dataset card (TOML); None for a generated dataset
    preparer: str | None = None  # "module:function"; None: the card alone says everything
    description: str = ""

    def prepare_function(self) -> Callable:
        module, _, function = (self.preparer or "mscbench.data.card:prepare_card_source").partition(":")
        return getattr(importlib.import_module(module), function)


def card_source(name: str, description: str, preparer: str | None = None) -> Source:
    return Source(name, CARDS_DIR / f"{name}.toml", preparer, description)


SOURCES: dict[str, Source] = {
    "synthetic": Source("synthetic", None, "mscbench.data.prepare:prepare_synthetic_source",
                        "generated multi-scenario log with a known click model (no download)"),
    "movielens": card_source("movielens", "MovieLens-1M ratings; scenario = user age group"),
    "movielens-small": card_source("movielens-small", "MovieLens ml-latest-small; scenario = first genre"),
    "kuairand": card_source("kuairand", "KuaiRand-Pure video log; scenario = tab"),
    "aliccp": card_source("aliccp", "Ali-CCP click/conversion log; scenario = field 301",
                          "mscbench.data.sources.aliccp:prepare_aliccp"),
    "amazon": card_source("amazon", "Amazon Electronics reviews; scenario = MI-DPG's 10 categories",
                          "mscbench.data.sources.amazon:prepare_amazon"),
    "alimama": card_source("alimama", "Taobao display ads (Tianchi 56); scenario = city level; 15 behaviours",
                           "mscbench.data.sources.alimama:prepare_alimama"),
    "aliexpress": card_source("aliexpress", "AliExpress search (Tianchi 74690); scenario = country",
                              "mscbench.data.sources.aliexpress:prepare_aliexpress"),
    "ijcai18": card_source("ijcai18", "IJCAI-18 IAAC search-ad conversions; scenario = second-level category"),
}


def get_source(name: str) -> Source:
    from mscbench.config import suggest

    if name not in SOURCES:
        raise DataError(f"unknown dataset {name!r}{suggest(name, SOURCES)}: built-in ones are "
                        f"{', '.join(sorted(SOURCES))}; for your own data pass --card FILE")
    return SOURCES[name]


def default_raw_dir(data_dir: Path, name: str) -> Path:
    """Where a source's raw files are looked for (and downloaded to) when no --raw-dir is given."""
    return Path(data_dir) / "raw" / checked_identifier(name, "dataset name")


def prepare_source(name: str, raw_dir: Path | None, data_dir: Path, progress: Callable[[str], None] | None = None,
                   card: Path | None = None, force: bool = False, **options):
    """Prepare a built-in source, or `name` from a user's `card`; returns the preparer's `PrepareResult`.
    `force` prepares again even when an intact dataset of the same inputs exists."""
    checked_identifier(name, "dataset name")  # before anything is written: the name becomes a folder
    if card is not None:
        return Source(name, Path(card)).prepare_function()(
            raw_dir=raw_dir or default_raw_dir(data_dir, name), data_dir=data_dir, progress=progress,
            card=card, name=name, force=force)
    source = get_source(name)
    extra = {"card": source.card, "name": name} if source.preparer is None else {}
    return source.prepare_function()(raw_dir=raw_dir or default_raw_dir(data_dir, name), data_dir=data_dir,
                                     progress=progress, force=force, **extra, **options)


@dataclass(frozen=True)
class SourceState:
    name: str
    state: str  # "prepared", "raw present", "not downloaded" or "generated on prepare"
    description: str


def source_states(data_dir: Path) -> list[SourceState]:
    from mscbench.data.prepare import list_prepared

    prepared = {name for name, _, _ in list_prepared(data_dir)}
    return [SourceState(source.name, source_state(source, data_dir, prepared), source.description)
            for source in sorted(SOURCES.values(), key=lambda s: s.name)]


def source_state(source: Source, data_dir: Path, prepared: set[str]) -> str:
    if source.name in prepared:
        return "prepared"
    if source.card is None:
        return "generated on prepare"
    from mscbench.data.card import load_card

    card = load_card(source.card)
    names = [f.name for f in card.source.files] if card.source and card.source.files else \
        [table.path for table in card.tables]
    raw_dir = default_raw_dir(data_dir, source.name)
    return "raw present" if all((raw_dir / name).exists() for name in names) else "not downloaded"
