"""The main job: the whole stack on the embedded default, then serve until Ctrl-C.

``stockray up`` (or ``make run``): start a local Ray cluster -> ingest -> validate ->
features (Ray Data) -> Feast apply + materialize -> train per horizon (Ray Tune) -> MLflow
registry + ONNX -> Ray Serve gRPC/HTTP graph -> a sample prediction through the real client.

``stockray up --file PATH ...`` runs the same on the user's files only, in a fresh data dir:
market context from ``--index-file`` / ``--index-ticker`` or derived from the universe
(``features.universe_index``), features missing in that universe dropped from the models
(``features.coverage``), and the tickers whose online row is complete listed as servable.

``stockray up --text`` (``make run-text``) adds the text path: after the price features, the
SYNTHETIC sample news is fetched, scored and turned into the text view
(`ray_apps.text_stage`); the models train with ``configs/lgbm_text.yaml`` (price + text
inputs, `training.text_inputs`), and the sample prediction's explanation lists the text
features' SHAP values.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from features.coverage import servable_tickers, summarize_names
from features.lake import list_tickers
from features.settings import Settings
from features.sources import DEFAULT_TICKERS
from ray_apps import build_features, ingest, serve, text_stage, train
from ray_apps.cluster import dashboard_url, local_cluster, wait_for_interrupt
from serving.launch import ServeEndpoints
from serving.models import load_bundle


@dataclass
class UpConfig:
    """What ``stockray up`` runs."""

    once: bool = False  # exit after the sample prediction instead of serving until Ctrl-C
    tickers: tuple[str, ...] = DEFAULT_TICKERS
    start: str | None = None  # first date of the embedded data (None = all, from 2000-03)
    end: str | None = None
    # feature pipeline: "auto" picks Ray Data or one process by row count (measured break-even
    # ~1.5M bars on 2 cores, see features.pipeline.choose_engine); "ray" forces Ray Data
    engine: str = "auto"
    auth: bool = True  # Ray token auth (see ray_apps.cluster)
    sample_ticker: str | None = None  # default: AAPL, or the first servable ticker of files
    train: train.TrainConfig = field(default_factory=train.TrainConfig)
    # Bring your own universe: the user's OHLCV files only (the embedded data is not used)
    files: list[Path] = field(default_factory=list)
    index_file: Path | None = None  # the market index series (default: derived from files)
    index_ticker: str | None = None  # a ticker of the files that is the market index
    text: bool = False  # the text path too: sample news -> text features -> models use them


TEXT_CONFIG = Path(__file__).resolve().parent.parent / "configs" / "lgbm_text.yaml"
#: text features whose SHAP the sample prediction prints (the explanation carries them all)
_TEXT_PREFIXES = ("news_", "filing_")


@dataclass
class UpResult:
    timings: dict[str, float]
    ingest: dict
    features: build_features.FeaturesResult
    train: train.TrainResult
    endpoints: ServeEndpoints
    sample: str
    servable: list[str] = field(default_factory=list)  # tickers with a complete online row
    text: text_stage.TextStageResult | None = None


def _say(msg: str) -> None:
    print(msg, flush=True)


def main(cfg: UpConfig, settings: Settings,
         on_ready: Callable[[ServeEndpoints], None] | None = None) -> UpResult:
    """Run every stage; ``on_ready(endpoints)`` is called while the app is serving.

    Blocks until Ctrl-C unless ``cfg.once``.
    """
    from serving.auth import client_token
    from serving.client import PredictionClient, format_response
    from serving.scorer import bundle_services

    settings = settings.resolved()
    if cfg.files:
        check_fresh_lake(settings)
    if cfg.text and cfg.files:
        raise ValueError("--text runs on the embedded universe (the sample news covers AAPL, "
                         "MSFT, IBM, GOOG in 2012-13); with your files fetch your own news "
                         "(`stockray news fetch`) and train with configs/lgbm_text.yaml")
    t: dict[str, float] = {}
    t0 = time.perf_counter()
    env = serve.serve_env_of(settings)
    _say(f"stockray: data dir {settings.data_dir}")
    with local_cluster(settings, extra_env=env, auth=cfg.auth) as ctx:
        t["ray_start_s"] = time.perf_counter() - t0
        _say(f"[1/6] Ray cluster up ({t['ray_start_s']:.1f}s), dashboard "
             f"{dashboard_url(ctx) or 'off'}")

        s = time.perf_counter()
        rep = ingest.main(ingest.IngestConfig(tickers=cfg.tickers, start=cfg.start,
                                              end=cfg.end, files=list(cfg.files),
                                              index_file=cfg.index_file,
                                              index_ticker=cfg.index_ticker), settings)
        t["ingest_s"] = time.perf_counter() - s
        if not rep.sources:
            raise ValueError(f"nothing ingested: {rep.failed}")
        _say(f"[2/6] ingested and validated ({t['ingest_s']:.1f}s)\n{ingest.describe(rep)}")

        s = time.perf_counter()
        feats = build_features.main(build_features.FeaturesConfig(engine=cfg.engine), settings)
        t["features_s"] = time.perf_counter() - s
        _say(f"[3/6] features: {feats.rows} rows, {len(feats.tickers)} tickers "
             f"{feats.first_ts}..{feats.last_ts}; Feast applied, {feats.online_tickers} "
             f"tickers materialized online; engine {feats.engine} "
             f"({t['features_s']:.1f}s)")

        txt = None
        train_cfg = cfg.train
        if cfg.text:
            s = time.perf_counter()
            txt = text_stage.run_text_stage(settings)
            t["text_s"] = time.perf_counter() - s
            _say(f"[3/6] text ({t['text_s']:.1f}s): SYNTHETIC sample news\n"
                 f"{text_stage.describe(txt)}")
            train_cfg = replace(cfg.train, config_path=TEXT_CONFIG)

        s = time.perf_counter()
        tr = train.main(train_cfg, settings)
        t["train_s"] = time.perf_counter() - s
        _say(f"[4/6] trained, registered (alias champion) and exported to ONNX "
             f"({t['train_s']:.1f}s)\n{train.describe(tr)}")
        if cfg.text and text_training_note(tr):
            _say(text_training_note(tr))

        s = time.perf_counter()
        ep = serve.main(settings)
        t["serve_s"] = time.perf_counter() - s
        _say(f"[5/6] serving ({t['serve_s']:.1f}s): gRPC {ep.grpc_target} "
             f"({'direct ingress' if ep.direct_ingress else 'Serve proxy'}), "
             f"HTTP {ep.http_url}")

        served = load_bundle(next(iter(tr.registered.values())).bundle_dir)
        ok, why = servable_tickers(settings.feast_dir, feats.tickers, served.feature_names,
                                   services=bundle_services(served.meta))
        _say(f"      servable tickers: {summarize_names(ok)} of {len(feats.tickers)}"
             + (f"; not servable: {summarize_names(sorted(why))} (reasons in the data-quality "
                "report)" if why else ""))
        _record_servable(feats.report_path, ok, why)
        sample_ticker = cfg.sample_ticker or ("AAPL" if not cfg.files else
                                              (ok[0] if ok else feats.tickers[0]))
        # this data dir's token (the client's default reads $STOCKRAY_DATA_DIR or ./data)
        with PredictionClient(ep.grpc_target,
                              token=client_token(settings.auth_path)) as client:
            # --text: every contribution, so the text features' SHAP can be shown; the
            # table keeps the top 5 as without --text
            resp = client.predict(sample_ticker, explain=True,
                                  top_k=len(served.feature_names) if cfg.text else 0)
        sample = format_response(_top(resp, 5))
        t["to_first_prediction_s"] = time.perf_counter() - t0
        _say(f"[6/6] sample prediction through the gRPC client "
             f"({t['to_first_prediction_s']:.1f}s after start):\n{sample}")
        if cfg.text:
            _say(text_shap_lines(resp))
        _say(usage(settings, ep, sample_ticker))
        if on_ready is not None:
            on_ready(ep)
        if not cfg.once:
            _say("serving until Ctrl-C ...")
            wait_for_interrupt()
            _say("\nstopping the Ray cluster this command started (Serve included)")
        # No serve.shutdown(): its controller drain takes 30 s here, and leaving the block
        # ends the whole local cluster this command started (ray.shutdown) anyway.
    return UpResult(t, rep.to_dict(), feats, tr, ep, sample, servable=ok, text=txt)


def _top(resp, k: int):
    """A copy of a Predict response with at most ``k`` contributions per horizon."""
    out = type(resp)()
    out.CopyFrom(resp)
    for p in out.predictions:
        del p.contributions[k:]
    return out


def text_training_note(tr: train.TrainResult) -> str:
    """Whether the text models are the served champions (their inputs: `train.describe`)."""
    lines = []
    not_champ = [f"{r.name} v{r.version}" for r in tr.registered.values()
                 if r.alias != "champion"]
    if not_champ:
        lines.append(f"      note: {', '.join(not_champ)} registered as challenger (this data dir "
                     "already had champions); the served champion may not use text: use a "
                     "fresh --data-dir, or `stockray promote`")
    return "\n".join(lines)


def text_shap_lines(resp) -> str:
    """The text features' SHAP values of a Predict response (every horizon)."""
    lines = ["      text features in the explanation (SHAP, value):"]
    for p in resp.predictions:
        got = [c for c in p.contributions if c.feature.startswith(_TEXT_PREFIXES)]
        lines.append(f"        h={p.horizon}: " + (", ".join(
            f"{c.feature} {c.shap:+.2e} ({c.value:g})" for c in got) or "none returned"))
    return "\n".join(lines)


