"""MLflow tracking and registry: runs, registered models per family and horizon, the lifecycle.

Registered names are ``stockray-{family}-h{h}``: `FAMILIES` are the LightGBM ones (``lgbm`` =
regression, the default served family; ``lgbmrank`` = lambdarank), `SEQUENCE_FAMILIES` the
sequence networks (``lstm``, ``transformer``; one multi-horizon net, registered once per
horizon). Each version's run holds the model in an MLflow flavor (``lightgbm``; ``pytorch``
for sequence nets), the serving bundle (``training.export``: ONNX + booster or torch state +
metadata) under ``bundle/`` (every family in `BUNDLE_FAMILIES`; ``lgbmrank`` runs hold the
booster text instead), ``model_card.md`` (`training.model_card`), the git revision and the data snapshot hash (tags).
`register_horizon` (LightGBM) and `register_sequence` share one code path, `_register`.

Lifecycle (aliases):

- a newly registered version becomes ``challenger`` — except the very first version of a
  name, which becomes ``champion`` so a fresh install serves something;
- `promote` moves ``champion`` to the challenger when the **promotion rule** holds
  (`promotion_rule`): the challenger's walk-forward RankIC, mean over >= ``min_seeds`` seeds,
  exceeds the champion's by at least ``margin``. A champion without walk-forward figures
  counts as RankIC 0 (no demonstrated skill). ``force`` skips the rule (recorded);
- every champion change appends to the registered model's tag ``champion_history`` (JSON list
  of versions); `rollback` pops the current champion off it, points ``champion`` back at the
  previous one and records the rollback as tags (``last_rollback`` on the model,
  ``rolled_back_at`` on the demoted version).

When a bundle family's champion changes, its local bundle (`local_bundle_dir`: ``models/h{h}``
for ``lgbm``, ``models/{family}/h{h}`` for the others) is refreshed from the registry so it
always mirrors the champion.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from features.durable import file_lock, replace_dir
from training.export import (
    export_bundle,
    export_sequence_bundle,
    retarget_sequence_bundle,
    write_bundle_meta,
)
from training.lgbm import HorizonResult
from training.model_card import SEQUENCE_ARCHITECTURES, git_revision, model_card

REGISTERED_NAME = "stockray-lgbm-h{h}"
BUNDLE_ARTIFACT_PATH = "bundle"
FAMILIES = {"lgbm": "stockray-lgbm-h{h}", "lgbmrank": "stockray-lgbmrank-h{h}"}
SEQUENCE_FAMILIES = {f: f"stockray-{f}-h{{h}}" for f in SEQUENCE_ARCHITECTURES}
SERVED_FAMILY = "lgbm"  # what serving loads by default (serving.models.DEFAULT_REGISTERED_NAME)
# Families whose versions carry a serving bundle. lambdarank outputs a per-date rank score, not
# a return, so it is not served (its ONNX export passes parity: tests/unit/test_lgbm_onnx_parity).
BUNDLE_FAMILIES = ("lgbm", *SEQUENCE_FAMILIES)
CHAMPION, CHALLENGER = "champion", "challenger"
HISTORY_TAG = "champion_history"
WF_SEEDS_TAG = "wf_rank_ic_seeds"  # JSON list: walk-forward RankIC per seed
CARD_FILE = "model_card.md"


def registered_name(family: str, horizon: int) -> str:
    """``stockray-{family}-h{horizon}``; raises for an unknown family."""
    known = {**FAMILIES, **SEQUENCE_FAMILIES}
    if family not in known:
        raise ValueError(f"unknown model family {family!r}; known: {sorted(known)}")
    return known[family].format(h=int(horizon))


def local_bundle_dir(bundle_root: Path, family: str, horizon: int) -> Path:
    """Where a family's champion bundle is mirrored: ``h{h}`` (lgbm) or ``{family}/h{h}``."""
    sub = f"h{int(horizon)}" if family == SERVED_FAMILY else f"{family}/h{int(horizon)}"
    return Path(bundle_root) / sub


