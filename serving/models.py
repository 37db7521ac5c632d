"""Where serving finds its model bundles: explicit directories or the MLflow registry.

Registry convention: one registered model per family and horizon, named
``stockray-{family}-h{h}`` (``lgbm`` by default; ``lstm`` / ``transformer`` for sequence
networks, `registered_name_template`); the version to serve carries the alias ``champion``;
that version's run holds the bundle (see ``training.export``; format in ``training.bundle``) under the artifact path
``bundle/``. The registered name and version override whatever ``bundle.json`` says, since the
registry is the source of truth.

A bundle's ``kind`` (``lgbm``, or ``sequence`` for an LSTM / Transformer) says which files it
has and how it is scored: `ModelBundle.kind`, ``window`` and ``output_index``.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, model_validator

from training.bundle import (
    BOOSTER_FILE,
    KIND_LGBM,
    KIND_SEQUENCE,
    ONNX_FILE,
    STATE_FILE,
    read_bundle_meta,
)

DEFAULT_FAMILY = "lgbm"
DEFAULT_REGISTERED_NAME = "stockray-lgbm-h{h}"
# Families a serving app can be built for (one family per app; see serving.app.AppArgs).
SERVABLE_FAMILIES = ("lgbm", "lstm", "transformer")


def registered_name_template(family: str) -> str:
    """``stockray-{family}-h{h}`` (``{h}`` left for the horizon) of a servable family."""
    if family not in SERVABLE_FAMILIES:
        raise ValueError(f"family {family!r} cannot be served; choose one of {SERVABLE_FAMILIES}")
    return f"stockray-{family}-h{{h}}"
DEFAULT_ALIAS = "champion"
BUNDLE_ARTIFACT_PATH = "bundle"


class ModelSource(BaseModel):
    """Which bundles to serve: ``bundle_dirs`` (horizon -> directory) or an MLflow registry."""

    bundle_dirs: dict[int, str] | None = Field(
        None, description="Explicit bundle directories by horizon (absolute paths)."
    )
    tracking_uri: str | None = Field(
        None, description="MLflow tracking URI, e.g. sqlite:///<data_dir>/mlflow/mlflow.db."
    )
    horizons: list[int] = Field(
        default_factory=lambda: [1, 5, 20], description="Horizons to load from the registry."
    )
    registered_name: str = Field(
        DEFAULT_REGISTERED_NAME, description="Registered model name; {h} is the horizon."
    )
    alias: str = Field(DEFAULT_ALIAS, description="Registry alias of the version to serve.")
    download_dir: str | None = Field(
        None, description="Where registry bundles are downloaded (default: a temp dir)."
    )

    @model_validator(mode="after")
    def _one_source(self) -> ModelSource:
        if (self.bundle_dirs is None) == (self.tracking_uri is None):
            raise ValueError("set exactly one of bundle_dirs or tracking_uri")
        if self.bundle_dirs is not None and not self.bundle_dirs:
            raise ValueError("bundle_dirs is empty: serve at least one horizon")
        return self

    @classmethod
    def from_data_dir(cls, data_dir: str | Path, **kw: Any) -> ModelSource:
        """Registry source for the embedded MLflow under ``data_dir``."""
        db = Path(data_dir).expanduser().resolve() / "mlflow" / "mlflow.db"
        return cls(tracking_uri=f"sqlite:///{db}", **kw)


@dataclass(frozen=True)
class ModelBundle:
    """A loaded bundle's metadata and file paths (the sessions are built by the stages)."""

    path: Path
    horizon: int
    model_name: str
    model_version: str
    feature_names: tuple[str, ...]
    meta: dict[str, Any]

    @property
    def onnx_path(self) -> Path:
        return self.path / ONNX_FILE

    @property
    def booster_path(self) -> Path:
        return self.path / BOOSTER_FILE

    @property
    def state_path(self) -> Path:
        """A sequence bundle's torch state (integrated gradients)."""
        return self.path / STATE_FILE

    @property
    def kind(self) -> str:
        """``"lgbm"`` (input ``[N, F]``) or ``"sequence"`` (input ``[N, window, F]``)."""
        return str(self.meta.get("kind", KIND_LGBM))

    @property
    def family(self) -> str:
        """Registry family: ``lgbm``, ``lstm`` or ``transformer``."""
        return str(self.meta.get("family", KIND_LGBM))

    @property
    def window(self) -> int:
        """Rows of history per input (1 for LightGBM)."""
        return int(self.meta.get("window", 1))

    @property
    def output_index(self) -> int:
        """Column of the ONNX output that forecasts ``horizon``."""
        return int(self.meta.get("output_index", 0))


