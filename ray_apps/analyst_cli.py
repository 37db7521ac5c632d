"""`stockray app`: the Gradio analyst app beside a running service."""

from __future__ import annotations

from typing import Annotated

import typer

from ray_apps.cli_state import settings as cli_settings


def analyst_app(
    target: Annotated[str | None, typer.Option(
        help="gRPC host:port of the prediction service [default 127.0.0.1:<grpc port>].")] = None,
    port: Annotated[int | None, typer.Option(
        help="Port of the app [env STOCKRAY_APP_PORT; default 7860].")] = None,
    login: Annotated[bool, typer.Option(
        help="Ask each user for their API token (checked against the deployment's keys) "
             "instead of calling the service with the deployment's own token.")] = False,
) -> None:
    """Serve the analyst app (forecasts, SHAP, charts, evaluation, data quality) until Ctrl-C.

    It binds STOCKRAY_HOST (127.0.0.1 by default) and asks the running gRPC service for every
    forecast; start the service first (`stockray up` or `stockray serve`).
    """
    from serving.analyst.app import AnalystConfig, launch

    settings = cli_settings().resolved()
    cfg = AnalystConfig(settings, target or f"127.0.0.1:{settings.grpc_port}", login=login)
    port = port or settings.app_port
    typer.echo(f"analyst app on http://{settings.host}:{port}/ (service {cfg.target}); "
               f"Ctrl-C stops it")
    launch(cfg, host=settings.host, port=port, block=True)
