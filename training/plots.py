"""Report figures that answer one question each, built from the report's JSON data.

Every function takes the ``runs`` list of `training.report.report_dict` (plain dicts: name,
kind, seed, output, equity, daily_ic, feature_importance, calibration), so the HTML report,
a PDF and the analyst app draw the same figures from the same file. No training imports.

- `equity_figure`: one line per model (mean over seeds, a band for the seed spread),
  baselines dashed, and the drawdown of each line in a panel below.
- `ic_figure`: daily rank IC smoothed over a long window, and its cumulative sum.
- `importance_figure`: top features aggregated over seeds (mean share, std error bars).
- `calibration_figure`: binned prediction vs realised return, for return forecasts only.
- `decile_figure`: realised return by score decile, for rank scores (no return scale).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

#: Long enough that a line reads as a trend: a quarter of trading days.
IC_WINDOW = 63
TOP_FEATURES = 20
#: Share of the top-5 importance that market-wide inputs must hold for the timing note.
MARKET_TIMING_SHARE = 0.5
_PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2",
            "#17becf", "#bcbd22", "#7f7f7f")


def _series(obj: dict | None) -> pd.Series | None:
    if not obj or not obj.get("index"):
        return None
    return pd.Series(np.asarray(obj["values"], float), index=pd.to_datetime(obj["index"]))


def _grouped(runs: Sequence[dict], key: str) -> dict[tuple[str, str], list[pd.Series]]:
    """(kind, name) -> one Series per seed, for runs that carry ``key``; input order kept."""
    out: dict[tuple[str, str], list[pd.Series]] = {}
    for r in runs:
        s = _series(r.get(key))
        if s is not None and len(s):
            out.setdefault((r["kind"], r["name"]), []).append(s)
    return out


def _color(i: int) -> str:
    return _PALETTE[i % len(_PALETTE)]


def _band(fig, x, lo, hi, color: str, name: str, row: int | None = None) -> None:
    """A filled min-max band between two lines (legend-less)."""
    import plotly.graph_objects as go

    kw = {"row": row, "col": 1} if row else {}
    fig.add_trace(go.Scatter(x=x, y=hi, mode="lines", line={"width": 0}, showlegend=False,
                             hoverinfo="skip", legendgroup=name, name=f"{name} max"), **kw)
    fig.add_trace(go.Scatter(x=x, y=lo, mode="lines", line={"width": 0}, fill="tonexty",
                             fillcolor=_rgba(color, 0.18), showlegend=False, hoverinfo="skip",
                             legendgroup=name, name=f"{name} min"), **kw)


def _rgba(hex_color: str, alpha: float) -> str:
    h = hex_color.lstrip("#")
    r, g, b = (int(h[i:i + 2], 16) for i in (0, 2, 4))
    return f"rgba({r},{g},{b},{alpha})"


def equity_figure(runs: Sequence[dict]):
    """Equity (mean over seeds, min-max band) per model, baselines dashed; drawdown below."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    groups = _grouped(runs, "equity")
    if not groups:
        return None
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, row_heights=[0.7, 0.3],
                        vertical_spacing=0.05)
    for i, ((kind, name), seeds) in enumerate(groups.items()):
        eq = pd.concat(seeds, axis=1).sort_index().ffill()
        mean = eq.mean(axis=1)
        x = [str(t.date()) for t in eq.index]
        color = _color(i)
        dash = "dash" if kind == "baseline" else "solid"
        if kind == "model" and eq.shape[1] > 1:
            _band(fig, x, eq.min(axis=1).to_numpy(), eq.max(axis=1).to_numpy(), color, name,
                  row=1)
        label = f"{name} (mean of {eq.shape[1]} seeds)" if eq.shape[1] > 1 else name
        fig.add_trace(go.Scatter(x=x, y=mean.to_numpy(), mode="lines", name=label,
                                 legendgroup=name, line={"color": color, "dash": dash}),
                      row=1, col=1)
        dd = mean / mean.cummax() - 1.0
        fig.add_trace(go.Scatter(x=x, y=dd.to_numpy(), mode="lines", showlegend=False,
                                 legendgroup=name, name=f"{name} drawdown",
                                 line={"color": color, "dash": dash, "width": 1}),
                      row=2, col=1)
    fig.update_yaxes(title_text="equity (net of costs)", row=1, col=1)
    fig.update_yaxes(title_text="drawdown", tickformat=".0%", row=2, col=1)
    fig.update_layout(title="Long-short equity: models (band = seed range) vs baselines (dashed)",
                      hovermode="x unified")
    return fig


