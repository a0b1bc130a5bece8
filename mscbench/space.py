"""Search spaces, declared where the hyperparameters are: `tunable(default, space)` on a config field.

    lr: float = tunable(1e-3, LogUniform(1e-4, 1e-2))  # Adam learning rate
    hidden: tuple[int, ...] = tunable((128, 64, 32), Choice((64,), (128, 64), (128, 64, 32)))

A model's search space is the shared training space (TrainConfig's tunable fields, plus embedding_dim and
dropout wherever the model has them) with the model's own tunable fields on top. A recipe's `[tune.space]`
narrows or replaces it: `lr = {log = [1e-4, 1e-2]}`, `dropout = {uniform = [0, 0.3]}`,
`num_experts = {int = [2, 8]}`, `hidden = {choice = [[64], [128, 64]]}`, or a plain value to fix a setting.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

from mscbench.errors import UserError


class Trial(Protocol):
    """What a space asks of a trial (Optuna's `Trial` has these)."""

    def suggest_float(self, name: str, low: float, high: float, *, log: bool = False) -> float: ...
    def suggest_int(self, name: str, low: int, high: int) -> int: ...
    def suggest_categorical(self, name: str, choices: list) -> Any: ...


class SpaceError(UserError):
    """A search space that names no setting or whose range is malformed."""


@dataclass(frozen=True)
class Uniform:
    """A number uniform between `low` and `high` (dropout rates, weights of a loss term)."""

    low: float
    high: float
    log: ClassVar[bool] = False

    def __post_init__(self) -> None:
        if not (0 if self.log else -math.inf) < self.low < self.high:
            raise SpaceError(f"{self.kind()} range needs {'0 < ' if self.log else ''}low < high, "
                             f"not [{self.low}, {self.high}]")

    def sample(self, trial: Trial, name: str) -> float:
        return trial.suggest_float(name, self.low, self.high, log=self.log)

    def edges(self) -> tuple:
        """The values at the ends of the range (checked against the setting's type)."""
        return float(self.low), float(self.high)

    def kind(self) -> str:
        return "log" if self.log else "uniform"

    def text(self) -> str:
        return f"{'log-uniform' if self.log else 'uniform'} [{self.low:g}, {self.high:g}]"


@dataclass(frozen=True)
class LogUniform(Uniform):
    """A positive number, uniform in log scale between `low` and `high` (learning rates, penalties)."""

    log: ClassVar[bool] = True


@dataclass(frozen=True)
class IntRange:
    """An integer between `low` and `high`, both included (numbers of experts, layers, heads)."""

    low: int
    high: int

    def __post_init__(self) -> None:
        if not self.low < self.high:
            raise SpaceError(f"integer range needs low < high, not [{self.low}, {self.high}]")

    def sample(self, trial: Trial, name: str) -> int:
        return trial.suggest_int(name, self.low, self.high)

    def edges(self) -> tuple:
        return self.low, self.high

    def text(self) -> str:
        return f"integer [{self.low}, {self.high}]"


@dataclass(frozen=True)
class Choice:
    """One of a few values (layer widths, batch sizes); lists are stored as tuples."""

    options: tuple

    def __init__(self, *options: Any):
        if not options:
            raise SpaceError("a choice needs at least one value")
        object.__setattr__(self, "options", tuple(tuple(o) if isinstance(o, list) else o for o in options))

    def sample(self, trial: Trial, name: str) -> Any:
        # Optuna's categorical values are scalars: a tuple is chosen by its position and stays a tuple
        if any(isinstance(option, tuple) for option in self.options):
            labels = [value_text(option) for option in self.options]
            return self.options[labels.index(trial.suggest_categorical(name, labels))]
        return trial.suggest_categorical(name, list(self.options))

    def edges(self) -> tuple:
        return self.options

    def text(self) -> str:
        return "one of " + ", ".join(value_text(option) for option in self.options)


Space = LogUniform | Uniform | IntRange | Choice
KINDS = {"log": LogUniform, "uniform": Uniform, "int": IntRange}


def value_text(value: Any) -> str:
    """A value as text: a tuple (or list) as `[a, b]`, a float with 4 significant digits."""
    if isinstance(value, (tuple, list)):
        return "[" + ", ".join(map(value_text, value)) + "]"
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def tunable(default: Any, space: Space) -> Any:
    """A dataclass field with a default and its search space (read by `declared_space`)."""
    return dataclasses.field(default=default, metadata={"space": space})


# Layer widths most models choose from: two or three layers around the papers' 128-64(-32)
MLP_WIDTHS_2 = Choice((64,), (128, 64), (256, 128))
MLP_WIDTHS_3 = Choice((64, 32), (128, 64, 32), (256, 128, 64))

# Shared settings that many models have but each would declare alike: tuned wherever the model has them.
SHARED_MODEL_SPACE: dict[str, Space] = {
    "embedding_dim": Choice(8, 16, 32),
    "dropout": Uniform(0.0, 0.5),
}


def declared_space(*configs: type) -> dict[str, Space]:
    """The tunable fields of config dataclasses (later ones win), with the shared model settings they have."""
    space: dict[str, Space] = {}
    for config in configs:
        fields = {f.name: f for f in dataclasses.fields(config)}
        space |= {name: SHARED_MODEL_SPACE[name] for name in SHARED_MODEL_SPACE if name in fields}
        space |= {name: f.metadata["space"] for name, f in fields.items() if "space" in f.metadata}
    return space


def parse_space(key: str, value: Any, where: str) -> Space | Any:
    """A recipe entry: `{log = [a, b]}`, `{uniform = [a, b]}`, `{int = [a, b]}`, `{choice = [...]}`, or a
    plain value (the setting is fixed, not tuned)."""
    if not isinstance(value, dict):
        return value
    if len(value) != 1:
        raise SpaceError(f"{where}: {key} takes one of log, uniform, int or choice, not {sorted(value)}")
    (kind, bounds), = value.items()
    if kind == "choice":
        if not isinstance(bounds, list):
            raise SpaceError(f"{where}: {key} = {{choice = [...]}} takes a list of values, not {bounds!r}")
        return Choice(*bounds)
    if kind not in KINDS:
        raise SpaceError(f"{where}: {key} = {{{kind} = ...}}: the kinds are log, uniform, int and choice")
    numeric = (int,) if kind == "int" else (int, float)
    if (not isinstance(bounds, list) or len(bounds) != 2
            or not all(isinstance(b, numeric) and not isinstance(b, bool) and math.isfinite(b) for b in bounds)):
        kind_of = "integers" if kind == "int" else "numbers"
        raise SpaceError(f"{where}: {key} = {{{kind} = [low, high]}} takes two {kind_of}, not {bounds!r}")
    try:
        return KINDS[kind](*bounds)
    except SpaceError as error:
        raise SpaceError(f"{where}: {key}: {error}") from None
