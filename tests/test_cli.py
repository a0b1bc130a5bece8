"""The command line end to end, in process: commands that work, and bad input that gets one clear line."""

import json

import pytest
import torch
from rich.console import Console

import mscbench
from mscbench import cli as cli_module
from mscbench.cli import main
from mscbench.models import REGISTRY
from mscbench.models.base import describe_config


@pytest.fixture(autouse=True)
def wide_console(monkeypatch):
    """Tables as a user on a wide terminal sees them (the captured stream is otherwise 80 columns)."""
    monkeypatch.setattr(cli_module, "console", Console(width=250))


def cli(capsys, *args):
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_prepare_train_compare_and_list(tmp_path, capsys):
    data, runs = str(tmp_path / "data"), str(tmp_path / "runs")
    code, out, _ = cli(capsys, "prepare", "synthetic", "--rows", "8000", "--data-dir", data)
    assert code == 0 and "prepared" in out
    code, out, _ = cli(capsys, "prepare", "synthetic", "--rows", "8000", "--data-dir", data)
    assert code == 0 and "nothing to do" in out
    code, out, _ = cli(capsys, "datasets", "--data-dir", data)
    assert code == 0 and "synthetic/rows8000" in out
    dataset = ["--dataset", "synthetic/rows8000-sc5-seed0", "--data-dir", data, "--runs-dir", runs]
    code, out, _ = cli(capsys, "train", "dnn", *dataset, "--epochs", "1", "--set", "hidden=[16]")
    assert code == 0 and "samples/s" in out
    code, out, _ = cli(capsys, "compare", *dataset, "--models", "dnn,shared_bottom", "--base", "dnn",
                       "--epochs", "1", "--format", "md")
    assert code == 0 and "| shared_bottom |" in out and "RelaImpr vs dnn" in out
    assert "run 1 of 2: training dnn (seed 0)" in out and "run 2 of 2" in out  # a time left: test_progress
    code, out, _ = cli(capsys, "compare", *dataset, "--models", "dnn,shared_bottom", "--epochs", "1",
                       "--transfer-base", "dnn", "--format", "csv")  # reuses both runs, trains dnn per scenario
    assert code == 0 and out.count("training") == 1 and "auc_gain_vs_dnn:individual" in out


def test_models_lists_the_zoo_and_shows_one(capsys):
    code, out, _ = cli(capsys, "models")
    assert code == 0 and "shared_bottom" in out
    code, out, _ = cli(capsys, "models", "dnn")
    assert code == 0 and "hidden" in out and "MLP layer widths" in out


def test_models_prints_one_whole_line_per_model_on_a_narrow_terminal(monkeypatch, capsys):
    monkeypatch.setattr(cli_module, "console", Console(width=80))
    code, out, _ = cli(capsys, "models")
    lines = out.splitlines()
    assert code == 0 and len(lines) == len(REGISTRY)  # nothing wrapped, nothing cut
    line = next(line for line in lines if line.split()[0] == "saml_no_gate_mut")  # what `| grep` finds
    assert line.split()[1] == "2020" and REGISTRY["saml_no_gate_mut"].description in line


def test_models_as_json(capsys):
    code, out, _ = cli(capsys, "models", "--format", "json")
    zoo = json.loads(out)
    assert code == 0 and [model["name"] for model in zoo] == sorted(REGISTRY)
    code, out, _ = cli(capsys, "models", "dnn", "--format", "json")
    dnn = json.loads(out)
    assert dnn["name"] == "dnn" and {"key": "hidden", "default": [128, 64, 32],
                                     "meaning": "MLP layer widths"} in dnn["hyperparameters"]
    assert dnn["search_space"]["lr"] == "log-uniform [0.0001, 0.03]" and "hidden" in dnn["search_space"]


def test_version_names_mscbench_and_its_torch(capsys):
    code, out, _ = cli(capsys, "--version")
    assert code == 0 and out.startswith(f"mscbench {mscbench.__version__} (torch {torch.__version__}, ")


@pytest.mark.parametrize("device", ["gpu", "cuda:99", *([] if torch.cuda.is_available() else ["cuda"])])
def test_an_unusable_device_is_one_line_and_leaves_no_run_folder(device, data_dir, tmp_path, capsys):
    runs = tmp_path / "runs"
    code, _, err = cli(capsys, "train", "dnn", "--data-dir", str(data_dir), "--runs-dir", str(runs),
                       "--set", f"device={device}")
    assert code == 2 and f"device {device!r}" in err and len(err.strip().splitlines()) == 1
    assert not runs.exists() or not any(runs.iterdir())


