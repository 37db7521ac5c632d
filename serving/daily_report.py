"""The daily report: forecasts for the universe, movers, SHAP drivers, models vs baselines and
data quality, as JSON + self-contained HTML, printed to PDF by headless Chromium.

Forecasts and explanations come from the running gRPC service (PredictBatch with explain);
the model comparison and its figures from the newest walk-forward report (drawn by
`training.plots`, the report's own figure code); data quality from the data directory. The
PDF is Chromium printing the HTML page, so the PDF shows exactly the HTML's plotly figures.
"""

from __future__ import annotations

import html
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

from serving.analyst.data import AnalystData, quality_markdown
from training import plots

CHROMIUM_ARGS = ("--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync")


@dataclass
class DailyReport:
    """What one daily report holds (JSON-able parts) before rendering."""

    created_at: str
    horizon: int
    forecasts: pd.DataFrame        # ticker, horizon, predicted, lower, upper, prob_up, ...
    drivers: pd.DataFrame          # feature, mean_abs_shap, mean_shap (main horizon)
    errors: dict[str, str]         # ticker -> gRPC status + message
    models: list[dict]
    walkforward: dict | None       # the newest walk-forward report (JSON)
    quality: str                   # data-quality summary (markdown)


def collect(client, data: AnalystData, tickers: Sequence[str], horizon: int) -> DailyReport:
    """Ask the service for every ticker (all served horizons, explained) and read the reports."""
    resp = client.predict_batch(list(tickers), [], explain=True, top_k=0)
    rows, shap, errors = [], [], {}
    for res in resp.results:
        if res.WhichOneof("result") == "error":
            errors[res.ticker] = f"{res.error.code}: {res.error.message}"
            continue
        for p in res.prediction.predictions:
            has_iv = p.HasField("interval")
            rows.append({"ticker": res.ticker, "horizon": p.horizon,
                         "predicted": p.predicted_return,
                         "lower": p.interval.lower if has_iv else np.nan,
                         "upper": p.interval.upper if has_iv else np.nan,
                         "prob_up": p.prob_up if p.HasField("prob_up") else np.nan,
                         "model": f"{p.model_name} v{p.model_version}",
                         "as_of": p.feature_timestamp, "stale": p.stale})
            if p.horizon == horizon:
                shap += [{"ticker": res.ticker, "feature": c.feature, "shap": c.shap}
                         for c in p.contributions]
    drivers = pd.DataFrame(shap, columns=["ticker", "feature", "shap"])
    drivers = (drivers.assign(abs_shap=drivers["shap"].abs()).groupby("feature")
               .agg(mean_abs_shap=("abs_shap", "mean"), mean_shap=("shap", "mean"))
               .sort_values("mean_abs_shap", ascending=False).reset_index())
    models = [{"alias": m.alias, "horizon": m.horizon, "model": m.model_name,
               "version": m.model_version} for m in client.list_models().models]
    found = data.latest_walkforward()
    return DailyReport(created_at=datetime.now(UTC).isoformat(timespec="seconds"),
                       horizon=horizon,
                       forecasts=pd.DataFrame(rows, columns=[
                           "ticker", "horizon", "predicted", "lower", "upper", "prob_up",
                           "model", "as_of", "stale"]),
                       drivers=drivers, errors=errors, models=models,
                       walkforward=found[1] if found else None,
                       quality=quality_markdown(data.data_quality(), data.quarantine_counts()))


def movers(rep: DailyReport, n: int = 10) -> pd.DataFrame:
    """The ``n`` largest |forecasts| at the report's horizon."""
    f = rep.forecasts[rep.forecasts["horizon"] == rep.horizon]
    return f.reindex(f["predicted"].abs().sort_values(ascending=False).index).head(n)


def _movers_figure(rep: DailyReport, n: int = 10):
    import plotly.graph_objects as go

    m = movers(rep, n).iloc[::-1]
    if m.empty:
        return None
    err_hi = (m["upper"] - m["predicted"]).to_numpy(float)
    err_lo = (m["predicted"] - m["lower"]).to_numpy(float)
    fig = go.Figure(go.Bar(x=m["predicted"], y=m["ticker"], orientation="h",
                           marker={"color": np.where(m["predicted"] > 0, "#2ca02c", "#d62728")},
                           error_x={"type": "data", "symmetric": False,
                                    "array": np.nan_to_num(err_hi),
                                    "arrayminus": np.nan_to_num(err_lo)}))
    fig.update_layout(title=f"Biggest {rep.horizon}-day movers (bars = served interval)",
                      xaxis_title="predicted log return", height=120 + 28 * len(m))
    return fig


def _drivers_figure(rep: DailyReport, n: int = 12):
    import plotly.graph_objects as go

    d = rep.drivers.head(n).iloc[::-1]
    if d.empty:
        return None
    fig = go.Figure(go.Bar(x=d["mean_abs_shap"], y=d["feature"], orientation="h",
                           marker={"color": np.where(d["mean_shap"] > 0, "#2ca02c",
                                                     "#d62728")}))
    fig.update_layout(title=f"Top SHAP drivers across the universe ({rep.horizon}-day; "
                            f"green = pushes forecasts up on average)",
                      xaxis_title="mean |SHAP|", height=140 + 26 * len(d))
    return fig


