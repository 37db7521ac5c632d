"""Start and stop the local Ray cluster that a stockray command runs on.

Security choice (Ray 2.60 turns token auth on by default): stockray keeps token auth **on** for
the clusters it starts, with the token in ``<data_dir>/ray/auth_token`` rather than
``~/.ray``. Any client — ``ray job submit``, the dashboard API — must then carry it:
``RAY_AUTH_MODE=token RAY_AUTH_TOKEN_PATH=data/ray/auth_token ray job submit ...`` (the
``stockray submit`` command sets both). ``--no-auth`` starts the cluster with
``RAY_AUTH_MODE=disabled`` for throwaway local use.

Only what this process started is stopped (``ray.shutdown()``); never ``ray stop``, which kills
every Ray process on the machine.
"""

from __future__ import annotations

import os
import secrets
import tempfile
from contextlib import contextmanager
from pathlib import Path

from features.settings import Settings
from serving import hardening

# Ray puts Unix sockets under its temp dir, e.g. <tmp>/session_2026-11-24_07-20-45_487927_25409/
# sockets/dash_MetricsHead (~66 bytes after <tmp>); a socket path must stay under 107 bytes.
_MAX_TEMP_DIR_LEN = 38


def auth_env(settings: Settings, enabled: bool = True) -> dict[str, str]:
    """Environment that the cluster and its clients need for token auth (or for none)."""
    if not enabled:
        return {"RAY_AUTH_MODE": "disabled"}
    token = settings.ray_dir / "auth_token"
    if not token.exists():
        token.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(token, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(32))
    return {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token)}


def ray_temp_dir(settings: Settings) -> str:
    """Ray's session dir below the data dir when its path is short enough for sockets."""
    wanted = settings.ray_dir / "tmp"
    if len(str(wanted)) <= _MAX_TEMP_DIR_LEN:
        wanted.mkdir(parents=True, exist_ok=True)
        return str(wanted)
    # Too deep for Unix socket paths: a short private dir instead (logged by the caller).
    return tempfile.mkdtemp(prefix="stockray-ray-")


@contextmanager
def local_cluster(settings: Settings, *, extra_env: dict[str, str] | None = None,
                  dashboard: bool = True, auth: bool = True, num_cpus: int | None = None):
    """Start a local Ray cluster for the duration of the block; yields the ray context.

    Args:
        settings: resolved settings (absolute data dir).
        extra_env: variables that must be in Ray's environment before it starts (Serve's
            direct-ingress switches, for instance).
        dashboard: start the dashboard on ``settings.host:settings.dashboard_port``.
        auth: token auth on (default) or off.
        num_cpus: CPUs Ray may schedule (default: all).
    """
    import ray

    env = {**auth_env(settings, auth), **(extra_env or {}),
           "RAY_USAGE_STATS_ENABLED": "0"}  # no network here, and no phoning home
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    _reload_ray_config()
    # Serve clusters: every Ray worker patches Serve's hard-coded wildcard binds
    # (serving.hardening reads STOCKRAY_BIND_HOST / STOCKRAY_TLS_* from extra_env).
    runtime_env = hardening.runtime_env() if hardening.BIND_HOST_ENV in env else None
    try:
        ctx = ray.init(
            include_dashboard=dashboard, dashboard_host=settings.host,
            dashboard_port=settings.dashboard_port, num_cpus=num_cpus,
            _temp_dir=ray_temp_dir(settings), log_to_driver=False,
            configure_logging=True, logging_level="WARNING", runtime_env=runtime_env,
        )
        try:
            yield ctx
        finally:
            ray.shutdown()
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        _reload_ray_config()


def _reload_ray_config() -> None:
    # Ray caches its config (auth mode included) when first imported, and the token it loaded
    # from the previous token path; the variables above are set later, so re-read both — what
    # Ray itself does when it turns token auth on. Without the cache reset a second cluster in
    # the same process (tests, notebooks) starts with a new token but dials with the old one.
    from ray._raylet import AuthenticationTokenLoader, Config

    Config.initialize("")
    AuthenticationTokenLoader.instance().reset_cache()


def dashboard_url(ctx) -> str | None:
    url = getattr(ctx, "dashboard_url", None)
    return f"http://{url}" if url and not url.startswith("http") else url


def ensure_dir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


@contextmanager
def ray_connection(settings: Settings, auth: bool = True):
    """Use the current Ray connection, the cluster in ``RAY_ADDRESS``, or start a local one.

    Inside ``ray job submit`` the job supervisor sets ``RAY_ADDRESS``: the job joins that
    cluster (``ray.init(address="auto")``). Without it a private local cluster is started, so a
    command never attaches to whatever cluster happens to run on the machine.
    """
    import ray

    if ray.is_initialized():
        yield "existing"
        return
    if os.environ.get("RAY_ADDRESS"):
        ray.init(address="auto", log_to_driver=False, configure_logging=True,
                 logging_level="WARNING")
        try:
            yield "address"
        finally:
            ray.shutdown()
        return
    with local_cluster(settings, dashboard=False, auth=auth):
        yield "local"


def wait_for_interrupt() -> None:
    """Block until Ctrl-C (SIGINT) or SIGTERM, then return.

    Ray Tune installs its own SIGINT handler during a fit and leaves it in place, which would
    swallow Ctrl-C afterwards; both signals get a handler of ours for the wait.
    """
    import signal
    import threading

    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set())
                for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        while not stop.wait(3600):
            pass
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