def check_fresh_lake(settings: Settings) -> None:
    """A run on the user's files starts from an empty data dir, so no other universe (the
    embedded one from `make run`, an earlier file) is mixed in and its models are the
    champions served."""
    have = list_tickers(settings.bars_dir) if settings.bars_dir.exists() else []
    if have:
        raise ValueError(
            f"data dir {settings.data_dir} already holds a lake with {summarize_names(have)} "
            "tickers; a run on your own files needs a fresh one so nothing is mixed in: "
            "pass --data-dir NEW_DIR (or set STOCKRAY_DATA_DIR)")


def _record_servable(report_path: str, ok: list[str], why: dict[str, str]) -> None:
    # the full lists go to the data-quality report; the terminal gets counts (see above)
    if not report_path:
        return
    p = Path(report_path)
    rep = json.loads(p.read_text())
    rep["serving"] = {"servable": ok, "not_servable": why}
    text = json.dumps(rep, indent=2, default=str)
    for out in (p, p.with_name("latest.json")):
        tmp = out.with_suffix(".tmp")
        tmp.write_text(text)
        tmp.replace(out)


def usage(settings: Settings, ep: ServeEndpoints, ticker: str = "AAPL") -> str:
    return "\n".join([
        "Call it yourself (from another terminal; token auth is on):",
        f"  stockray predict {ticker} --horizon 5 --target {ep.grpc_target}",
        f"  TOKEN=$(cat {settings.auth_path / 'api_token'})",
        (f"  curl -s -X POST {ep.http_url}/v1/predict -H 'content-type: application/json' "
         "-H \"authorization: Bearer $TOKEN\" "
         f"-d '{{\"ticker\": \"{ticker}\", \"horizons\": [5], \"explain\": true}}'"),
        (f"  grpcurl -plaintext -H \"authorization: Bearer $TOKEN\" "
         f"-d '{{\"ticker\": \"{ticker}\"}}' {ep.grpc_target} "
         "stockray.v1.PredictionService/Predict"),
        f"  MLflow UI: mlflow ui --backend-store-uri {settings.tracking_uri}",
    ])