def test_every_setting_of_every_model_has_a_meaning():
    """`mscbench models NAME` explains each setting, the embedding settings a config inherits too."""
    for card in REGISTRY.values():
        missing = set(describe_config(card)) - set(cli_module.field_comments(card.config))
        assert not missing, f"{card.name}: {missing}"


@pytest.mark.parametrize("args, message", [
    (["models", "dnm"], "unknown model 'dnm' (did you mean 'dnn'?)"),
    (["train", "dnn", "--dataset", "nothing"], "dataset 'nothing' is not prepared"),
    (["train", "dnn", "--set", "hiden=[8]"], "no setting 'hiden'"),
    (["prepare", "alimamma"], "unknown dataset 'alimamma'"),
    (["compare", "--models", "dnn", "--seeds", "a"], "--seeds takes integers"),
    (["compare", "--models", "dnn", "--correction", "bonferroni"], "unknown correction 'bonferroni'"),
])
def test_bad_input_gets_one_line_and_exit_code_2(args, message, tmp_path, capsys):
    code, _, err = cli(capsys, *args, *(["--data-dir", str(tmp_path)] if args[0] != "models" else []))
    assert code == 2
    assert message in err and "Traceback" not in err


def test_unwritable_data_directory_is_a_clear_error(tmp_path, capsys):
    blocked = tmp_path / "file"
    blocked.write_text("not a directory")
    code, _, err = cli(capsys, "prepare", "synthetic", "--rows", "2000", "--data-dir", str(blocked / "data"))
    assert code == 2 and "error:" in err


def test_train_and_compare_tables_fit_80_and_120_columns_without_cutting_a_number(data_dir, tmp_path,
                                                                                 monkeypatch, capsys):
    where = ["--data-dir", str(data_dir), "--runs-dir", str(tmp_path / "runs"), "--epochs", "1"]
    for width in (80, 120):
        monkeypatch.setattr(cli_module, "console", Console(width=width))
        code, trained, _ = cli(capsys, "train", "dnn", *where)
        code_compared, compared, _ = cli(capsys, "compare", "--models", "dnn,shared_bottom", *where)
        assert code == code_compared == 0
        for out in (trained, compared):
            assert "…" not in out and "0.7" in out and max(map(len, out.splitlines())) <= width


def test_compare_sets_one_models_hyperparameters_and_compares_a_variant(data_dir, tmp_path, capsys):
    where = ["--data-dir", str(data_dir), "--runs-dir", str(tmp_path), "--epochs", "1", "--format", "md"]
    code, out, _ = cli(capsys, "compare", "--models", "dnn,dnn@narrow", "--set", "dnn@narrow.hidden=[8]",
                       "--set", "dnn.dropout=0.1", *where)
    assert code == 0 and "| dnn@narrow |" in out and "RelaImpr vs dnn" in out
    configs = [json.loads(path.read_text())["config"]["model"] for path in sorted(tmp_path.glob("*/metrics.json"))]
    assert sorted((c["hidden"], c["dropout"]) for c in configs) == [([8], 0.0), ([128, 64, 32], 0.1)]


@pytest.mark.parametrize("args, message", [
    (["--models", "dnn", "--set", "dnx.hidden=[8]"], ("--set dnx.hidden: 'dnx' is not among the models compared "
                                                     "(dnn) (did you mean 'dnn'?)")),
    (["--models", "dnn", "--set", "hidden=[8]"], ("training (a model's hyperparameter is set as MODEL.key) has no "
                                                 "setting 'hidden'")),
    (["--models", "dnn,dnn@a", "--set", "dnn@a.hiden=[8]"], "model dnn has no setting 'hiden'"),
    (["--models", "dnm@wide"], "unknown model 'dnm'"),
])
def test_a_bad_compare_setting_is_one_line_before_anything_trains(args, message, data_dir, tmp_path, capsys):
    code, _, err = cli(capsys, "compare", *args, "--data-dir", str(data_dir), "--runs-dir", str(tmp_path))
    assert code == 2 and message in err and not any(tmp_path.iterdir())


def test_datasets_wraps_long_names_and_paths_on_a_narrow_terminal_instead_of_cutting_them(data_dir, monkeypatch,
                                                                                          capsys):
    monkeypatch.setattr(cli_module, "console", Console(width=80))
    code, out, _ = cli(capsys, "datasets", "--data-dir", str(data_dir))
    assert code == 0 and "synthetic/" in out and "…" not in out
