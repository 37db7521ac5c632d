"""The daily report: forecasts from a real gRPC server, HTML with figures, a PDF printed by
headless Chromium and rendered back to PNG pages by poppler, emailed to a local SMTP server."""

from __future__ import annotations

import email
import json
import shutil
import subprocess

import numpy as np
import pytest

from features.settings import Settings
from ray_apps.daily_report import DailyReportConfig, main
from serving.grpc_server import BackgroundServer
from tests.browser.test_analyst_app import CHROMIUM, _data_dir, _nonblank
from tests.serving_fixtures import make_bundles, synthetic_rows
from tests.smtp_server import smtp_server
from tests.unit.test_serving_contract import make_service

pytestmark = [pytest.mark.browser,
              pytest.mark.skipif(CHROMIUM is None or shutil.which("pdftoppm") is None,
                                 reason="needs chromium and poppler-utils (make sysdeps)")]


def test_daily_report_html_pdf_and_email(tmp_path):
    rows = synthetic_rows()
    settings: Settings = _data_dir(tmp_path / "d", list(rows))
    svc = make_service(make_bundles(tmp_path / "b"), rows)
    alerts = tmp_path / "alerts.yaml"
    lines: list[str] = []
    with smtp_server() as (inbox, smtp_port), BackgroundServer(svc) as server:
        alerts.write_text(f"""
rules: [{{name: big, kind: prediction, when: move, threshold: 0.02}}]
sinks:
  - {{name: desk, type: email, host: 127.0.0.1, port: {smtp_port}, sender: sr@localhost,
      to: [desk@localhost]}}
""")
        paths = main(DailyReportConfig(horizon=5, tickers=(*rows, "ZZZZ"),
                                       target=server.target, email_sink="desk",
                                       alerts_config=alerts), settings, log=lines.append)
    page = paths["html"].read_text()
    for section in ("fig-movers", "fig-drivers", "fig-equity", "Forecasts for the universe",
                    "Models vs baselines", "Data quality", "quarantined 3"):
        assert section in page, section
    assert "ZZZZ" in page and "NOT_FOUND" in page  # a ticker the service does not know
    assert any("top movers" in x for x in lines)
    # the PDF has pages with content
    out = tmp_path / "pages"
    subprocess.run(["pdftoppm", "-r", "50", "-png", str(paths["pdf"]), str(out)], check=True)
    pngs = sorted(tmp_path.glob("pages-*.png"))
    assert len(pngs) >= 2
    assert all(_nonblank(p) > 0.02 for p in pngs)
    # the email carries the PDF and the HTML
    assert len(inbox.messages) == 1
    msg = email.message_from_bytes(inbox.messages[0].content)
    assert msg["Subject"].startswith("stockray daily report")
    files = {p.get_filename(): p.get_payload(decode=True) for p in msg.walk()
             if p.get_filename()}
    assert set(files) == {"report.pdf", "report.html"}
    assert files["report.pdf"][:5] == b"%PDF-" and files["report.pdf"] == \
        paths["pdf"].read_bytes()
    doc = json.loads(paths["json"].read_text())
    assert len(doc["forecasts"]) == 2 * len(rows)  # every ticker x served horizon (1, 5)
    assert set(doc["errors"]) == {"ZZZZ"}
    assert all(np.isfinite(f["lower"]) and f["lower"] < f["predicted"] < f["upper"]
               for f in doc["forecasts"])
    shap = [d["mean_abs_shap"] for d in doc["drivers"]]
    assert shap == sorted(shap, reverse=True) and shap[0] > 0
