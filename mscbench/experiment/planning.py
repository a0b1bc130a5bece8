"""Planning a run: names and settings resolved and checked, and the run's identity, before anything trains.

A run's id hashes what it computes from: the resolved configuration and the dataset fingerprint. The code
that computes it is fingerprinted apart (`code_fingerprint`) and stored in the run: a stored run keeps its
id when the code changes, so it is found, and is then known to be stale (execution.py retrains it).
"""

from __future__ import annotations

import dataclasses
import hashlib
import inspect
import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import mscbench
from mscbench.config import TrainConfig, build_config
from mscbench.data.manifest import Manifest, read_manifest
from mscbench.data.prepare import find_prepared
from mscbench.models.base import REGISTRY, ModelCard, get_card
from mscbench.training.distributed import world_size
from mscbench.training.trainer import choose_device, resolved_threads

# Settings that change how fast a run goes, not what it computes: left out of the run's identity.
# `threads` is in it, resolved (0 = one per core): the thread count sets the summation order inside torch's
# operators and so moves the 4th digit of the metrics; results independent of it would need single-thread
# reductions, several times slower. The number of data-parallel processes is in it for the same reason.
NOT_IDENTITY = ("device", "eval_batch_size", "data_on_device")  # data_on_device: the same batches either way

PACKAGE = Path(mscbench.__file__).resolve().parent
# The code besides the model's own module that computes a run's numbers, relative to the package: the
# trainer, the batches it reads, the metrics, the protocols. A byte changed in any of them makes runs stale.
TRAINING_CODE = ("training", "data/loader.py", "data/batch.py", "eval/metrics.py", "eval/evaluation.py",
                 "experiment/execution.py")


@dataclass(frozen=True)
class PlannedRun:
    run_id: str
    model: str
    card: ModelCard
    model_config: Any
    train: TrainConfig
    dataset_path: Path
    manifest: Manifest
    resolved: dict  # the fully resolved config, as written to config.toml
    code: str  # fingerprint of the code that computes the run (`code_fingerprint`)


def plan_run(dataset: str, model: str, data_dir: Path, model_values: dict | None = None,
             train_values: dict | None = None) -> PlannedRun:
    """Resolve names and settings (every error here is a clear one) without training anything."""
    card = get_card(model)
    model_config = card.make_config(model_values)
    train = build_config(TrainConfig, train_values or {}, owner="training")
    choose_device(train.device)  # a device this machine lacks fails here, before any run folder exists
    train = dataclasses.replace(train, threads=resolved_threads(train))
    dataset_path = find_prepared(data_dir, dataset)
    manifest = read_manifest(dataset_path)
    resolved = {
        "dataset": {"name": manifest.name, "variant": manifest.variant,
                    "fingerprint": dataset_fingerprint(manifest)},
        "model": {"name": model, **dataclasses.asdict(model_config)},
        "train": dataclasses.asdict(train),
        "processes": world_size(),
    }
    identity = json.dumps({**resolved, "train": {k: v for k, v in resolved["train"].items()
                                                 if k not in NOT_IDENTITY}}, sort_keys=True)
    digest = hashlib.sha256(identity.encode()).hexdigest()[:10]
    run_id = f"{manifest.name}-{manifest.variant}-{model}-seed{train.seed}-{digest}"
    return PlannedRun(run_id, model, card, model_config, train, dataset_path, manifest, resolved,
                      code_fingerprint(model))


def dataset_fingerprint(manifest: Manifest) -> str:
    """One short hash for the prepared data: same raw inputs and preparer -> same fingerprint."""
    basis = json.dumps({"fingerprint": manifest.fingerprint, "preparer": manifest.preparer_version,
                        "name": manifest.name, "variant": manifest.variant}, sort_keys=True)
    return hashlib.sha256(basis.encode()).hexdigest()[:16]


@cache
def code_fingerprint(model: str) -> str:
    """A hash of the source bytes of the code that computes `model`'s runs: the model's own module, every
    shared module of the model package, and `TRAINING_CODE`."""
    files = [Path(inspect.getfile(get_card(model).builder)).resolve(), *shared_model_code(), *training_code()]
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.relative_to(PACKAGE).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def shared_model_code() -> list[Path]:
    """Every module under mscbench/models/ that registers no model: the blocks and contracts models share."""
    own = {Path(inspect.getfile(card.builder)).resolve() for card in REGISTRY.values()}
    return sorted(path for path in (PACKAGE / "models").rglob("*.py") if path.resolve() not in own)


def training_code() -> list[Path]:
    paths = [PACKAGE / name for name in TRAINING_CODE]
    return sorted(file for path in paths for file in ([path] if path.is_file() else path.rglob("*.py")))
