import math

from stage_io.report_format import (
    bounds,
    cell,
    interval,
    interval_or_value,
    number,
    significant,
    stat,
    table,
    with_stderr,
)


def test_numbers_are_fixed_decimals_and_missing_ones_are_named():
    assert number(0.40123) == "0.401"
    assert number(2, digits=2) == "2.00"
    assert number(None) == "n/a"
    assert number(None, missing="not measured") == "not measured"
    assert number(0.04, sign=True) == "+0.040" and number(-0.04, sign=True) == "-0.040"


def test_cells_keep_counts_and_names_as_they_print():
    assert cell(0.5) == "0.500" and cell(12) == "12" and cell("topic") == "topic" and cell(None) == "n/a"


def test_significant_digits_keep_nan_and_inf_visible():
    assert significant(1234.5678) == "1235" and significant(1.5e-9) == "1.5e-09"
    assert significant(math.nan) == "nan" and significant(-math.inf) == "-inf" and significant(None) == "n/a"


def test_intervals_in_the_report_style():
    assert interval(0.4, 0.17, 0.61, sign=True) == "+0.400 [+0.170, +0.610]"
    assert interval(0.4, None, 0.61) == "0.400 [n/a, 0.610]"
    assert interval(None, 0.1, 0.2) == "n/a"
    assert bounds(0.1, 0.2) == "[0.100, 0.200]"
    assert interval_or_value(1.5, None) == "1.500" and interval_or_value(1.5, [1.0, 2.0]) == "1.500 [1.000, 2.000]"


def test_statistic_entries_read_mean_or_value():
    assert stat({"mean": 0.5, "ci_low": 0.4, "ci_high": 0.6}) == "0.500 [0.400, 0.600]"
    assert stat({"value": 0.5, "ci_low": None, "ci_high": None}) == "0.500 [n/a, n/a]"
    assert stat({"mean": None}) == "n/a" and stat(None) == "n/a"
    assert with_stderr({"value": 0.61, "stderr": 0.02}) == "0.610 ± 0.020"
    assert with_stderr({"value": 0.61, "stderr": None}) == "0.610" and with_stderr({"value": None}) == "n/a"


def test_tables_have_a_header_rule_and_one_line_per_row():
    assert table(["arm", "value", "n"], [("plain", "0.500", 3), ("anchored", "", 4)]) == [
        "| arm | value | n |",
        "|---|---|---|",
        "| plain | 0.500 | 3 |",
        "| anchored | | 4 |",
    ]
    assert table(["key", "value"], [], spaced=True) == ["| key | value |", "| --- | --- |"]
