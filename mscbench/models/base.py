"""The model contract and the one registry every model is built through.

A model is a plain `nn.Module` built as `Model(manifest, config)` whose `forward(batch)` returns a
`ModelOutput`. Its hyperparameters are a frozen dataclass (paper defaults as field defaults); a variant
(an ablation) is the same class registered under another name with some fields overridden.

What a model may have beyond that is said by the Protocols below, each checked where it is used: a model with
scenario-owned parameters (`ScenarioOwned`, declared by `multi_scenario=True` at registration and checked
there), one whose branches read every row by design (`CrossScenario`), and modules with a training
schedule (`Scheduled`, advanced by the trainer).
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import torch
from torch import nn

from mscbench.config import ConfigError, build_config, suggest
from mscbench.data.manifest import Manifest
from mscbench.models.cel import EmbeddingSettings, cluster_id_embeddings


@dataclass
class ModelOutput:
    logit: torch.Tensor  # [B]
    aux_loss: torch.Tensor | None = None  # every extra loss term, already weighted
    extras: dict[str, torch.Tensor] = field(default_factory=dict)  # per-sample values for plots, [B, ...]


OwnedParameter = nn.Parameter | tuple[nn.Parameter, slice | int]  # a whole parameter, or rows of a shared one


@runtime_checkable
class ScenarioOwned(Protocol):
    """A model with scenario-specific parameters: each scenario's own are named so that their gradient
    isolation (they learn from their scenario's rows only) and their branch cost can be tested."""

    def scenario_parameters(self, scenario: int) -> list[OwnedParameter]:
        """What `scenario` owns: whole parameters, or `(parameter, rows)` for its rows of a shared table."""
        ...


@runtime_checkable
class CrossScenario(ScenarioOwned, Protocol):
    """A multi-scenario model whose design runs scenario branches on other scenarios' rows; it says why."""

    cross_scenario_compute: str  # the reason, e.g. the equation that reads every branch for every row


@runtime_checkable
class Scheduled(Protocol):
    """A module (a model or any submodule) with a training schedule: temperatures, sharpness, cluster rounds.
    Forward only reads the schedule; the trainer moves it before each step, so evaluation stays pure."""

    def advance_schedule(self, step: int) -> None:
        """Set the schedule to global training step `step`, before that step runs."""
        ...


@dataclass(frozen=True)
class ModelCard:
    name: str
    builder: type[nn.Module]
    config: type  # a frozen dataclass of hyperparameters
    description: str  # one line
    paper: str
    year: int
    needs_sequence: bool = False
    multi_scenario: bool = False  # has scenario-specific parameters: the builder is `ScenarioOwned`
    overrides: dict[str, Any] = field(default_factory=dict)  # variant defaults on top of the config's

    def make_config(self, values: dict[str, Any] | None = None) -> Any:
        return build_config(self.config, {**self.overrides, **(values or {})}, owner=f"model {self.name}")


REGISTRY: dict[str, ModelCard] = {}


def register(
    name: str, *, config: type, description: str, paper: str, year: int,
    needs_sequence: bool = False, multi_scenario: bool = False,
) -> Callable[[type[nn.Module]], type[nn.Module]]:
    """Class decorator adding a model to the registry under `name`; `multi_scenario` must say whether the
    model is `ScenarioOwned`."""

    def add(builder: type[nn.Module]) -> type[nn.Module]:
        if multi_scenario != issubclass(builder, ScenarioOwned):
            raise TypeError(f"model {name!r} is registered with multi_scenario={multi_scenario} but "
                            f"{'lacks' if multi_scenario else 'has'} scenario_parameters")
        REGISTRY[name] = ModelCard(name, builder, config, description, paper, year, needs_sequence, multi_scenario)
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
    config = card.make_config(values)
    model = card.builder(manifest, config)
    if isinstance(config, EmbeddingSettings) and config.embedding == "cel":
        cluster_id_embeddings(model, manifest, config)
    return model


def describe_config(card: ModelCard) -> dict[str, Any]:
    """The hyperparameters of a model (with its variant overrides) as a plain dict: its config's own first,
    then those it inherits (the embedding settings)."""
    values = dataclasses.asdict(card.make_config())
    return {**{key: values[key] for key in inspect.get_annotations(card.config)}, **values}
