"""What the analyst app reads from the data directory (never predictions: those come over gRPC).

Price history from the lake, a ticker's feature history from the offline store, the newest
walk-forward report, the newest data-quality report and the quarantine counts.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from features.lake import list_tickers, read_bars
from features.settings import Settings


class AnalystData:
    """Read-only views of one deployment's data directory."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def tickers(self) -> list[str]:
        """Tickers with bars in the lake (the index series included)."""
        return list_tickers(self.settings.bars_dir) if self.settings.bars_dir.exists() else []

    def bars(self, ticker: str) -> pd.DataFrame:
        return read_bars(self.settings.bars_dir, [ticker])

    def feature_history(self, ticker: str, features: list[str]) -> pd.DataFrame:
        """``ts`` + ``features`` of one ticker from the offline store (empty when absent)."""
        path = self.settings.offline_dir / "features.parquet"
        if not path.exists():
            return pd.DataFrame(columns=["ts", *features])
        cols = ["ticker", "ts", *features]
        try:
            frame = pd.read_parquet(path, columns=cols, filters=[("ticker", "==", ticker)])
        except (KeyError, ValueError):  # a feature the store does not hold
            return pd.DataFrame(columns=["ts", *features])
        return frame.sort_values("ts").drop(columns="ticker").reset_index(drop=True)

    def latest_walkforward(self) -> tuple[Path, dict] | None:
        """The newest ``reports/walkforward*/report.json`` and its content."""
        found = sorted(self.settings.reports_dir.glob("walkforward*/report.json"),
                       key=lambda p: p.stat().st_mtime)
        if not found:
            return None
        return found[-1], json.loads(found[-1].read_text())

    def model_card(self, name: str, version: str) -> str | None:
        """The registry's model card (the version's description) or None when unavailable."""
        db = self.settings.mlflow_dir / "mlflow.db"
        if not db.exists():
            return None
        import mlflow

        try:
            mv = mlflow.MlflowClient(tracking_uri=self.settings.tracking_uri) \
                .get_model_version(name, version)
        except mlflow.exceptions.MlflowException:
            return None
        return mv.description or None

    def data_quality(self) -> dict | None:
        path = self.settings.reports_dir / "data_quality" / "latest.json"
        return json.loads(path.read_text()) if path.exists() else None

    def quarantine_counts(self) -> pd.DataFrame:
        """Quarantined rows per run and rule."""
        files = sorted(self.settings.quarantine_dir.glob("*.parquet"))
        if not files:
            return pd.DataFrame(columns=["run_id", "rule", "rows"])
        frame = pd.concat([pd.read_parquet(f, columns=["run_id", "rule"]) for f in files])
        return (frame.groupby(["run_id", "rule"]).size().rename("rows").reset_index()
                .sort_values(["run_id", "rule"]))


def quality_markdown(report: dict | None, quarantine: pd.DataFrame) -> str:
    if report is None:
        return "No data-quality report yet: run `stockray features`."
    c = report.get("contract", {})
    f = report.get("features", {})
    lines = [f"**Run** `{report.get('run_id')}` at {report.get('created_at', '')[:19]}",
             (f"- rows in {c.get('rows_in', 0):,}, accepted {c.get('rows_ok', 0):,}, "
             f"quarantined {c.get('rows_quarantined', 0):,} {c.get('by_rule') or ''}"),
             f"- outlier jumps flagged: {c.get('outlier_jumps_flagged', 0)}",
             (f"- feature rows {f.get('rows', 0):,} for {len(f.get('tickers') or [])} tickers, "
             f"{str(f.get('first_ts', ''))[:10]} .. {str(f.get('last_ts', ''))[:10]}"),
             f"- quarantined rows in the lake, all runs: {int(quarantine['rows'].sum())}"]
    return "\n".join(lines)
