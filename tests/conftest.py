"""Shared fixtures: a private data directory and free ports per test."""

from __future__ import annotations

import random
import socket

import pytest

from features.settings import Settings

# Below the kernel's ephemeral range (32768-60999 here) and above Ray's worker ports
# (10002-19999): a port bound to 0 comes from the ephemeral range, where any outgoing
# connection or Ray process may take it between our check and the server's bind.
_PORT_RANGE = (20000, 32767)


def free_port() -> int:
    """A TCP port nobody listens on right now (loopback), outside the ephemeral range."""
    rng = random.Random()
    for _ in range(200):
        p = rng.randrange(*_PORT_RANGE)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", p))
            except OSError:
                continue
        return p
    raise RuntimeError(f"no free port in {_PORT_RANGE}")


def free_port_pair() -> int:
    """A port p with p and p+1 both free (direct ingress puts Serve's proxy on p+1)."""
    for _ in range(50):
        p = free_port()
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", p + 1))
            except OSError:
                continue
        return p
    raise RuntimeError("no free port pair")


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