def load_bundle(path: str | Path, **overrides: Any) -> ModelBundle:
    """Read a bundle directory; ``overrides`` replace metadata fields (name, version)."""
    p = Path(path).expanduser().resolve()
    meta = {**read_bundle_meta(p), **overrides}
    kind = meta.get("kind", KIND_LGBM)
    if kind not in (KIND_LGBM, KIND_SEQUENCE):
        raise ValueError(f"bundle {p} has kind {kind!r}; this server knows lgbm and sequence")
    for f in (ONNX_FILE, BOOSTER_FILE if kind == KIND_LGBM else STATE_FILE):
        if not (p / f).is_file():
            raise FileNotFoundError(f"bundle {p} lacks {f}: re-export it")
    return ModelBundle(
        path=p,
        horizon=int(meta["horizon"]),
        model_name=str(meta["model_name"]),
        model_version=str(meta["model_version"]),
        feature_names=tuple(meta["feature_names"]),
        meta=meta,
    )


def download_champion(
    tracking_uri: str,
    horizon: int,
    dst_dir: str | Path,
    *,
    registered_name: str = DEFAULT_REGISTERED_NAME,
    alias: str = DEFAULT_ALIAS,
) -> ModelBundle:
    """Download the bundle of ``registered_name@alias`` for one horizon and load it."""
    import mlflow

    name = registered_name.format(h=horizon)
    client = mlflow.MlflowClient(tracking_uri=tracking_uri)
    try:
        mv = client.get_model_version_by_alias(name, alias)
    except mlflow.exceptions.MlflowException as e:
        raise LookupError(
            f"no {name}@{alias} in {tracking_uri}: train and register horizon {horizon} "
            f"first, or serve other horizons ({e})"
        ) from e
    dst = Path(dst_dir) / f"h{horizon}-v{mv.version}"
    dst.mkdir(parents=True, exist_ok=True)
    local = mlflow.artifacts.download_artifacts(
        run_id=mv.run_id,
        artifact_path=BUNDLE_ARTIFACT_PATH,
        dst_path=str(dst),
        tracking_uri=tracking_uri,
    )
    bundle = load_bundle(local, model_name=name, model_version=str(mv.version))
    if bundle.horizon != horizon:
        raise ValueError(f"{name} v{mv.version} holds a horizon-{bundle.horizon} bundle")
    return bundle


def alias_versions(source: ModelSource, *, missing_ok: bool = False) -> dict[int, str]:
    """What ``source`` points at right now, cheaply: horizon -> version (no download).

    Registry: the version carrying ``source.alias`` per horizon (one query each). Directories:
    ``model_version`` + ``created_at`` of each ``bundle.json`` (a re-export changes it). A hot
    swap compares this with what a replica loaded (see ``serving.modelset``).
    """
    if source.bundle_dirs is not None:
        out = {}
        for h, d in source.bundle_dirs.items():
            try:
                m = read_bundle_meta(d)
            except FileNotFoundError:
                if missing_ok:
                    continue
                raise
            out[int(h)] = f"{m.get('model_version')}@{m.get('created_at')}"
        return dict(sorted(out.items()))
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=source.tracking_uri)
    out = {}
    for h in sorted(source.horizons):
        try:
            mv = client.get_model_version_by_alias(source.registered_name.format(h=h), source.alias)
        except mlflow.exceptions.MlflowException:
            if missing_ok:
                continue
            raise
        out[h] = str(mv.version)
    return out


def resolve_bundles(source: ModelSource, *, missing_ok: bool = False) -> dict[int, ModelBundle]:
    """Load every bundle ``source`` names, keyed by horizon (sorted).

    ``missing_ok``: skip horizons without a bundle/alias (a challenger exists for some horizons
    only) instead of raising.
    """
    if source.bundle_dirs is not None:
        out = {}
        for h, d in source.bundle_dirs.items():
            if missing_ok and not (Path(d) / "bundle.json").is_file():
                continue
            b = load_bundle(d)
            if b.horizon != int(h):
                raise ValueError(f"bundle {d} is for horizon {b.horizon}, configured as {h}")
            out[int(h)] = b
        return dict(sorted(out.items()))
    assert source.tracking_uri is not None
    dst = source.download_dir or tempfile.mkdtemp(prefix="stockray-bundles-")
    got = {}
    for h in sorted(source.horizons):
        try:
            got[h] = download_champion(
                source.tracking_uri,
                h,
                dst,
                registered_name=source.registered_name,
                alias=source.alias,
            )
        except LookupError:
            if not missing_ok:
                raise
    return got
