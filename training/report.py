"""JSON + self-contained HTML evaluation report: models beside baselines, mean ± std over seeds.

Input is a list of `RunResult` (one per model-or-baseline × seed). The HTML embeds plotly.js
inline (no CDN: the report must open offline) and shows the comparison table and the figures
of `training.plots` the runs support (equity + drawdown, IC, importance, calibration or score
deciles), plus a note when the models' top features are market-wide series.

Typical use::

    runs = [RunResult("lgbm", "model", seed, metrics, equity=bt.equity, daily_ic=s), ...]
    write_report(runs, out_dir, title="lgbm 5d walk-forward")
"""

from __future__ import annotations

import html
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

DEFAULT_METRICS = (
    "ic",
    "rank_ic",
    "icir",
    "hit_rate",
    "mcc",
    "rmse",
    "bt_sharpe",
    "bt_ann_return",
    "bt_max_drawdown",
    "bt_avg_turnover",
)

OUTPUTS = ("return", "score")


@dataclass
class RunResult:
    """One evaluated prediction set.

    Attributes:
        name: model or baseline name (rows of the comparison table).
        kind: ``"model"`` or ``"baseline"``.
        seed: training seed; None for deterministic baselines.
        metrics: scalar metrics, e.g. from `training.evaluate.evaluate_predictions`.
        equity: backtest equity curve indexed by date.
        daily_ic: per-date IC indexed by date.
        feature_importance: importance per feature name.
        calibration: `training.evaluate.calibration_table` output.
        output: ``"return"`` for a forecast of the forward return, ``"score"`` for a rank
            score with no return scale (it gets a decile chart instead of calibration).
    """

    name: str
    kind: str
    seed: int | None
    metrics: dict[str, float]
    equity: pd.Series | None = None
    daily_ic: pd.Series | None = None
    feature_importance: pd.Series | None = None
    calibration: pd.DataFrame | None = field(default=None)
    output: str = "return"

    def __post_init__(self) -> None:
        if self.kind not in ("model", "baseline"):
            raise ValueError(f"RunResult.kind must be 'model' or 'baseline', got {self.kind!r}")
        if self.output not in OUTPUTS:
            raise ValueError(f"RunResult.output must be one of {OUTPUTS}, got {self.output!r}")


def comparison_table(
    runs: Sequence[RunResult], metrics: Sequence[str] = DEFAULT_METRICS
) -> pd.DataFrame:
    """Mean and std (ddof=1) over seeds of each metric, one row per (kind, name).

    NaN metrics stay NaN in the mean (a constant predictor's IC is undefined, not 0): the mean
    skips nothing, so one NaN seed makes the mean NaN rather than flattering.

    Returns:
        Index ``(kind, name)``, columns ``n_seeds`` and ``<metric>_mean`` / ``<metric>_std``;
        models first, then baselines, in input order.
    """
    if not runs:
        raise ValueError("comparison_table: no runs given")
    rows = []
    for r in runs:
        rows.append(
            {
                "kind": r.kind,
                "name": r.name,
                **{m: float(r.metrics.get(m, np.nan)) for m in metrics},
            }
        )
    df = pd.DataFrame(rows)
    order = list(dict.fromkeys(zip(df["kind"], df["name"], strict=True)))
    order.sort(key=lambda kn: 0 if kn[0] == "model" else 1)
    g = df.groupby(["kind", "name"], sort=False)
    out = pd.DataFrame({"n_seeds": g.size()})
    for m in metrics:
        out[f"{m}_mean"] = g[m].agg(lambda s: s.mean(skipna=False))
        out[f"{m}_std"] = g[m].agg(lambda s: s.std(ddof=1, skipna=False) if len(s) > 1 else np.nan)
    return out.loc[order]


def _jsonable(x):
    if isinstance(x, float | np.floating):
        return None if not math.isfinite(float(x)) else float(x)
    if isinstance(x, np.integer):
        return int(x)
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_jsonable(v) for v in x]
    if isinstance(x, pd.Timestamp):
        return x.isoformat()
    return x


def _series_json(s: pd.Series | None):
    if s is None:
        return None
    return {"index": [str(i) for i in s.index], "values": _jsonable(list(s.astype(float)))}


