"""Sequence models (LSTM, Transformer encoder) on rolling feature windows, multi-horizon.

A sample is the window of the last ``window`` feature rows of one ticker ending at ``ts``
(rows at or before ``ts`` only, never crossing tickers; a ticker's first rows are left-padded
with NaN, which the network reads as "the training mean"). Its targets are the forward
returns ``fwd_ret_{1,5,20}d`` at ``ts``, learned jointly by one head per horizon; a label that
is NaN (end of history, or purged because its window reaches the next segment) is masked out
of the loss instead of dropping the whole sample.

The network carries its own scalers as buffers: feature mean/std fitted on the **train
segment only**, and per-horizon target mean/std (so the 20-day head, whose returns vary ~20x
more than the 1-day ones, does not dominate the loss).

Modules, one seam each:

- `training.nets` (outside this package, so serving can rebuild a net without the loop):
  `SequenceConfig`, `SequenceNet`, the checkpoint format;
- `windows`: samples (`build_windows`), segment masks, label purging;
- `loop`: scalers, the masked loss and `train_epochs`, the one loop every path runs;
- `model`: `SequenceModel`, the `training.model.Model` implementation;
- `scoring`: metrics beside the naive baselines and the registry's `SequenceResult`;
- `ray_train`: Ray Train (``TorchTrainer``, a checkpoint per epoch, resume); Ray is imported
  inside its functions;
- `tune`: Ray Tune's ASHA search (domains and scheduler shared with LightGBM's in
  `training.tune`).

Typical use::

    cfg = SequenceConfig(model="lstm", window=20, epochs=10)
    model = SequenceModel(cfg, feature_names=FEATURE_NAMES)
    data = Dataset.of(frame, FEATURE_NAMES, train=tr, valid=va)   # training.model
    model.fit(data)                    # purges train labels reaching the valid segment
    pred = model.predict(data, "valid")   # Series indexed by (ts, ticker), first horizon
"""

from training.nets import (
    INPUT_CLIP,
    EpochState,
    SequenceConfig,
    SequenceNet,
    load_state,
    net_from_state,
    save_state,
)
from training.sequence.loop import (
    evaluate_net,
    fit_scalers,
    make_optimizer,
    masked_mse,
    predict_array,
    train_epochs,
)
from training.sequence.model import SequenceModel
from training.sequence.ray_train import (
    CHECKPOINT_FILE,
    HEALTH_CHECK_ENV,
    HEALTH_CHECK_INTERVAL_S,
    WORKER_NICENESS_ENV,
    fit_ray_train,
    fit_sequence_ray,
    ray_train_data,
    train_loop_per_worker,
    worker_runtime_env,
)
from training.sequence.scoring import (
    PARITY_WINDOWS,
    SequenceResult,
    ic_by_horizon,
    score_sequence,
    sequence_result,
)
from training.sequence.tune import load_sequence_yaml, sequence_trainable, tune_sequence
from training.sequence.windows import Windows, build_windows, purge_labels, segment_masks

__all__ = [
    "CHECKPOINT_FILE",
    "HEALTH_CHECK_ENV",
    "HEALTH_CHECK_INTERVAL_S",
    "INPUT_CLIP",
    "PARITY_WINDOWS",
    "WORKER_NICENESS_ENV",
    "EpochState",
    "SequenceConfig",
    "SequenceModel",
    "SequenceNet",
    "SequenceResult",
    "Windows",
    "build_windows",
    "evaluate_net",
    "fit_ray_train",
    "fit_scalers",
    "fit_sequence_ray",
    "ic_by_horizon",
    "load_sequence_yaml",
    "load_state",
    "make_optimizer",
    "masked_mse",
    "net_from_state",
    "predict_array",
    "purge_labels",
    "ray_train_data",
    "save_state",
    "score_sequence",
    "segment_masks",
    "sequence_result",
    "sequence_trainable",
    "train_epochs",
    "train_loop_per_worker",
    "tune_sequence",
    "worker_runtime_env",
]
