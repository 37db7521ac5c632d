"""``--macro fred``: the macro family from the lake's FRED first releases, joined by the day
FRED first published each value (realtime_start), opt-in; missing series fail loudly."""

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from features.intraday import DailyHistory
from features.macro import MACRO_FEATURES
from features.pipeline import build_features_local
from features.providers import fred
from features.sources import MARKET_TICKER
from ray_apps.cli import app
from tests.unit.test_pipeline import synthetic_bars


def _write_fred(macro_dir, months=20):
    """First releases of CPILFESL, AAA and BAA: month M published on M+1 day 13 (CPI) or day
    3 (yields); a later vintage of each value is revised by +1 (must never be used)."""
    rng = np.random.default_rng(0)
    dates = pd.date_range("2009-01-01", periods=months, freq="MS", tz="UTC")
    raw = []
    for sid, day, base in (("CPILFESL", 13, 220.0), ("AAA", 3, 5.0), ("BAA", 3, 7.0)):
        vals = base + np.cumsum(rng.normal(0, 0.1, months))
        for d, v in zip(dates, vals, strict=True):
            first = d + pd.offsets.MonthBegin(1) + pd.Timedelta(days=day - 1)
            raw.append({"series_id": sid, "date": d.strftime("%Y-%m-%d"), "value": f"{v:.4f}",
                        "realtime_start": first.strftime("%Y-%m-%d"),
                        "realtime_end": "9999-12-31"})
            raw.append({"series_id": sid, "date": d.strftime("%Y-%m-%d"),
                        "value": f"{v + 1:.4f}",
                        "realtime_start": (first + pd.Timedelta(days=40)).strftime("%Y-%m-%d"),
                        "realtime_end": "9999-12-31"})
    good, bad = fred.first_releases(pd.DataFrame(raw), source="test", run_id="t")
    assert bad.empty
    fred.write_observations(good, macro_dir)
    return good


def test_fred_option_joins_first_releases_by_release_date(tmp_path):
    obs = _write_fred(tmp_path / "lake" / "macro")
    tables = fred.resolve_macro("fred", tmp_path / "lake")
    bars = pd.concat([synthetic_bars("AAA", n=300, start="2009-06-01"),
                      synthetic_bars(MARKET_TICKER, n=300, seed=9, start="2009-06-01")])
    frame = build_features_local(bars, macro=tables).set_index("ts")
    aaa = obs[obs["series_id"] == "AAA"].set_index("date")
    baa = obs[obs["series_id"] == "BAA"].set_index("date")
    may = pd.Timestamp("2010-05-01", tz="UTC")
    rel = aaa.at[may, "release_ts"]  # 2010-06-03
    before = frame.loc[rel - pd.Timedelta(days=1), "default_spread"]
    on = frame.loc[rel, "default_spread"]
    assert on == pytest.approx(baa.at[may, "value"] - aaa.at[may, "value"])  # first release
    apr = pd.Timestamp("2010-04-01", tz="UTC")
    assert before == pytest.approx(baa.at[apr, "value"] - aaa.at[apr, "value"])  # not yet May
    # the arch default gives other numbers for the same dates (a different source)
    arch = build_features_local(bars).set_index("ts")
    assert arch.loc[rel, "default_spread"] != pytest.approx(on)
    assert set(MACRO_FEATURES) <= set(frame.columns)


def test_fred_option_fails_loudly_without_stored_series(tmp_path):
    with pytest.raises(FileNotFoundError, match="stockray fetch --provider fred"):
        fred.resolve_macro("fred", tmp_path / "lake")
    _write_fred(tmp_path / "lake" / "macro")
    (tmp_path / "lake" / "macro" / "series=BAA" / "observations.parquet").unlink()
    with pytest.raises(FileNotFoundError, match="BAA"):
        fred.resolve_macro("fred", tmp_path / "lake")
    with pytest.raises(ValueError, match="arch"):
        fred.resolve_macro("fredd", tmp_path / "lake")
    assert fred.resolve_macro("arch", tmp_path) == "arch"
    assert fred.resolve_macro("none", tmp_path) is None
    # the stream's daily-row refresh takes the same choice
    with pytest.raises(FileNotFoundError):
        DailyHistory(tmp_path / "lake" / "bars", macro="fred")


def test_features_cli_refuses_fred_without_data(tmp_path):
    res = CliRunner().invoke(app, ["--data-dir", str(tmp_path / "d"), "features",
                                   "--macro", "fred"])
    assert res.exit_code == 2
    assert "stockray fetch --provider fred" in res.output
