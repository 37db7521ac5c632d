"""Shared fixtures: a private data directory and free ports per test."""

from __future__ import annotations

import pytest

from features.ports import free_port, free_port_pair
from features.settings import Settings

__all__ = ["free_port", "free_port_pair"]


@pytest.fixture
def settings(tmp_path_factory) -> Settings:
    """Settings with a short private data dir (Ray's socket paths must stay short)."""
    data = tmp_path_factory.mktemp("sr")
    return Settings(data_dir=data, grpc_port=free_port_pair(), http_port=free_port_pair(),
                    dashboard_port=free_port()).resolved()


@pytest.fixture(scope="session", autouse=True)
def _api_keys(tmp_path_factory):
    """One private API-key dir for the whole run (``STOCKRAY_AUTH_DIR``).

    Token auth is on by default: servers started by tests create ``api_token`` here and every
    client (``PredictionClient``, ``serving.auth.client_token``, subprocesses, Ray workers)
    reads the same file, so tests call the service the way a user does, with a token.
    """
    import os

    d = tmp_path_factory.mktemp("auth")
    d.chmod(0o700)
    saved = os.environ.get("STOCKRAY_AUTH_DIR")
    os.environ["STOCKRAY_AUTH_DIR"] = str(d)
    os.environ.pop("STOCKRAY_API_TOKEN", None)
    yield d
    if saved is None:
        os.environ.pop("STOCKRAY_AUTH_DIR", None)
    else:
        os.environ["STOCKRAY_AUTH_DIR"] = saved
