"""Provider adapters and ``fetch`` against a local replay server in each provider's format:
split/dividend adjustment, incremental fetch, quarantine of bad rows and bodies, graceful
degradation, the cross-check, FRED first releases, the generic CSV source and the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from features.lake import read_bars
from features.macro import join_macro
from features.providers import fred
from features.providers.config import ProviderSettings
from features.providers.fetch import FetchConfig, check_config, describe, run_fetch
from features.providers.source import drop_unfinished
from features.providers.yahoo import parse_chart
from tests.provider_replay import ReplayServer, Reply, fixture, yahoo_window

CHART = "/v8/finance/chart/AAPL"


def _ps(srv: ReplayServer, **kw) -> ProviderSettings:
    fast = "1000/second"
    base = {"yahoo_url": srv.url, "alphavantage_url": srv.url, "fred_url": srv.url,
            "alphavantage_api_key": "av-s3cr3t", "fred_api_key": "fred-s3cr3t", "retries": 1,
            "backoff_s": 0.01, "backoff_max_s": 1.0, "timeout_s": 2.0, "yahoo_rate": fast,
            "alphavantage_rate": fast, "fred_rate": fast, "http_source_rate": fast}
    return ProviderSettings(**{**base, **kw})


def _av(query: dict) -> Reply:
    return Reply(200, fixture("alphavantage_daily_AAPL.json"))


def test_yahoo_unadjusts_splits_and_keeps_adjclose():
    frame, events = parse_chart(fixture("yahoo_chart_AAPL.json"), "AAPL")
    assert events == {"2020-08-07", "2020-08-31"}
    row = frame.set_index("date")
    av = fixture("alphavantage_daily_AAPL.json")["Time Series (Daily)"]
    # Before the 4:1 split Yahoo's close is divided by 4; we store it as traded again.
    for day in ("2020-08-07", "2020-08-28", "2020-08-31"):
        assert row.at[day, "close"] == pytest.approx(float(av[day]["4. close"]), abs=0.006)
        assert row.at[day, "volume"] == pytest.approx(float(av[day]["6. volume"]), abs=2)
        assert row.at[day, "adj_close"] == pytest.approx(float(av[day]["5. adjusted close"]),
                                                         abs=0.0001)


def test_bars_of_unfinished_sessions_are_not_stored():
    frame = pd.DataFrame({"date": ["2024-03-07", "2024-03-08", "junk"]})
    # 16:00 New York on 2024-03-08 = 21:00 UTC (EST); the bar settles at 21:15 UTC.
    assert drop_unfinished(frame, pd.Timestamp("2024-03-08 21:10", tz="UTC"))["date"].tolist() \
        == ["2024-03-07", "junk"]
    assert len(drop_unfinished(frame, pd.Timestamp("2024-03-08 21:15", tz="UTC"))) == 3
    intraday = pd.DataFrame({"date": ["2024-03-08 14:30:00+00:00", "2024-03-08 14:35:00+00:00"]})
    kept = drop_unfinished(intraday, pd.Timestamp("2024-03-08 14:39", tz="UTC"),
                           pd.Timedelta("5min"))
    assert kept["date"].tolist() == ["2024-03-08 14:30:00+00:00"]


def test_fetch_yahoo_then_incremental_asks_only_for_new_bars_and_refetches_on_a_split(settings):
    doc = fixture("yahoo_chart_AAPL.json")
    with ReplayServer() as srv:
        srv.route(CHART, yahoo_window(doc, "2020-08-14"))
        r1 = run_fetch(FetchConfig("yahoo", ("AAPL",)), settings, _ps(srv))
        assert r1.ok and r1.since["AAPL"] is None
        assert srv.requests(CHART)[0].query["period1"] == "0"
        assert len(read_bars(settings.bars_dir)) == 10

        srv.route(CHART, yahoo_window(doc, "2020-08-28"))
        r2 = run_fetch(FetchConfig("yahoo", ("AAPL",)), settings, _ps(srv))
        q = srv.requests(CHART)[-1].query
        assert int(q["period1"]) == int(pd.Timestamp("2020-08-15", tz="UTC").timestamp())
        assert r2.ingest["rows_ok"] == 10 and not r2.refetched and r2.http_calls == 1
        assert len(read_bars(settings.bars_dir)) == 20

        # The new window holds the 4:1 split: every stored bar's adj_factor changes, so the
        # whole stored history is fetched again (a second request from the first stored day).
        srv.route(CHART, yahoo_window(doc))
        r3 = run_fetch(FetchConfig("yahoo", ("AAPL",)), settings, _ps(srv))
        assert r3.refetched == ["AAPL"] and r3.http_calls == 2
        assert int(srv.requests(CHART)[-1].query["period1"]) == int(
            pd.Timestamp("2020-08-03", tz="UTC").timestamp())
    bars = read_bars(settings.bars_dir).set_index("ts")
    assert len(bars) == 25 and (bars["source"] == "yahoo:AAPL").all()
    d = pd.Timestamp("2020-08-28", tz="UTC")
    assert bars.at[d, "close"] == pytest.approx(484.24, abs=0.01)  # as traded, pre-split
    assert bars.at[d, "close"] * bars.at[d, "adj_factor"] == pytest.approx(121.06, abs=1e-3)
    adj = bars["close"] * bars["adj_factor"]
    assert np.all(np.abs(np.diff(np.log(adj.to_numpy()))) < 0.15)  # no split jump adjusted


def test_nothing_new_is_not_an_error(settings):
    doc = fixture("yahoo_chart_AAPL.json")
    empty = {"chart": {"result": [{"meta": doc["chart"]["result"][0]["meta"],
                                   "indicators": {"quote": [{}], "adjclose": [{}]}}],
                       "error": None}}
    with ReplayServer() as srv:
        srv.route(CHART, yahoo_window(doc))
        run_fetch(FetchConfig("yahoo", ("AAPL",)), settings, _ps(srv))
        srv.route(CHART, Reply(200, empty))
        rep = run_fetch(FetchConfig("yahoo", ("AAPL",)), settings, _ps(srv))
        assert rep.ok
        assert rep.ingest["sources"]["yahoo:AAPL"]["rows_in"] == 0
        srv.route("/fred/series/observations", Reply(200, {"observations": []}))
        fr = run_fetch(FetchConfig("fred", ("AAA",)), settings, _ps(srv))
        assert fr.ok and fr.macro_rows == {}
    assert len(read_bars(settings.bars_dir)) == 25


def test_yahoo_nulls_are_quarantined_and_a_malformed_body_is_kept_not_fatal(settings):
    doc = fixture("yahoo_chart_AAPL.json")
    doc["chart"]["result"][0]["indicators"]["quote"][0]["close"][3] = None
    with ReplayServer() as srv:
        srv.route(CHART, Reply(200, doc))
        srv.route("/v8/finance/chart/MSFT", Reply(200, "<html>Oops</html>",
                                                  content_type="text/html"))
        srv.route("/v8/finance/chart/ZZZZ", Reply(404, {"chart": {"result": None, "error": {
            "code": "Not Found", "description": "No data found, symbol may be delisted"}}}))
        rep = run_fetch(FetchConfig("yahoo", ("AAPL", "MSFT", "ZZZZ")), settings, _ps(srv))
    assert rep.ingest["sources"]["yahoo:AAPL"]["by_rule"] == {"schema": 1}
    assert set(rep.failed) == {"yahoo:MSFT", "yahoo:ZZZZ"}
    assert "MalformedResponse" in rep.failed["yahoo:MSFT"] and "404" in rep.failed["yahoo:ZZZZ"]
    kept = list((settings.quarantine_dir / "responses").glob("*-yahoo-MSFT.json"))
    assert kept and kept[0].read_bytes() == b"<html>Oops</html>"
    q = pd.read_parquet(rep.ingest["quarantine_file"])
    assert q["reason"].str.contains("close").all()
    assert len(read_bars(settings.bars_dir)) == 24


def test_provider_down_keeps_the_lake_and_opens_the_circuit(settings):
    doc = fixture("yahoo_chart_AAPL.json")
    tickers = ("AAPL", "MSFT", "IBM", "GOOG")
    with ReplayServer() as srv:
        srv.route(CHART, yahoo_window(doc, "2020-08-14"))
        run_fetch(FetchConfig("yahoo", ("AAPL",)), settings, _ps(srv))
        before = read_bars(settings.bars_dir)
        for t in tickers:
            srv.route(f"/v8/finance/chart/{t}", Reply(503, b"Service Unavailable"))
        n0 = len(srv.seen)
        rep = run_fetch(FetchConfig("yahoo", tickers), settings,
                        _ps(srv, breaker_fail_max=2, retries=1))
        sent = len(srv.seen) - n0
    assert not rep.ok and set(rep.failed) == {f"yahoo:{t}" for t in tickers}
    assert "CircuitOpen" in rep.failed["yahoo:IBM"] and "CircuitOpen" in rep.failed["yahoo:GOOG"]
    assert sent == 4  # two tickers x 2 attempts, then the provider is left alone
    pd.testing.assert_frame_equal(read_bars(settings.bars_dir), before)
    assert rep.last_bar["AAPL"].startswith("2020-08-14")  # the staleness is visible
    assert "FAILED" in describe(rep)


def test_alpha_vantage_daily_adjusted_throttle_and_key_never_printed(settings):
    with ReplayServer() as srv:
        srv.route("/query", Reply(200, {"Note": "Thank you for using Alpha Vantage! Our "
                                                "standard API call frequency is 5 calls per "
                                                "minute and 500 calls per day."}), _av)
        rep = run_fetch(FetchConfig("alphavantage", ("AAPL",)), settings, _ps(srv))
        q = srv.requests("/query")[-1].query
    assert rep.ok and rep.http_calls == 2
    assert q["function"] == "TIME_SERIES_DAILY_ADJUSTED" and q["outputsize"] == "full"
    bars = read_bars(settings.bars_dir).set_index("ts")
    d = pd.Timestamp("2020-08-07", tz="UTC")
    assert bars.at[d, "close"] == 431.10
    assert bars.at[d, "adj_factor"] == pytest.approx(107.775 / 431.10, rel=1e-9)
    text = describe(rep) + json.dumps(rep.to_dict(), default=str)
    assert "av-s3cr3t" not in text
    # Alpha Vantage repeats old sessions (and their events) in every answer: events the
    # stored bars already reflect do not trigger a full refetch.
    with ReplayServer() as srv:
        srv.route("/query", _av)
        again = run_fetch(FetchConfig("alphavantage", ("AAPL",)), settings, _ps(srv))
    assert again.ok and not again.refetched and again.http_calls == 1
    assert again.since["AAPL"] == "2020-09-05" and again.ingest["rows_ok"] == 0


def test_malformed_alpha_vantage_and_fred_bodies_are_kept_and_reported(settings):
    with ReplayServer() as srv:
        srv.route("/query", Reply(200, {"Meta Data": {}, "Time Series (Daily)": "garbage"}))
        srv.route("/fred/series/observations", Reply(200, {"observations": {"date": "x"}}))
        av = run_fetch(FetchConfig("alphavantage", ("AAPL",)), settings, _ps(srv))
        fr = run_fetch(FetchConfig("fred", ("AAA",)), settings, _ps(srv))
    assert "MalformedResponse" in av.failed["alphavantage:AAPL"]
    assert "MalformedResponse" in fr.failed["AAA"]
    kept = {p.name.split("-")[-2] + "-" + p.name.split("-")[-1]
            for p in (settings.quarantine_dir / "responses").iterdir()}
    assert kept == {"alphavantage-AAPL.json", "fred-AAA.json"}
    assert not settings.bars_dir.exists()


def test_alpha_vantage_intraday_goes_to_its_own_lake(settings):
    with ReplayServer() as srv:
        srv.route("/query", Reply(200, fixture("alphavantage_intraday_AAPL_5min.json")))
        rep = run_fetch(FetchConfig("alphavantage", ("AAPL",), interval="5min"), settings,
                        _ps(srv))
        q = srv.requests("/query")[-1].query
    assert rep.ok and q["function"] == "TIME_SERIES_INTRADAY" and q["interval"] == "5min"
    bars = read_bars(settings.lake_dir / "bars_5min")
    assert len(bars) == 12 and not settings.bars_dir.exists()
    # US/Eastern wall clock -> UTC: a 09:30 New York bar is 13:30 UTC in summer.
    assert bars["ts"].iloc[0].hour == 13 and bars["ts"].iloc[0].minute == 30


def test_cross_check_flags_disagreements(settings):
    bad = fixture("alphavantage_daily_AAPL.json")
    day = bad["Time Series (Daily)"]["2020-08-20"]
    day["4. close"], day["5. adjusted close"] = "452.0000", "113.0000"  # 1.5 % off, OHLC-valid
    del bad["Time Series (Daily)"]["2020-08-21"]
    with ReplayServer() as srv:
        srv.route(CHART, yahoo_window(fixture("yahoo_chart_AAPL.json")))
        srv.route("/query", _av)
        ok = run_fetch(FetchConfig("yahoo", ("AAPL",), cross_check="alphavantage"), settings,
                       _ps(srv))
        assert ok.crosscheck["disagreements"] == 0
        assert ok.crosscheck["tickers"]["AAPL"]["common"] == 25
        srv.route("/query", Reply(200, bad))
        rep = run_fetch(FetchConfig("yahoo", ("AAPL",), since="2020-08-03",
                                    cross_check="alphavantage"), settings, _ps(srv))
    t = rep.crosscheck["tickers"]["AAPL"]
    assert {(d["ts"], d["field"]) for d in t["disagreements"]} == {
        ("2020-08-20", "close"), ("2020-08-20", "adj_close")}
    assert t["only_a"] == ["AAPL 2020-08-21"]
    saved = json.loads(Path(rep.crosscheck_file).read_text())
    assert "data_quality" in rep.crosscheck_file and saved["disagreements"] == 2


def test_fred_keeps_first_releases_quarantines_missing_and_fetches_incrementally(settings):
    with ReplayServer() as srv:
        path = "/fred/series/observations"
        srv.route(path, lambda q: Reply(200, fixture(f"fred_{q['series_id']}.json")))
        rep = run_fetch(FetchConfig("fred", ("CPILFESL", "AAA", "BAA")), settings, _ps(srv))
        first = srv.requests(path)[0].query
        assert first["realtime_start"] == "1776-07-04" and first["realtime_end"] == "9999-12-31"
        assert rep.ok and rep.macro_rows == {"CPILFESL": 4, "AAA": 4, "BAA": 4}
        run_fetch(FetchConfig("fred", ("CPILFESL",)), settings, _ps(srv))
        assert srv.requests(path)[-1].query["observation_start"] == "2023-12-02"
    cpi = fred.read_observations(settings.lake_dir / "macro", "CPILFESL").set_index("date")
    oct_ = pd.Timestamp("2023-10-01", tz="UTC")
    assert cpi.at[oct_, "value"] == 309.853  # as first published, not the revision
    assert cpi.at[oct_, "release_ts"] == pd.Timestamp("2023-11-14", tz="UTC")
    dec = pd.Timestamp("2023-12-01", tz="UTC")
    assert cpi.at[dec, "release_ts"] == pd.Timestamp("2024-01-12", tz="UTC")  # "." skipped
    q = pd.concat(pd.read_parquet(p) for p in settings.quarantine_dir.glob("*.parquet"))
    assert q["rule"].tolist() == ["missing_value"]
    rel = fred.releases_from_lake(settings.lake_dir / "macro")
    spread = rel["default"].set_index("release_ts")["default_spread"]
    assert spread.index.min() == pd.Timestamp("2023-10-02", tz="UTC")  # known from release
    assert spread.iloc[0] == pytest.approx(6.16 - 4.99)
    # The tables plug into the pipeline's point-in-time join (features.macro.join_macro).
    ts = pd.to_datetime(["2023-10-01", "2023-10-02", "2023-11-13", "2023-11-14"], utc=True)
    joined = join_macro(pd.DataFrame({"ts": ts}), rel)
    assert np.isnan(joined["default_spread"].iloc[0])  # September's yields not yet published
    assert joined["default_spread"].iloc[1] == pytest.approx(6.16 - 4.99)
    assert joined["core_cpi_3m_ann"].isna().all()  # needs 4 months of CPI; only 3 released


def test_generic_csv_source_quarantines_bad_cells(settings, monkeypatch):
    csv = fixture("generic_AAPL.csv").splitlines()
    csv[3] = csv[3].replace(csv[3].split(",")[4], "n/a", 1)
    with ReplayServer() as srv:
        srv.route("/bars/AAPL.csv", Reply(200, "\n".join(csv), content_type="text/csv"))
        ps = _ps(srv, http_source_url=srv.url + "/bars/{ticker}.csv?start={since}")
        rep = run_fetch(FetchConfig("http", ("AAPL",)), settings, ps)
    s = rep.ingest["sources"]["http:AAPL"]
    assert s["rows_ok"] == 24 and s["by_rule"] == {"schema": 1}
    bars = read_bars(settings.bars_dir).set_index("ts")
    assert bars["adj_factor"].iloc[0] == pytest.approx(105.281432 / 421.91)


def test_bad_requests_are_refused_before_any_call(settings):
    bad = [FetchConfig("bloomberg", ("AAPL",)), FetchConfig("yahoo", ("../etc",)),
           FetchConfig("yahoo", ("AAPL",), interval="7min"),
           FetchConfig("yahoo", ("AAPL",), cross_check="yahoo")]
    for cfg in bad:
        with pytest.raises(ValueError):
            run_fetch(cfg, settings)
    check_config(FetchConfig("yahoo", ("BRK-B", "^GSPC", "RDS.A", "EURUSD=X")))


def test_cli_fetch_reads_urls_and_keys_from_env(settings, monkeypatch):
    from ray_apps.cli import app

    with ReplayServer() as srv:
        srv.route(CHART, yahoo_window(fixture("yahoo_chart_AAPL.json")))
        monkeypatch.setenv("STOCKRAY_YAHOO_URL", srv.url)
        monkeypatch.setenv("STOCKRAY_YAHOO_RATE", "1000/second")
        res = CliRunner().invoke(app, ["--data-dir", str(settings.data_dir), "fetch",
                                       "--provider", "yahoo", "--tickers", "aapl"])
        assert res.exit_code == 0, res.output
        assert "25 stored" in res.output
        srv.route(CHART, Reply(500, b"x"))
        monkeypatch.setenv("STOCKRAY_RETRIES", "0")
        res = CliRunner().invoke(app, ["--data-dir", str(settings.data_dir), "fetch",
                                       "--provider", "yahoo", "--tickers", "AAPL",
                                       "--since", "2020-09-01"])
        assert res.exit_code == 1 and "FAILED" in res.output
        monkeypatch.delenv("STOCKRAY_ALPHAVANTAGE_API_KEY", raising=False)
        res = CliRunner().invoke(app, ["--data-dir", str(settings.data_dir), "fetch",
                                       "--provider", "alphavantage", "--tickers", "AAPL"])
        assert res.exit_code == 2 and "STOCKRAY_ALPHAVANTAGE_API_KEY" in res.output
