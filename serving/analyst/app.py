"""The Gradio analyst app: forecasts with intervals and SHAP, charts, evaluation, data quality.

Every forecast, explanation and model listing comes from the running gRPC service through
`serving.client.PredictionClient` (no private shortcut into the models); prices, feature
history and reports are read from the data directory. Errors from the service are shown as
messages with their gRPC status, never as a stack trace.

``build_app(AnalystConfig(...))`` returns the ``gr.Blocks``; `launch` serves it on loopback.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import gradio as gr
import pandas as pd

from features.settings import Settings
from serving.analyst import charts
from serving.analyst.data import AnalystData, quality_markdown
from serving.client import PredictionClient, PredictionError
from serving.errors import ServingError
from training import plots

ALIASES = ("champion", "challenger")
FORECAST_COLUMNS = ("horizon (days)", "predicted log return", "interval", "P(up)", "model",
                    "alias", "features as of", "stale")


@dataclass
class AnalystConfig:
    """Where the app finds the service and the data.

    Attributes:
        settings: the deployment's settings (data dir).
        target: gRPC ``host:port`` of the prediction service.
        client_options: extra keyword arguments for `PredictionClient` (e.g. TLS files).
        login: ask each user for an API token (checked against the deployment's keys, scope
            ``predict``) and call the service with that user's token; without it the app
            calls with the deployment's own token (``<data_dir>/auth/api_token``).
    """

    settings: Settings
    target: str
    client_options: dict = field(default_factory=dict)
    login: bool = False


def _fmt(x: float | None, spec: str = "+.4f") -> str:
    return "" if x is None else format(x, spec)


def forecast_table(resp) -> pd.DataFrame:
    """One row per served horizon of a ``PredictResponse``."""
    rows = []
    for p in resp.predictions:
        interval = (f"[{p.interval.lower:+.4f}, {p.interval.upper:+.4f}] "
                    f"({p.interval.coverage:.0%})" if p.HasField("interval") else "")
        rows.append({"horizon (days)": p.horizon, "predicted log return":
                     _fmt(p.predicted_return), "interval": interval,
                     "P(up)": _fmt(p.prob_up, ".1%") if p.HasField("prob_up") else "",
                     "model": f"{p.model_name} v{p.model_version}", "alias": p.model_alias,
                     "features as of": p.feature_timestamp,
                     "stale": "yes" if p.stale else "no"})
    return pd.DataFrame(rows, columns=list(FORECAST_COLUMNS))


def _no_forecast() -> pd.DataFrame:
    return pd.DataFrame(columns=list(FORECAST_COLUMNS))


def models_table(resp) -> pd.DataFrame:
    return pd.DataFrame([{"alias": m.alias, "horizon": m.horizon, "model": m.model_name,
                          "version": m.model_version, "family": m.family,
                          "features": len(m.feature_names), "provider": m.provider,
                          "calibrated": m.calibrated} for m in resp.models])


class AnalystSession:
    """The app's callbacks, free of Gradio so they can be tested directly."""

    def __init__(self, cfg: AnalystConfig) -> None:
        self.cfg = cfg
        self.data = AnalystData(cfg.settings)
        self._tokens: dict[str, str] = {}  # signed-in user -> the token they signed in with

    def login(self, user: str, token: str) -> bool:
        """Gradio's auth callback: accept ``token`` if it is a key with the predict scope."""
        from serving.auth import Authenticator

        try:
            Authenticator(self.cfg.settings.auth_path).check(f"Bearer {token}", "predict")
        except ServingError:
            return False
        self._tokens[user] = token
        return True

    def client(self, user: str | None = None) -> PredictionClient:
        """A client with the signed-in user's token (login on) or the deployment's token."""
        opts = dict(self.cfg.client_options)
        if self.cfg.login:
            opts["token"] = self._tokens.get(user or "", "")  # no session: no token at all
        return PredictionClient(self.cfg.target, **opts)

    def forecast(self, ticker: str, alias: str, horizon: int | None, user: str | None = None):
        """(message, forecast table, SHAP waterfall of ``horizon``)."""
        if not ticker:
            return "Pick a ticker.", _no_forecast(), None
        try:
            with self.client(user) as c:
                resp = c.predict(ticker, [], explain=True, top_k=50, model_alias=alias)
        except PredictionError as e:
            return f"**{e.code.name}**: {e.details}", _no_forecast(), None
        chosen = [p for p in resp.predictions if horizon in (None, p.horizon)] or \
            list(resp.predictions)
        fig = charts.shap_waterfall(chosen[0]) if chosen and chosen[0].contributions else None
        stale = any(p.stale for p in resp.predictions)
        msg = (f"Served by `{self.cfg.target}`, request `{resp.request_id}`"
               + (" — **features are stale**" if stale else ""))
        return msg, forecast_table(resp), fig

    def price(self, ticker: str, indicators: list[str]):
        if not ticker:
            return None
        try:
            bars = self.data.bars(ticker)
        except FileNotFoundError:
            raise ValueError(f"no price history for {ticker} in the lake") from None
        return charts.price_figure(bars, indicators, title=f"{ticker}: adjusted price")

    def feature_names(self, user: str | None = None) -> list[str]:
        try:
            with self.client(user) as c:
                resp = c.list_models()
        except PredictionError:
            return []
        names: list[str] = []
        for m in resp.models:
            names += [f for f in m.feature_names if f not in names]
        return names

    def feature(self, ticker: str, feature: str):
        if not ticker or not feature:
            return None
        hist = self.data.feature_history(ticker, [feature])
        if hist.empty:
            return None
        current = float(hist[feature].iloc[-1])
        return charts.feature_history_figure(hist, feature, current)

    def models(self, alias: str = "champion", horizon: int | None = None,
               user: str | None = None):
        """(summary + the model card of ``alias`` at ``horizon``, table of served models)."""
        try:
            with self.client(user) as c:
                resp = c.list_models()
        except PredictionError as e:
            return f"**{e.code.name}**: {e.details}", pd.DataFrame()
        text = (f"Horizons {list(resp.horizons)}, aliases {list(resp.aliases)}, canary weight "
                f"{resp.canary_weight:g}")
        chosen = [m for m in resp.models if m.alias == alias and horizon in (None, m.horizon)]
        if chosen:
            m = chosen[0]
            card = self.data.model_card(m.model_name, m.model_version)
            text += (f"\n\n### {m.model_name} v{m.model_version} ({alias})\n\n"
                     + (card or "_no model card in the registry for this version_"))
        return text, models_table(resp)

    def evaluation(self):
        """(markdown summary, list of (key, figure)) from the newest walk-forward report."""
        found = self.data.latest_walkforward()
        if found is None:
            return "No walk-forward report yet: run `stockray evaluate`.", []
        path, rep = found
        meta = rep.get("meta", {})
        lines = [f"**{path.parent.name}** — {meta.get('data', '')}",
                 f"{meta.get('verdict', '')}"]
        note = plots.market_timing_note(rep["runs"], meta.get("market_wide_features") or [])
        if note:
            lines.append(f"> {note}")
        return "\n\n".join(lines), plots.figures(rep["runs"])

    def quality(self) -> str:
        return quality_markdown(self.data.data_quality(), self.data.quarantine_counts())


