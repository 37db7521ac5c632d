"""``python -m ray_apps.train``: LightGBM per horizon on a local Ray cluster, registered and
exported (`training.lifecycle.train`, which also holds the sequence-net job of
``stockray train --sequence``)."""

from __future__ import annotations

from features.settings import Settings
from training.lifecycle.train import (
    SequenceTrainConfig,
    SequenceTrainResult,
    TrainConfig,
    TrainResult,
    describe,
    describe_sequence,
)
from training.lifecycle.train import train_lgbm as main
from training.lifecycle.train import train_sequence as main_sequence

__all__ = ["SequenceTrainConfig", "SequenceTrainResult", "TrainConfig", "TrainResult",
           "describe", "describe_sequence", "main", "main_sequence"]

if __name__ == "__main__":
    from ray_apps.cluster import ray_connection

    _settings = Settings().resolved()
    with ray_connection(_settings):
        print(describe(main(TrainConfig(), _settings)))
