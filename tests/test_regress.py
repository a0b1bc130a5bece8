"""`mscbench regress` on the CI recipe against the committed baseline: it passes, fails on a planted
regression, reports improvements, refuses another recipe's baseline; the recipes in recipes/ are valid."""

import json
from pathlib import Path

import pytest

from mscbench.cli import main
from mscbench.config import load_recipe
from mscbench.data.sources.synthetic import SyntheticParams
from mscbench.errors import UserError
from mscbench.experiment.recipes import recipe_dataset
from mscbench.models.base import REGISTRY, get_card
from mscbench.results.regress import Change

ROOT = Path(__file__).parent.parent
CI_RECIPE, CI_BASELINE = ROOT / "recipes" / "ci.toml", ROOT / "baselines" / "ci.json"


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """Data, runs and a fresh baseline of the CI recipe, made once by `regress --update`."""
    root = tmp_path_factory.mktemp("regress")
    workspace = {"data": root / "data", "runs": root / "runs", "root": root, "baseline": root / "fresh.json"}
    assert main(["regress", "--recipe", str(CI_RECIPE), "--baseline", str(workspace["baseline"]), "--update",
                 "--data-dir", str(workspace["data"]), "--runs-dir", str(workspace["runs"])]) == 0
    return workspace


def regress(workspace, capsys, baseline=CI_BASELINE, *options):
    code = main(["regress", "--recipe", str(CI_RECIPE), "--baseline", str(baseline), "--data-dir",
                 str(workspace["data"]), "--runs-dir", str(workspace["runs"]), *options])
    captured = capsys.readouterr()
    return code, " ".join(captured.out.split()), " ".join(captured.err.split())


def planted(workspace, name: str, change) -> Path:
    """A copy of the fresh baseline with `change(baseline)` applied."""
    baseline = json.loads(workspace["baseline"].read_text())
    change(baseline)
    path = workspace["root"] / name
    path.write_text(json.dumps(baseline))
    return path


def test_the_ci_recipe_reproduces_the_committed_baseline(workspace, capsys):
    """The regression check itself: after an intended change, `mscbench regress --update` and commit."""
    assert (workspace["data"] / "synthetic" / "rows20000-sc5-seed0" / "manifest.json").exists()  # [prepare]
    code, out, err = regress(workspace, capsys)
    assert code == 0 and "none fell" in out, err
    assert "reusing star (seed 0)" in out  # the runs made by the fixture are reused, not retrained


def test_a_planted_regression_fails(workspace, capsys):
    def lift(baseline):
        baseline["auc"]["star"]["s2"] += 0.01  # as if star's s2 AUC had been 0.01 higher before

    code, out, _ = regress(workspace, capsys, planted(workspace, "higher.json", lift))
    assert code == 1
    assert "star / s2: " in out and "(-0.0100) regressed" in out and "1 fell by more than 0.002" in out


def test_improvements_and_small_moves_pass_and_are_reported(workspace, capsys):
    def lower(baseline):
        baseline["auc"]["dnn"]["overall"] -= 0.01
        baseline["auc"]["shared_bottom"]["s1"] += 0.001  # within the tolerance

    code, out, _ = regress(workspace, capsys, planted(workspace, "lower.json", lower))
    assert code == 0 and "dnn / overall: " in out and "(+0.0100) improved" in out
    assert "(-0.0010) within tolerance" in out and "2 of 18 AUCs moved; none fell" in out
    code, out, _ = regress(workspace, capsys, planted(workspace, "lower.json", lower), "--tolerance", "0.0005")
    assert code == 1 and "regressed" in out