def config_hash(obj) -> str:
    """SHA-256 of a JSON-able object (sorted keys): identifies a configuration."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


@dataclass
class RegisteredVersion:
    """Where one horizon's model ended up."""

    name: str
    version: str
    run_id: str
    horizon: int
    bundle_dir: Path
    alias: str = CHAMPION


def ensure_experiment(tracking_uri: str, artifact_uri: str, name: str) -> str:
    """Create the experiment (artifacts under ``artifact_uri``) if missing; returns its id."""
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=tracking_uri)
    exp = client.get_experiment_by_name(name)
    if exp is not None:
        return exp.experiment_id
    return client.create_experiment(name, artifact_location=f"{artifact_uri}/{name}")


@dataclass
class _Flavor:
    """What differs between model families when a version is registered.

    Attributes:
        log_model: logs the model in the active MLflow run; returns its ``ModelInfo``.
        write_bundle: ``(out_dir, name, version, run_id) -> bundle dir``, or None when the
            family has no serving bundle.
        log_extra: logs more artifacts in the active run (e.g. lambdarank's booster text).
    """

    log_model: Callable[[], Any]
    write_bundle: Callable[[Path, str, str, str], Path] | None = None
    log_extra: Callable[[], None] | None = None


def _register(flavor: _Flavor, *, family: str, horizon: int, metrics: dict[str, float],
              split: dict, feature_names: list[str], tracking_uri: str, experiment_id: str,
              bundle_root: Path, params: dict, tags: dict | None, alias: str,
              data_hash: str | None, card: dict | None = None) -> RegisteredVersion:
    """The registration every family shares: run (tags, params, metrics, split, features,
    model, bundle), registered version, alias, champion history, local mirror, model card."""
    import mlflow

    h = int(horizon)
    name = registered_name(family, h)
    mlflow.set_tracking_uri(tracking_uri)
    client = mlflow.MlflowClient(tracking_uri=tracking_uri)
    with mlflow.start_run(experiment_id=experiment_id, run_name=f"{family}-h{h}") as run:
        mlflow.set_tags({"horizon": h, "family": family, "git_revision": git_revision(),
                         **({"data_snapshot_sha256": data_hash} if data_hash else {}),
                         **(tags or {})})
        mlflow.log_params({**params, "horizon": h, "n_features": len(feature_names)})
        mlflow.log_metrics({k: v for k, v in metrics.items() if np.isfinite(v)})
        mlflow.log_dict(split, "split.json")
        mlflow.log_dict({"feature_names": list(feature_names)}, "features.json")
        logged = flavor.log_model()
        run_id = run.info.run_id
        if flavor.write_bundle is not None:
            with tempfile.TemporaryDirectory() as tmp:
                staged = flavor.write_bundle(Path(tmp) / "bundle", name, "unregistered", run_id)
                mlflow.log_artifacts(str(staged), BUNDLE_ARTIFACT_PATH)
        if flavor.log_extra is not None:
            flavor.log_extra()
    mv = mlflow.register_model(logged.model_uri, name)
    version = str(mv.version)
    if alias == "auto":
        alias = CHAMPION if _alias_version(client, name, CHAMPION) is None else CHALLENGER
    client.set_registered_model_alias(name, alias, version)
    if alias == CHAMPION:
        _push_history(client, name, version)
    local = local_bundle_dir(bundle_root, family, h)
    if alias == CHAMPION and flavor.write_bundle is not None:
        local = flavor.write_bundle(local, name, version, run_id)
        write_bundle_meta(local, model_version=version)
    text = model_card(name=name, version=version, family=family, horizon=h, params=params,
                      data_hash=data_hash, holdout=metrics, **(card or {}))
    client.log_text(run_id, text, CARD_FILE)
    client.update_model_version(name, version, description=text)
    return RegisteredVersion(name=name, version=version, run_id=run_id, horizon=h,
                             bundle_dir=local, alias=alias)


