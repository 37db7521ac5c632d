"""``stockray auth``, ``stockray certs`` and ``stockray audit``: wiring only (logic in
``serving.auth``, ``serving.tls``, ``serving.audit``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

auth_app = typer.Typer(no_args_is_help=True, rich_markup_mode=None,
                       help="API keys of the prediction service (<data_dir>/auth, 0600).")
audit_app = typer.Typer(no_args_is_help=True, rich_markup_mode=None,
                        help="The hash-chained prediction audit log.")


def _settings():
    from ray_apps.cli_state import settings as s

    return s().resolved()


@auth_app.command("init")
def auth_init() -> None:
    """Create the auth dir and owner token if missing; check their modes."""
    from serving.auth import AuthSetupError, ensure_auth_dir

    try:
        path = ensure_auth_dir(_settings().auth_path)
    except AuthSetupError as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"owner token: {path} (0600); clients read it, or set STOCKRAY_API_TOKEN")


@auth_app.command("rotate")
def auth_rotate() -> None:
    """Replace the owner token (running servers accept only the new one within ~1 s)."""
    from serving.auth import rotate_token

    typer.echo(f"new owner token written to {rotate_token(_settings().auth_path)}")


@auth_app.command("add-key")
def auth_add_key(
    name: Annotated[str, typer.Argument(help="Key name (shown in the audit log).")],
    scope: Annotated[list[str], typer.Option(help="predict | explain | admin (repeatable).")],
    rate: Annotated[float, typer.Option(help="Requests/s per replica (0 = no limit).")] = 0.0,
    burst: Annotated[int, typer.Option(help="Bucket size (0 = 2 x rate).")] = 0,
) -> None:
    """Add or replace a named key; prints its token ONCE (only its SHA-256 is stored)."""
    from serving.auth import add_key

    try:
        token = add_key(_settings().auth_path, name, list(scope), rate, burst)
    except ValueError as e:
        raise typer.BadParameter(str(e)) from None
    typer.echo(token)


@auth_app.command("remove-key")
def auth_remove_key(name: Annotated[str, typer.Argument(help="Key name.")]) -> None:
    """Revoke a named key."""
    from serving.auth import remove_key

    if not remove_key(_settings().auth_path, name):
        typer.echo(f"no key {name!r}", err=True)
        raise typer.Exit(1)
    typer.echo(f"key {name!r} removed")


@auth_app.command("list")
def auth_list() -> None:
    """Named keys with their scopes and rate limits (never tokens)."""
    import yaml

    path = _settings().auth_path / "keys.yaml"
    keys = ((yaml.safe_load(path.read_text()) or {}).get("keys") or {}) if path.exists() else {}
    typer.echo("owner (api_token): predict, explain, admin")
    for name, k in sorted(keys.items()):
        typer.echo(f"{name}: {', '.join(k.get('scopes') or [])}; rate "
                   f"{k.get('rate_per_s') or 'default'}/s")


def certs(
    host: Annotated[list[str] | None, typer.Option(
        help="Extra DNS name or IP for the server certificate (repeatable).")] = None,
    days: Annotated[int, typer.Option(help="Validity in days.")] = 90,
) -> None:
    """Make a self-signed development TLS pair (+ a client pair for mTLS) under
    <data_dir>/certs and print the variables that turn TLS on."""
    from serving.tls import make_dev_certs

    out = make_dev_certs(_settings().certs_dir, list(host or []), days)
    typer.echo(f"export STOCKRAY_TLS_CERT={out['cert']} STOCKRAY_TLS_KEY={out['key']}")
    typer.echo(f"# clients: export STOCKRAY_TLS_CA={out['cert']}")
    typer.echo(f"# mTLS (gRPC): export STOCKRAY_TLS_CLIENT_CA={out['client_cert']} and clients "
               f"STOCKRAY_TLS_CLIENT_CERT={out['client_cert']} "
               f"STOCKRAY_TLS_CLIENT_KEY={out['client_key']}")


@audit_app.command("verify")
def audit_verify(
    path: Annotated[Path | None, typer.Argument(
        help="Audit file or directory (default <data_dir>/audit).")] = None,
) -> None:
    """Check the hash chain of every audit file: exit 1 if a record was edited, deleted or
    reordered."""
    from serving.audit import verify_audit

    target = path or _settings().data_dir / "audit"
    rep = verify_audit(target)
    for w in rep.warnings:
        typer.echo(f"warning: {w}")
    for e in rep.errors:
        typer.echo(f"error: {e}")
    verdict = "OK" if rep.ok else "TAMPERED"
    typer.echo(f"{verdict}: {rep.files} file(s), {rep.records} record(s) in {target}")
    if not rep.ok:
        raise typer.Exit(1)
