"""The prepared-dataset contract: `manifest.json` describes every feature, the scenarios and the splits.

A prepared dataset is a directory `<data-dir>/<name>/<variant>/` holding one Parquet file per split and
`manifest.json`. The directory is complete only when the manifest exists; it is written last, atomically.
Ids are contiguous integers built from the training split only: 0 is padding, 1 is out-of-vocabulary.
The manifest records each file's size and sha256 (schema 2); a schema-1 manifest, written before, has
none and loads as unverified (`mscbench prepare NAME --force` rebuilds it with them).
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from dataclasses import asdict, dataclass, field
from pathlib import Path

from mscbench.data.errors import DataError
from mscbench.data.files import file_sha256
from mscbench.files import write_atomic

MANIFEST_FILE = "manifest.json"
MANIFEST_SCHEMA = 2
READABLE_SCHEMAS = (1, MANIFEST_SCHEMA)  # 1: without `files` (unverified)
PADDING_ID = 0
OOV_ID = 1
SPLITS = ("train", "valid", "test")


@dataclass(frozen=True)
class SparseFeature:
    """A categorical field. Fields with the same `table` share one embedding table (and vocabulary)."""

    name: str
    vocab_size: int  # including the padding (0) and out-of-vocabulary (1) rows
    table: str  # embedding-table name; equals `name` unless shared (target item and its sequence)
    side: str = "context"  # "user", "item" or "context": which entity the field describes


@dataclass(frozen=True)
class SequenceFeature:
    """A behaviour sequence: the user's last `max_len` events strictly before the impression.

    Stored left-padded with 0, most recent last. `target` names the sparse field of the impression that
    this sequence is compared with (same embedding table), e.g. `hist_item` -> `item_id`.
    """

    name: str
    vocab_size: int
    table: str
    max_len: int
    target: str | None = None


@dataclass(frozen=True)
class ScenarioInfo:
    column: str
    names: list[str]  # index = scenario id
    rows: dict[str, list[int]]  # split -> rows per scenario
    positives: dict[str, list[int]]  # split -> positive labels per scenario
    merged: list[str] = field(default_factory=list)  # raw values merged into "other" for being too small

    @property
    def count(self) -> int:
        return len(self.names)


@dataclass(frozen=True)
class Manifest:
    name: str
    variant: str
    preparer_version: str
    label: str
    sparse: list[SparseFeature]
    dense: list[str]
    sequences: list[SequenceFeature]
    scenario: ScenarioInfo
    splits: dict[str, str]  # split -> Parquet file name, relative to the dataset directory
    user: str | None = None  # sparse field naming the user, for GAUC
    oracle: str | None = None  # column holding the true click probability (synthetic data only)
    sequence_gap: str | None = None  # column of bucketised time gaps [L] aligned with the sequences
    fingerprint: dict[str, str] = field(default_factory=dict)  # raw file -> "size:sha256" (or the generator)
    notes: dict[str, object] = field(default_factory=dict)  # preparer facts: bad rows, dropped rows, ...
    files: dict[str, dict[str, object]] = field(default_factory=dict)  # file -> {"size": bytes, "sha256": hex}
    schema: int = MANIFEST_SCHEMA

    @property
    def num_scenarios(self) -> int:
        return self.scenario.count

    @property
    def sequence_length(self) -> int:
        return self.sequences[0].max_len if self.sequences else 0

    def rows(self, split: str) -> int:
        return sum(self.scenario.rows[split])

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=False)

    @classmethod
    def from_dict(cls, raw: dict) -> Manifest:
        if not isinstance(raw, dict) or raw.get("schema") not in READABLE_SCHEMAS:
            schema = raw.get("schema") if isinstance(raw, dict) else None
            raise ValueError(f"manifest schema {schema!r} is not {MANIFEST_SCHEMA}")
        if not conforms(raw, cls):
            raise ValueError("its contents do not match the manifest's fields and types")
        raw = dict(raw)
        raw["sparse"] = [SparseFeature(**f) for f in raw["sparse"]]
        raw["sequences"] = [SequenceFeature(**f) for f in raw["sequences"]]
        raw["scenario"] = ScenarioInfo(**raw["scenario"])
        manifest = cls(**raw)
        scenario = manifest.scenario
        if any(len(counts.get(split, [])) != scenario.count for counts in (scenario.rows, scenario.positives)
               for split in SPLITS):
            raise ValueError("its row counts do not match its scenarios")
        return manifest


def conforms(value: object, hint: object) -> bool:
    """Whether JSON `value` fits the type `hint` (a dataclass, list, dict, union, str, int, ...)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return any(conforms(value, arg) for arg in args)
    if origin is list:
        return isinstance(value, list) and all(conforms(item, args[0]) for item in value)
    if origin is dict:
        return isinstance(value, dict) and all(conforms(k, args[0]) and conforms(v, args[1])
                                               for k, v in value.items())
    if dataclasses.is_dataclass(hint):
        fields = {f.name: f for f in dataclasses.fields(hint)}
        hints = typing.get_type_hints(hint)
        required = {name for name, f in fields.items()
                    if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING}
        return (isinstance(value, dict) and required <= set(value) <= set(fields)
                and all(conforms(item, hints[name]) for name, item in value.items()))
    if hint is object:
        return True
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is None or hint is type(None):
        return value is None
    return isinstance(value, hint)


def read_manifest(directory: Path) -> Manifest:
    path = Path(directory) / MANIFEST_FILE
    try:
        return Manifest.from_dict(json.loads(path.read_text()))
    except (ValueError, UnicodeDecodeError) as error:  # JSONDecodeError is a ValueError
        raise DataError(f"{path} is corrupt ({error}): re-run `mscbench prepare`") from None


def file_record(path: Path) -> dict[str, object]:
    """What the manifest records of a prepared file: its size and sha256."""
    return {"size": Path(path).stat().st_size, "sha256": file_sha256(path)}


def mismatched_files(directory: Path, manifest: Manifest, with_hash: bool) -> list[str]:
    """One line per recorded file that is missing or differs in size (or in sha256, when `with_hash`)."""
    problems = []
    for name, recorded in manifest.files.items():
        path = Path(directory) / name
        if not path.is_file():
            problems.append(f"{path} is missing")
        elif path.stat().st_size != recorded["size"]:
            problems.append(f"{path} has {path.stat().st_size:,} bytes, its manifest says {recorded['size']:,}")
        elif with_hash and file_record(path)["sha256"] != recorded["sha256"]:
            problems.append(f"{path} does not match the sha256 its manifest records")
    return problems


def write_manifest(directory: Path, manifest: Manifest) -> None:
    write_atomic(Path(directory) / MANIFEST_FILE, manifest.to_json())
