"""`stockray news ...`: fetch text into the lake, score it, build the daily text features."""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import Annotated

import typer

from ray_apps.cli_state import run_report
from ray_apps.cli_state import settings as cli_settings

DEFAULT_FACTORY = "serving.sentiment_models:SentimentScorer.from_bundle"
news_app = typer.Typer(add_completion=False, no_args_is_help=True, rich_markup_mode=None,
                       help="News, RSS and SEC filings -> lake -> sentiment -> text features.")


def _split(value: str | None) -> tuple[str, ...]:
    return tuple(t.strip() for t in (value or "").split(",") if t.strip())


@news_app.command()
def fetch(
    provider: Annotated[str, typer.Option(help="newsapi | gdelt | edgar | rss | file.")],
    tickers: Annotated[str | None, typer.Option(
        help="Comma-separated tickers of the company table (newsapi, gdelt, edgar).")] = None,
    feed: Annotated[list[str] | None, typer.Option(help="RSS/Atom feed URL (repeatable).")] =
        None,
    path: Annotated[Path | None, typer.Option(
        help="file provider: CSV/JSON-lines news file (default: the shipped SYNTHETIC "
             "sample).")] = None,
    since: Annotated[str | None, typer.Option(
        help="First publication time (default: 7 days before --until).")] = None,
    until: Annotated[str | None, typer.Option(help="Last publication time (default: now).")] =
        None,
    forms: Annotated[str, typer.Option(help="edgar: filing forms.")] = "8-K,10-K,10-Q",
    companies: Annotated[Path | None, typer.Option(
        help="Company table for ticker linking (ticker,cik,name,aliases).")] = None,
) -> None:
    """Fetch text into the lake's news table through validation (bad records quarantined
    with reasons, duplicates skipped). Keys/identity from env: STOCKRAY_NEWSAPI_API_KEY,
    STOCKRAY_EDGAR_USER_AGENT. Exit 1 if a ticker or feed failed, 2 on a configuration
    error."""
    from features.text.fetch import NewsFetchConfig, describe, run_news_fetch

    cfg = NewsFetchConfig(provider=provider.lower(), tickers=tuple(
        t.upper() for t in _split(tickers)), feeds=tuple(feed or ()), path=path, since=since,
        until=until, forms=_split(forms), companies=companies)
    run_report(lambda: run_news_fetch(cfg, cli_settings()), describe)


def load_scorer(factory: str, bundle: Path):
    """``module:attr.path`` called with the bundle path (the project's sentiment scorer by
    default)."""
    mod, _, attr = factory.partition(":")
    try:
        obj = importlib.import_module(mod)
    except ImportError as e:
        raise ValueError(f"cannot import the scorer module {mod!r} ({e}); pass "
                         f"--scorer-factory module:callable") from None
    for part in attr.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            raise ValueError(f"{factory}: no attribute {part!r}")
    return obj(bundle)


@news_app.command()
def score(
    bundle: Annotated[Path, typer.Option(help="Sentiment model bundle (directory or file).")],
    scorer_factory: Annotated[str, typer.Option(
        help="module:callable(bundle) returning an object with score(texts) -> (n, 3) "
             "probabilities (negative, neutral, positive).")] = DEFAULT_FACTORY,
    scorer_name: Annotated[str | None, typer.Option(
        help="Name stored with the scores (default: the bundle's name).")] = None,
    limit: Annotated[int | None, typer.Option(help="Score at most this many records.")] =
        None,
) -> None:
    """Score the lake's text that this scorer has not scored yet (scores stored beside the
    raw text, never over it)."""
    from features.text.scoring import score_unscored

    if not bundle.exists():
        typer.echo(f"error: no bundle at {bundle}", err=True)
        raise typer.Exit(2)
    try:
        scorer = load_scorer(scorer_factory, bundle)
        rep = score_unscored(cli_settings().resolved().lake_dir, scorer,
                             scorer_name or bundle.name, limit=limit)
    except ValueError as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(2) from None
    typer.echo(f"scored {rep.scored} of {rep.unscored} unscored record(s) with {rep.scorer}"
               + (f" -> {rep.path}" if rep.path else ""))


@news_app.command()
def features(
    scorer: Annotated[str | None, typer.Option(
        help="Use this scorer's scores (default: the newest score of any scorer).")] = None,
    online: Annotated[bool, typer.Option(help="Register and materialize in Feast.")] = True,
    events: Annotated[bool, typer.Option(help="Append sentiment_shock events.")] = True,
    shock_threshold: Annotated[float, typer.Option(
        help="sentiment_shock: |mean sentiment - 30-session baseline| above this.")] = 0.5,
) -> None:
    """Daily text features per (ticker, session) into offline/text_features.parquet and the
    Feast view `text_features` (service `stockray_text_v1`); text after 16:00 New York
    counts for the next session."""
    from features.text.build import run_text_features

    rep = run_text_features(cli_settings(), scorer=scorer, online=online, events=events,
                            shock_threshold=shock_threshold)
    typer.echo(json.dumps(rep.to_dict(), indent=2))


@news_app.command()
def evaluate(
    config: Annotated[Path | None, typer.Option(
        help="Experiment config (walk-forward layout, params) [configs/lgbm_text.yaml].")] =
        None,
    horizon: Annotated[int | None, typer.Option(help="Horizon [the config's first].")] = None,
    max_folds: Annotated[int | None, typer.Option(help="At most this many folds.")] = None,
    seeds: Annotated[str | None, typer.Option(help="Comma-separated seeds [config's].")] =
        None,
    parallel: Annotated[bool, typer.Option(
        help="One Ray task per fold and seed on a local cluster.")] = True,
    start: Annotated[str | None, typer.Option(
        help="First date used [4 years before the first text: earlier folds train two "
             "identical models, text being all zero there]; 'all' = the whole history.")] =
        None,
) -> None:
    """Walk-forward of the model with vs without the text features, one run, against the
    naive baselines (needs `stockray features` and `stockray news features` first)."""
    from ray_apps.text_stage import run_text_evaluate
    from training.text_eval import format_text_gain

    sd = tuple(int(s) for s in _split(seeds)) or None
    try:
        rep, path = run_text_evaluate(cli_settings(), config, horizon, max_folds, sd,
                                      parallel, log=typer.echo, start=start)
    except (FileNotFoundError, ValueError) as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(2) from None
    typer.echo(format_text_gain(rep))
    typer.echo(f"report: {path}")