def register_horizon(result: HorizonResult, *, tracking_uri: str, experiment_id: str,
                     bundle_root: Path, params: dict, tags: dict | None = None,
                     alias: str = "auto", family: str = SERVED_FAMILY,
                     data_hash: str | None = None,
                     feature_set: dict | None = None) -> RegisteredVersion:
    """Log one horizon's LightGBM run, register its model, set its alias, log its model card.

    Args:
        alias: ``"auto"`` (default): ``champion`` for the first version of the name, else
            ``challenger``; or an explicit alias.
        family: registry family (`FAMILIES`).
        data_hash: snapshot hash of the training data (tag ``data_snapshot_sha256``).
        feature_set: ``features.coverage.FeatureSelection.to_dict()`` (kept and dropped
            features with reasons), stored in the bundle (``extra.feature_set``) and the card.

    The local copy of the bundle (`local_bundle_dir`) mirrors the family's champion: it is
    written only when this version becomes champion.
    """
    import lightgbm as lgb
    import mlflow

    if family not in FAMILIES:
        raise ValueError(f"register_horizon registers LightGBM families {sorted(FAMILIES)}, "
                         f"not {family!r} (sequence nets: register_sequence)")
    booster = lgb.Booster(model_str=result.booster_text)

    def write(out: Path, name: str, version: str, run_id: str) -> Path:
        return export_bundle(booster, result.feature_names, out, model_name=name,
                             model_version=version, horizon=result.horizon,
                             extra={"metrics": result.metrics, "run_id": run_id,
                                    **({"feature_set": feature_set} if feature_set else {})})

    flavor = _Flavor(
        # Explicit requirements: inference would otherwise add torch to a LightGBM model.
        log_model=lambda: mlflow.lightgbm.log_model(
            booster, name="model", pip_requirements=[f"lightgbm=={lgb.__version__}"]),
        # Only served families get an ONNX bundle: a lambdarank score is no return forecast
        # (it exports with parity since float32_thresholds, but serving it as a predicted
        # return would mislead); lgbmrank versions carry the LightGBM model only.
        write_bundle=write if family in BUNDLE_FAMILIES else None,
        log_extra=(None if family in BUNDLE_FAMILIES
                   else lambda: mlflow.log_text(result.booster_text, "booster/model.txt")),
    )
    return _register(flavor, family=family, horizon=result.horizon, metrics=result.metrics,
                     split=result.split, feature_names=result.feature_names,
                     tracking_uri=tracking_uri, experiment_id=experiment_id,
                     bundle_root=bundle_root, params=params, tags=tags, alias=alias,
                     data_hash=data_hash,
                     card={"holdout_note": _lgbm_holdout_note(result.split),
                           **({"feature_set": feature_set} if feature_set else {})})


