"""Tables on a terminal of 80 or 120 columns: whatever the orientation asked, every number is printed whole."""

import io

import pytest
from rich.console import Console

from mscbench.results.report import ORIENTATIONS, fitted_tables, layout
from tests.test_report import comparison


def shown(tables, width: int) -> str:
    console = Console(width=width, file=io.StringIO(), record=True)
    for table in tables:
        console.print(table)
    return console.export_text()


@pytest.mark.parametrize("width", [80, 120])
@pytest.mark.parametrize("by", ORIENTATIONS)
@pytest.mark.parametrize("bootstrap_rounds", [0, 50])
def test_every_number_is_whole_and_every_line_fits(width, by, bootstrap_rounds):
    compared = comparison(bootstrap_rounds=bootstrap_rounds)
    text = shown(fitted_tables(compared, by, width), width)
    assert "…" not in text and max(map(len, text.splitlines())) <= width
    for row in layout(compared, "model").rows[:len(compared.rows)]:  # every AUC, overall and per scenario
        for cell in [row[1], *row[6::2]]:
            assert cell in text


def test_a_table_that_fits_is_drawn_once_in_the_orientation_asked():
    compared = comparison()
    for by in ORIENTATIONS:
        (table,) = fitted_tables(compared, by, 400)
        assert [column.header for column in table.columns] == layout(compared, by).header


def test_a_table_too_wide_for_either_orientation_is_cut_into_blocks_of_whole_columns():
    compared = comparison(bootstrap_rounds=50)
    tables = fitted_tables(compared, "model", 80)
    names = {table.columns[0].header for table in tables}
    assert len(tables) > 1 and len(names) == 1  # every block starts with the row names
    headers = [column.header for table in tables for column in table.columns]
    whole = layout(compared, "scenario" if names == {"Scenario"} else "model").header
    assert [h for h in headers if h not in names] == whole[1:]  # each column once, in order
    assert tables[0].title and not any(table.title for table in tables[1:])  # the caption once


def test_the_caption_is_text_not_markup():
    (table, *_) = fitted_tables(comparison(bootstrap_rounds=50), "scenario", 400)
    assert "[low, high]: 95% percentile bootstrap interval" in shown([table], 400)
