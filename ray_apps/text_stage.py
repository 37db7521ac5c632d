"""The text stage of ``stockray up --text``: news into the lake, scores, daily text features.

1. ``news fetch --provider file`` (the shipped SYNTHETIC sample unless a path is given);
2. scores: the sentiment bundle of the data dir (``<data_dir>/models/sentiment``, from
   ``make sentiment``) when it exists, else the word-count lexicon
   (`training.text_scorer.WordCountScorer`), so the path runs without a trained encoder;
3. ``news features``: daily text features -> Feast view ``text_features`` (online too).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

from features.settings import Settings


@dataclass
class TextStageResult:
    fetched: int
    already_stored: int
    scorer: str
    scored: int
    rows: int
    tickers: list[str]
    online_tickers: int

    def to_dict(self) -> dict:
        return asdict(self)


def pick_scorer(settings: Settings):
    """(scorer, name): the data dir's sentiment bundle, else the word-count lexicon."""
    bundle = settings.models_dir / "sentiment"
    if bundle.exists():
        from serving.sentiment_models import SentimentScorer

        return SentimentScorer.from_bundle(bundle), f"bundle:{bundle.name}"
    from training.text_scorer import NAME, WordCountScorer

    return WordCountScorer(), NAME


def run_text_stage(settings: Settings, news_path: Path | None = None) -> TextStageResult:
    """Fetch, score and build the text features (see the module docstring)."""
    from features.text.build import run_text_features
    from features.text.fetch import NewsFetchConfig, run_news_fetch
    from features.text.scoring import score_unscored

    settings = settings.resolved()
    rep = run_news_fetch(NewsFetchConfig(provider="file", path=news_path), settings)
    if not rep.ok:
        raise ValueError(f"news fetch failed: {rep.to_dict() if hasattr(rep, 'to_dict') else rep}")
    scorer, name = pick_scorer(settings)
    sc = score_unscored(settings.lake_dir, scorer, name)
    feats = run_text_features(settings, scorer=name)
    return TextStageResult(fetched=rep.written, already_stored=rep.already_stored, scorer=name,
                           scored=sc.scored, rows=feats.rows, tickers=feats.tickers,
                           online_tickers=feats.online_tickers)


def describe(r: TextStageResult) -> str:
    return (f"      news: {r.fetched} new record(s) ({r.already_stored} already stored), "
            f"{r.scored} scored by {r.scorer}; text features: {r.rows} rows for "
            f"{len(r.tickers)} tickers ({', '.join(r.tickers)}), {r.online_tickers} online")


def run_text_evaluate(settings: Settings, config_path: Path | None = None,
                      horizon: int | None = None, max_folds: int | None = None,
                      seeds: tuple[int, ...] | None = None, parallel: bool = True,
                      log=print, start: str | None = None) -> tuple[dict, Path]:
    """``stockray news evaluate``: `training.text_eval.evaluate_text_gain` on the data dir's
    offline store (price features, labels and the text features), the config's walk-forward
    (default ``configs/lgbm_text.yaml``), each (fold, seed) a Ray task on a local cluster
    when ``parallel``; ``start`` as in `training.text_eval.text_eval_frame`. Writes
    ``reports/text_gain/h{h}/text_gain.json``."""
    import ray

    from ray_apps.cluster import local_cluster
    from training.config import load_experiment
    from training.lifecycle.evaluation import ray_fold_map
    from training.segments import scale_walkforward
    from training.text_eval import evaluate_text_gain, text_eval_frame, write_text_gain

    settings = settings.resolved()
    exp = load_experiment(config_path or _text_config())
    h = horizon or exp.horizons[0]
    frame, base, start = text_eval_frame(settings.offline_dir, start)
    wf = exp.walkforward_for(h, **({"max_folds": max_folds} if max_folds else {}),
                             **({"seeds": tuple(seeds)} if seeds else {}))
    wf = scale_walkforward(wf, frame["ts"].nunique(), h)

    def run(map_folds):
        return evaluate_text_gain(frame, base, wf, map_folds=map_folds, log=log)

    if parallel and not ray.is_initialized():
        with local_cluster(settings, dashboard=False):
            rep = run(ray_fold_map)
    else:
        rep = run(ray_fold_map if parallel else None)
    rep["start"] = start
    return rep, write_text_gain(rep, settings.reports_dir / "text_gain" / f"h{h}")


def _text_config() -> Path:
    return Path(__file__).resolve().parent.parent / "configs" / "lgbm_text.yaml"
