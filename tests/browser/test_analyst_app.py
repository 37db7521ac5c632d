"""The Gradio analyst app in headless Chromium (Debian's, driven by Playwright).

A real gRPC prediction server (the service with tiny LightGBM bundles and a fixed feature
reader) answers; the app reads bars, features and reports from a private data dir. The test
loads the page, picks a ticker, and checks that the forecast table, the SHAP waterfall and
the price chart are rendered; screenshots are saved as artefacts and checked for content.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from features.lake import write_bars
from features.settings import Settings
from serving.grpc_server import BackgroundServer
from tests.conftest import free_port
from tests.serving_fixtures import FEATURES, make_bundles, synthetic_rows
from tests.unit.test_plots import _runs as plot_runs
from tests.unit.test_serving_contract import make_service
from training.report import write_report

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = [pytest.mark.browser,
              pytest.mark.skipif(CHROMIUM is None and not os.environ.get("CI"),
                                 reason="no chromium (make sysdeps installs it)")]
ARTIFACTS = Path(os.environ.get("STOCKRAY_TEST_ARTIFACTS", "test-artifacts"))
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]


def _data_dir(root: Path, tickers) -> Settings:
    settings = Settings(data_dir=root).resolved()
    rng = np.random.default_rng(3)
    days = pd.bdate_range("2023-06-01", "2024-04-30", tz="UTC")
    frames, feats = [], []
    for t in tickers:
        close = 100 * np.exp(np.cumsum(rng.normal(0.0005, 0.015, len(days))))
        openp = close * np.exp(rng.normal(0, 0.004, len(days)))
        frames.append(pd.DataFrame({
            "ticker": t, "ts": days, "open": openp,
            "high": np.maximum(openp, close) * 1.01, "low": np.minimum(openp, close) * 0.99,
            "close": close, "volume": rng.uniform(1e6, 5e6, len(days)), "adj_factor": 1.0,
            "source": "test", "ingested_at": pd.Timestamp.now(tz="UTC")}))
        feats.append(pd.DataFrame({"ticker": t, "ts": days,
                                   **{f: rng.normal(0, 1, len(days)) for f in FEATURES}}))
    write_bars(pd.concat(frames), settings.bars_dir)
    settings.offline_dir.mkdir(parents=True)
    pd.concat(feats).to_parquet(settings.offline_dir / "features.parquet")
    write_report(plot_runs(), settings.reports_dir / "walkforward-h5", title="wf",
                 meta={"data": "synthetic test universe", "verdict": "lgbm_reg beats momentum"})
    q = settings.reports_dir / "data_quality"
    q.mkdir(parents=True)
    (q / "latest.json").write_text(json.dumps({
        "run_id": "run-42", "created_at": "2024-05-01T00:00:00+00:00",
        "contract": {"rows_in": 900, "rows_ok": 897, "rows_quarantined": 3,
                     "by_rule": {"ohlc_consistency": 3}},
        "features": {"rows": 897, "tickers": list(tickers)}}))
    return settings


def _nonblank(png: Path) -> float:
    """Share of pixels that differ from the most common colour (0 for a blank page)."""
    from PIL import Image

    img = np.asarray(Image.open(png).convert("L"))
    _values, counts = np.unique(img, return_counts=True)
    return 1.0 - counts.max() / img.size


def test_pick_a_ticker_and_see_prediction_and_chart(tmp_path):
    from playwright.sync_api import expect, sync_playwright

    from serving.analyst.app import AnalystConfig, launch

    rows = synthetic_rows()
    settings = _data_dir(tmp_path / "d", list(rows))
    svc = make_service(make_bundles(tmp_path / "b"), rows)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    port = free_port()
    with BackgroundServer(svc) as server:
        demo = launch(AnalystConfig(settings, server.target), port=port, block=False)
        try:
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
                page = browser.new_page(viewport={"width": 1400, "height": 1000})
                t0 = time.perf_counter()
                page.goto(f"http://127.0.0.1:{port}/", wait_until="networkidle")
                load_s = time.perf_counter() - t0
                # the first ticker is forecast on load
                expect(page.locator("#forecast")).to_contain_text("stockray-lgbm-h5",
                                                                   timeout=30_000)
                # pick another ticker through the picker, as a person would
                page.locator("#ticker input").click()
                page.locator("#ticker input").fill("MSFT")
                page.get_by_role("option", name="MSFT").click()
                expect(page.locator("#message")).to_contain_text("Served by", timeout=30_000)
                expect(page.locator("#forecast")).to_contain_text("+0.", timeout=30_000)
                waterfall = page.locator("#waterfall .js-plotly-plot")
                expect(waterfall).to_be_visible(timeout=30_000)
                expect(page.locator("#waterfall")).to_contain_text("prediction")
                expect(page.locator("#waterfall g.trace").first).to_be_visible()  # bars drawn
                forecast_png = ARTIFACTS / "analyst_forecast.png"
                page.screenshot(path=str(forecast_png), full_page=True)
                page.get_by_role("tab", name="Chart").click()
                chart = page.locator("#price .js-plotly-plot")
                expect(chart).to_be_visible(timeout=30_000)
                assert page.locator("#price g.candlestick, #price .trace.boxes").count() >= 1
                assert "MSFT" in page.locator("#price").inner_text()
                chart_png = ARTIFACTS / "analyst_chart.png"
                page.screenshot(path=str(chart_png), full_page=True)
                # the newest walk-forward report and the data quality, from the data dir
                page.get_by_role("tab", name="Evaluation").click()
                expect(page.locator("#evaluation")).to_contain_text("lgbm_reg beats momentum")
                expect(page.locator("#eval-0 .js-plotly-plot")).to_be_visible(timeout=30_000)
                assert page.locator(".js-plotly-plot").count() >= 5
                page.get_by_role("tab", name="Data quality").click()
                expect(page.locator("#quality")).to_contain_text("quarantined 3")
                # an unknown ticker typed in is the service's NOT_FOUND as a message
                page.get_by_role("tab", name="Forecast").click()
                page.locator("#ticker input").fill("ZZZZ")
                page.locator("#ticker input").press("Enter")
                expect(page.locator("#message")).to_contain_text("NOT_FOUND", timeout=30_000)
                page.screenshot(path=str(ARTIFACTS / "analyst_error.png"), full_page=True)
                browser.close()
        finally:
            demo.close()
    for png in (forecast_png, chart_png):
        # a blank page scores 0; these pages are mostly white with text, tables and charts
        assert png.stat().st_size > 20_000 and _nonblank(png) > 0.02, png
    (ARTIFACTS / "analyst_load_seconds.txt").write_text(f"{load_s:.2f}\n")


def test_login_with_an_api_token(tmp_path):
    """With login on, a user signs in with their API token; the app calls the service (auth on)
    with that token, and a wrong token does not get in."""
    from playwright.sync_api import expect, sync_playwright

    from serving.analyst.app import AnalystConfig, launch
    from serving.auth import AccessConfig, client_token, ensure_auth_dir

    rows = synthetic_rows()
    settings = _data_dir(tmp_path / "d", list(rows))
    ensure_auth_dir(settings.auth_path)
    token = client_token(settings.auth_path)
    svc = make_service(make_bundles(tmp_path / "b"), rows)
    port = free_port()
    access = AccessConfig(auth_dir=str(settings.auth_path))
    with BackgroundServer(svc, access=access) as server:
        demo = launch(AnalystConfig(settings, server.target, login=True), port=port,
                      block=False)
        try:
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
                page = browser.new_page(viewport={"width": 1400, "height": 1000})
                page.goto(f"http://127.0.0.1:{port}/", wait_until="networkidle")
                for secret, ok in (("not-a-token", False), (token, True)):
                    page.locator("input[type=text]").first.fill("analyst")
                    page.locator("input[type=password]").fill(secret)
                    page.get_by_role("button", name="Login").click()
                    if not ok:
                        expect(page.get_by_text("Incorrect Credentials")).to_be_visible(
                            timeout=15_000)
                expect(page.locator("#forecast")).to_contain_text("stockray-lgbm-h5",
                                                                   timeout=30_000)
                page.screenshot(path=str(ARTIFACTS / "analyst_login.png"), full_page=True)
                browser.close()
        finally:
            demo.close()
