"""The command line: every subcommand the README names exists and helps; ingest reports
quarantined rows."""

import re
from pathlib import Path

import pandas as pd
from typer.testing import CliRunner

from ray_apps.cli import app

README = Path(__file__).resolve().parents[2] / "README.md"


def test_every_subcommand_in_readme_exists_and_has_help():
    text = README.read_text()
    code = re.findall(r"```.*?```", text, re.DOTALL) + re.findall(r"`[^`\n]+`", text)
    named = set(re.findall(r"stockray (?:--[\w-]+ \S+ )*([a-z][\w-]+)", "\n".join(code)))
    runner = CliRunner()
    top = runner.invoke(app, ["--help"])
    assert top.exit_code == 0
    assert {"up", "ingest", "features", "train", "serve", "predict"} <= named
    for cmd in sorted(named):
        res = runner.invoke(app, [cmd, "--help"])
        assert res.exit_code == 0, (cmd, res.output)
        assert "Usage" in res.output


def test_ingest_file_reports_and_quarantines_bad_rows(tmp_path):
    f = tmp_path / "p.csv"
    f.write_text("date,ticker,open,high,low,close,volume\n"
                 "2024-01-02,acme,10,11,9,10.5,100\n"
                 "2024-01-03,acme,10,9,9.5,10.5,100\n"
                 "2024-01-04,acme,10,11,9,oops,100\n")
    res = CliRunner().invoke(app, ["--data-dir", str(tmp_path / "d"), "ingest", "--file", str(f)])
    assert res.exit_code == 0, res.output
    assert "3 rows in" in res.output and "1 stored" in res.output
    assert "2 quarantined" in res.output
    q = CliRunner().invoke(app, ["--data-dir", str(tmp_path / "d"), "quarantine"])
    assert "ohlc_consistency" in q.output and "'oops' is not a number" in q.output
    bars = pd.read_parquet(tmp_path / "d" / "lake" / "bars" / "ticker=ACME" / "bars.parquet")
    assert len(bars) == 1


def test_ingest_of_unreadable_file_exits_nonzero_with_reason(tmp_path):
    f = tmp_path / "x.csv"
    f.write_text("a,b\n1,2\n")
    res = CliRunner().invoke(app, ["--data-dir", str(tmp_path / "d"), "ingest", "--file", str(f),
                                   "--ticker", "X"])
    assert res.exit_code == 1
    assert "missing column" in res.output


def test_predict_without_a_server_says_what_to_do():
    res = CliRunner().invoke(app, ["predict", "AAPL", "--target", "127.0.0.1:1",
                                   "--timeout", "2"])
    assert res.exit_code == 2
    assert "stockray up" in res.output
