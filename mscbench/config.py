"""Typed configuration: training settings, `--set key=value` overrides and TOML recipes.

Every setting lives in a frozen dataclass; an unknown key is an error that names it and suggests the
closest valid one; a value of the wrong type is an error that says what was expected.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import tomllib

from mscbench.errors import UserError
from mscbench.eval.significance import CORRECTIONS, DEFAULT_CORRECTION
from mscbench.space import Choice, LogUniform, tunable


class ConfigError(UserError):
    """A setting that does not exist or does not fit its type."""


@dataclass(frozen=True)
class TrainConfig:
    """How a model is trained (the same for every model, so that comparisons are fair)."""

    epochs: int = 3  # passes over the training split (early stopping may end sooner)
    batch_size: int = tunable(512, Choice(128, 256, 512, 1024))  # samples per optimiser step
    lr: float = tunable(1e-3, LogUniform(1e-4, 3e-2))  # Adam learning rate
    weight_decay: float = tunable(0.0, Choice(0.0, 1e-6, 1e-5, 1e-4))  # L2 penalty in Adam (every parameter)
    patience: int = 1  # epochs without a better validation AUC before stopping
    seed: int = 0  # seeds parameters, shuffling and any sampling in the model
    protocol: Literal["joint", "individual", "finetune"] = "joint"  # one model, one per scenario, or joint + tuned
    device: str = "auto"  # "auto" (CUDA when available), "cpu", "cuda", "cuda:1", ...
    eval_batch_size: int = 8192  # samples per forward pass when predicting
    # "lazy_adam": the id embedding tables get sparse gradients and SparseAdam, which moves (and decays the
    # moments of) only the rows a batch uses; plain Adam also keeps moving rows by their old momentum and
    # costs a pass over every table per step. Dense parameters get Adam either way.
    optimizer: Literal["adam", "lazy_adam"] = "adam"
    threads: int = 0  # CPU threads of torch's operators; 0 = one per core, or 1 on a machine busy at start
    amp: bool = False  # bf16 autocast of forward passes on CUDA; on CPU it is refused (an error says so)
    # Where batches are gathered: "always" moves each split to the device once and shuffles and gathers there;
    # "never" gathers on the host and copies each batch (pinned, overlapping the previous step); "auto" moves
    # a split to a GPU when it needs at most half the GPU's free memory, and keeps the host path on the CPU.
    # Both give the same batches in the same order.
    data_on_device: Literal["auto", "always", "never"] = "auto"
    # torch.compile the model for training steps (CUDA: "reduce-overhead", CUDA graphs): fewer launches per step
    # for long runs. Batches of the full batch size run compiled, the ragged last batch of an epoch eagerly
    # (no recompilation, no sample dropped); prediction runs eagerly. Compile time is reported apart. One graph
    # serves every pattern of rows per scenario: compiled, a scenario's branch runs on 0 rows when the batch has
    # none of them, so its parameters get zero gradients where eager gives none, and Adam still moves them by
    # their momentum on such a batch (eager leaves them alone there). On the CPU at more than one thread a
    # compiled run is not bit-reproducible (inductor's code adds some gradients with atomics): use threads = 1.
    compile: bool = False

    def __post_init__(self) -> None:
        if self.optimizer == "lazy_adam" and self.weight_decay:
            raise ConfigError('weight_decay needs optimizer = "adam": SparseAdam, which lazy_adam uses for the '
                              "embedding tables, has no weight decay")
        if self.threads < 0:
            raise ConfigError(f"threads must be 0 (one per core) or more, not {self.threads}")


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
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return coerce(value, inner[0], where)
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where} must be a table, not {value!r}")
        return value
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


def parse_value(text: str) -> Any:
    """A `--set` value as TOML (`3`, `1e-3`, `true`, `[64, 32]`, `"x"`); a bare word stays a string."""
    try:
        return tomllib.loads(f"value = {text}")["value"]
    except tomllib.TOMLDecodeError:
        return text


def parse_overrides(items: typing.Iterable[str]) -> dict[str, Any]:
    """`["lr=1e-3", "hidden=[64,32]"]` -> `{"lr": 0.001, "hidden": [64, 32]}`."""
    overrides = {}
    for item in items:
        key, separator, value = item.partition("=")
        if not separator or not key.strip():
            raise ConfigError(f"--set takes key=value, not {item!r}")
        overrides[key.strip()] = parse_value(value.strip())
    return overrides


def split_overrides(overrides: dict[str, Any], model_config: type) -> tuple[dict, dict]:
    """Send each override to the model's hyperparameters or the training settings (`train.` forces it)."""
    model_keys = {f.name for f in dataclasses.fields(model_config)}
    train_keys = {f.name for f in dataclasses.fields(TrainConfig)}
    model_values, train_values = {}, {}
    for key, value in overrides.items():
        if key.startswith("train."):
            train_values[key.removeprefix("train.")] = value
        elif key in model_keys:
            model_values[key] = value
        elif key in train_keys:
            train_values[key] = value
        else:
            raise ConfigError(f"no setting {key!r}{suggest(key, model_keys | train_keys)}; "
                              "`mscbench models NAME` lists a model's settings")
    return model_values, train_values


