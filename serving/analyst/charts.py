"""Figures of the analyst app: price with indicators, SHAP waterfall, a feature vs its history.

Indicators come from `kernels` (the same math as the features); inputs are plain frames and
protobuf responses, outputs plotly figures.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

import kernels as K

INDICATORS = ("SMA 20", "SMA 50", "Bollinger 20", "Volume", "RSI 14", "MACD")


def _adjusted(bars: pd.DataFrame) -> pd.DataFrame:
    f = bars["adj_factor"].to_numpy(float) if "adj_factor" in bars else 1.0
    out = pd.DataFrame({"ts": pd.to_datetime(bars["ts"], utc=True)})
    for c in ("open", "high", "low", "close"):
        out[c] = bars[c].to_numpy(float) * f
    out["volume"] = bars["volume"].to_numpy(float) / f
    return out.reset_index(drop=True)


def price_figure(bars: pd.DataFrame, indicators: Sequence[str] = ("SMA 20", "Volume"),
                 last_days: int = 250, title: str = ""):
    """Candles of the adjusted prices with the chosen overlays and indicator panes.

    Indicators are computed over the whole history and then cut to the last ``last_days``
    sessions, so the first shown values are already warmed up.
    """
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    unknown = set(indicators) - set(INDICATORS)
    if unknown:
        raise ValueError(f"unknown indicators {sorted(unknown)}; choose from {INDICATORS}")
    b = _adjusted(bars)
    close = b["close"].to_numpy(float)
    panes = [p for p in ("Volume", "RSI 14", "MACD") if p in indicators]
    heights = [0.55] + [0.45 / len(panes)] * len(panes) if panes else [1.0]
    fig = make_subplots(rows=1 + len(panes), cols=1, shared_xaxes=True, row_heights=heights,
                        vertical_spacing=0.03)
    tail = slice(max(0, len(b) - last_days), len(b))
    x = b["ts"].dt.strftime("%Y-%m-%d").to_numpy()[tail]
    fig.add_trace(go.Candlestick(x=x, open=b["open"][tail], high=b["high"][tail],
                                 low=b["low"][tail], close=b["close"][tail], name="price",
                                 showlegend=False), row=1, col=1)
    for n in (20, 50):
        if f"SMA {n}" in indicators:
            fig.add_trace(go.Scatter(x=x, y=K.sma(close, n)[tail], name=f"SMA {n}",
                                     mode="lines", line={"width": 1.2}), row=1, col=1)
    if "Bollinger 20" in indicators:
        up, _mid, lo, _, _ = K.bollinger(close, 20, 2.0)
        for y, name in ((up, "BB upper"), (lo, "BB lower")):
            fig.add_trace(go.Scatter(x=x, y=y[tail], name=name, mode="lines",
                                     line={"width": 1, "dash": "dot", "color": "#888"}),
                          row=1, col=1)
    for i, pane in enumerate(panes, start=2):
        if pane == "Volume":
            fig.add_trace(go.Bar(x=x, y=b["volume"][tail], name="volume",
                                 marker={"color": "#9ab"}), row=i, col=1)
        elif pane == "RSI 14":
            fig.add_trace(go.Scatter(x=x, y=K.rsi(close, 14)[tail], name="RSI 14",
                                     mode="lines"), row=i, col=1)
            for level in (30, 70):
                fig.add_hline(y=level, line={"dash": "dot", "color": "#aaa"}, row=i, col=1)
        else:
            line, signal, hist = K.macd(close, 12, 26, 9)
            fig.add_trace(go.Bar(x=x, y=hist[tail], name="MACD hist",
                                 marker={"color": "#c9a"}), row=i, col=1)
            fig.add_trace(go.Scatter(x=x, y=line[tail], name="MACD", mode="lines"),
                          row=i, col=1)
            fig.add_trace(go.Scatter(x=x, y=signal[tail], name="signal", mode="lines"),
                          row=i, col=1)
        fig.update_yaxes(title_text=pane, row=i, col=1)
    fig.update_xaxes(rangeslider_visible=False, type="category", nticks=8)
    fig.update_layout(title=title or "Adjusted price", height=300 + 160 * len(panes),
                      margin={"t": 50, "b": 30, "l": 60, "r": 20}, hovermode="x unified")
    return fig


def shap_waterfall(prediction, top: int = 10):
    """Waterfall from the base value through the top contributions to the prediction.

    ``prediction`` is a served ``HorizonPrediction`` with contributions (explain=True); the
    contributions not in the top ``top`` are summed into one "other features" step, so the
    bars end exactly at the predicted return.
    """
    import plotly.graph_objects as go

    contribs = sorted(prediction.contributions, key=lambda c: -abs(c.shap))
    shown = contribs[:top]
    rest = float(prediction.predicted_return - prediction.base_value
                 - sum(c.shap for c in shown))
    names = ["base value"] + [f"{c.feature} = {c.value:.4g}" for c in shown]
    values = [float(prediction.base_value)] + [float(c.shap) for c in shown]
    measures = ["absolute"] + ["relative"] * len(shown)
    if len(contribs) > len(shown):
        names.append(f"{len(contribs) - len(shown)} other features")
        values.append(rest)
        measures.append("relative")
    names.append("prediction")
    values.append(float(prediction.predicted_return))
    measures.append("total")
    # plotly accumulates in array order: base first, total last; the axis is flipped instead
    fig = go.Figure(go.Waterfall(orientation="h", y=names, x=values, measure=measures,
                                 name="contribution"))
    fig.update_yaxes(autorange="reversed")
    fig.update_layout(title=f"Why {prediction.horizon}-day forecast "
                            f"{prediction.predicted_return:+.4f} (model "
                            f"{prediction.model_name} v{prediction.model_version})",
                      xaxis_title="log-return contribution", height=120 + 32 * len(names),
                      margin={"l": 220})
    return fig


def feature_history_figure(history: pd.DataFrame, feature: str, current: float | None = None):
    """One feature over time for a ticker, with the served value and its historical quantiles."""
    import plotly.graph_objects as go

    if feature not in history:
        raise ValueError(f"no feature {feature!r} in the history")
    s = history.set_index(pd.to_datetime(history["ts"], utc=True))[feature].astype(float)
    x = s.index.strftime("%Y-%m-%d")
    fig = go.Figure(go.Scatter(x=x, y=s.to_numpy(), mode="lines", name=feature))
    finite = s[np.isfinite(s)]
    if len(finite):
        for q, dash in ((0.05, "dot"), (0.5, "dash"), (0.95, "dot")):
            fig.add_hline(y=float(finite.quantile(q)), line={"dash": dash, "color": "#999"},
                          annotation_text=f"p{int(q * 100)}")
    if current is not None and np.isfinite(current):
        fig.add_trace(go.Scatter(x=[x[-1]] if len(x) else [""], y=[current], mode="markers",
                                 marker={"size": 12, "color": "#d62728"},
                                 name="served value"))
    fig.update_layout(title=f"{feature}: served value vs its history", height=320)
    return fig