def register_sequence(result, horizons: list[int] | None = None, *, tracking_uri: str,
                      experiment_id: str, bundle_root: Path, params: dict,
                      tags: dict | None = None, alias: str = "auto",
                      data_hash: str | None = None) -> dict[int, RegisteredVersion]:
    """Register a trained sequence net once per horizon as ``stockray-{lstm|transformer}-h{h}``.

    The ONNX graph is exported (with its parity check) once; each horizon's version gets a
    copy of that bundle pointing at its own output column (`retarget_sequence_bundle`), the
    horizon's metrics, the net in MLflow's ``pytorch`` flavor, and a model card. Aliases and
    the local mirror follow `register_horizon` exactly (shared `_register`).

    Args:
        result: a ``training.sequence.SequenceResult``.
        horizons: which heads to register (default: all of the net's).
        params: hyperparameters to log (``asdict(SequenceConfig)`` is added).

    Returns:
        ``{horizon: RegisteredVersion}``; ``result.metrics[h]`` gains the bundle's
        ``onnx_parity_max_abs`` (logged with the other metrics).
    """
    import mlflow
    import torch

    from training.export import read_bundle_meta

    cfg = result.cfg
    family = cfg.model
    if family not in SEQUENCE_FAMILIES:
        raise ValueError(f"unknown sequence family {family!r}; known {sorted(SEQUENCE_FAMILIES)}")
    hs = [int(h) for h in (horizons or cfg.horizons)]
    calibration = result.calibration()
    net_params = {k: (",".join(map(str, v)) if isinstance(v, tuple) else v)
                  for k, v in vars(cfg).items()}
    out: dict[int, RegisteredVersion] = {}
    with tempfile.TemporaryDirectory() as tmp:
        staged = export_sequence_bundle(
            result.net, result.feature_names, Path(tmp) / "staged", model_name="unregistered",
            model_version="unregistered", horizon=hs[0], calibration=calibration,
            parity_input=result.parity_windows, history=result.history)
        parity = float(read_bundle_meta(staged)["onnx_parity_max_abs"])
        x_example = (result.parity_windows[:2] if result.parity_windows is not None
                     and len(result.parity_windows) >= 2 else None)
        if x_example is None:
            x_example = np.repeat(result.net.x_mean.numpy()[None, None], cfg.window, axis=1)
            x_example = np.repeat(x_example, 2, axis=0)
        x_example = np.nan_to_num(x_example).astype(np.float32)
        for h in hs:
            metrics = result.metrics.setdefault(h, {})
            metrics["onnx_parity_max_abs"] = parity

            def write(dest: Path, name: str, version: str, run_id: str, h=h, metrics=metrics):
                return retarget_sequence_bundle(staged, dest, horizon=h, model_name=name,
                                                model_version=version,
                                                extra={"metrics": metrics, "run_id": run_id})

            flavor = _Flavor(
                # pt2 (a traced graph) rather than pickle: loading it runs no arbitrary code.
                log_model=lambda: mlflow.pytorch.log_model(
                    result.net, name="model", serialization_format="pt2",
                    input_example=x_example,
                    pip_requirements=[f"torch=={torch.__version__.split('+')[0]}"]),
                write_bundle=write,
            )
            out[h] = _register(
                flavor, family=family, horizon=h, metrics=metrics, split=result.split,
                feature_names=result.feature_names, tracking_uri=tracking_uri,
                experiment_id=experiment_id, bundle_root=bundle_root,
                params={**params, **net_params}, tags=tags, alias=alias, data_hash=data_hash,
                card={"window": cfg.window,
                      "holdout_note": _segments_note(result.split)})
    return out


def _segments_note(split: dict) -> str:
    seg = ", ".join(f"{k} {v[0]}..{v[1]}" for k, v in split.items()
                    if k in ("train", "valid", "test"))
    return f"Explicit segments ({seg}); training labels reaching the valid segment purged:"


def _lgbm_holdout_note(split: dict) -> str | None:
    """The card's hold-out line for ``fit_horizon``'s split: the config's segments when it
    used them, else the ``valid_frac`` share (None: the card's default last-20% text)."""
    if split.get("source") == "config segments":
        return _segments_note(split["segments"])
    if split.get("source") == "valid_frac":
        return f"Hold-out (last {split['valid_frac']:.0%} of dates after a purge of h dates):"
    return None


# --- lifecycle: aliases, promotion, rollback ------------------------------------------------------

def _client(tracking_uri: str):
    import mlflow

    return mlflow.MlflowClient(tracking_uri=tracking_uri)


def _alias_version(client, name: str, alias: str) -> str | None:
    from mlflow.exceptions import MlflowException

    try:
        return str(client.get_model_version_by_alias(name, alias).version)
    except MlflowException:
        return None


def _history(client, name: str) -> list[str]:
    tags = client.get_registered_model(name).tags or {}
    return [str(v) for v in json.loads(tags.get(HISTORY_TAG, "[]"))]