def _table(frame: pd.DataFrame, formats: dict[str, str]) -> str:
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in frame.columns)
    body = []
    for _, row in frame.iterrows():
        cells = []
        for c in frame.columns:
            v = row[c]
            if v is None:
                v = ""
            elif c in formats and isinstance(v, float | np.floating):
                v = "" if not math.isfinite(float(v)) else format(float(v), formats[c])
            cells.append(f"<td>{html.escape(str(v))}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f'<table class="t"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'


def render_html(rep: DailyReport) -> str:
    """Self-contained page (plotly.js inline once): opens offline and prints to PDF."""
    figs = [("movers", _movers_figure(rep)), ("drivers", _drivers_figure(rep))]
    comparison = ""
    if rep.walkforward is not None:
        runs = rep.walkforward["runs"]
        figs.append(("equity", plots.equity_figure(runs)))
        cmp = pd.DataFrame(rep.walkforward["comparison"])
        cols = [c for c in ("kind", "name", "rank_ic_mean", "ic_mean", "bt_sharpe_mean",
                            "hit_rate_mean") if c in cmp]
        comparison = (f"<p>{html.escape(rep.walkforward.get('meta', {}).get('verdict', ''))}</p>"
                      + _table(cmp[cols], {c: ".4f" for c in cols[2:]}))
    parts = []
    first = True
    for key, fig in figs:
        if fig is None:
            continue
        parts.append(f'<section class="fig" id="{key}">' + fig.to_html(
            full_html=False, include_plotlyjs=first, div_id=f"fig-{key}") + "</section>")
        first = False
    fmt = {"predicted": "+.4f", "lower": "+.4f", "upper": "+.4f", "prob_up": ".1%"}
    errors = "".join(f"<li>{html.escape(t)}: {html.escape(e)}</li>"
                     for t, e in sorted(rep.errors.items()))
    models = _table(pd.DataFrame(rep.models), {}) if rep.models else "<p>none</p>"
    quality = "<br>".join(html.escape(x) for x in rep.quality.splitlines())
    return f"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>stockray daily report {rep.created_at[:10]}</title>
<style>body{{font-family:sans-serif;margin:1.5em}} table.t{{border-collapse:collapse;
font-size:12px}} table.t td,table.t th{{border:1px solid #ccc;padding:3px 6px}}
section.fig{{page-break-inside:avoid}} h2{{page-break-after:avoid}}</style></head><body>
<h1>stockray daily report — {html.escape(rep.created_at[:10])}</h1>
<p>Created {html.escape(rep.created_at)}. Forecasts are forward log returns from the served
models; intervals are the models' split-conformal intervals.</p>
<h2>Models served</h2>{models}
<h2>Biggest movers and what drives them</h2>{"".join(parts[:2])}
<h2>Forecasts for the universe</h2>{_table(rep.forecasts, fmt)}
{f"<h3>Not forecast</h3><ul>{errors}</ul>" if errors else ""}
<h2>Models vs baselines (newest walk-forward)</h2>{comparison or "<p>no walk-forward report yet"
"</p>"}{"".join(parts[2:])}
<h2>Data quality</h2><p>{quality}</p>
</body></html>"""


def write_daily_report(rep: DailyReport, out_dir: Path) -> dict[str, Path]:
    """``report.json`` + ``report.html`` in ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    doc = {"created_at": rep.created_at, "horizon": rep.horizon,
           "forecasts": json.loads(rep.forecasts.to_json(orient="records")),
           "drivers": json.loads(rep.drivers.to_json(orient="records")),
           "errors": rep.errors, "models": rep.models, "quality": rep.quality,
           "walkforward_verdict": (rep.walkforward or {}).get("meta", {}).get("verdict")}
    paths = {"json": out_dir / "report.json", "html": out_dir / "report.html"}
    paths["json"].write_text(json.dumps(doc, indent=1))
    paths["html"].write_text(render_html(rep), encoding="utf-8")
    return paths


def html_to_pdf(html_path: Path, pdf_path: Path, chromium: str = "/usr/bin/chromium") -> Path:
    """Print the HTML page to PDF with headless Chromium (Playwright drives Debian's build)."""
    from playwright.sync_api import sync_playwright

    if not Path(chromium).exists():
        raise FileNotFoundError(f"{chromium} not found: `apt-get install chromium` (or "
                                f"`make sysdeps`) to print the PDF")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=list(CHROMIUM_ARGS))
        try:
            page = browser.new_page()
            page.goto(html_path.resolve().as_uri(), wait_until="load")
            page.wait_for_function(
                "document.querySelectorAll('.js-plotly-plot .main-svg').length >= "
                "document.querySelectorAll('section.fig').length", timeout=30_000)
            page.pdf(path=str(pdf_path), format="A4", print_background=True,
                     margin={"top": "12mm", "bottom": "12mm", "left": "10mm", "right": "10mm"})
        finally:
            browser.close()
    return pdf_path
