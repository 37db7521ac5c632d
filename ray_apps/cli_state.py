"""The settings the `stockray` global options chose, shared by the command modules."""

from __future__ import annotations

from features.settings import Settings

#: Filled by the CLI's global callback (``--data-dir``, ports) before a command runs.
SETTINGS_STATE: dict[str, Settings] = {}


def settings() -> Settings:
    """The chosen settings, or those of the environment (``STOCKRAY_*``) when none were."""
    return SETTINGS_STATE.get("settings") or Settings()


def run_report(run, describe) -> None:
    """Run a fetch-style job and print its report: a configuration error (``ValueError``)
    exits 2 with its message, a report that is not ``ok`` exits 1 after printing."""
    import typer

    try:
        rep = run()
    except ValueError as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(2) from None
    typer.echo(describe(rep))
    if not rep.ok:
        raise typer.Exit(1)
