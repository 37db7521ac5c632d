"""Text adapters against the local replay server, in each provider's wire format: NewsAPI,
GDELT DOC 2.0, SEC EDGAR, RSS/Atom and the local file; 429/500/timeouts/malformed bodies;
ticker linking; validation, quarantine and dedupe into the lake's news table; the CLI."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from features.providers.config import ProviderSettings
from features.settings import Settings
from features.text import sample
from features.text.edgar import check_user_agent, html_text
from features.text.fetch import SAMPLE_NEWS, NewsFetchConfig, NewsSettings, run_news_fetch
from features.text.linking import TickerLinker
from features.text.records import raw_frame, read_news, validate_news, write_news
from tests.provider_replay import ReplayServer, Reply

FX = Path(__file__).parents[1] / "fixtures" / "text"
NOW = pd.Timestamp("2024-02-05 12:00", tz="UTC")


def _fx(name: str):
    text = (FX / name).read_text()
    return json.loads(text) if name.endswith(".json") else text


def _ps(**kw) -> ProviderSettings:
    base = {"retries": 2, "backoff_s": 0.01, "backoff_max_s": 0.2, "timeout_s": 0.5,
            "breaker_fail_max": 5}
    return ProviderSettings(**{**base, **kw})


def _ns(srv: ReplayServer, **kw) -> NewsSettings:
    fast = "1000/second"
    base = {"newsapi_url": srv.url, "gdelt_url": srv.url, "edgar_data_url": srv.url,
            "edgar_archive_url": srv.url, "newsapi_api_key": "news-s3cr3t",
            "edgar_user_agent": "Stockray Tests tests@example.com", "newsapi_rate": fast,
            "gdelt_rate": fast, "rss_rate": fast, "edgar_rate": fast}
    return NewsSettings(**{**base, **kw})


def _settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path / "data")


def _quarantine(settings: Settings) -> pd.DataFrame:
    parts = list(settings.resolved().quarantine_dir.glob("*.parquet"))
    return pd.concat([pd.read_parquet(p) for p in parts]) if parts else pd.DataFrame()


def test_linker_symbols_cashtags_names_and_no_false_friends():
    lk = TickerLinker.from_csv()
    assert lk.link("$AAPL and MSFT lead a tech rebound") == ["AAPL", "MSFT"]
    assert lk.link("Google parent Alphabet reports") == ["GOOG"]
    assert lk.link("International Business Machines missed") == ["IBM"]
    # lower-case fruit, a price, an unknown cashtag, a symbol inside a word: nothing.
    assert lk.link("an apple a day costs $5; $ZZZZ rallies; AAPLX fund") == []
    assert lk.link("no company here", hints=["NVDA", "NOPE"]) == ["NVDA"]
    assert lk.ticker_for_cik("0000320193") == "AAPL" and lk.cik_for("MSFT") == 789019
    # The word pre-filter never changes the answer of trying every company's pattern.
    texts = [a.get("title", "") + " " + (a.get("description") or "")
             for a in _fx("newsapi_everything_AAPL.json")["articles"]]
    texts += ["Apple's and Nvidia-backed deals; $NVDA, $IBM up", "Meta Platforms Inc. and IBM"]
    for text in texts:
        brute = sorted(t for t, pat in lk._patterns if pat.search(text))
        assert lk.link(text) == brute, text


def test_validation_quarantines_bad_records_and_dedupes(tmp_path):
    lk = TickerLinker.from_csv()
    raw = raw_frame([
        {"url": "https://a.example/x", "published": "2024-02-01T10:00:00Z",
         "headline": "Apple rises", "body": "b"},
        {"url": "https://A.example/x/#frag", "published": "2024-02-01T11:00:00Z",
         "headline": "Apple rises again", "body": "b"},            # same URL normalised
        {"url": "https://c.example/y", "published": "2024-02-01T12:00:00Z",
         "headline": "APPLE  rises", "body": "B"},                  # same text folded
        {"url": None, "published": "2024-02-01", "headline": None},
        {"url": "https://d.example/z", "published": "soon", "headline": "IBM"},
        {"url": "https://e.example/z", "published": "2024-02-01", "headline": " ", "body": ""},
        {"url": "https://f.example/z", "published": "2030-01-01", "headline": "Microsoft"},
    ])
    v = validate_news(raw, lk, provider="t", run_id="r1", now=NOW)
    assert len(v.news) == 1 and v.news["tickers"].iloc[0] == ["AAPL"]
    assert v.by_rule == {"duplicate": 2, "schema": 2, "empty_text": 1, "future_date": 1}
    assert sorted(v.quarantine["row_number"]) == [1, 2, 3, 4, 5, 6]
    # Writing twice stores once: the second write finds the id already there.
    assert write_news(v.news, tmp_path).written == 1
    again = write_news(v.news, tmp_path)
    assert (again.written, again.already_stored) == (0, 1)
    assert len(read_news(tmp_path)) == 1


def test_newsapi_pages_retries_and_dedupes_into_lake(tmp_path):
    settings = _settings(tmp_path)
    with ReplayServer() as srv:
        srv.route("/v2/everything",
                  Reply(429, {"status": "error", "code": "rateLimited", "message": "slow down"},
                        headers={"Retry-After": "0"}),
                  Reply(500, "oops"),
                  Reply(200, _fx("newsapi_everything_AAPL.json")))
        rep = run_news_fetch(NewsFetchConfig("newsapi", tickers=("AAPL",), since="2024-01-30",
                                             until="2024-02-03"),
                             settings, _ns(srv), _ps(), run_id="n1", now=NOW)
        seen = srv.requests("/v2/everything")
    assert rep.ok and rep.http_calls == 3 and len(seen) == 3
    q = seen[-1].query
    assert q["from"] == "2024-01-30T00:00:00Z" and q["pageSize"] == "100"
    assert "AAPL" in q["q"] and '"Apple Inc."' in q["q"]
    assert "apiKey" not in q  # the key travels in the X-Api-Key header
    assert (rep.rows_in, rep.written, rep.quarantined) == (4, 2, 2)
    assert rep.by_rule == {"duplicate": 1, "schema": 1}
    news = read_news(settings.resolved().lake_dir).set_index("url")
    assert news.at["https://techdaily.example.com/rebound", "tickers"].tolist() == ["AAPL",
                                                                                    "MSFT"]
    assert news.at["https://news.example.com/apple-beats-estimates", "ts"] == pd.Timestamp(
        "2024-02-01 21:35", tz="UTC")
    assert len(_quarantine(settings)) == 2
    # Refetching the same window stores nothing new.
    with ReplayServer() as srv:
        srv.route("/v2/everything", Reply(200, _fx("newsapi_everything_AAPL.json")))
        rep2 = run_news_fetch(NewsFetchConfig("newsapi", tickers=("AAPL",)), settings,
                              _ns(srv), _ps(), run_id="n2", now=NOW)
    assert (rep2.written, rep2.already_stored) == (0, 2)


def test_newsapi_errors_fail_the_ticker_not_the_run(tmp_path):
    settings = _settings(tmp_path)
    with ReplayServer() as srv:
        srv.route("/v2/everything", Reply(401, {"status": "error", "code": "apiKeyInvalid",
                                                "message": "Your API key is invalid."}))
        rep = run_news_fetch(NewsFetchConfig("newsapi", tickers=("AAPL", "MSFT")), settings,
                             _ns(srv), _ps(), run_id="n3", now=NOW)
    assert set(rep.failed) == {"AAPL", "MSFT"} and "news-s3cr3t" not in json.dumps(
        rep.to_dict())
    assert rep.written == 0 and read_news(settings.resolved().lake_dir).empty
    with pytest.raises(ValueError, match="STOCKRAY_NEWSAPI_API_KEY"):
        run_news_fetch(NewsFetchConfig("newsapi", tickers=("AAPL",)), settings,
                       NewsSettings(newsapi_api_key=None), _ps())


def test_newsapi_follows_pages_until_total_results(tmp_path):
    def page(query: dict) -> Reply:
        n = int(query["page"])
        arts = [{"source": {"name": "Wire"}, "title": f"Apple story {n}-{i}", "description": "",
                 "url": f"https://wire.example/{n}/{i}", "publishedAt": "2024-02-01T12:00:00Z",
                 "content": None} for i in range(100 if n == 1 else 5)]
        return Reply(200, {"status": "ok", "totalResults": 105, "articles": arts})

    with ReplayServer() as srv:
        srv.route("/v2/everything", page)
        rep = run_news_fetch(NewsFetchConfig("newsapi", tickers=("AAPL",)), _settings(tmp_path),
                             _ns(srv), _ps(), run_id="p1", now=NOW)
        pages = [s.query["page"] for s in srv.requests("/v2/everything")]
    assert pages == ["1", "2"] and rep.written == 105


def test_gdelt_artlist_timeout_retry_and_plain_text_error(tmp_path):
    settings = _settings(tmp_path)
    with ReplayServer() as srv:
        srv.route("/api/v2/doc/doc", Reply(200, _fx("gdelt_artlist_MSFT.json"), delay=1.0),
                  Reply(200, _fx("gdelt_artlist_MSFT.json")))
        rep = run_news_fetch(NewsFetchConfig("gdelt", tickers=("MSFT",), since="2024-01-29",
                                             until="2024-02-01"),
                             settings, _ns(srv), _ps(), run_id="g1", now=NOW)
        q = srv.requests("/api/v2/doc/doc")[-1].query
    assert q["mode"] == "artlist" and q["format"] == "json"
    assert q["startdatetime"] == "20240129000000" and q["enddatetime"] == "20240201000000"
    assert rep.ok and rep.http_calls == 2 and (rep.written, rep.quarantined) == (2, 1)
    news = read_news(settings.resolved().lake_dir)
    assert news["ts"].min() == pd.Timestamp("2024-01-30 22:30", tz="UTC")
    assert all(t == ["MSFT"] for t in news["tickers"])
    # GDELT answers a bad query with text and HTTP 200: malformed, kept, never a crash.
    with ReplayServer() as srv:
        srv.route("/api/v2/doc/doc", Reply(200, "Your search contained a phrase too short."))
        rep = run_news_fetch(NewsFetchConfig("gdelt", tickers=("MSFT",)), settings,
                             _ns(srv), _ps(), run_id="g2", now=NOW)
    assert "MalformedResponse" in rep.failed["MSFT"]
    kept = list((settings.resolved().quarantine_dir / "responses").glob("g2-gdelt-*"))
    assert kept and b"phrase too short" in kept[0].read_bytes()


def test_edgar_submissions_documents_user_agent_and_rate(tmp_path):
    settings = _settings(tmp_path)
    with ReplayServer() as srv:
        srv.route("/submissions/CIK0000320193.json", Reply(503, "busy"),
                  Reply(200, _fx("edgar_submissions_AAPL.json")))
        srv.route("/Archives/edgar/data/320193/000032019324000006/aapl-20240201.htm",
                  Reply(200, _fx("edgar_8k_AAPL.htm"), content_type="text/html"))
        srv.route("/Archives/edgar/data/320193/000032019324000010/aapl-20231230.htm",
                  Reply(200, _fx("edgar_10q_AAPL.htm"), content_type="text/html"))
        srv.route("/Archives/edgar/data/320193/000032019324000006/0000320193-24-000006.hdr.sgml",
                  Reply(200, _fx("edgar_8k_AAPL.hdr.sgml"), content_type="text/plain"))
        ns = _ns(srv, edgar_rate="4/second")  # slow enough to measure the limiter
        t0 = time.monotonic()
        rep = run_news_fetch(NewsFetchConfig("edgar", tickers=("AAPL",), since="2024-01-01"),
                             settings, ns, _ps(), run_id="e1", now=NOW)
        elapsed = time.monotonic() - t0
        seen = srv.seen
    # 503 + submissions + per filing (document, SGML header); the 10-Q has no header (404).
    assert rep.ok and rep.http_calls == 6 and rep.written == 2
    # 6 requests at 4 a second: the last two wait for the window to move (moving window).
    assert elapsed >= 0.9
    news = read_news(settings.resolved().lake_dir).set_index("form")
    assert set(news.index) == {"8-K", "10-Q"}  # Form 4 and the 2023 10-K are filtered
    # The JSON says 16:30:40Z (the New York clock with a Z); the SGML header's 16:30:40
    # New York time is 21:30:40 UTC: after the close, so the next session.
    assert news.at["8-K", "ts"] == pd.Timestamp("2024-02-01 21:30:40", tz="UTC")
    # No header for the 10-Q: the later reading of 18:01:30Z (as New York time) is used.
    assert news.at["10-Q", "ts"] == pd.Timestamp("2024-02-02 23:01:30", tz="UTC")
    assert "Item 2.02" in news.at["8-K", "body"] and "never text" not in news.at["8-K", "body"]
    assert "Management’s Discussion" in news.at["10-Q", "body"]
    assert news.at["8-K", "tickers"].tolist() == ["AAPL"] and news.at["8-K", "kind"] == "filing"
    assert len(seen) == 6
    with pytest.raises(ValueError, match="EDGAR_USER_AGENT"):
        run_news_fetch(NewsFetchConfig("edgar", tickers=("AAPL",)), settings,
                       NewsSettings(edgar_user_agent="python-requests"), _ps())
    assert check_user_agent(" Acme Research ops@acme.example ") == "Acme Research ops@acme.example"


def test_edgar_sends_the_configured_user_agent(tmp_path):
    empty = {"filings": {"recent": {k: [] for k in ("accessionNumber", "acceptanceDateTime",
                                                    "form", "primaryDocument")}}}
    with ReplayServer() as srv:
        srv.route("/submissions/CIK0000789019.json", Reply(200, empty))
        rep = run_news_fetch(NewsFetchConfig("edgar", tickers=("MSFT",)), _settings(tmp_path),
                             _ns(srv), _ps(), run_id="e2", now=NOW)
        agents = [s.headers.get("User-Agent") for s in srv.seen]
    assert rep.ok and rep.rows_in == 0
    assert agents == ["Stockray Tests tests@example.com"]


def test_edgar_unreadable_document_keeps_the_filing(tmp_path):
    settings = _settings(tmp_path)
    with ReplayServer() as srv:
        srv.route("/submissions/CIK0000320193.json", Reply(200, _fx("edgar_submissions_AAPL.json")))
        # no document routes: every document and header answers 404
        rep = run_news_fetch(NewsFetchConfig("edgar", tickers=("AAPL",), since="2024-01-01"),
                             settings, _ns(srv), _ps(), run_id="e4", now=NOW)
    assert rep.ok and rep.written == 2
    news = read_news(settings.resolved().lake_dir)
    assert set(news["form"]) == {"8-K", "10-Q"} and (news["body"] == "").all()


def test_edgar_malformed_submissions_are_kept(tmp_path):
    settings = _settings(tmp_path)
    with ReplayServer() as srv:
        srv.route("/submissions/CIK0000320193.json", Reply(200, {"cik": "320193",
                                                                 "filings": "gone"}))
        rep = run_news_fetch(NewsFetchConfig("edgar", tickers=("AAPL",)), settings, _ns(srv),
                             _ps(), run_id="e3", now=NOW)
    assert "MalformedResponse" in rep.failed["AAPL"]
    assert list((settings.resolved().quarantine_dir / "responses").glob("e3-edgar-AAPL*"))


def test_rss_and_atom_feeds(tmp_path):
    settings = _settings(tmp_path)
    with ReplayServer() as srv:
        srv.route("/rss", Reply(500, "down"), Reply(200, _fx("rss_markets.xml"),
                                                    content_type="application/rss+xml"))
        srv.route("/atom", Reply(200, _fx("atom_company.xml"),
                                 content_type="application/atom+xml"))
        srv.route("/junk", Reply(200, "<html><body>not a feed", content_type="text/html"))
        rep = run_news_fetch(NewsFetchConfig("rss", feeds=(f"{srv.url}/rss", f"{srv.url}/atom",
                                                           f"{srv.url}/junk")),
                             settings, _ns(srv), _ps(), run_id="r1", now=NOW)
    assert set(rep.failed) == {f"{srv.url}/junk"}
    assert (rep.rows_in, rep.written, rep.quarantined) == (5, 4, 1)
    assert rep.by_rule == {"schema": 1}  # the undated item
    news = read_news(settings.resolved().lake_dir).set_index("headline")
    assert news.at["IBM shares fall after weak software revenue", "tickers"].tolist() == ["IBM"]
    # "-0500" is normalised to UTC by feedparser.
    assert news.at["Alphabet to report earnings next week", "ts"] == pd.Timestamp(
        "2024-01-25 14:00", tz="UTC")
    assert news.at["Oil prices steady", "tickers"].tolist() == []  # stored, linked to nothing
    assert news.at["Nvidia unveils new data-center chips", "tickers"].tolist() == ["NVDA"]


def test_shipped_sample_is_synthetic_reproducible_and_loads(tmp_path):
    shipped = pd.read_csv(SAMPLE_NEWS, dtype=str, keep_default_na=False)
    pd.testing.assert_frame_equal(shipped, sample.generate().astype(str))
    assert shipped["source"].str.contains("SYNTHETIC").all()
    assert shipped["url"].str.startswith("https://example.invalid/").all()
    settings = _settings(tmp_path)
    rep = run_news_fetch(NewsFetchConfig("file"), settings, run_id="s1")
    assert rep.written == len(shipped) and rep.quarantined == 0
    news = read_news(settings.resolved().lake_dir)
    assert {t for ts in news["tickers"] for t in ts} == {"AAPL", "MSFT", "IBM", "GOOG"}


def test_cli_news_fetch_file_and_config_errors(tmp_path):
    from ray_apps.cli import app

    runner = CliRunner()
    data = str(tmp_path / "d")
    f = tmp_path / "mine.jsonl"
    f.write_text(json.dumps({"ts": "2024-01-02T15:00:00Z", "headline": "Microsoft news",
                             "url": "https://x.example/1"}) + "\n"
                 + json.dumps({"ts": "bad", "headline": "IBM", "url": "https://x.example/2"})
                 + "\n")
    r = runner.invoke(app, ["--data-dir", data, "news", "fetch", "--provider", "file",
                            "--path", str(f)])
    assert r.exit_code == 0, r.output
    assert "1 stored" in r.output and "schema=1" in r.output
    r = runner.invoke(app, ["--data-dir", data, "news", "fetch", "--provider", "newsapi",
                            "--tickers", "ZZZZ"])
    assert r.exit_code == 2 and "not in the company table" in r.output
    assert "ts" in html_text("<p>ts</p>")
