"""Process settings: where a run writes, which ports it listens on.

Settings are not experiment config: they say *where* (paths, addresses, ports), never *what*
(model hyperparameters live in ``configs/*.yaml``). Every field can be set from the environment
with the ``STOCKRAY_`` prefix, e.g. ``STOCKRAY_DATA_DIR=/tmp/sr STOCKRAY_GRPC_PORT=9100``.

Everything a run writes lives below ``data_dir``: the lake, quarantine, Feast registry and
stores, MLflow runs and registry, model bundles, Ray results and logs.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Paths and addresses of one stockray deployment (read from ``STOCKRAY_*``)."""

    model_config = SettingsConfigDict(env_prefix="STOCKRAY_", extra="ignore")

    data_dir: Path = Field(Path("data"), description="Root of everything a run writes.")
    host: str = Field("127.0.0.1", description="Interface for the HTTP ingress and dashboard.")
    grpc_port: int = Field(9000, description="Public gRPC prediction port.")
    http_port: int = Field(8000, description="HTTP/JSON ingress port.")
    dashboard_port: int = Field(8265, description="Ray dashboard port.")
    app_port: int = Field(7860, description="Gradio analyst app port (`stockray app`).")
    serve_mode: str = Field(
        "fused",
        description="'fused': one replica holds every stage; 'split': one deployment per stage.",
    )

    auth_dir: Path | None = Field(
        None, description="API key files (api_token, keys.yaml); default <data_dir>/auth.")
    tls_cert: Path | None = Field(None, description="Server certificate (PEM): TLS on.")
    tls_key: Path | None = Field(None, description="Server private key (PEM, 0600).")
    tls_client_ca: Path | None = Field(
        None, description="CA of client certificates: gRPC requires one (mTLS).")
    profile: str = Field(
        "dev", description="'dev' or 'production' (reflection off, Explain/ListModels admin).")

    features_memory_gb: float = Field(
        2.0, gt=0,
        description="Memory budget of a feature run: ticker chunks in flight plus DuckDB's "
                    "limit for the cross-sectional ranks (features.stream).")

    def resolved(self) -> Settings:
        """Return a copy whose ``data_dir`` is absolute (Ray workers run in other cwds)."""
        return self.model_copy(update={
            "data_dir": self.data_dir.expanduser().resolve(),
            **({"auth_dir": self.auth_dir.expanduser().resolve()} if self.auth_dir else {}),
        })

    @property
    def auth_path(self) -> Path:
        """Where the API key files live (``auth_dir`` or ``<data_dir>/auth``)."""
        return self.auth_dir if self.auth_dir is not None else self.data_dir / "auth"

    @property
    def certs_dir(self) -> Path:
        """Where ``stockray certs`` writes a development pair."""
        return self.data_dir / "certs"

    # -- layout below data_dir (pure path arithmetic; nothing is created here) --
    @property
    def lake_dir(self) -> Path:
        return self.data_dir / "lake"

    @property
    def bars_dir(self) -> Path:
        return self.lake_dir / "bars"

    @property
    def quarantine_dir(self) -> Path:
        return self.lake_dir / "quarantine"

    @property
    def offline_dir(self) -> Path:
        """Feast offline store: feature and label parquet files."""
        return self.data_dir / "offline"

    @property
    def feast_dir(self) -> Path:
        return self.data_dir / "feast"

    @property
    def mlflow_dir(self) -> Path:
        return self.data_dir / "mlflow"

    @property
    def tracking_uri(self) -> str:
        return f"sqlite:///{self.mlflow_dir / 'mlflow.db'}"

    @property
    def artifact_uri(self) -> str:
        return (self.mlflow_dir / "artifacts").as_uri()

    @property
    def models_dir(self) -> Path:
        return self.data_dir / "models"

    @property
    def ray_dir(self) -> Path:
        return self.data_dir / "ray"

    @property
    def logs_dir(self) -> Path:
        return self.data_dir / "logs"

    @property
    def reports_dir(self) -> Path:
        return self.data_dir / "reports"
