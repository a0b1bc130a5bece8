"""`mscbench card init`, `card check`, `prepare NAME --card` and `datasets`, in process."""

from __future__ import annotations

import pytest
from rich.console import Console

from mscbench import cli as cli_module
from mscbench.cli import main
from mscbench.data.card import load_card

EVENTS = "".join(f"u{n % 7},i{n % 11},{int(n % 3 == 0)},{'fr' if n % 2 else 'de'},{1700000000 + 3600 * n}\n"
                 for n in range(200))


@pytest.fixture(autouse=True)
def wide_console(monkeypatch):
    monkeypatch.setattr(cli_module, "console", Console(width=200))


def cli(capsys, *args):
    code = main([str(arg) for arg in args])
    captured = capsys.readouterr()
    return code, captured.out, " ".join(captured.err.split())  # rich wraps stderr at 80 columns


def test_init_check_prepare_from_a_sniffed_file(tmp_path, capsys):
    (tmp_path / "events.csv").write_text("user_id,item_id,clicked,country,ts\n" + EVENTS)
    code, draft, _ = cli(capsys, "card", "init", tmp_path / "events.csv", "--label", "clicked",
                         "--scenario", "country")
    assert code == 0 and 'time_column = "ts"' in draft and 'positive = "== 1"' in draft
    card = tmp_path / "shop.toml"
    card.write_text(draft.replace("min_train_rows = 1000", "min_train_rows = 10"))
    parsed = load_card(card)  # the draft is a valid card as it stands
    assert parsed.features.sparse == ("user_id", "item_id") and parsed.features.user == "user_id"
    code, out, _ = cli(capsys, "card", "check", card, "--raw-dir", tmp_path)
    assert code == 0 and "label rate" in out and "200 rows, 2 scenarios" in out
    data = tmp_path / "data"
    code, out, _ = cli(capsys, "prepare", "shop", "--card", card, "--raw-dir", tmp_path, "--data-dir", data)
    assert code == 0 and "shop/default prepared" in out and "2 scenarios" in out
    code, out, _ = cli(capsys, "datasets", "--data-dir", data)
    assert code == 0 and "shop/default" in out and "movielens" in out


def test_init_sniffs_a_headerless_tab_separated_file(tmp_path, capsys):
    (tmp_path / "log.tsv").write_text(EVENTS.replace(",", "\t"))
    code, draft, _ = cli(capsys, "card", "init", tmp_path / "log.tsv", "--label", "column_3", "--scenario",
                         "column_4")
    assert code == 0 and 'separator = "\\t"' in draft and "header = false" in draft
    assert 'columns = ["column_1", "column_2", "column_3", "column_4", "column_5"]' in draft


def test_bad_input_is_one_line_and_exit_code_2(tmp_path, capsys):
    (tmp_path / "events.csv").write_text("a,b\n1,2\n")
    code, _, err = cli(capsys, "card", "init", tmp_path / "events.csv", "--label", "clicked", "--scenario", "a")
    assert code == 2 and "has no column 'clicked' for --label; its columns: a, b" in err
    code, _, err = cli(capsys, "card", "check", tmp_path / "none.toml", "--raw-dir", tmp_path)
    assert code == 2 and "does not exist" in err
    code, _, err = cli(capsys, "prepare", "movielenz", "--raw-dir", tmp_path, "--data-dir", tmp_path / "data")
    assert code == 2 and "did you mean 'movielens'" in err
