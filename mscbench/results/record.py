"""The run record: what a run's `metrics.json` holds, typed, with a versioned schema.

Schema 2 stores each scope's metrics under `values`, keyed by the metric registry's names
(eval/evaluation.py), so a metric added later needs no new schema: older runs show "n/a" for it. Schema 1
(metrics beside `rows` in each scope, no code fingerprint) is read through `migrate`; such a run has no
code fingerprint, so it counts as made by other code (stale).
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from dataclasses import asdict, dataclass, field
from typing import Any

from mscbench.errors import UserError
from mscbench.eval.evaluation import Evaluation, ScopeMetrics

RECORD_SCHEMA = 2
OVERALL = "overall"  # the scope of all test rows, beside each scenario's name
SCOPE_COUNTS = ("rows", "positives", "oracle_auc")  # what a schema-1 scope held besides its metrics


class RecordError(ValueError):
    """Parsed JSON that is not what the type it is read as says."""


@dataclass(frozen=True)
class DatasetRef:
    """The prepared dataset a run was made on."""

    name: str
    variant: str
    fingerprint: str

    @property
    def label(self) -> str:
        return f"{self.name}/{self.variant}"


@dataclass(frozen=True)
class TrainingSummary:
    best_epoch: dict[str, int]  # per trained model: "all" (joint) or each scenario (individual)
    best_valid_auc: dict[str, float | None]
    epochs_run: int
    train_seconds: float
    samples_per_second: float
    total_seconds: float
    compile_seconds: float = 0.0  # with `compile = true`: the first compiled step, not in train_seconds


@dataclass(frozen=True)
class RunRecord:
    run_id: str
    model: str
    seed: int
    dataset: DatasetRef
    metrics: Evaluation
    protocol: str = "joint"
    code: str | None = None  # fingerprint of the code that made the run (None: made before fingerprints)
    config: dict[str, Any] = field(default_factory=dict)  # the resolved configuration, as in config.toml
    extras: dict[str, list] = field(default_factory=dict)  # model extras averaged per scenario
    parameters: int = 0
    training: TrainingSummary | None = None
    device: str = ""
    environment: dict[str, Any] = field(default_factory=dict)  # package versions, git revision
    created: str = ""  # UTC, ISO 8601

    def scope(self, scope: str) -> ScopeMetrics:
        """The metrics of one scope: "overall" or a scenario name."""
        if scope == OVERALL:
            return self.metrics.overall
        try:
            return self.metrics.scenarios[scope]
        except KeyError:
            raise UserError(f"run {self.run_id} has no scenario {scope!r}: it was made on other data") from None

    def to_json(self) -> str:
        return json.dumps({"schema": RECORD_SCHEMA, **asdict(self)}, indent=2)

    @classmethod
    def from_json(cls, data: Any) -> RunRecord:
        """The record a `metrics.json` holds (any schema this version reads); RecordError says what is wrong."""
        if not isinstance(data, dict):
            raise RecordError(f"a JSON object was expected, not {type(data).__name__}")
        schema = data.get("schema")
        if schema not in MIGRATIONS and schema != RECORD_SCHEMA:
            raise RecordError(f"schema {schema!r} is not one this version reads (1 to {RECORD_SCHEMA})")
        while schema != RECORD_SCHEMA:
            data, schema = MIGRATIONS[schema](data), schema + 1
        return typed(cls, {key: value for key, value in data.items() if key != "schema"}, "record")


def from_schema_1(data: dict) -> dict:
    """Schema 1 kept each scope's metrics beside its counts; schema 2 keeps them under `values`."""
    def scope(metrics: Any) -> Any:
        if not isinstance(metrics, dict):
            return metrics  # left for the typed reading to report
        return {**{key: metrics.get(key) for key in SCOPE_COUNTS},
                "values": {key: value for key, value in metrics.items() if key not in SCOPE_COUNTS}}

    metrics = data.get("metrics")
    if not isinstance(metrics, dict) or not isinstance(metrics.get("scenarios"), dict):
        return data  # left for the typed reading to report
    return {**data, "metrics": {"overall": scope(metrics.get("overall")),
                                "scenarios": {name: scope(value) for name, value in metrics["scenarios"].items()}}}


MIGRATIONS = {1: from_schema_1}  # schema -> the function that lifts it to the next one


def typed(hint: Any, value: Any, where: str) -> Any:
    """`value` (parsed JSON) as the type `hint` names: dataclasses, dicts, lists, unions with None, scalars.
    RecordError names where it does not fit."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if dataclasses.is_dataclass(hint):
        if not isinstance(value, dict):
            raise RecordError(f"{where} must be an object")
        hints = typing.get_type_hints(hint)
        fields = {f.name: f for f in dataclasses.fields(hint)}
        required = [name for name, f in fields.items()
                    if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
        missing = [name for name in required if name not in value]
        if missing:
            raise RecordError(f"{where} lacks {', '.join(missing)}")
        return hint(**{name: typed(hints[name], value[name], f"{where}.{name}") for name in fields if name in value})
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        return typed(next(a for a in args if a is not type(None)), value, where)
    if origin is dict:
        if not isinstance(value, dict):
            raise RecordError(f"{where} must be an object")
        return {key: typed(args[1], item, f"{where}.{key}") for key, item in value.items()}
    if origin is list or hint is list:
        if not isinstance(value, list):
            raise RecordError(f"{where} must be a list")
        return [typed(args[0], item, f"{where}[{i}]") for i, item in enumerate(value)] if args else value
    if hint is Any:
        return value
    if hint is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if hint in (int, str, bool) and type(value) is hint:
        return value
    raise RecordError(f"{where} must be {getattr(hint, '__name__', hint)}, not {value!r}")