def ic_figure(runs: Sequence[dict], window: int = IC_WINDOW):
    """Daily rank IC: rolling mean over ``window`` dates and cumulative sum, per model."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    groups = _grouped(runs, "daily_ic")
    if not groups:
        return None
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.06,
                        subplot_titles=(f"rank IC, {window}-date rolling mean",
                                        "cumulative rank IC (a steady slope = a steady edge)"))
    for i, ((kind, name), seeds) in enumerate(groups.items()):
        ic = pd.concat(seeds, axis=1).sort_index().mean(axis=1)
        x = [str(t.date()) for t in ic.index]
        line = {"color": _color(i), "dash": "dash" if kind == "baseline" else "solid"}
        roll = ic.rolling(window, min_periods=max(5, window // 3)).mean()
        fig.add_trace(go.Scatter(x=x, y=roll.to_numpy(), mode="lines", name=name,
                                 legendgroup=name, line=line), row=1, col=1)
        fig.add_trace(go.Scatter(x=x, y=ic.fillna(0.0).cumsum().to_numpy(), mode="lines",
                                 showlegend=False, legendgroup=name, name=f"{name} cumulative",
                                 line=line), row=2, col=1)
    fig.add_hline(y=0.0, line={"color": "grey", "width": 1}, row=1, col=1)
    fig.update_yaxes(title_text="IC", row=1, col=1)
    fig.update_yaxes(title_text="sum of IC", row=2, col=1)
    fig.update_layout(title="Information coefficient over time (mean over seeds)",
                      hovermode="x unified")
    return fig


def importance_table(runs: Sequence[dict], top: int = TOP_FEATURES) -> dict[str, pd.DataFrame]:
    """Model -> top features by mean importance share over seeds (columns mean, std, n)."""
    per_model: dict[str, list[pd.Series]] = {}
    for r in runs:
        imp = r.get("feature_importance")
        if r["kind"] == "model" and imp:
            s = pd.Series(imp, dtype=float)
            total = s.sum()
            per_model.setdefault(r["name"], []).append(s / total if total > 0 else s)
    out = {}
    for name, seeds in per_model.items():
        df = pd.concat(seeds, axis=1).fillna(0.0)
        t = pd.DataFrame({"mean": df.mean(axis=1),
                          "std": df.std(axis=1, ddof=1) if df.shape[1] > 1 else 0.0,
                          "n": df.shape[1]})
        out[name] = t.sort_values("mean", ascending=False).head(top)
    return out


def importance_figure(runs: Sequence[dict], top: int = TOP_FEATURES):
    """One panel per model: the top features' mean share of importance, std error bars."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    tables = importance_table(runs, top)
    if not tables:
        return None
    names = list(tables)
    fig = make_subplots(rows=1, cols=len(names), subplot_titles=names,
                        horizontal_spacing=0.12 if len(names) > 1 else 0.0)
    for j, name in enumerate(names):
        t = tables[name].iloc[::-1]  # largest at the top of a horizontal bar chart
        fig.add_trace(go.Bar(x=t["mean"].to_numpy(), y=list(t.index), orientation="h",
                             name=name, marker={"color": _color(j)}, showlegend=False,
                             error_x={"type": "data", "array": np.nan_to_num(
                                 np.asarray(t["std"], float)), "visible": True}),
                      row=1, col=j + 1)
        fig.update_xaxes(title_text="share of total gain", tickformat=".0%", row=1, col=j + 1)
    fig.update_layout(title=f"Top {top} features (mean over seeds, bars = ±1 std)",
                      height=max(400, 22 * top + 120), width=max(700, 420 * len(names)))
    return fig


