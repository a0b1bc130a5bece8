"""CI regression check: every (model, scope) AUC of a recipe against a stored baseline.

A baseline names the recipe it was made from (file name and a hash of its settings) and the dataset
fingerprint; a baseline from another recipe or other data is refused rather than compared.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from mscbench.config import Recipe
from mscbench.errors import UserError
from mscbench.files import write_atomic
from mscbench.results.report import Comparison

BASELINE_SCHEMA = 1
DEFAULT_TOLERANCE = 0.002  # AUC points: below this a drop is noise (BARS counts < 0.001 as exact)


@dataclass(frozen=True)
class Change:
    """One (model, scope) AUC: the baseline's and the current mean over seeds."""

    model: str
    scope: str
    baseline: float | None
    current: float | None

    @property
    def delta(self) -> float | None:
        return None if None in (self.baseline, self.current) else self.current - self.baseline

    def fell(self, tolerance: float) -> bool:
        """Fell by more than the tolerance, or lost an AUC it had."""
        if self.baseline is None:
            return False
        return self.current is None or self.delta < -tolerance

    def status(self, tolerance: float) -> str:
        if self.fell(tolerance):
            return "regressed"
        if self.delta is None:
            return "unchanged" if self.current is None else "improved"  # n/a before, an AUC now
        if self.delta == 0:
            return "unchanged"
        return "improved" if self.delta > tolerance else "within tolerance"


def recipe_identity(recipe: Recipe, path: Path) -> dict:
    """The recipe's name and a hash of every setting that changes its AUCs (its description and the correction of
    its marks do not, nor an option it leaves unset, such as [tune])."""
    settings = {key: value for key, value in dataclasses.asdict(recipe).items()
                if key not in ("description", "correction") and value is not None}
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]
    return {"name": Path(path).stem, "hash": digest}


def baseline_of(comparison: Comparison, recipe: dict) -> dict:
    return {
        "schema": BASELINE_SCHEMA, "recipe": recipe, "dataset": dataclasses.asdict(comparison.dataset),
        "auc": {row.model: {scope: row.scope_auc(scope).mean for scope in comparison.scopes}
                for row in comparison.rows},
    }


def write_baseline(path: Path, baseline: dict) -> None:
    write_atomic(path, json.dumps(baseline, indent=2) + "\n")


def load_baseline(path: Path) -> dict:
    try:
        baseline = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise UserError(f"no baseline at {path}: make one with `mscbench regress ... --update`") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise UserError(f"baseline {path} is corrupt ({error}): rewrite it with --update") from None
    if not isinstance(baseline, dict) or baseline.get("schema") != BASELINE_SCHEMA \
            or not {"recipe", "dataset", "auc"} <= set(baseline):
        raise UserError(f"{path} is not an mscbench baseline (schema {BASELINE_SCHEMA}): rewrite it with --update")
    return baseline


def check_recipe(baseline: dict, recipe: dict, path: Path) -> dict:
    """The baseline, if it was made from this recipe (same name and settings); refused otherwise."""
    made_from = baseline["recipe"]
    if made_from != recipe:
        raise UserError(f"baseline {path} was made from recipe {made_from.get('name')!r} (settings hash "
                        f"{made_from.get('hash')}), not from {recipe['name']!r} ({recipe['hash']}): pass its own "
                        "baseline, or --update to replace it")
    return baseline


def changes_against(baseline: dict, comparison: Comparison, recipe: dict, path: Path) -> list[Change]:
    """Every (model, scope) AUC of the baseline beside the current one; another recipe's baseline, or one
    made on other data, is refused."""
    check_recipe(baseline, recipe, path)
    if baseline["dataset"].get("fingerprint") != comparison.dataset.fingerprint:
        raise UserError(f"baseline {path} was made on other data (dataset fingerprint "
                        f"{baseline['dataset'].get('fingerprint')}, now {comparison.dataset.fingerprint}): "
                        "review the data change, then --update")
    current = baseline_of(comparison, recipe)["auc"]
    return [Change(model, scope, value, current.get(model, {}).get(scope))
            for model, scopes in baseline["auc"].items() for scope, value in scopes.items()]
