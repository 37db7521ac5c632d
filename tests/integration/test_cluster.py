"""The local clusters stockray starts: token auth with the token under the data dir, and
several clusters one after another in one process (each with its own token) all work."""

import os
import stat

import pytest
import ray

from features.settings import Settings
from ray_apps.cluster import local_cluster

pytestmark = pytest.mark.integration


def test_consecutive_clusters_with_their_own_tokens(tmp_path_factory):
    ray.init(num_cpus=1, include_dashboard=False)  # someone else's cluster came first
    ray.shutdown()
    before = {k: os.environ.get(k) for k in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN_PATH")}
    tokens = []
    for i in range(2):
        s = Settings(data_dir=tmp_path_factory.mktemp(f"c{i}")).resolved()
        with local_cluster(s, dashboard=False, num_cpus=1):
            assert ray.get(ray.remote(lambda x: x * 2).remote(21)) == 42
            assert os.environ["RAY_AUTH_MODE"] == "token"
        token = s.ray_dir / "auth_token"
        assert stat.S_IMODE(token.stat().st_mode) == 0o600
        tokens.append(token.read_text())
    assert tokens[0] != tokens[1]
    # the caller's environment is given back as it was
    assert {k: os.environ.get(k) for k in before} == before
