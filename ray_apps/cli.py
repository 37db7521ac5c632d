"""The ``stockray`` command. Each subcommand is one stage; ``up`` runs them all.

Global options (before the subcommand) set where data goes and which ports are used; each also
reads from the environment (``STOCKRAY_DATA_DIR``, ``STOCKRAY_GRPC_PORT``, ...).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from features.settings import Settings

app = typer.Typer(add_completion=False, no_args_is_help=True, rich_markup_mode=None,
                  help="stockray: a Ray cluster for stock prediction — ingest, features, "
                       "training and low-latency gRPC serving with explanations.")
_state: dict[str, Settings] = {}


def _settings() -> Settings:
    return _state.get("settings") or Settings()


@app.callback()
def _global(
    data_dir: Annotated[Optional[Path], typer.Option(
        help="Where everything is written [env STOCKRAY_DATA_DIR; default ./data].")] = None,
    grpc_port: Annotated[Optional[int], typer.Option(
        help="Public gRPC port [env STOCKRAY_GRPC_PORT; default 9000].")] = None,
    http_port: Annotated[Optional[int], typer.Option(
        help="HTTP/JSON port [env STOCKRAY_HTTP_PORT; default 8000].")] = None,
    dashboard_port: Annotated[Optional[int], typer.Option(
        help="Ray dashboard port [env STOCKRAY_DASHBOARD_PORT; default 8265].")] = None,
) -> None:
    overrides = {k: v for k, v in dict(data_dir=data_dir, grpc_port=grpc_port,
                                        http_port=http_port,
                                        dashboard_port=dashboard_port).items() if v is not None}
    _state["settings"] = Settings(**overrides)


def _tickers(value: str) -> tuple[str, ...]:
    return tuple(t.strip().upper() for t in value.split(",") if t.strip())


@app.command()
def up(
    once: Annotated[bool, typer.Option(help="Exit after the sample prediction.")] = False,
    tickers: Annotated[str, typer.Option(help="Comma-separated embedded tickers.")] =
        "AAPL,GOOG,IBM,MSFT,FB",
    start: Annotated[Optional[str], typer.Option(help="First date, YYYY-MM-DD.")] = None,
    end: Annotated[Optional[str], typer.Option(help="Last date, YYYY-MM-DD.")] = None,
    engine: Annotated[str, typer.Option(help="Feature engine: ray | local.")] = "ray",
    mode: Annotated[str, typer.Option(help="Serve graph: fused | split.")] = "fused",
    auth: Annotated[bool, typer.Option(help="Ray token auth for the cluster.")] = True,
) -> None:
    """Run the whole stack on the embedded data and serve predictions until Ctrl-C."""
    from ray_apps.up import UpConfig, main

    settings = _settings().model_copy(update={"serve_mode": mode})
    main(UpConfig(once=once, tickers=_tickers(tickers), start=start, end=end, engine=engine,
                  auth=auth), settings)


@app.command()
def ingest(
    file: Annotated[Optional[list[Path]], typer.Option(
        help="OHLCV CSV/Parquet file(s) (columns date, open, high, low, close, volume, "
             "[adj_close], [ticker]). Default: the embedded universe.")] = None,
    ticker: Annotated[Optional[str], typer.Option(
        help="Ticker for files without a ticker column.")] = None,
    tickers: Annotated[str, typer.Option(help="Embedded tickers (without --file).")] =
        "AAPL,GOOG,IBM,MSFT,FB",
    start: Annotated[Optional[str], typer.Option(help="First date, YYYY-MM-DD.")] = None,
    end: Annotated[Optional[str], typer.Option(help="Last date, YYYY-MM-DD.")] = None,
) -> None:
    """Validate market data into the lake; bad rows go to the quarantine with reasons."""
    from ray_apps.ingest import IngestConfig, describe, main

    rep = main(IngestConfig(files=list(file or []), ticker=ticker, tickers=_tickers(tickers),
                            start=start, end=end), _settings())
    typer.echo(describe(rep))
    if rep.failed and not rep.sources:
        raise typer.Exit(1)


@app.command()
def features(
    engine: Annotated[str, typer.Option(help="ray (Ray Data) | local (one process).")] = "ray",
) -> None:
    """Compute features and labels from the lake, apply Feast, materialize online."""
    from ray_apps.build_features import FeaturesConfig, main
    from ray_apps.cluster import local_cluster

    settings = _settings().resolved()
    if engine == "ray":
        with local_cluster(settings, dashboard=False):
            res = main(FeaturesConfig(engine=engine), settings)
    else:
        res = main(FeaturesConfig(engine=engine), settings)
    typer.echo(f"{res.rows} feature rows for {', '.join(res.tickers)} "
               f"({res.first_ts}..{res.last_ts}); {res.online_tickers} tickers online")


@app.command()
def train(
    horizons: Annotated[str, typer.Option(help="Comma-separated horizons in days.")] = "1,5,20",
) -> None:
    """Train LightGBM per horizon (Ray Tune), register in MLflow as champion, export ONNX."""
    from ray_apps.cluster import local_cluster
    from ray_apps.train import TrainConfig, describe, main

    settings = _settings().resolved()
    hs = [int(h) for h in horizons.split(",") if h.strip()]
    with local_cluster(settings, dashboard=False):
        res = main(TrainConfig(horizons=hs), settings)
    typer.echo(describe(res))


@app.command()
def serve(
    mode: Annotated[str, typer.Option(help="fused | split.")] = "fused",
    auth: Annotated[bool, typer.Option(help="Ray token auth for the cluster.")] = True,
) -> None:
    """Serve the registry's champions over gRPC and HTTP until Ctrl-C."""
    import time

    from ray_apps.cluster import local_cluster
    from ray_apps.serve import main
    from serving.launch import serve_env

    settings = _settings().resolved()
    env = serve_env(settings.grpc_port, settings.http_port)
    with local_cluster(settings, extra_env=env, auth=auth):
        ep = main(settings, mode=mode)
        typer.echo(f"gRPC {ep.grpc_target}, HTTP {ep.http_url} — Ctrl-C to stop")
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            typer.echo("stopping the Ray cluster this command started (Serve included)")


