"""Deploy the prediction graph on the connected Ray cluster: ``python -m ray_apps.serve``.

Serves the registry's ``champion`` of every horizon with features from the Feast online store.
Ray must have been started with ``serving.launch.serve_env(...)`` in its environment for the
public port to be the fast direct-ingress path (``stockray up`` / ``stockray serve`` do that).
"""

from __future__ import annotations

from features.settings import Settings
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
    return AppArgs(models=models, challenger=challenger,
                   audit_dir=str(settings.data_dir / "audit"),
                   reader="features.store:FeastOnlineReader",
                   reader_kwargs={"repo_path": str(settings.feast_dir)},
                   mode=mode or settings.serve_mode, host=settings.host,
                   grpc_port=settings.grpc_port, http_port=settings.http_port)


def main(settings: Settings, horizons: list[int] | None = None,
         mode: str | None = None) -> ServeEndpoints:
    return start_serve(app_args(settings, horizons, mode))
