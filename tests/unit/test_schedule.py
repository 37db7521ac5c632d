"""The daily after-close schedule: the KubeRay RayCronJob manifest validates against the real
CRD schema (vendored, see tests/fixtures/kuberay/README.md), the daily job degrades gracefully
when a provider is down, and `stockray schedule` prints / installs its cron line."""

from __future__ import annotations

import gzip
import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path
from zoneinfo import ZoneInfo

import jsonschema
import yaml
from typer.testing import CliRunner

from ray_apps.daily import DailyConfig, _parse, cron_line, main
from tests.provider_replay import ReplayServer, Reply

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = ROOT / "tests" / "fixtures" / "kuberay" / "raycronjob.v1.schema.json.gz"
MANIFEST = ROOT / "cluster" / "ray-job.daily.yaml"
_CRON_FIELD = re.compile(r"^(\*|\d+(-\d+)?)(/\d+)?(,(\*|\d+(-\d+)?)(/\d+)?)*$")


def _schema() -> dict:
    with gzip.open(SCHEMA, "rt") as f:
        return json.load(f)["openAPIV3Schema"]


def _pruned(doc, schema, path="") -> list[str]:
    """Fields the API server would silently drop (not in a structural schema's properties)."""
    if isinstance(doc, dict) and "properties" in schema and not schema.get(
            "x-kubernetes-preserve-unknown-fields"):
        out = []
        for k, v in doc.items():
            if k not in schema["properties"]:
                out.append(f"{path}.{k}")
            else:
                out += _pruned(v, schema["properties"][k], f"{path}.{k}")
        return out
    if isinstance(doc, dict) and isinstance(schema.get("additionalProperties"), dict):
        return [p for k, v in doc.items()
                for p in _pruned(v, schema["additionalProperties"], f"{path}.{k}")]
    if isinstance(doc, list) and "items" in schema:
        return [p for i, v in enumerate(doc) for p in _pruned(v, schema["items"], f"{path}[{i}]")]
    return []


def test_daily_raycronjob_validates_against_the_kuberay_crd_schema():
    doc = yaml.safe_load(MANIFEST.read_text())
    schema = _schema()
    assert doc["apiVersion"] == "ray.io/v1" and doc["kind"] == "RayCronJob"
    jsonschema.Draft7Validator(schema).validate(doc)
    assert _pruned(doc, schema) == []
    # The validator itself catches what the CRD forbids.
    broken = json.loads(json.dumps(doc))
    broken["spec"]["jobTemplate"]["activeDeadlineSeconds"] = "4h"
    del broken["spec"]["schedule"]
    assert len(list(jsonschema.Draft7Validator(schema).iter_errors(broken))) == 2
    broken["spec"]["jobTemplate"]["entrypointz"] = "typo"
    assert _pruned(broken, schema) == [".spec.jobTemplate.entrypointz"]


def test_daily_schedule_and_entrypoint_are_runnable():
    spec = yaml.safe_load(MANIFEST.read_text())["spec"]
    fields = spec["schedule"].split()
    assert len(fields) == 5 and all(_CRON_FIELD.match(f) for f in fields)
    ZoneInfo(spec["timeZone"])
    argv = shlex.split(spec["jobTemplate"]["entrypoint"])
    assert argv[:3] == ["python", "-m", "ray_apps.daily"]
    cfg, settings = _parse(argv[3:])
    assert cfg.provider == "yahoo" and cfg.macro == ("CPILFESL", "AAA", "BAA") and cfg.retrain
    assert str(settings.data_dir) == "/data"
    head = spec["jobTemplate"]["rayClusterSpec"]["headGroupSpec"]["template"]["spec"]
    env = {e["name"] for e in head["containers"][0]["env"]}
    assert {"STOCKRAY_DATA_DIR", "STOCKRAY_FRED_API_KEY", "RAY_AUTH_TOKEN"} <= env


def test_daily_job_reports_a_down_provider_and_still_retrains(settings, monkeypatch):
    monkeypatch.delenv("STOCKRAY_FRED_API_KEY", raising=False)
    ran = []
    with ReplayServer() as srv:
        srv.route("/v8/finance/chart/AAPL", Reply(503, b"down"))
        for k, v in {"STOCKRAY_YAHOO_URL": srv.url, "STOCKRAY_RETRIES": "0",
                     "STOCKRAY_YAHOO_RATE": "1000/second"}.items():
            monkeypatch.setenv(k, v)
        res = main(DailyConfig(tickers=("AAPL",), macro=("CPILFESL",),
                               retrain_args=["--max-folds", "1"]), settings, log=lambda s: None,
                   run=lambda cmd: ran.append(cmd) or 0)
    assert not res.ok and res.retrain_exit == 0
    yahoo, fred = res.fetches
    assert "yahoo:AAPL" in yahoo.failed and "STOCKRAY_FRED_API_KEY" in fred.failed["fred"]
    cmd, monitor, report = ran  # retrain, then the monitor and the daily report
    assert cmd[-3:] == ["retrain", "--max-folds", "1"]
    assert monitor[-2:] == ["monitor", "--act"] and report[-1] == "report"
    assert res.step_exits == {"monitor": 0, "report": 0}
    # The command really is the public `retrain` entry (its --help answers).
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    assert subprocess.run([*cmd[:-2], "--help"], capture_output=True, env=env,
                          check=False).returncode == 0


def test_schedule_prints_and_installs_one_cron_line(settings, tmp_path, monkeypatch):
    from ray_apps.cli import app

    line = cron_line(settings)
    assert line.startswith("15 22 * * 1-5 cd ") and f"{sys.executable} -m ray_apps.cli" in line
    assert f"ray_apps.daily --data-dir {settings.data_dir}" in line and " submit -- " in line
    # A stand-in `crontab` keeping the table in a file (the real one edits the user's table).
    tab = tmp_path / "tab"
    fake = tmp_path / "bin" / "crontab"
    fake.parent.mkdir()
    fake.write_text(f"#!/bin/sh\nif [ \"$1\" = -l ]; then cat {tab} 2>/dev/null || exit 1; "
                    f"else cat > {tab}; fi\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake.parent}:{os.environ['PATH']}")
    tab.write_text("0 1 * * * echo keep-me\n")
    args = ["--data-dir", str(settings.data_dir), "schedule", "--install"]
    for _ in range(2):
        res = CliRunner().invoke(app, args)
        assert res.exit_code == 0, res.output
    lines = tab.read_text().splitlines()
    assert lines[0] == "0 1 * * * echo keep-me" and len(lines) == 2
    assert lines[1].endswith("# stockray daily") and "ray_apps.daily" in lines[1]