def split_experiment_overrides(overrides: dict[str, Any], models: typing.Sequence[str]) -> tuple[dict, dict]:
    """Overrides of an experiment over several models: `MODEL.key` sets a hyperparameter of MODEL, one of
    `models` (a variant `NAME@LABEL` too); `train.key` or a bare key sets a training setting shared by every
    model. Returns (training settings, {model: hyperparameters})."""
    train_values, model_values = {}, {}
    for key, value in overrides.items():
        owner, _, name = key.rpartition(".")  # a setting's name has no dot; a variant's label may
        if owner in ("", "train"):
            train_values[name] = value
        elif owner in models:
            model_values.setdefault(owner, {})[name] = value
        else:
            raise ConfigError(f"--set {key}: {owner!r} is not among the models compared "
                              f"({', '.join(models)}){suggest(owner, models)}")
    build_config(TrainConfig, train_values, owner="training (a model's hyperparameter is set as MODEL.key)")
    return train_values, model_values


Sampler = Literal["tpe", "random", "grid"]
Pruner = Literal["median", "hyperband", "none"]
SAMPLERS, PRUNERS = typing.get_args(Sampler), typing.get_args(Pruner)


@dataclass(frozen=True)
class TuneSettings:
    """A recipe's `[tune]` table: every model of the recipe tuned with the same budget before comparing.

    The spaces are each model's declared ones (`mscbench models NAME`); a table value in the recipe's
    `[train]` or `[model.NAME]` (`lr = {log = [1e-4, 1e-2]}`) narrows or adds one, a plain value fixes it.
    """

    trials: int | None = None  # trials per model (with `seconds`, whichever ends first)
    seconds: float | None = None  # training time per model, summed over its trials
    sampler: Sampler = "tpe"
    pruner: Pruner = "median"  # stops poor trials on per-epoch validation AUC
    space: Literal["declared", "recipe"] = "declared"  # "recipe": tune only the ranges the recipe gives
    seeds: int = 1  # each trial scored on its mean over the recipe's first N seeds (N times the cost)

    def __post_init__(self) -> None:
        if self.trials is None and self.seconds is None:
            raise ConfigError("[tune] needs a budget: trials = N or seconds = S (per model)")
        if self.trials is not None and self.trials <= 0:
            raise ConfigError(f"[tune] trials must be 1 or more, not {self.trials}")
        if self.seconds is not None and self.seconds <= 0:
            raise ConfigError(f"[tune] seconds must be more than 0, not {self.seconds}")
        if self.seeds <= 0:
            raise ConfigError(f"[tune] seeds must be 1 or more, not {self.seeds}")


def fixed(values: dict[str, Any]) -> dict[str, Any]:
    """The settings given one value (a table value is a search space, see `mscbench.space`)."""
    return {key: value for key, value in values.items() if not isinstance(value, dict)}


@dataclass(frozen=True)
class Recipe:
    """An experiment: models x seeds on one dataset, compared against a base model."""

    dataset: str  # prepared dataset, NAME or NAME/VARIANT
    models: tuple[str, ...]  # registry names, or variants NAME@LABEL set in [model."NAME@LABEL"]; in table order
    base: str  # the model RelaImpr is measured against
    seeds: tuple[int, ...] = (0,)
    train: dict[str, Any] = field(default_factory=dict)  # TrainConfig settings for every model
    model: dict[str, dict[str, Any]] = field(default_factory=dict)  # per-model hyperparameters
    prepare: dict[str, Any] = field(default_factory=dict)  # synthetic data: made first if missing (rows, ...)
    tune: TuneSettings | None = None  # tune every model with one budget first, then compare the best settings
    description: str = ""
    correction: str = DEFAULT_CORRECTION  # how the table's significance marks are corrected: bh, holm or none


def load_recipe(path: Path) -> Recipe:
    """Read a recipe TOML; unknown keys and wrong types are errors naming the file and the key."""
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"recipe {path} does not exist") from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"recipe {path} is not valid TOML: {error}") from None
    if isinstance(raw.get("tune"), dict):
        raw["tune"] = build_config(TuneSettings, raw["tune"], owner=f"recipe {path} [tune]")
    recipe = build_config(Recipe, raw, owner=f"recipe {path}")
    build_config(TrainConfig, fixed(recipe.train), owner=f"recipe {path} [train]")
    spaces = [key for values in (recipe.train, *recipe.model.values()) for key, value in values.items()
              if isinstance(value, dict)]
    if spaces and recipe.tune is None:
        raise ConfigError(f"recipe {path}: {spaces[0]} is given a range: add a [tune] table to tune it, "
                          "or give it one value")
    if recipe.base not in recipe.models:
        raise ConfigError(f"recipe {path}: base {recipe.base!r} is not among its models")
    if recipe.correction not in CORRECTIONS:
        raise ConfigError(f"recipe {path}: unknown correction {recipe.correction!r}: choose one of "
                          f"{', '.join(CORRECTIONS)}")
    for name in recipe.model:
        if name not in recipe.models:
            raise ConfigError(f"recipe {path}: [model.{name}] sets a model that is not among its models")
    return recipe