def _mean_calibration(runs: Sequence[dict], output: str) -> dict[str, pd.DataFrame]:
    """Model -> calibration bins averaged over seeds, for runs whose output is ``output``."""
    per: dict[str, list[pd.DataFrame]] = {}
    for r in runs:
        if r["kind"] == "model" and r.get("calibration") and r.get("output", "return") == output:
            per.setdefault(r["name"], []).append(pd.DataFrame(r["calibration"]))
    out = {}
    for name, tabs in per.items():
        cat = pd.concat(tabs)
        g = cat.groupby("bin")
        out[name] = pd.DataFrame({"pred_mean": g["pred_mean"].mean(),
                                  "target_mean": g["target_mean"].mean(),
                                  "target_sd_seeds": g["target_mean"].std(ddof=1)})
    return out


def calibration_figure(runs: Sequence[dict]):
    """Binned predicted vs realised return for return forecasts (rank scores excluded)."""
    import plotly.graph_objects as go

    tabs = _mean_calibration(runs, "return")
    if not tabs:
        return None
    fig = go.Figure()
    lo, hi = np.inf, -np.inf
    for i, (name, t) in enumerate(tabs.items()):
        fig.add_trace(go.Scatter(x=t["pred_mean"].to_numpy(), y=t["target_mean"].to_numpy(),
                                 mode="lines+markers", name=name,
                                 line={"color": _color(i)}))
        lo = min(lo, float(t["pred_mean"].min()), float(t["target_mean"].min()))
        hi = max(hi, float(t["pred_mean"].max()), float(t["target_mean"].max()))
    fig.add_trace(go.Scatter(x=[lo, hi], y=[lo, hi], mode="lines", name="ideal",
                             line={"dash": "dash", "color": "grey"}))
    fig.update_layout(title="Calibration of return forecasts (bins of prediction, mean over "
                            "seeds)", xaxis_title="mean predicted return",
                      yaxis_title="mean realised return")
    return fig


def decile_figure(runs: Sequence[dict]):
    """Realised return per score decile for rank-score models (monotone = the ranking works)."""
    import plotly.graph_objects as go

    tabs = _mean_calibration(runs, "score")
    if not tabs:
        return None
    fig = go.Figure()
    for i, (name, t) in enumerate(tabs.items()):
        err = np.nan_to_num(np.asarray(t["target_sd_seeds"], float))
        fig.add_trace(go.Bar(x=[int(b) + 1 for b in t.index], y=t["target_mean"].to_numpy(),
                             name=name, marker={"color": _color(i)},
                             error_y={"type": "data", "array": err, "visible": True}))
    fig.update_layout(title="Realised return by score decile (rank models; 1 = lowest score)",
                      xaxis_title="score decile", yaxis_title="mean realised return",
                      barmode="group")
    return fig


def market_timing_note(runs: Sequence[dict], market_wide: Sequence[str], top: int = 5) -> \
        str | None:
    """A warning when a model's top features are mostly market-wide series.

    A feature identical across tickers on every date (macro, index, calendar) cannot rank
    stocks on a date: a model leaning on such features times the market instead.
    """
    wide = set(market_wide)
    notes = []
    for name, t in importance_table(runs, top).items():
        share = float(t.loc[[f for f in t.index if f in wide], "mean"].sum())
        total = float(t["mean"].sum())
        if total > 0 and share / total >= MARKET_TIMING_SHARE:
            lead = [f for f in t.index if f in wide]
            notes.append(f"{name}: {share / total:.0%} of its top-{top} importance is market-wide "
                         f"({', '.join(lead)})")
    if not notes:
        return None
    return ("These models lean on market-wide series (identical across tickers on a date): "
            "they time the market rather than rank stocks. " + "; ".join(notes) + ".")


def figures(runs: Sequence[dict]) -> list[tuple[str, Any]]:
    """Every figure the runs support, as (key, plotly figure); keys name the HTML sections."""
    built = [("equity", equity_figure(runs)), ("ic", ic_figure(runs)),
             ("importance", importance_figure(runs)), ("calibration", calibration_figure(runs)),
             ("deciles", decile_figure(runs))]
    return [(k, f) for k, f in built if f is not None]
