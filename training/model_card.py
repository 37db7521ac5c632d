"""The model card a registered version carries (``model_card.md``), and the code revision it
states: intended use, data, metrics against the baselines, limits."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np

#: families that are sequence networks (``training.registry.SEQUENCE_FAMILIES``' keys)
SEQUENCE_ARCHITECTURES = ("lstm", "transformer")


def git_revision() -> str:
    """The code's git commit, or 'unknown' outside a checkout."""
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=False,
                              cwd=Path(__file__).parent, timeout=5).stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"



def _fmt(v) -> str:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return str(v)
    return "n/a" if not np.isfinite(f) else f"{f:.4f}"


def _model_text(family: str, window: int | None) -> str:
    if family in SEQUENCE_ARCHITECTURES:
        arch = "LSTM" if family == "lstm" else "Transformer encoder"
        return (f"{arch} over the last {window or '?'} daily feature rows of the ticker, one "
                "head per horizon trained jointly on standardised targets; explained with "
                "integrated gradients")
    objective = "lambdarank (per-date ranking)" if family == "lgbmrank" else "L2 regression"
    return f"LightGBM, {objective}"


def _feature_lines(feature_set: dict | None) -> list[str]:
    if not feature_set:
        return []
    out = [f"- Features: {len(feature_set['kept'])} used"]
    for name, why in sorted(feature_set.get("dropped", {}).items()):
        out.append(f"  - dropped `{name}`: {why}")
    return out


def model_card(*, name: str, version: str, family: str, horizon: int, params: dict,
               data_hash: str | None, holdout: dict | None = None,
               walkforward: dict | None = None, window: int | None = None,
               holdout_note: str | None = None, feature_set: dict | None = None) -> str:
    """Markdown model card: intended use, data, metrics vs baselines, limits.

    Args:
        holdout: ``fit_horizon`` metrics (the config's valid segment or the last
            ``valid_frac`` of dates, purged; see ``holdout_note``), or a sequence net's
            ``score_sequence`` metrics (``val_*`` and ``test_*``).
        walkforward: ``{"data": str, "table": str (markdown), "verdict": [str],
            "rank_ic_seeds": [float]}`` from the evaluation step, when it ran.
        window: a sequence net's window length (rows of history).
        holdout_note: how the hold-out was cut (default: ``fit_horizon``'s last-20% split).
        feature_set: kept and dropped features (``features.coverage``), when some were dropped.
    """
    lines = [
        f"# Model card: {name} v{version}", "",
        "## Intended use",
        (f"Cross-sectional forecast of the {horizon}-trading-day forward log return of US "
         f"stocks from daily bars ({_model_text(family, window)}). For research and for "
         "ranking a universe of names against each other; **not** investment advice, and not "
         "calibrated as a return level when the objective is ranking."), "",
        "## Data",
        f"- Training data snapshot (SHA-256 of the offline parquet files): `{data_hash or 'n/a'}`",
        f"- Git revision: `{git_revision()}`",
        f"- Parameters: `{json.dumps(params, sort_keys=True, default=str)}`",
        *_feature_lines(feature_set), "",
        "## Metrics vs baselines",
    ]
    if holdout:
        keys = ["val_ic", "val_rank_ic", "val_rmse", "baseline_momentum_ic",
                "baseline_reversal_ic", "baseline_zero_rmse", "test_ic", "test_rank_ic",
                "test_rmse", "test_baseline_momentum_ic", "test_baseline_reversal_ic",
                "test_baseline_zero_rmse"]
        note = holdout_note or "Hold-out (last 20% of dates after a purge of h dates):"
        lines += [note, "",
                  "| metric | value |", "|---|---|"]
        lines += [f"| {k} | {_fmt(holdout.get(k))} |" for k in keys if k in holdout]
        lines.append("")
    if walkforward:
        lines += [f"Walk-forward ({walkforward.get('data', '')}):", "",
                  walkforward.get("table", ""), ""]
        lines += [f"- {v}" for v in walkforward.get("verdict", [])]
        lines.append("")
    else:
        lines += ["Walk-forward: not evaluated yet (`stockray evaluate` / `stockray retrain`).",
                  ""]
    lines += [
        "## Limits",
        ("- Daily returns are mostly noise: ICs of a few hundredths are typical and unstable "
         "across periods; compare against the baselines above, not against zero."),
        ("- Small universes (3-5 names per date in the embedded default) make per-date "
         "correlations and the long-short backtest very noisy."),
        "- Survivorship: the universes are today's survivors; results are optimistic.",
        "- No transaction-cost model beyond a flat bps charge; no capacity or borrow limits.",
        ("- Close-only data (skfolio) has no intraday range or volume: ATR-type features "
         "degenerate and volume features are dropped."),
    ]
    if family in SEQUENCE_ARCHITECTURES:
        lines += [
            (f"- Serving reads the ticker's last {window or 'L'} feature rows from the offline "
             "store; a ticker with less history is padded with the training mean (as in "
             "training), so its first forecasts lean on few real rows."),
            ("- Contributions are integrated gradients against the training-mean window, "
             "summed over the window's days: they explain the network, not the market."),
        ]
    return "\n".join(lines) + "\n"