@pytest.mark.parametrize("change, message", [
    (lambda b: b["recipe"].update(name="quickstart"), "was made from recipe 'quickstart'"),
    (lambda b: b["recipe"].update(hash="0123456789abcdef"), "(settings hash 0123456789abcdef)"),
    (lambda b: b["dataset"].update(fingerprint="elsewhere"), "was made on other data"),
    (lambda b: b.pop("auc"), "is not an mscbench baseline"),
])
def test_a_baseline_from_another_recipe_or_data_is_refused(workspace, capsys, change, message):
    code, _, err = regress(workspace, capsys, planted(workspace, "other.json", change))
    assert code == 2 and message in err


def test_update_writes_a_baseline_the_next_check_passes(workspace, capsys):
    path = workspace["root"] / "new" / "ci.json"
    code, _, err = regress(workspace, capsys, path)
    assert code == 2 and "no baseline at" in err and "--update" in err
    code, out, _ = regress(workspace, capsys, path, "--update")
    assert code == 0 and "wrote baseline" in out
    assert json.loads(path.read_text())["recipe"] == json.loads(CI_BASELINE.read_text())["recipe"]
    code, out, _ = regress(workspace, capsys, path)
    assert code == 0 and "0 of 18 AUCs moved" in out
    (path.parent / "broken.json").write_text("{")
    code, _, err = regress(workspace, capsys, path.parent / "broken.json")
    assert code == 2 and "is corrupt" in err


def test_compare_exports_and_plots_the_ci_runs(workspace, capsys, tmp_path):
    """The runs of the regress check, read by `compare`: an HTML table by scenario, and the plots."""
    code = main(["compare", "--recipe", str(CI_RECIPE), "--by", "scenario", "--format", "html", "--output",
                 str(tmp_path / "table.html"), "--plot", str(tmp_path / "plots"), "--data-dir", str(workspace["data"]),
                 "--runs-dir", str(workspace["runs"])])
    out = capsys.readouterr().out
    assert code == 0 and "training" not in out
    page = (tmp_path / "table.html").read_text()
    assert page.count("<tr>") == 1 + 6 and "DeLong" in page  # the header, five scenarios and overall
    assert {p.name for p in (tmp_path / "plots").iterdir()} == {"report.html", "scenario_auc.png",
                                                                  "training_curves.png"}  # no model has extras


def test_change_status():
    assert Change("m", "s", 0.70, 0.69).status(0.002) == "regressed"
    assert Change("m", "s", 0.70, 0.699).status(0.002) == "within tolerance"
    assert Change("m", "s", 0.70, 0.71).status(0.002) == "improved"
    assert Change("m", "s", 0.70, 0.70).status(0.002) == "unchanged"
    assert Change("m", "s", 0.70, None).fell(0.002)  # an AUC that became n/a


@pytest.mark.parametrize("path", sorted((ROOT / "recipes").glob("*.toml")), ids=lambda p: p.name)
def test_every_recipe_loads_and_names_registered_models_with_valid_settings(path):
    recipe = load_recipe(path)
    if recipe.prepare:
        SyntheticParams(**recipe.prepare)
    missing = [model for model in recipe.models if model not in REGISTRY]
    for model in recipe.models:
        if model not in missing:
            get_card(model).make_config(recipe.model.get(model, {}))  # every hyperparameter exists and fits
    if missing:
        pytest.skip(f"{path.name}: models not registered yet: {', '.join(missing)}")


def test_a_recipe_prepare_table_is_checked(tmp_path):
    recipe = tmp_path / "bad.toml"
    recipe.write_text('dataset = "synthetic"\nmodels = ["dnn"]\nbase = "dnn"\n[prepare]\nrowz = 5000\n')
    with pytest.raises(UserError, match="recipe \\[prepare\\] has no setting 'rowz' \\(did you mean 'rows'\\?\\)"):
        recipe_dataset(load_recipe(recipe), tmp_path)
    recipe.write_text('dataset = "alimama"\nmodels = ["dnn"]\nbase = "dnn"\n[prepare]\nrows = 5000\n')
    with pytest.raises(UserError, match="makes synthetic data only"):
        recipe_dataset(load_recipe(recipe), tmp_path)
