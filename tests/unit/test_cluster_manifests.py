"""cluster/ manifests parse, pin the installed Ray, and the RayService's Serve config is one
our builder and Serve itself accept."""

from pathlib import Path

import ray
import yaml

CLUSTER = Path(__file__).resolve().parents[2] / "cluster"


def _docs():
    return {p.name: yaml.safe_load(p.read_text()) for p in sorted(CLUSTER.glob("*.yaml"))}


def test_every_kuberay_manifest_pins_the_installed_ray():
    docs = _docs()
    assert docs, "no manifests"
    for name, doc in docs.items():
        if doc.get("apiVersion", "").startswith("ray.io/"):
            spec = doc["spec"]
            if doc["kind"] == "RayCronJob":
                spec = spec["jobTemplate"]["rayClusterSpec"]
            version = spec.get("rayVersion") or spec["rayClusterConfig"]["rayVersion"]
            assert version == ray.__version__, name


def test_rayservice_serve_config_validates_against_serve_and_our_builder():
    from ray.serve.schema import ServeDeploySchema

    from serving.app import AppArgs

    svc = _docs()["ray-service.stockray.yaml"]
    cfg = yaml.safe_load(svc["spec"]["serveConfigV2"])
    ServeDeploySchema.model_validate(cfg)
    (app,) = cfg["applications"]
    assert app["import_path"] == "serving.app:build_app"
    args = AppArgs.model_validate(app["args"])
    assert args.mode == "split"
    servicers = cfg["grpc_options"]["grpc_servicer_functions"]
    for path in servicers:  # each servicer adder must be importable
        mod, fn = path.rsplit(".", 1)
        assert callable(getattr(__import__(mod, fromlist=[fn]), fn))
