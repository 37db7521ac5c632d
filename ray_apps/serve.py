"""Deploy the prediction graph on the connected Ray cluster: ``python -m ray_apps.serve``.

Serves the registry's ``champion`` of every horizon of one model family (``lgbm`` by default;
``lstm`` / ``transformer`` sequence nets, which also read each ticker's history from the offline
store) with features from the Feast online store. One app serves one family: run a second
``stockray serve --family lstm`` on other ports to serve both.
Ray must have been started with ``serving.launch.serve_env(...)`` in its environment for the
public port to be the fast direct-ingress path (``stockray up`` / ``stockray serve`` do that).
"""

from __future__ import annotations

from features.lake import list_tickers
from features.settings import Settings
from features.sources import MARKET_TICKER
from serving.app import AppArgs
from serving.auth import AccessConfig
from serving.launch import ServeEndpoints, serve_env, start_serve
from serving.models import DEFAULT_FAMILY, ModelSource, registered_name_template


def app_args(settings: Settings, horizons: list[int] | None = None,
             mode: str | None = None, family: str = DEFAULT_FAMILY,
             ingress_replicas: int = 1) -> AppArgs:
    """The Serve app of a stockray data dir: registry champions of ``family`` + Feast online
    features (+ the offline feature table, which sequence families read windows from)."""
    settings = settings.resolved()
    models = ModelSource.from_data_dir(
        settings.data_dir, registered_name=registered_name_template(family),
        download_dir=str(settings.data_dir / "serving" / "bundles" / family),
        **({"horizons": horizons} if horizons else {}))
    # The registry's challenger (if any) is loaded too: `model_alias="challenger"`, canary and
    # shadow routing (AppArgs.routing); every prediction is audited under <data_dir>/audit/.
    challenger = models.model_copy(update={"alias": "challenger"})
    # Explanations of every ticker in the lake are computed in one batch when a replica loads
    # its models (and again after a swap), so the first request per ticker is a cache hit.
    warm = [t for t in list_tickers(settings.bars_dir) if t != MARKET_TICKER]
    # The sentiment champion (ScoreText/ScoreTexts) when `stockray sentiment train` made one.
    sentiment = settings.models_dir / "sentiment"
    sentiment_bundle = str(sentiment) if (sentiment / "bundle.json").is_file() else None
    return AppArgs(models=models, challenger=challenger, warm_tickers=warm,
                   sentiment_bundle=sentiment_bundle,
                   audit_dir=str(settings.data_dir / "audit"),
                   reader="features.store:FeastOnlineReader",
                   reader_kwargs={"repo_path": str(settings.feast_dir)},
                   offline_features=str(settings.offline_dir / "features.parquet"),
                   app_name="stockray" if family == DEFAULT_FAMILY else f"stockray-{family}",
                   mode=mode or settings.serve_mode, host=settings.host,
                   ingress_replicas=ingress_replicas,
                   access=AccessConfig(auth_dir=str(settings.auth_path),
                                       profile=settings.profile),  # type: ignore[arg-type]
                   grpc_port=settings.grpc_port, http_port=settings.http_port)


def serve_env_of(settings: Settings, ingress: str = "direct") -> dict[str, str]:
    """``serve_env`` of a deployment's settings: ports, bind host and TLS paths."""
    def p(x):
        return str(x) if x else None

    return serve_env(settings.grpc_port, http_port=settings.http_port,
                     ingress=ingress, host=settings.host,  # type: ignore[arg-type]
                     tls_cert=p(settings.tls_cert), tls_key=p(settings.tls_key),
                     tls_client_ca=p(settings.tls_client_ca))


def main(settings: Settings, horizons: list[int] | None = None,
         mode: str | None = None, family: str = DEFAULT_FAMILY,
         ingress_replicas: int = 1) -> ServeEndpoints:
    return start_serve(app_args(settings, horizons, mode, family, ingress_replicas))