def _push_history(client, name: str, version: str) -> None:
    hist = _history(client, name)
    if not hist or hist[-1] != version:
        hist.append(version)
    client.set_registered_model_tag(name, HISTORY_TAG, json.dumps(hist))


def promotion_rule(challenger: list[float], champion: list[float] | None, *, margin: float,
                   min_seeds: int) -> tuple[bool, str]:
    """Pure promotion rule on walk-forward RankIC per seed (see module docstring).

    Args:
        challenger: the challenger's walk-forward RankIC, one value per seed.
        champion: the champion's, or None/empty when it was never walk-forward evaluated
            (then it counts as 0).
        margin: how much higher the challenger's mean must be.
        min_seeds: fewest seeds the challenger must have been evaluated on.

    Returns:
        (promote?, reason in one sentence with the figures).
    """
    ch = [x for x in challenger if np.isfinite(x)]
    if len(ch) < min_seeds:
        return False, (f"challenger has walk-forward RankIC for {len(ch)} seed(s), the rule "
                       f"needs {min_seeds}: run `stockray evaluate` or `stockray retrain`")
    champ = [x for x in (champion or []) if np.isfinite(x)]
    c_mean = float(np.mean(ch))
    k_mean = float(np.mean(champ)) if champ else 0.0
    k_txt = (f"champion {k_mean:.4f} ({len(champ)} seeds)" if champ
             else "champion not walk-forward evaluated (counts as 0)")
    diff = c_mean - k_mean
    if diff >= margin:
        return True, (f"challenger RankIC {c_mean:.4f} ({len(ch)} seeds) beats {k_txt} by "
                      f"{diff:.4f} >= margin {margin}")
    return False, (f"challenger RankIC {c_mean:.4f} ({len(ch)} seeds) vs {k_txt}: "
                   f"difference {diff:.4f} < margin {margin}")


@dataclass
class PromotionDecision:
    """What `promote` did for one registered model."""

    name: str
    champion: str | None
    challenger: str | None
    promoted: bool
    reason: str
    challenger_scores: list[float] = field(default_factory=list)
    champion_scores: list[float] = field(default_factory=list)


def version_scores(client, name: str, version: str) -> list[float]:
    """Walk-forward RankIC per seed recorded on a version (empty when never evaluated)."""
    mv = client.get_model_version(name, version)
    raw = (mv.tags or {}).get(WF_SEEDS_TAG)
    return [float(x) for x in json.loads(raw)] if raw else []


def record_walkforward(tracking_uri: str, name: str, version: str, *, rank_ic_seeds: list[float],
                       metrics: dict[str, float], card: str | None = None,
                       artifacts: dict[str, Path] | None = None,
                       data_hash: str | None = None) -> None:
    """Attach a walk-forward evaluation to a version: per-seed RankIC (tag), metrics on its
    run, report files as run artifacts under ``walkforward/``, and the updated model card."""
    client = _client(tracking_uri)
    mv = client.get_model_version(name, version)
    client.set_model_version_tag(name, version, WF_SEEDS_TAG, json.dumps(rank_ic_seeds))
    if data_hash:
        client.set_model_version_tag(name, version, "wf_data_snapshot_sha256", data_hash)
    ts = int(datetime.now(UTC).timestamp() * 1000)
    from mlflow.entities import Metric

    client.log_batch(mv.run_id, metrics=[Metric(k, float(v), ts, 0)
                                         for k, v in metrics.items() if np.isfinite(v)])
    for path in (artifacts or {}).values():
        client.log_artifact(mv.run_id, str(path), "walkforward")
    if card:
        client.log_text(mv.run_id, card, CARD_FILE)
        client.update_model_version(name, version, description=card)


