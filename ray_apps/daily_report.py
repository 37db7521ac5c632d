"""Daily report job: `python -m ray_apps.daily_report` (what the daily schedule submits with
`stockray submit -- python -m ray_apps.daily_report`) and `stockray report`.

Asks the running service for the universe, writes ``<data_dir>/reports/daily/<date>/`` (JSON,
HTML, PDF) and emails the PDF through an email sink of the alert config when one is named.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

from features.settings import Settings


@dataclass
class DailyReportConfig:
    """What the job does."""

    horizon: int = 5
    tickers: tuple[str, ...] = ()       # empty: every ticker in the lake
    target: str | None = None           # gRPC host:port; default 127.0.0.1:<grpc port>
    pdf: bool = True
    email_sink: str | None = None       # an email sink of `alerts_config`
    alerts_config: Path = Path("configs/alerts.yaml")


def main(cfg: DailyReportConfig, settings: Settings, log=print) -> dict[str, Path]:
    """Build, write, print to PDF and (optionally) email the report; returns the paths."""
    from serving.analyst.data import AnalystData
    from serving.client import PredictionClient
    from serving.daily_report import collect, html_to_pdf, movers, write_daily_report

    settings = settings.resolved()
    data = AnalystData(settings)
    tickers = list(cfg.tickers) or data.tickers()
    target = cfg.target or f"127.0.0.1:{settings.grpc_port}"
    with PredictionClient(target) as client:
        rep = collect(client, data, tickers, cfg.horizon)
    out = settings.reports_dir / "daily" / rep.created_at[:10]
    paths = write_daily_report(rep, out)
    if cfg.pdf:
        paths["pdf"] = html_to_pdf(paths["html"], out / "report.pdf")
    top = movers(rep, 3)
    log(f"daily report: {len(rep.forecasts)} forecasts, {len(rep.errors)} tickers not "
        f"forecast; top movers {', '.join(f'{t} {p:+.4f}' for t, p in zip(top['ticker'], top['predicted'], strict=True))}")
    for k, p in paths.items():
        log(f"  {k}: {p}")
    if cfg.email_sink:
        from serving.alerts.rules import load_alert_config
        from serving.alerts.sinks import Dispatcher

        d = Dispatcher(load_alert_config(cfg.alerts_config), settings.data_dir)
        sent = d.send_email(cfg.email_sink, f"stockray daily report {rep.created_at[:10]}",
                            f"The stockray daily report of {rep.created_at} is attached.\n",
                            [p for k, p in paths.items() if k in ("pdf", "html")])
        log(f"  emailed via {cfg.email_sink}: {'sent' if sent.delivered else 'FAILED'} after "
            f"{sent.attempts} attempt(s)" + (f" ({sent.errors[-1]})" if sent.errors else ""))
        if not sent.delivered:
            raise RuntimeError(f"daily report email failed: {sent.errors[-1]}")
    return paths


def _parse(argv=None) -> DailyReportConfig:
    p = argparse.ArgumentParser(prog="python -m ray_apps.daily_report", description=__doc__)
    p.add_argument("--horizon", type=int, default=5)
    p.add_argument("--tickers", default="", help="comma-separated; default: the lake's")
    p.add_argument("--target", default=None, help="gRPC host:port of the service")
    p.add_argument("--no-pdf", action="store_true")
    p.add_argument("--email-sink", default=None)
    p.add_argument("--alerts-config", type=Path, default=Path("configs/alerts.yaml"))
    a = p.parse_args(argv)
    return DailyReportConfig(horizon=a.horizon, target=a.target, pdf=not a.no_pdf,
                             tickers=tuple(t.strip().upper() for t in a.tickers.split(",")
                                           if t.strip()),
                             email_sink=a.email_sink, alerts_config=a.alerts_config)


if __name__ == "__main__":
    main(_parse(), Settings())
