import pytest
import tomllib

from mscbench.config import (
    ConfigError,
    Recipe,
    TrainConfig,
    build_config,
    load_recipe,
    parse_overrides,
    split_overrides,
)
from mscbench.models.dnn import DNNConfig
from mscbench.results.store import to_toml


def test_overrides_parse_as_toml_values():
    assert parse_overrides(["lr=1e-3", "hidden=[64, 32]", "protocol=individual", "flag=true"]) == {
        "lr": 0.001, "hidden": [64, 32], "protocol": "individual", "flag": True}
    with pytest.raises(ConfigError, match="key=value"):
        parse_overrides(["lr"])


def test_overrides_go_to_the_model_or_to_training():
    model, train = split_overrides({"hidden": [8], "lr": 0.1, "train.epochs": 2}, DNNConfig)
    assert model == {"hidden": [8]} and train == {"lr": 0.1, "epochs": 2}
    with pytest.raises(ConfigError, match="no setting 'epoch' \\(did you mean 'epochs'\\?\\)"):
        split_overrides({"epoch": 2}, DNNConfig)


def test_types_are_checked_with_the_expected_type_named():
    assert build_config(TrainConfig, {"lr": 1}, owner="t").lr == 1.0
    with pytest.raises(ConfigError, match="epochs must be an integer"):
        build_config(TrainConfig, {"epochs": 1.5}, owner="t")
    with pytest.raises(ConfigError, match="protocol must be one of 'joint', 'individual'"):
        build_config(TrainConfig, {"protocol": "solo"}, owner="t")


def test_recipe_loads_and_rejects_unknown_keys(tmp_path):
    path = tmp_path / "r.toml"
    path.write_text('dataset = "synthetic"\nmodels = ["dnn", "shared_bottom"]\nbase = "dnn"\nseeds = [0, 1]\n'
                    '[train]\nepochs = 1\n[model.dnn]\nhidden = [8]\n')
    assert load_recipe(path) == Recipe("synthetic", ("dnn", "shared_bottom"), "dnn", (0, 1), {"epochs": 1},
                                       {"dnn": {"hidden": [8]}})
    path.write_text('dataset = "synthetic"\nmodels = ["dnn"]\nbase = "dnn"\nseed = [0]\n')
    with pytest.raises(ConfigError, match="no setting 'seed' \\(did you mean 'seeds'\\?\\)"):
        load_recipe(path)
    path.write_text('dataset = "synthetic"\nmodels = ["dnn"]\nbase = "dnn"\n[train]\nlr = "fast"\n')
    with pytest.raises(ConfigError, match="lr must be a number"):
        load_recipe(path)
    with pytest.raises(ConfigError, match="does not exist"):
        load_recipe(tmp_path / "missing.toml")


def test_resolved_config_round_trips_through_toml():
    table = {"dataset": {"name": "synthetic", "fingerprint": "ab\"c"}, "model": {"name": "dnn", "hidden": [1, 2]},
             "train": {"lr": 0.001, "flag": False, "device": "auto"}}
    assert tomllib.loads(to_toml(table)) == table