def promote(tracking_uri: str, name: str, *, margin: float, min_seeds: int,
            force: bool = False, bundle_root: Path | None = None) -> PromotionDecision:
    """Apply the promotion rule to ``name``'s challenger; move ``champion`` when it holds.

    ``force`` promotes the challenger regardless (the reason says so). On promotion the
    ``challenger`` alias is removed, the history tag extended, and — for the served family,
    when ``bundle_root`` is given — the local bundle refreshed.
    """
    with _alias_lock(tracking_uri, name):
        return _promote_locked(_client(tracking_uri), name, margin=margin, min_seeds=min_seeds,
                               force=force, bundle_root=bundle_root)


def _promote_locked(client, name: str, *, margin: float, min_seeds: int, force: bool,
                    bundle_root: Path | None) -> PromotionDecision:
    champ, chall = _alias_version(client, name, CHAMPION), _alias_version(client, name, CHALLENGER)
    if chall is None:
        return PromotionDecision(name, champ, None, False, "no challenger to promote")
    if chall == champ:  # a promotion killed half-way: finish it (every step is idempotent)
        _finish_promotion(client, name, chall, bundle_root)
        return PromotionDecision(name, champ, chall, True, "resumed an interrupted promotion")
    ch_s = version_scores(client, name, chall)
    k_s = version_scores(client, name, champ) if champ else []
    ok, reason = promotion_rule(ch_s, k_s, margin=margin, min_seeds=min_seeds)
    if force and not ok:
        ok, reason = True, f"forced (rule said: {reason})"
    if ok:
        client.set_model_version_tag(name, chall, "promotion_reason", reason)
        client.set_registered_model_alias(name, CHAMPION, chall)
        _finish_promotion(client, name, chall, bundle_root)
    return PromotionDecision(name, champ, chall, ok, reason, ch_s, k_s)


JUDGEMENT_TAG = "recent_window_judgement"  # JSON: decision, reason, figures


def alias_version(tracking_uri: str, name: str, alias: str) -> str | None:
    """The version ``alias`` points at (None: no such alias or model)."""
    return _alias_version(_client(tracking_uri), name, alias)


def promote_judged(tracking_uri: str, name: str, version: str, *, ok: bool, reason: str,
                   judgement: dict, bundle_root: Path | None = None) -> PromotionDecision:
    """Promote ``version`` by a judgement made elsewhere (`training.lifecycle.recent`), not by
    `promotion_rule`: the judgement is tagged on the version (`JUDGEMENT_TAG`) either way;
    the champion moves only when ``ok`` and ``version`` is still the challenger."""
    with _alias_lock(tracking_uri, name):
        client = _client(tracking_uri)
        champ = _alias_version(client, name, CHAMPION)
        chall = _alias_version(client, name, CHALLENGER)
        client.set_model_version_tag(name, version, JUDGEMENT_TAG,
                                     json.dumps(judgement, default=str)[:5000])
        if chall != version:
            return PromotionDecision(name, champ, chall, False,
                                     f"v{version} is no longer the challenger (v{chall} is)")
        if ok:
            client.set_model_version_tag(name, version, "promotion_reason", reason[:5000])
            client.set_registered_model_alias(name, CHAMPION, version)
            _finish_promotion(client, name, version, bundle_root)
        return PromotionDecision(name, champ, chall, ok, reason)


def _finish_promotion(client, name: str, version: str, bundle_root: Path | None) -> None:
    """The steps after the champion alias moved. The challenger alias goes last: until then a
    SIGKILL leaves champion == challenger, which the next ``promote`` recognises and finishes,
    so history and the local bundle never silently lag the champion."""
    _push_history(client, name, version)
    _sync_local_bundle(client, name, version, bundle_root)
    client.set_model_version_tag(name, version, "promoted_at",
                                 datetime.now(UTC).isoformat(timespec="seconds"))
    client.delete_registered_model_alias(name, CHALLENGER)


def rollback(tracking_uri: str, name: str,
             bundle_root: Path | None = None) -> tuple[str, str]:
    """Point ``champion`` back at the previous champion; returns (from, to) versions.

    Raises:
        ValueError: there is no earlier champion in the history.
    """
    with _alias_lock(tracking_uri, name):
        return _rollback_locked(_client(tracking_uri), name, bundle_root)


