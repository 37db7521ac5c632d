"""`stockray alerts ...`: check the rule file, send a test alert, scan, replay dead letters."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from features.settings import Settings
from ray_apps.cli_state import settings as cli_settings

DEFAULT_CONFIG = Path("configs/alerts.yaml")
app = typer.Typer(add_completion=False, no_args_is_help=True, rich_markup_mode=None,
                  help="Alert rules (YAML) and their sinks: webhook, email, SMS, file.")
ConfigOpt = Annotated[Path, typer.Option("--config", help="Alert rules and sinks (YAML).")]


def _settings() -> Settings:
    return cli_settings().resolved()


def _load(config: Path):
    from pydantic import ValidationError

    from serving.alerts.rules import load_alert_config

    try:
        return load_alert_config(config)
    except (OSError, ValidationError) as e:
        typer.echo(f"error: {config}: {e}", err=True)
        raise typer.Exit(2) from None


def _dispatcher(cfg):
    from serving.alerts.sinks import Dispatcher

    return Dispatcher(cfg, _settings().data_dir)


def _print_reports(reports: dict) -> None:
    for name, rep in reports.items():
        rep = rep if isinstance(rep, dict) else rep.__dict__
        tail = f"; last error: {rep['errors'][-1]}" if rep["errors"] else ""
        typer.echo(f"  {name:<16} delivered {rep['delivered']}, dead-lettered "
                   f"{rep['dead_lettered']}, attempts {rep['attempts']}{tail}")


@app.command()
def check(config: ConfigOpt = DEFAULT_CONFIG) -> None:
    """Validate the rule file; list rules, sinks and whether each secret variable is set."""
    import os

    cfg = _load(config)
    typer.echo(f"{config}: {len(cfg.rules)} rules, {len(cfg.sinks)} sinks")
    for r in cfg.rules:
        typer.echo(f"  rule {r.name:<18} {r.kind:<13} {r.when:<17} {r.severity}")
    for s in cfg.sinks:
        envs = [getattr(s, k) for k in ("secret_env", "username_env", "password_env",
                                          "account_sid_env", "auth_token_env") if getattr(s, k)]
        state = ", ".join(f"{e} {'set' if os.environ.get(e) else 'MISSING'}" for e in envs)
        typer.echo(f"  sink {s.name:<18} {s.type:<8} min {s.min_severity:<8} {state}")


@app.command()
def test(config: ConfigOpt = DEFAULT_CONFIG,
         sink: Annotated[str | None, typer.Option(help="Only this sink.")] = None) -> None:
    """Send one test alert (severity critical, so every sink takes it)."""
    from datetime import UTC, datetime

    from serving.alerts.rules import Alert

    cfg = _load(config)
    if sink:
        cfg = cfg.model_copy(update={"sinks": [s for s in cfg.sinks if s.name == sink]})
        if not cfg.sinks:
            typer.echo(f"error: no sink named {sink!r}", err=True)
            raise typer.Exit(2)
    now = datetime.now(UTC).isoformat()
    alert = Alert(id=f"test-{now}", rule="test", kind="test", severity="critical",
                  subject="stockray", message="stockray test alert: delivery works",
                  observed_at=now)
    reports = _dispatcher(cfg).deliver([alert])
    _print_reports(reports)
    if any(r.dead_lettered for r in reports.values()):
        raise typer.Exit(1)


@app.command()
def scan(
    config: ConfigOpt = DEFAULT_CONFIG,
    tickers: Annotated[str | None, typer.Option(
        help="Comma-separated tickers (default: every ticker in the lake).")] = None,
    horizon: Annotated[list[int] | None, typer.Option(help="Horizon(s); default all.")] = None,
    target: Annotated[str | None, typer.Option(help="gRPC host:port of the service.")] = None,
) -> None:
    """One alert pass: served forecasts, realised outcomes, data quality -> sinks."""
    from features.lake import list_tickers, read_bars
    from serving.alerts.scan import scan as run_scan
    from serving.client import PredictionClient

    settings = _settings()
    cfg = _load(config)
    names = ([t.strip().upper() for t in tickers.split(",") if t.strip()] if tickers
             else list_tickers(settings.bars_dir))
    bars = read_bars(settings.bars_dir, names) if names else None
    with PredictionClient(target or f"127.0.0.1:{settings.grpc_port}") as client:
        res = run_scan(client, cfg, _dispatcher(cfg), tickers=names, horizons=horizon or [],
                       bars=bars, state_path=settings.data_dir / "alerts" / "state.json",
                       quality_report=settings.reports_dir / "data_quality" / "latest.json")
    typer.echo(f"{res.observations} forecasts, {res.realised} realised outcomes, "
               f"{len(res.alerts)} alerts")
    for a in res.alerts:
        typer.echo(f"  [{a.severity}] {a.rule}: {a.message}")
    _print_reports(res.reports)


@app.command()
def replay(sink: Annotated[str, typer.Option(help="Sink whose dead letters to resend.")],
           config: ConfigOpt = DEFAULT_CONFIG) -> None:
    """Resend a sink's dead-lettered alerts; those that fail again stay in the file."""
    cfg = _load(config)
    try:
        rep = _dispatcher(cfg).replay(sink)
    except KeyError as e:
        typer.echo(f"error: {e.args[0]}", err=True)
        raise typer.Exit(2) from None
    _print_reports({sink: rep})
    if rep.dead_lettered:
        raise typer.Exit(1)
