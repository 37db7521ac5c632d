"""A private local Ray for integration tests (one place, so every test starts it the same way)."""

from __future__ import annotations

import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


@contextmanager
def private_ray(env: dict[str, str] | None = None, prefix: str = "srt-", num_cpus: int = 2,
                dashboard_port: int | None = None):
    """``ray.init(address="local")`` on a short private temp dir; Serve and Ray shut down after.

    Args:
        env: variables Ray must see when it starts (e.g. ``serving.launch.serve_env``); the
            caller's environment is restored afterwards.
        prefix: temp dir prefix under /tmp (short: Ray's Unix socket paths live under it).
        num_cpus: CPUs Ray may schedule.
        dashboard_port: start the dashboard on this loopback port (it also writes the
            Prometheus discovery file); None starts none.
    """
    import ray

    env = env or {}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    temp_dir = tempfile.mkdtemp(prefix=f"/tmp/{prefix}")
    # `tests` is not an installed package: workers import test fakes from the repo.
    runtime_env: dict = {"env_vars": {"PYTHONPATH": str(REPO)}}
    if env:  # a Serve test: Serve's listeners bind 127.0.0.1 like `stockray serve`'s
        from serving.hardening import runtime_env as hardened

        runtime_env = hardened(runtime_env)
    dash = ({"include_dashboard": True, "dashboard_host": "127.0.0.1",
             "dashboard_port": dashboard_port} if dashboard_port else
            {"include_dashboard": False})
    ray.init(address="local", num_cpus=num_cpus, _temp_dir=temp_dir, **dash,
             runtime_env=runtime_env, log_to_driver=False)
    try:
        yield
    finally:
        from ray import serve

        if env:  # a Serve test: stop the app and its controller before the cluster
            serve.shutdown()
        ray.shutdown()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        shutil.rmtree(temp_dir, ignore_errors=True)


def wait_for_job(client, job: str, timeout_s: float, poll_s: float = 1.0):
    """Poll a Ray job until it ends or ``timeout_s`` passes; its last status."""
    import time

    from ray.job_submission import JobStatus

    deadline = time.monotonic() + timeout_s
    while True:
        status = client.get_job_status(job)
        if status in (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.STOPPED):
            return status
        if time.monotonic() > deadline:
            return status
        time.sleep(poll_s)


def kill_replica(deployment: str) -> str:
    """``ray.kill`` one live Serve replica actor of ``deployment`` (Serve starts a new one);
    returns the killed actor's name."""
    import ray

    actor = next(a for a in ray.util.list_named_actors(all_namespaces=True)
                 if "SERVE_REPLICA" in a["name"] and f"#{deployment}#" in a["name"])
    ray.kill(ray.get_actor(actor["name"], namespace=actor["namespace"]), no_restart=True)
    return actor["name"]


def stage_retries(app_name: str) -> dict[str, int]:
    """The ingress's resends of stage calls so far, by ``stage.method``
    (serving/deployments/retry.py)."""
    from ray import serve

    return serve.get_app_handle(app_name).stage_retries.remote().result(timeout_s=30)