def _rollback_locked(client, name: str, bundle_root: Path | None) -> tuple[str, str]:
    hist = _history(client, name)
    current = _alias_version(client, name, CHAMPION)
    if current is not None and (not hist or hist[-1] != current):
        hist.append(current)  # champion set outside this module: still roll back from it
    if len(hist) < 2:
        raise ValueError(f"{name}: no previous champion to roll back to (history {hist})")
    frm = hist.pop()
    to = hist[-1]
    now = datetime.now(UTC).isoformat(timespec="seconds")
    # History before the alias: a kill between the two leaves champion == the popped entry,
    # which a re-run treats as "roll back from it" and lands on the same version.
    client.set_registered_model_tag(name, HISTORY_TAG, json.dumps(hist))
    client.set_registered_model_alias(name, CHAMPION, to)
    client.set_registered_model_tag(name, "last_rollback", f"v{frm} -> v{to} at {now}")
    client.set_model_version_tag(name, frm, "rolled_back_at", now)
    _sync_local_bundle(client, name, to, bundle_root)
    return frm, to


def _sync_local_bundle(client, name: str, version: str, bundle_root: Path | None) -> None:
    """Mirror a bundle family's champion bundle into `local_bundle_dir`."""
    family = name.removeprefix("stockray-").rsplit("-h", 1)[0]
    if bundle_root is None or family not in BUNDLE_FAMILIES:
        return
    import mlflow

    mv = client.get_model_version(name, version)
    h = int(name.rsplit("-h", 1)[1])
    dest = local_bundle_dir(bundle_root, family, h)
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        got = mlflow.artifacts.download_artifacts(run_id=mv.run_id,
                                                  artifact_path=BUNDLE_ARTIFACT_PATH,
                                                  dst_path=tmp,
                                                  tracking_uri=client._registry_uri)
        staged = Path(dest.parent, f".{dest.name}.new")
        shutil.rmtree(staged, ignore_errors=True)
        shutil.copytree(got, staged)
        write_bundle_meta(staged, model_version=str(version), model_name=name)
        replace_dir(staged, dest)  # serving never finds the bundle directory missing


def _alias_lock(tracking_uri: str, name: str):
    """One lock per registered model, beside a local registry (else in the temp dir): alias,
    history and bundle move together, and two promoters never lose a history entry."""
    local = tracking_uri.removeprefix("sqlite:///").removeprefix("file://")
    base = Path(local).parent if local != tracking_uri else Path(tempfile.gettempdir())
    digest = hashlib.sha256(f"{tracking_uri}|{name}".encode()).hexdigest()[:16]
    return file_lock(base / f".stockray-alias-{digest}.lock")


@dataclass
class VersionInfo:
    """One row of `list_versions`."""

    name: str
    version: str
    aliases: list[str]
    created: str
    metrics: dict[str, float]
    tags: dict[str, str]


def list_versions(tracking_uri: str, prefix: str = "stockray-") -> list[VersionInfo]:
    """Every version of every registered model whose name starts with ``prefix``."""
    client = _client(tracking_uri)
    out = []
    for rm in client.search_registered_models():
        if not rm.name.startswith(prefix):
            continue
        by_version: dict[str, list[str]] = {}
        for alias, v in (rm.aliases or {}).items():
            by_version.setdefault(str(v), []).append(alias)
        for mv in client.search_model_versions(f"name='{rm.name}'"):
            run = client.get_run(mv.run_id)
            out.append(VersionInfo(
                rm.name, str(mv.version), sorted(by_version.get(str(mv.version), [])),
                datetime.fromtimestamp(mv.creation_timestamp / 1000, UTC)
                .isoformat(timespec="seconds"),
                dict(run.data.metrics), dict(mv.tags or {})))
    return sorted(out, key=lambda v: (v.name, int(v.version)))
