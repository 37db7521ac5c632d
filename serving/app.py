"""The typed Serve application builder: ``build_app(AppArgs(...)) -> Application``.

``serve run serving.app:build_app mode=split ...`` works too (Serve passes the args dict).
How to start it on a port (and the direct-ingress fast path) lives in ``serving.launch``.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator
from ray.serve import Application

from serving.config import StageConfig


class AppArgs(StageConfig):
    """Builder arguments (crosses the process boundary, hence pydantic).

    Inherits ``models``, ``reader``, ``reader_kwargs``, ``feature_cache_ttl_s`` and
    ``explain_cache_size`` from :class:`~serving.config.StageConfig`.
    """

    mode: Literal["fused", "split"] = Field(
        "fused",
        description="fused: one replica holds every stage (fastest); split: one deployment "
        "per stage behind handles, each scaled on its own.",
    )
    app_name: str = Field("stockray", description="Serve application name.")
    # Fractions: a replica reserves 1 CPU by default and a 4-deployment app would never
    # schedule on this 2-core box (STACK.md).
    fused_num_cpus: float = Field(0.5, gt=0, description="CPUs of the fused replica.")
    ingress_num_cpus: float = Field(0.2, gt=0, description="CPUs of the split ingress.")
    lookup_num_cpus: float = Field(0.2, gt=0, description="CPUs of a FeatureLookup replica.")
    predictor_num_cpus: float = Field(0.3, gt=0, description="CPUs of a Predictor replica.")
    explainer_num_cpus: float = Field(0.3, gt=0, description="CPUs of an Explainer replica.")
    ingress_replicas: int = Field(
        1, ge=1, description="Ingress replicas; must be 1 when direct ingress owns the port."
    )
    lookup_replicas: int = Field(1, ge=1)
    predictor_replicas: int = Field(1, ge=1)
    explainer_replicas: int = Field(1, ge=1)
    host: str = Field("127.0.0.1", description="HTTP bind address (gRPC binds all; STACK.md).")
    grpc_port: int = Field(9000, description="Public gRPC port.")
    http_port: int = Field(8000, description="Public HTTP port.")
    # Backpressure: beyond max_ongoing_requests a request waits in the replica's queue; beyond
    # max_queued_requests more it is refused with RESOURCE_EXHAUSTED (retry with backoff).
    # 32 in flight keeps 2 cores busy without building a latency queue (bench/serving.py).
    max_ongoing_requests: int = Field(32, ge=1, description="Concurrent requests per replica.")
    max_queued_requests: int = Field(
        256,
        ge=-1,
        description="Queued requests per ingress before RESOURCE_EXHAUSTED (-1 = no limit).",
    )
    stage_max_ongoing_requests: int = Field(
        64, ge=1, description="Split mode: concurrent calls per stage replica."
    )
    autoscaling: dict[str, float] | None = Field(
        None,
        description="Serve autoscaling_config for the stage deployments in split mode "
        "(min_replicas, max_replicas, target_ongoing_requests, ...); replaces *_replicas. The "
        "ingress has one replica while direct ingress owns the public port.",
    )

    sentiment_bundle: str | None = Field(
        None, description="Sentiment bundle directory (ScoreText/ScoreTexts); None = not served."
    )
    sentiment_variant: str | None = Field(
        None, description="auto | int8 | fp32 (default: the bundle's; auto = int8 for one "
        "sentence, fp32 for a batch)."
    )
    sentiment_placement: Literal["ingress", "split", "deployment"] = Field(
        "split", description="Where sentiment is scored: split (default: one sentence in the "
        "ingress replica, no hop; batches in a Sentiment deployment, a process of their own), "
        "all in the ingress, or all in the Sentiment deployment (bench.sentiment compares them)."
    )
    sentiment_num_cpus: float = Field(0.3, gt=0, description="CPUs of the Sentiment replica.")

    @model_validator(mode="after")
    def _ports(self) -> AppArgs:
        if self.grpc_port == self.http_port:
            raise ValueError(f"grpc_port and http_port are both {self.grpc_port}")
        return self

    def stage_config(self) -> StageConfig:
        return StageConfig(**{k: getattr(self, k) for k in StageConfig.model_fields})


def build_app(args: AppArgs | dict) -> Application:
    """Bind the serving graph for ``args.mode``.

    Args:
        args: builder arguments (a dict is validated into :class:`AppArgs`).

    Returns:
        The bound application, for ``serve.run``.
    """
    from serving.deployments.explainer import ExplainerDeployment
    from serving.deployments.feature_lookup import FeatureLookupDeployment
    from serving.deployments.ingress import Ingress
    from serving.deployments.predictor import PredictorDeployment
    from serving.deployments.sentiment import SentimentDeployment

    a = args if isinstance(args, AppArgs) else AppArgs.model_validate(args)
    cfg = a.stage_config()
    user_config = a.routing.model_dump()
    ingress = Ingress.options(
        num_replicas=a.ingress_replicas,
        ray_actor_options={
            "num_cpus": a.fused_num_cpus if a.mode == "fused" else a.ingress_num_cpus
        },
        max_ongoing_requests=a.max_ongoing_requests,
        max_queued_requests=a.max_queued_requests,
        user_config=user_config,
    )
    extra = {}
    if a.sentiment_bundle and a.sentiment_placement != "ingress":
        extra["sentiment"] = SentimentDeployment.options(
            ray_actor_options={"num_cpus": a.sentiment_num_cpus},
            max_ongoing_requests=a.stage_max_ongoing_requests,
        ).bind(a.sentiment_bundle, a.sentiment_variant)
    if a.sentiment_bundle and a.sentiment_placement != "deployment":
        extra["sentiment_local"] = {"bundle_dir": a.sentiment_bundle,
                                    "variant": a.sentiment_variant}
    if a.mode == "fused":
        return ingress.bind(config=cfg, **extra)

    def stage(dep, replicas: int, cpus: float):
        scale = (
            {"autoscaling_config": dict(a.autoscaling)}
            if a.autoscaling
            else {"num_replicas": replicas}
        )
        return dep.options(
            ray_actor_options={"num_cpus": cpus},
            max_ongoing_requests=a.stage_max_ongoing_requests,
            **scale,
        )

    lookup = stage(FeatureLookupDeployment, a.lookup_replicas, a.lookup_num_cpus).bind(cfg)
    predictor = (
        stage(PredictorDeployment, a.predictor_replicas, a.predictor_num_cpus)
        .options(user_config=user_config)
        .bind(cfg)
    )
    explainer = (
        stage(ExplainerDeployment, a.explainer_replicas, a.explainer_num_cpus)
        .options(user_config=user_config)
        .bind(cfg)
    )
    return ingress.bind(lookup=lookup, predictor=predictor, explainer=explainer, split_config=cfg,
                        **extra)
