"""The command line end to end, in process: commands that work, and bad input that gets one clear line."""

import pytest
from rich.console import Console

from mscbench import cli as cli_module
from mscbench.cli import main


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


def test_models_lists_the_zoo_and_shows_one(capsys):
    code, out, _ = cli(capsys, "models")
    assert code == 0 and "shared_bottom" in out
    code, out, _ = cli(capsys, "models", "dnn")
    assert code == 0 and "hidden" in out and "MLP layer widths" in out


@pytest.mark.parametrize("args, message", [
    (["models", "dnm"], "unknown model 'dnm' (did you mean 'dnn'?)"),
    (["train", "dnn", "--dataset", "nothing"], "dataset 'nothing' is not prepared"),
    (["train", "dnn", "--set", "hiden=[8]"], "no setting 'hiden'"),
    (["prepare", "alimamma"], "unknown dataset 'alimamma'"),
    (["compare", "--models", "dnn", "--seeds", "a"], "--seeds takes integers"),
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
