"""The model contract and the one registry every model is built through.

A model is a plain `nn.Module` built as `Model(manifest, config)` whose `forward(batch)` returns a
`ModelOutput`. Its hyperparameters are a frozen dataclass (paper defaults as field defaults); a variant
(an ablation) is the same class registered under another name with some fields overridden.
"""

from __future__ import annotations

import dataclasses
import difflib
import typing
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
from torch import nn

from mscbench.data.manifest import Manifest


@dataclass
class ModelOutput:
    logit: torch.Tensor  # [B]
    aux_loss: torch.Tensor | None = None  # every extra loss term, already weighted
    extras: dict[str, torch.Tensor] = field(default_factory=dict)  # per-sample values for plots, [B, ...]


class ConfigError(ValueError):
    """A hyperparameter that does not exist or does not fit its type."""


@dataclass(frozen=True)
class ModelCard:
    name: str
    builder: type[nn.Module]
    config: type  # a frozen dataclass of hyperparameters
    description: str  # one line
    paper: str
    year: int
    needs_sequence: bool = False
    multi_scenario: bool = False  # has scenario-specific parameters (gradient isolation is tested)
    overrides: dict[str, Any] = field(default_factory=dict)  # variant defaults on top of the config's

    def make_config(self, values: dict[str, Any] | None = None) -> Any:
        return build_config(self.config, {**self.overrides, **(values or {})}, owner=f"model {self.name}")


REGISTRY: dict[str, ModelCard] = {}


def register(
    name: str, *, config: type, description: str, paper: str, year: int,
    needs_sequence: bool = False, multi_scenario: bool = False,
) -> Callable[[type[nn.Module]], type[nn.Module]]:
    """Class decorator adding a model to the registry under `name`."""

    def add(builder: type[nn.Module]) -> type[nn.Module]:
        REGISTRY[name] = ModelCard(name, builder, config, description, paper, year, needs_sequence,
                                   multi_scenario)
        return builder

    return add


def register_variant(name: str, base: str, description: str, **overrides: Any) -> None:
    """Register `name` as `base` with some hyperparameters fixed (an ablation or a named variant)."""
    card = REGISTRY[base]
    build_config(card.config, overrides, owner=f"variant {name}")  # unknown keys fail at import time
    REGISTRY[name] = dataclasses.replace(card, name=name, description=description,
                                         overrides={**card.overrides, **overrides})


def get_card(name: str) -> ModelCard:
    from mscbench import models  # noqa: F401  (importing the package registers every model)

    if name not in REGISTRY:
        raise ConfigError(f"unknown model {name!r}{suggest(name, REGISTRY)}; `mscbench models` lists them")
    return REGISTRY[name]


def build_model(name: str, manifest: Manifest, values: dict[str, Any] | None = None) -> nn.Module:
    card = get_card(name)
    if card.needs_sequence and not manifest.sequences:
        raise ConfigError(f"model {name!r} needs a behaviour sequence and dataset {manifest.name!r} has none")
    return card.builder(manifest, card.make_config(values))


def suggest(word: str, choices: typing.Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def build_config(cls: type, values: dict[str, Any], owner: str) -> Any:
    """`cls(**values)` with every key and type checked; the error names the key and what was expected."""
    known = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    checked = {}
    for key, value in values.items():
        if key not in known:
            raise ConfigError(f"{owner} has no setting {key!r}{suggest(key, known)}")
        checked[key] = coerce(value, hints[key], f"{owner}: {key}")
    return cls(**checked)


def coerce(value: Any, hint: Any, where: str) -> Any:
    """Check `value` against a simple type hint (bool, int, float, str, tuple[...], Literal, Optional)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is typing.Literal:
        if value not in args:
            raise ConfigError(f"{where} must be one of {', '.join(map(repr, args))}, not {value!r}")
        return value
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return coerce(value, inner[0], where)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where} must be a list, not {value!r}")
        item = args[0] if args else Any
        return tuple(coerce(v, item, where) for v in value)
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where} must be true or false, not {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where} must be an integer, not {value!r}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where} must be a number, not {value!r}")
        return float(value)
    if hint is str and not isinstance(value, str):
        raise ConfigError(f"{where} must be a string, not {value!r}")
    return value


def describe_config(card: ModelCard) -> dict[str, Any]:
    """The hyperparameters of a model (with its variant overrides) as a plain dict."""
    return dataclasses.asdict(card.make_config())
