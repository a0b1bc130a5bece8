"""What a reader of a table sees: on a terminal of 80 or 120 columns every number whole, column names that say
what they compute, and a note when the label rate shifts between training and test."""

import io
import math

import pytest
from rich.console import Console

from mscbench.results.record import OVERALL
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
        for cell in [row[2], *row[7::2]]:
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


def test_the_oracle_column_is_named_for_what_it_computes():
    compared = comparison()
    table = layout(compared, "model")
    column = table.header.index("Share of oracle lift")
    row = compared.rows[1]
    assert float(table.rows[1][column].split(" ±")[0]) == pytest.approx(
        (row.scope_auc(OVERALL).mean - 0.5) / (compared.oracle_auc[OVERALL] - 0.5), abs=5e-4)
    assert "Share of oracle lift: (AUC - 0.5) / (oracle AUC - 0.5)." in table.caption


def test_a_shifted_label_rate_gets_a_note_with_a_constant_predictors_logloss():
    test_rate = comparison().test_positives[OVERALL] / comparison().test_rows[OVERALL]
    constant = -(test_rate * math.log(0.7) + (1 - test_rate) * math.log(0.3))
    for by in ORIENTATIONS:
        caption = layout(comparison(train_label_rate=0.7), by).caption
        assert (f"Positives: 70.0% of the training rows, {test_rate:.1%} of the test rows; LogLoss is dominated "
                f"by that shift (predicting 70.0% for every test row scores {constant:.4f}).") in caption
    assert "Positives:" not in layout(comparison(train_label_rate=test_rate * 1.05), "model").caption
