"""Grafana dashboards and Prometheus rules name exactly the series stockray exports, and
`promtool check rules` accepts the rules."""

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from features.telemetry import SERIES, exported_names

CLUSTER = Path(__file__).resolve().parents[2] / "cluster"
EXPORTED = {n for s in SERIES for n in exported_names(s)}
NAME = re.compile(r"\bray_stockray_[a-z0-9_]+")


def _dashboard_queries():
    for path in sorted((CLUSTER / "grafana").glob("*.json")):
        dash = json.loads(path.read_text())
        for panel in dash["panels"]:
            for t in panel["targets"]:
                yield path.name, panel["title"], t["expr"]


def test_three_dashboards_with_queries():
    names = sorted(p.name for p in (CLUSTER / "grafana").glob("*.json"))
    assert names == ["stockray-data-quality.json", "stockray-model-health.json",
                     "stockray-serving.json"]
    assert len(list(_dashboard_queries())) >= 15


def test_every_panel_query_names_an_exported_series():
    used = set()
    for file, title, expr in _dashboard_queries():
        found = set(NAME.findall(expr))
        assert found, f"{file} / {title}: no stockray series in {expr!r}"
        unknown = found - EXPORTED
        assert not unknown, f"{file} / {title}: {unknown} are not exported"
        used |= found
    # and every series stockray records is on some dashboard
    missing = {s for s in SERIES if not set(exported_names(s)) & used}
    assert not missing, f"series on no dashboard: {missing}"


def test_alert_rules_name_exported_series_and_pass_promtool():
    rules = yaml.safe_load((CLUSTER / "prometheus-rules.yml").read_text())
    exprs = [r["expr"] for g in rules["groups"] for r in g["rules"]]
    assert len(exprs) >= 5
    for e in exprs:
        assert set(NAME.findall(e)) and set(NAME.findall(e)) <= EXPORTED, e
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail("promtool not found: `make sysdeps` installs Debian's prometheus")
    out = subprocess.run([promtool, "check", "rules", str(CLUSTER / "prometheus-rules.yml")],
                         check=False, capture_output=True, text=True)
    assert out.returncode == 0 and "SUCCESS: 6 rules found" in out.stdout, out.stdout + out.stderr
    cfg = yaml.safe_load((CLUSTER / "prometheus.yml").read_text())
    assert cfg["rule_files"] == ["prometheus-rules.yml"]