def report_dict(
    runs: Sequence[RunResult], metrics: Sequence[str] = DEFAULT_METRICS, meta: dict | None = None
) -> dict:
    """JSON-ready structure: meta, the comparison table and every run (NaN -> null)."""
    table = comparison_table(runs, metrics)
    return _jsonable(
        {
            "meta": meta or {},
            "comparison": [
                {"kind": k, "name": n, **row.to_dict()} for (k, n), row in table.iterrows()
            ],
            "runs": [
                {
                    "name": r.name,
                    "kind": r.kind,
                    "seed": r.seed,
                    "output": r.output,
                    "metrics": r.metrics,
                    "equity": _series_json(r.equity),
                    "daily_ic": _series_json(r.daily_ic),
                    "feature_importance": None
                    if r.feature_importance is None
                    else {str(k): float(v) for k, v in r.feature_importance.items()},
                    "calibration": None
                    if r.calibration is None
                    else r.calibration.to_dict(orient="list"),
                }
                for r in runs
            ],
        }
    )


def _fmt(mean: float, std: float) -> str:
    if not math.isfinite(mean):
        return "NaN"
    return f"{mean:.4f}" if not math.isfinite(std) else f"{mean:.4f} ± {std:.4f}"


def _table_html(table: pd.DataFrame, metrics: Sequence[str]) -> str:
    head = "".join(f"<th>{html.escape(m)}</th>" for m in ("kind", "name", "seeds", *metrics))
    body = []
    for (kind, name), row in table.iterrows():
        cells = [html.escape(kind), html.escape(name), str(int(row["n_seeds"]))]
        cells += [_fmt(row[f"{m}_mean"], row[f"{m}_std"]) for m in metrics]
        body.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    return (
        f'<table class="cmp"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'
    )


def render_html(
    runs: Sequence[RunResult],
    title: str = "stockray evaluation",
    metrics: Sequence[str] = DEFAULT_METRICS,
    meta: dict | None = None,
) -> str:
    """Self-contained HTML page (plotly.js embedded once, inline)."""
    return _page(comparison_table(runs, metrics), report_dict(runs, metrics, meta), title,
                 metrics)


def _page(table: pd.DataFrame, data: dict, title: str, metrics: Sequence[str]) -> str:
    from training import plots

    meta = dict(data["meta"])
    wide = meta.pop("market_wide_features", None) or []
    note = plots.market_timing_note(data["runs"], wide)
    if wide:
        meta["market-wide features"] = f"{len(wide)}: {', '.join(wide)}"
    parts = []
    for i, (key, fig) in enumerate(plots.figures(data["runs"])):
        parts.append(
            f'<section id="{key}">'
            + fig.to_html(full_html=False, include_plotlyjs=(i == 0), div_id=f"fig-{key}")
            + "</section>"
        )
    meta_html = "".join(
        f"<li><b>{html.escape(str(k))}</b>: {html.escape(str(v))}</li>" for k, v in meta.items()
    )
    note_html = f'<p class="note"><b>Note:</b> {html.escape(note)}</p>' if note else ""
    return f"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:sans-serif;margin:2em}} table.cmp{{border-collapse:collapse}}
table.cmp td,table.cmp th{{border:1px solid #ccc;padding:4px 8px;text-align:right}}
p.note{{background:#fff3cd;border:1px solid #e0c36c;padding:8px 12px;max-width:60em}}</style>
</head><body><h1>{html.escape(title)}</h1><ul>{meta_html}</ul>
<h2>Models vs baselines (mean ± std over seeds)</h2>{_table_html(table, metrics)}
{note_html}
{"".join(parts)}
</body></html>"""


def write_report(
    runs: Sequence[RunResult],
    out_dir: str | Path,
    title: str = "stockray evaluation",
    metrics: Sequence[str] = DEFAULT_METRICS,
    meta: dict | None = None,
) -> dict[str, Path]:
    """Write ``report.json`` and ``report.html`` into ``out_dir`` (created if missing).

    Returns:
        ``{"json": path, "html": path}``.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / "report.json", "html": out / "report.html"}
    data = report_dict(runs, metrics, meta)
    paths["json"].write_text(json.dumps(data, indent=2, allow_nan=False))
    paths["html"].write_text(_page(comparison_table(runs, metrics), data, title, metrics),
                             encoding="utf-8")
    return paths
