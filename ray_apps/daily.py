"""The daily after-close job: ``python -m ray_apps.daily`` (what KubeRay's RayCronJob in
``cluster/ray-job.daily.yaml`` and the local cron line of ``stockray schedule`` run).

Steps: fetch new daily bars from a provider and new macro releases from FRED
(``features.providers.fetch``), then ``stockray retrain`` — ingest -> validate -> features ->
materialize -> evaluate -> train/promote, where every step whose inputs did not change is
skipped, so the model is retrained only when it is due (new data or config) — then
``stockray monitor --act`` (live performance of the served models, drift; rollback / retrain /
promotion by rule) and ``stockray report`` (the daily report, emailed when a sink is given).
The monitor and the report need the running service's audit log and gRPC port.

A provider that fails does not stop the job: the lake keeps its last good bars, retrain runs
on what is there, serving keeps answering (with older feature timestamps), and the job exits 1
so the scheduler shows the failure. ``retrain`` is called through its public command (a
subprocess of ``python -m ray_apps.cli retrain``), not imported, so its internals can move.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field

from features.providers.fetch import FetchConfig, FetchReport, describe, run_fetch
from features.settings import Settings
from features.sources import DEFAULT_TICKERS, MARKET_TICKER

#: After the 16:00 New York close plus an hour for providers to publish the final bar,
#: written in UTC so one line is right all year: 22:15 UTC = 17:15 EST / 18:15 EDT.
DEFAULT_CRON = "15 22 * * 1-5"


@dataclass
class DailyConfig:
    """What the daily job fetches before retraining."""

    provider: str | None = "yahoo"  # None: no market fetch (retrain on what the lake has)
    tickers: tuple[str, ...] = (*DEFAULT_TICKERS, MARKET_TICKER)
    macro: tuple[str, ...] = ()  # FRED series ids, e.g. CPILFESL,AAA,BAA
    retrain: bool = True
    retrain_args: list[str] = field(default_factory=list)  # extra `stockray retrain` options
    monitor: bool = True            # `stockray monitor --act` after retrain
    report: bool = True             # `stockray report` last
    report_args: list[str] = field(default_factory=list)   # e.g. ["--email-sink", "desk"]


@dataclass
class DailyResult:
    fetches: list[FetchReport]
    retrain_exit: int | None
    step_exits: dict[str, int] = field(default_factory=dict)  # monitor / report

    @property
    def ok(self) -> bool:
        return (all(f.ok for f in self.fetches) and self.retrain_exit in (0, None)
                and all(code == 0 for code in self.step_exits.values()))


def cli_command(settings: Settings, command: str, extra: list[str]) -> list[str]:
    """``python -m ray_apps.cli --data-dir D <command> ...`` with this interpreter."""
    return [sys.executable, "-m", "ray_apps.cli", "--data-dir", str(settings.data_dir),
            command, *extra]


def retrain_command(settings: Settings, extra: list[str]) -> list[str]:
    return cli_command(settings, "retrain", extra)


def main(cfg: DailyConfig, settings: Settings, log: Callable[[str], None] = print,
         run: Callable[[list[str]], int] = subprocess.call) -> DailyResult:
    """Run the daily steps (see module docstring); never raises for a provider failure."""
    settings = settings.resolved()
    reports = []
    jobs = []
    if cfg.provider:
        jobs.append(FetchConfig(provider=cfg.provider, tickers=cfg.tickers))
    if cfg.macro:
        jobs.append(FetchConfig(provider="fred", tickers=cfg.macro))
    for job in jobs:
        try:
            rep = run_fetch(job, settings)
        except ValueError as e:  # configuration (a missing key): report, keep going
            rep = FetchReport(run_id="-", provider=job.provider, failed={job.provider: str(e)})
        reports.append(rep)
        log(describe(rep))
    code = None
    if cfg.retrain:
        cmd = retrain_command(settings, cfg.retrain_args)
        log("$ " + " ".join(cmd))
        code = run(cmd)
    steps = {}
    for name, on, extra in (("monitor", cfg.monitor, ["--act"]),
                            ("report", cfg.report, cfg.report_args)):
        if on:  # each runs even when an earlier step failed: it reports what is there
            cmd = cli_command(settings, name, extra)
            log("$ " + " ".join(cmd))
            steps[name] = run(cmd)
    return DailyResult(reports, code, steps)


def cron_line(settings: Settings, schedule: str = DEFAULT_CRON, workdir: str | None = None,
              daily_args: str = "", submit: bool = True) -> str:
    """A crontab line running the daily job, logging to ``<data_dir>/logs/daily.log``.

    With ``submit`` the job goes to the running cluster (``stockray submit --``, which adds
    its auth token); without, ``ray_apps.daily`` runs standalone and retrain starts a local
    cluster for the run.
    """
    from pathlib import Path

    py = sys.executable
    data = settings.resolved().data_dir
    # The data dir is passed explicitly: a submitted job does not inherit this environment.
    inner = f"{py} -m ray_apps.daily --data-dir {data} {daily_args}".strip()
    cmd = f"{py} -m ray_apps.cli --data-dir {data} submit -- {inner}" if submit else inner
    cd = workdir or str(Path(__file__).resolve().parents[1])
    logs = data / "logs"
    return f"{schedule} cd {cd} && mkdir -p {logs} && {cmd} >> {logs / 'daily.log'} 2>&1"


def _parse(argv: list[str] | None) -> tuple[DailyConfig, Settings]:
    p = argparse.ArgumentParser(prog="python -m ray_apps.daily", description=__doc__.split(
        "\n\n")[0])
    p.add_argument("--provider", default="yahoo", help="market provider, or 'none'")
    p.add_argument("--tickers", default=",".join(DailyConfig().tickers))
    p.add_argument("--macro", default="", help="FRED series ids, comma-separated")
    p.add_argument("--no-retrain", action="store_true")
    p.add_argument("--no-monitor", action="store_true")
    p.add_argument("--no-report", action="store_true")
    p.add_argument("--email-sink", default=None, help="email the daily report via this sink")
    p.add_argument("--data-dir", default=None, help="default: STOCKRAY_DATA_DIR or ./data")
    a, extra = p.parse_known_args(argv)
    split = (lambda s: tuple(x.strip() for x in s.split(",") if x.strip()))
    settings = Settings(data_dir=a.data_dir) if a.data_dir else Settings()
    return DailyConfig(provider=None if a.provider == "none" else a.provider,
                       tickers=split(a.tickers), macro=split(a.macro),
                       retrain=not a.no_retrain, retrain_args=extra,
                       monitor=not a.no_monitor, report=not a.no_report,
                       report_args=["--email-sink", a.email_sink] if a.email_sink else []), \
        settings


if __name__ == "__main__":
    res = main(*_parse(None))
    sys.exit(0 if res.ok else 1)
