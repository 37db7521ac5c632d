"""Where monitoring leaves its trace: MLflow version tags and a JSON + HTML report.

Each monitored version gets tags ``live_rank_ic``, ``live_n_dates``, ``monitored_at`` and
``monitor_decision`` (the action, its reason and the figures behind it, as JSON). When a
champion is later replaced, its last ``live_rank_ic`` is what the rollback rule compares the
new champion with (`previous_champion_live_ic`).
"""

from __future__ import annotations

import html
import json
import math
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from training.monitor import Decision
from training.registry import CHAMPION, HISTORY_TAG

LIVE_IC_TAG = "live_rank_ic"
DECISION_TAG = "monitor_decision"


def _client(tracking_uri: str):
    import mlflow

    return mlflow.MlflowClient(tracking_uri=tracking_uri)


def validation_rank_ic(tracking_uri: str, name: str, version: str) -> float | None:
    """The version's hold-out RankIC at training (run metric ``val_rank_ic``)."""
    client = _client(tracking_uri)
    run = client.get_run(client.get_model_version(name, version).run_id)
    v = run.data.metrics.get("val_rank_ic")
    return float(v) if v is not None else None


def previous_champion_live_ic(tracking_uri: str, name: str) -> tuple[str | None, float | None]:
    """(version, last recorded live RankIC) of the champion before the current one."""
    client = _client(tracking_uri)
    hist = json.loads((client.get_registered_model(name).tags or {}).get(HISTORY_TAG, "[]"))
    current = str(client.get_model_version_by_alias(name, CHAMPION).version)
    earlier = [str(v) for v in hist if str(v) != current]
    if not earlier:
        return None, None
    prev = earlier[-1]
    raw = (client.get_model_version(name, prev).tags or {}).get(LIVE_IC_TAG)
    return prev, (float(raw) if raw not in (None, "", "nan") else None)


def record_decision(tracking_uri: str, decision: Decision) -> None:
    """Tag the version with its live figures and the decision (reason + figures as JSON)."""
    client = _client(tracking_uri)
    now = datetime.now(UTC).isoformat(timespec="seconds")
    r = decision.figures.get("live_rank_ic")
    tags = {DECISION_TAG: json.dumps({**decision.to_dict(), "at": now}, default=str),
            "monitored_at": now, "live_n_dates": str(decision.figures.get("n_dates"))}
    if r is not None and math.isfinite(r):
        tags[LIVE_IC_TAG] = f"{r:.6f}"
    for k, v in tags.items():
        client.set_model_version_tag(decision.name, decision.version, k, v)


def write_report(out_dir: Path, *, live: pd.DataFrame, decisions: list[Decision],
                 drift: pd.DataFrame, rolling: pd.DataFrame,
                 regime: pd.DataFrame | None = None, meta: dict | None = None) -> dict[str, Path]:
    """``monitor.json`` + ``monitor.html`` (live IC over time, drift, regime) in ``out_dir``."""
    import plotly.graph_objects as go

    out_dir.mkdir(parents=True, exist_ok=True)
    doc = {"meta": meta or {}, "decisions": [d.to_dict() for d in decisions],
           "live": json.loads(live.to_json(orient="records")),
           "drift": json.loads(drift.to_json(orient="records"))}
    figs = []
    if not rolling.empty:
        f = go.Figure()
        for (m, v, h), g in rolling.groupby(["model", "version", "horizon"]):
            f.add_trace(go.Scatter(x=[str(pd.Timestamp(d).date()) for d in g["date"]],
                                   y=g["rolling"], mode="lines", name=f"{m} v{v} h{h}"))
        f.add_hline(y=0.0, line={"color": "grey"})
        f.update_layout(title="Live rank IC of served forecasts (rolling mean)",
                        yaxis_title="rank IC")
        figs.append(("live_ic", f))
    if not drift.empty:
        d = drift.head(20).iloc[::-1]
        f = go.Figure(go.Bar(x=d["psi"], y=d["feature"], orientation="h",
                             marker={"color": ["#d62728" if s else "#1f77b4"
                                               for s in d["shifted"]]}))
        f.add_vline(x=0.25, line={"dash": "dash", "color": "grey"})
        f.update_layout(title="Feature drift vs the training window (PSI; red = shifted)",
                        height=140 + 24 * len(d))
        figs.append(("drift", f))
    if regime is not None and not regime.empty:
        f = go.Figure(go.Scatter(x=[str(pd.Timestamp(t).date()) for t in regime.index],
                                 y=regime["p_high_vol"], mode="lines", name="P(high vol)"))
        f.update_layout(title="Market regime: P(high-volatility state)", yaxis_range=[0, 1])
        figs.append(("regime", f))
    parts = [f'<section id="{k}">' + fig.to_html(full_html=False, include_plotlyjs=i == 0,
                                                 div_id=f"fig-{k}") + "</section>"
             for i, (k, fig) in enumerate(figs)]
    rows = "".join(f"<tr><td>{html.escape(d.name)} v{html.escape(d.version)} h{d.horizon}</td>"
                   f"<td><b>{html.escape(d.action)}</b></td><td>{html.escape(d.reason)}</td></tr>"
                   for d in decisions)
    page = (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>stockray monitor</title>"
            f"</head><body style='font-family:sans-serif;margin:2em'><h1>stockray monitor</h1>"
            f"<p>{html.escape(json.dumps(meta or {}, default=str))}</p>"
            f"<h2>Decisions</h2><table border=1 cellpadding=4>{rows}</table>{''.join(parts)}"
            f"</body></html>")
    paths = {"json": out_dir / "monitor.json", "html": out_dir / "monitor.html"}
    paths["json"].write_text(json.dumps(doc, indent=1, default=str))
    paths["html"].write_text(page, encoding="utf-8")
    return paths