def build_app(cfg: AnalystConfig):
    """The ``gr.Blocks`` of the analyst app."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # no network here
    s = AnalystSession(cfg)
    tickers = s.data.tickers()
    with gr.Blocks(title="stockray analyst") as demo:
        gr.Markdown(f"# stockray analyst\nForecasts from `{cfg.target}` (gRPC), data from "
                    f"`{cfg.settings.data_dir}`.")
        with gr.Row():
            ticker = gr.Dropdown(tickers, value=tickers[0] if tickers else None,
                                 label="Ticker", filterable=True, allow_custom_value=True,
                                 elem_id="ticker")
            alias = gr.Radio(list(ALIASES), value="champion", label="Model alias")
            horizon = gr.Dropdown([1, 5, 20], value=5, label="Explain horizon (days)")
            go_btn = gr.Button("Predict", variant="primary", elem_id="predict")
        message = gr.Markdown(elem_id="message")
        with gr.Tab("Forecast"):
            table = gr.Dataframe(label="Served forecast per horizon", elem_id="forecast")
            waterfall = gr.Plot(label="SHAP waterfall", elem_id="waterfall")
        with gr.Tab("Chart"):
            indicators = gr.CheckboxGroup(list(charts.INDICATORS),
                                          value=["SMA 20", "Bollinger 20", "Volume", "RSI 14"],
                                          label="Indicators")
            price = gr.Plot(label="Price", elem_id="price")
        with gr.Tab("Features"):
            feature = gr.Dropdown([], label="Feature", elem_id="feature")
            feature_plot = gr.Plot(label="Feature history")
        with gr.Tab("Evaluation"):
            eval_md = gr.Markdown(elem_id="evaluation")
            eval_plots = [gr.Plot(visible=False, elem_id=f"eval-{i}") for i in range(5)]
        with gr.Tab("Models"):
            models_md = gr.Markdown()
            models_df = gr.Dataframe()
        with gr.Tab("Data quality"):
            quality_md = gr.Markdown(elem_id="quality")

        def user_of(request: gr.Request | None) -> str | None:
            return getattr(request, "username", None) if request is not None else None

        def on_predict(t, a, h, ind, request: gr.Request):
            msg, tab, fig = s.forecast(t, a, h, user_of(request))
            try:
                pfig = s.price(t, ind)
            except ValueError as e:
                msg, pfig = f"{msg}\n\n{e}", None
            return msg, tab, fig, pfig

        def on_models(a, h, request: gr.Request):
            return s.models(a, h, user_of(request))

        def on_load(request: gr.Request):
            text, figs = s.evaluation()
            updates = [gr.update(value=f, visible=True, label=k) for k, f in figs]
            updates += [gr.update(visible=False)] * (len(eval_plots) - len(updates))
            mtext, mdf = s.models("champion", 5, user_of(request))
            names = s.feature_names(user_of(request))
            return [text, *updates, mtext, mdf, s.quality(),
                    gr.update(choices=names, value=names[0] if names else None)]

        inputs = [ticker, alias, horizon, indicators]
        outputs = [message, table, waterfall, price]
        go_btn.click(on_predict, inputs, outputs)
        ticker.change(on_predict, inputs, outputs)
        alias.change(on_predict, inputs, outputs)
        horizon.change(on_predict, inputs, outputs)
        indicators.change(lambda t, ind: s.price(t, ind), [ticker, indicators], price)
        for ctl in (alias, horizon):  # the card follows the chosen alias and horizon
            ctl.change(on_models, [alias, horizon], [models_md, models_df])
        feature.change(s.feature, [ticker, feature], feature_plot)
        demo.load(on_load, None, [eval_md, *eval_plots, models_md, models_df, quality_md,
                                  feature])
        demo.load(on_predict, inputs, outputs)
    demo.stockray_session = s  # launch() hands its login check to Gradio
    return demo


def launch(cfg: AnalystConfig, *, host: str = "127.0.0.1", port: int = 7860,
           block: bool = True):
    """Serve the app on ``host:port`` (loopback unless configured); returns the Blocks."""
    demo = build_app(cfg)
    demo.queue(default_concurrency_limit=4)
    session = getattr(demo, "stockray_session", None)
    demo.launch(server_name=host, server_port=port, prevent_thread_lock=not block,
                auth=session.login if cfg.login else None,
                auth_message="Sign in with any user name and your stockray API token.",
                share=False, show_error=True, inbrowser=False)
    return demo
