"""A real Prometheus (Debian's `prometheus`) for integration tests: `cluster/prometheus.yml`
pointed at the private Ray session's discovery file, 1 s scrapes, loopback, a tmp TSDB."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import yaml

from tests.conftest import free_port

PROMETHEUS = shutil.which("prometheus")
CLUSTER = Path(__file__).resolve().parents[1] / "cluster"


def query(base: str, q: str) -> list[dict]:
    url = f"{base}/api/v1/query?{urllib.parse.urlencode({'query': q})}"
    with urllib.request.urlopen(url, timeout=5) as r:
        return json.loads(r.read())["data"]["result"]


def wait_for(base: str, q: str, ok=lambda r: True, timeout: float = 90.0) -> list[dict]:
    """Poll the instant query ``q`` until it has results and ``ok(results)``."""
    deadline, got = time.monotonic() + timeout, []
    while time.monotonic() < deadline:
        try:
            got = query(base, q)
        except OSError:
            got = []
        if got and ok(got):
            return got
        time.sleep(1.0)
    names = sorted({x["metric"]["__name__"] for x in query(base, '{__name__=~"ray_stockray.*"}')})
    raise AssertionError(f"{q}: not as expected after {timeout}s: {got}; stockray series "
                         f"present: {names}")


@contextmanager
def prometheus(tmp_path: Path):
    """Start Prometheus on the connected private Ray session; yields its base URL."""
    import ray

    session = Path(ray._private.worker._global_node.get_temp_dir_path())
    discovery = session / "prom_metrics_service_discovery.json"
    deadline = time.monotonic() + 60  # the dashboard writes it a few seconds after start-up
    while not discovery.exists() and time.monotonic() < deadline:
        time.sleep(0.5)
    assert discovery.exists(), f"Ray wrote no {discovery}"
    cfg = yaml.safe_load((CLUSTER / "prometheus.yml").read_text())
    cfg["global"] = {"scrape_interval": "1s", "evaluation_interval": "1s"}
    cfg["rule_files"] = [str(CLUSTER / p) for p in cfg["rule_files"]]
    cfg["scrape_configs"][0]["file_sd_configs"][0]["files"] = [
        str(discovery)]
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(cfg))
    port = free_port()
    with open(tmp_path / "prometheus.log", "w") as log:
        proc = subprocess.Popen(
            [PROMETHEUS, f"--config.file={tmp_path / 'prometheus.yml'}",
             f"--storage.tsdb.path={tmp_path / 'tsdb'}",
             f"--web.listen-address=127.0.0.1:{port}"],
            stdout=subprocess.DEVNULL, stderr=log)
    try:
        base = f"http://127.0.0.1:{port}"
        wait_for(base, "up == 1", timeout=60)  # scraping Ray's metrics agent
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=30)
