"""Deploy the prediction graph on the connected Ray cluster: ``python -m ray_apps.serve``.

Serves the registry's ``champion`` of every horizon with features from the Feast online store.
Ray must have been started with ``serving.launch.serve_env(...)`` in its environment for the
public port to be the fast direct-ingress path (``stockray up`` / ``stockray serve`` do that).
"""

from __future__ import annotations

from features.lake import list_tickers
from features.settings import Settings
from features.sources import MARKET_TICKER
from serving.app import AppArgs
from serving.launch import ServeEndpoints, start_serve
from serving.models import ModelSource


def app_args(settings: Settings, horizons: list[int] | None = None,
             mode: str | None = None) -> AppArgs:
    """The Serve app of a stockray data dir: registry champions + Feast online features."""
    settings = settings.resolved()
    models = ModelSource.from_data_dir(
        settings.data_dir, download_dir=str(settings.data_dir / "serving" / "bundles"),
        **({"horizons": horizons} if horizons else {}))
    # The registry's challenger (if any) is loaded too: `model_alias="challenger"`, canary and
    # shadow routing (AppArgs.routing); every prediction is audited under <data_dir>/audit/.
    challenger = models.model_copy(update={"alias": "challenger"})
    # Explanations of every ticker in the lake are computed in one batch when a replica loads
    # its models (and again after a swap), so the first request per ticker is a cache hit.
    warm = [t for t in list_tickers(settings.bars_dir) if t != MARKET_TICKER]
    return AppArgs(models=models, challenger=challenger, warm_tickers=warm,
                   audit_dir=str(settings.data_dir / "audit"),
                   reader="features.store:FeastOnlineReader",
                   reader_kwargs={"repo_path": str(settings.feast_dir)},
                   mode=mode or settings.serve_mode, host=settings.host,
                   grpc_port=settings.grpc_port, http_port=settings.http_port)


def main(settings: Settings, horizons: list[int] | None = None,
         mode: str | None = None) -> ServeEndpoints:
    return start_serve(app_args(settings, horizons, mode))
