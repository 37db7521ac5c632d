"""Validation: every bad row is quarantined with its rule and reason; nothing is lost."""

import json

import pandas as pd
import pytest

from features.validate import validate_raw

NOW = pd.Timestamp("2024-01-10", tz="UTC")


def raw(rows):
    return pd.DataFrame(rows, columns=["ticker", "date", "open", "high", "low", "close",
                                       "volume", "adj_close"])


GOOD = ["aapl", "2024-01-02", 10.0, 11.0, 9.5, 10.5, 1000, 5.25]


def test_clean_rows_become_canonical_bars():
    r = validate_raw(raw([GOOD, ["AAPL", "2024-01-03", 10.5, 10.8, 10.1, 10.2, 0, 5.1]]),
                     source="t", run_id="r", now=NOW)
    assert r.rows_quarantined == 0
    assert list(r.bars["ticker"]) == ["AAPL", "AAPL"]
    assert str(r.bars["ts"].dt.tz) == "UTC"
    assert r.bars["adj_factor"].iloc[0] == pytest.approx(0.5)


@pytest.mark.parametrize("row, rule, words", [
    (["AAPL", "not-a-date", 10, 11, 9, 10, 5, None], "schema", "not a date"),
    (["AAPL", "2024-01-03", "ten", 11, 9, 10, 5, None], "schema", "open 'ten'"),
    (["", "2024-01-03", 10, 11, 9, 10, 5, None], "schema", "ticker is empty"),
    (["AAPL", "2024-01-03", 10, 11, 9, 0, 5, None], "non_positive_price", "close=0"),
    (["AAPL", "2024-01-03", 10, 9.9, 9, 10, 5, None], "ohlc_consistency", "high=9.9"),
    (["AAPL", "2024-01-03", 10, 11, 10.5, 10.2, 5, None], "ohlc_consistency", "low=10.5"),
    (["AAPL", "2024-01-03", 10, 11, 9, 10, -1, None], "negative_volume", "-1"),
    (["AAPL", "2024-01-03", 10, 11, 9, 10, 5, -3], "bad_adj_close", "-3"),
    (["AAPL", "2030-01-03", 10, 11, 9, 10, 5, None], "future_date", "after ingestion"),
])
def test_bad_row_is_quarantined_with_reason(row, rule, words):
    r = validate_raw(raw([GOOD, row]), source="src", run_id="run-1", now=NOW)
    assert r.rows_ok == 1 and r.rows_quarantined == 1
    q = r.quarantine.iloc[0]
    assert q["rule"] == rule
    assert words in q["reason"]
    assert q["row_number"] == 1 and q["source"] == "src" and q["run_id"] == "run-1"
    # the original values survive, as text
    assert json.loads(q["raw"])["date"] == str(row[1])
    assert r.by_rule == {rule: 1}


def test_duplicates_keep_first_and_quarantine_the_rest():
    second = list(GOOD)
    second[5] = 10.7
    r = validate_raw(raw([GOOD, second, GOOD]), source="s", run_id="r", now=NOW)
    assert r.rows_ok == 1 and r.rows_quarantined == 2
    assert set(r.quarantine["rule"]) == {"duplicate"}
    assert "row 0" in r.quarantine["reason"].iloc[0]
    assert r.bars["close"].iloc[0] == 10.5


def test_unsorted_input_is_sorted_and_counted():
    rows = [["X", f"2024-01-0{d}", 10, 11, 9, 10, 1, None] for d in (5, 3, 4, 2)]
    r = validate_raw(raw(rows), source="s", run_id="r", now=NOW)
    assert r.rows_quarantined == 0
    assert r.unsorted_rows == 2
    assert r.bars["ts"].is_monotonic_increasing


def test_counts_always_add_up_on_messy_input():
    rows = [GOOD, ["AAPL", None, None, None, None, None, None, None],
            ["MSFT", "2024-01-02", 1, 2, 0.5, 1.5, 10, "x"]]
    r = validate_raw(raw(rows), source="s", run_id="r", now=NOW)
    assert r.rows_ok + r.rows_quarantined == 3
    assert r.rows_ok == 1