@app.command()
def predict(
    ticker: Annotated[str, typer.Argument(help="Ticker, e.g. AAPL.")],
    horizon: Annotated[Optional[list[int]], typer.Option(
        help="Horizon in trading days (repeatable); default: all served.")] = None,
    explain: Annotated[bool, typer.Option(help="Include top SHAP contributions.")] = True,
    top_k: Annotated[int, typer.Option(help="Contributions to show.")] = 5,
    target: Annotated[Optional[str], typer.Option(
        help="gRPC host:port (default 127.0.0.1:<grpc port>).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    timeout: Annotated[float, typer.Option(help="Seconds to wait.")] = 10.0,
) -> None:
    """Ask the running gRPC service for a forecast (needs `stockray up` or `serve`)."""
    from google.protobuf.json_format import MessageToDict

    from serving.client import PredictionClient, PredictionError, format_response

    settings = _settings()
    tgt = target or f"127.0.0.1:{settings.grpc_port}"
    try:
        with PredictionClient(tgt) as client:
            resp = client.predict(ticker, list(horizon or []), explain=explain, top_k=top_k,
                                  timeout=timeout)
    except PredictionError as e:
        typer.echo(f"error: {e.code.name}: {e.details}", err=True)
        if e.code.name in ("UNAVAILABLE", "DEADLINE_EXCEEDED"):
            typer.echo(f"is the service running on {tgt}? Start it with `stockray up`.",
                       err=True)
        raise typer.Exit(2) from None
    if as_json:
        typer.echo(json.dumps(MessageToDict(resp, preserving_proto_field_name=True), indent=2))
    else:
        typer.echo(format_response(resp))


@app.command()
def quarantine(
    limit: Annotated[int, typer.Option(help="Rows to show.")] = 20,
) -> None:
    """Show quarantined input rows (rule, reason, original values)."""
    import pandas as pd

    qdir = _settings().resolved().quarantine_dir
    files = sorted(qdir.glob("*.parquet"))
    if not files:
        typer.echo(f"nothing quarantined in {qdir}")
        return
    frame = pd.concat([pd.read_parquet(f) for f in files], ignore_index=True)
    typer.echo(f"{len(frame)} quarantined rows in {len(files)} run(s); by rule: "
               f"{frame['rule'].value_counts().to_dict()}")
    with pd.option_context("display.max_colwidth", 80, "display.width", 200):
        typer.echo(frame[["run_id", "source", "row_number", "rule", "reason"]]
                   .tail(limit).to_string(index=False))


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def submit(ctx: typer.Context) -> None:
    """`ray job submit` to the running cluster with its auth token, e.g.
    `stockray submit -- stockray train`."""
    settings = _settings().resolved()
    token = settings.ray_dir / "auth_token"
    env = dict(os.environ)
    if token.exists():
        env.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN_PATH=str(token))
    ray_bin = Path(sys.executable).with_name("ray")
    cmd = [str(ray_bin), "job", "submit", "--address",
           f"http://{settings.host}:{settings.dashboard_port}", "--", *ctx.args]
    raise typer.Exit(subprocess.call(cmd, env=env))


def main() -> None:
    app()


if __name__ == "__main__":
    main()
