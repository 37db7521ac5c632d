"""Every shipped config validates through its typed loader (lgbm and sequence experiments,
alert rules); bad files fail with the key at fault."""

from pathlib import Path

import pandas as pd
import pytest
import yaml

from training.config import (
    CONFIG_DIR,
    load_config,
    load_experiment,
    load_sequence_experiment,
)
from training.segments import Segments, resolve_segments

SHIPPED = sorted(CONFIG_DIR.glob("*.yaml"))


def test_there_is_a_shipped_lgbm_config():
    assert CONFIG_DIR / "lgbm.yaml" in SHIPPED


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_every_shipped_config_loads(path):
    raw = yaml.safe_load(path.read_text())
    assert isinstance(raw, dict), f"{path.name}: not a mapping"
    if path.name == "alerts.yaml":  # alert rules, not an experiment
        from serving.alerts.rules import load_alert_config

        assert load_alert_config(path).rules
        return
    assert raw.get("kind") in ("lgbm", "sequence"), f"{path.name}: no experiment kind"
    if raw["kind"] == "sequence":
        seq = load_config(path)
        seg = seq.segments
        assert seg.mode == "dates" and seg.train[1] < seg.valid[0] and seg.valid[1] < seg.test[0]
        assert seq.model.horizons and seq.search_space and seq.tune.num_samples >= 1
        assert seq.walkforward_settings()["sequence"]
        return
    exp = load_config(path)
    assert exp.horizons and set(exp.families) <= {"lgbm", "lgbmrank"}
    # fractions resolve against the data's dates (here the embedded universe's span)
    seg = resolve_segments(exp.segments, pd.bdate_range("2000-03-01", "2013-03-01"),
                           gap=max(exp.horizons))
    assert seg.train[1] < seg.valid[0] and seg.valid[1] < seg.test[0]
    wf = exp.walkforward_for(exp.horizons[0])
    assert wf.params == exp.params and len(wf.seeds) >= exp.lifecycle.min_seeds
    if exp.tune.num_samples:
        from training.tune import search_space

        assert set(search_space(exp.tune.search_space)) == set(exp.tune.search_space)


def _write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "c.yaml"
    p.write_text(text)
    return p


def test_bad_configs_fail_with_the_key_at_fault(tmp_path):
    seg = ('segments: {train: ["2000-01-01", "2001-01-01"], valid: ["2001-02-01", '
           '"2002-01-01"], test: ["2002-02-01", "2003-01-01"]}\n')
    with pytest.raises(ValueError, match="kind"):
        load_experiment(_write(tmp_path, "kind: torch\n"))
    with pytest.raises(ValueError, match="num_leavez"):
        load_experiment(_write(tmp_path, "kind: lgbm\n" + seg + "params: {num_leavez: 3}\n"))
    with pytest.raises(ValueError, match="ordered"):
        load_experiment(_write(tmp_path, "kind: lgbm\n" + seg.replace("2000", "2009")))
    with pytest.raises(ValueError, match="families"):
        load_experiment(_write(tmp_path, "kind: lgbm\n" + seg + "families: [xgb]\n"))


def test_search_space_rejects_unknown_domains_and_params():
    from training.tune import search_space

    with pytest.raises(ValueError, match="use one of"):
        search_space({"num_leaves": {"normal": [1, 2]}})
    with pytest.raises(ValueError, match="LgbmParams"):
        search_space({"depth": {"choice": [1, 2]}})


def test_bad_sequence_configs_fail_with_the_key_at_fault(tmp_path):
    good = (CONFIG_DIR / "sequence.yaml").read_text()
    assert load_sequence_experiment(_write(tmp_path, good)).model.model == "lstm"
    with pytest.raises(ValueError, match="kind"):
        load_sequence_experiment(_write(tmp_path, good.replace("kind: sequence", "kind: x")))
    with pytest.raises(ValueError, match="hiden"):
        load_sequence_experiment(_write(tmp_path, good.replace("  hidden: 32", "  hiden: 32")))
    with pytest.raises(ValueError, match="ordered"):
        load_sequence_experiment(_write(tmp_path, good.replace('"2010-02-01"', '"2009-02-01"')))
    with pytest.raises(ValueError, match="walkforward"):
        load_sequence_experiment(_write(tmp_path, good + "  heads: 3\n"))
    with pytest.raises(ValueError, match="not valid YAML"):
        load_sequence_experiment(_write(tmp_path, "kind: [sequence\n"))


def test_segments_are_explicit_dates_and_resolve_to_themselves():
    seg = Segments.from_dict({"train": ["2000-01-01", "2001-01-01"],
                              "valid": ["2001-02-01", "2002-01-01"],
                              "test": ["2002-02-01", "2003-01-01"]})
    assert seg.mode == "dates"
    assert seg.resolve()["valid"] == ("2001-02-01", "2002-01-01")
    with pytest.raises(ValueError, match="mode"):
        Segments.from_dict({"mode": "random", "train": ["2000-01-01", "2001-01-01"],
                            "valid": ["2001-02-01", "2002-01-01"],
                            "test": ["2002-02-01", "2003-01-01"]})
    with pytest.raises(ValueError, match="not a pair of dates"):
        Segments.from_dict({"train": ["2000-01-01", "soon"], "valid": ["2001-02-01", "2002-01-01"],
                            "test": ["2002-02-01", "2003-01-01"]})


def test_walkforward_does_not_import_the_config_module():
    """One direction only: training.config builds WalkForwardConfig, never the reverse (not
    even inside a function)."""
    import ast

    src = (CONFIG_DIR.parent / "training" / "walkforward.py").read_text()
    imported = {n.module for n in ast.walk(ast.parse(src)) if isinstance(n, ast.ImportFrom)}
    imported |= {a.name for n in ast.walk(ast.parse(src)) if isinstance(n, ast.Import)
                 for a in n.names}
    assert not {m for m in imported if m and m.startswith(("training.config",
                                                              "training.lifecycle"))}


def test_fraction_segments_resolve_on_any_date_range_with_a_purge_gap():
    from training.segments import SegmentFractions, parse_segments, scale_walkforward
    from training.walkforward import WalkForwardConfig

    spec = parse_segments({"fractions": {"train": 0.6, "valid": 0.2, "test": 0.2}})
    assert spec == SegmentFractions(0.6, 0.2, 0.2)
    dates = pd.bdate_range("2023-01-02", periods=252)
    seg = resolve_segments(spec, dates, gap=5)
    pos = {d.strftime("%Y-%m-%d"): i for i, d in enumerate(dates)}
    # time-ordered, 5 purge dates between segments, sizes from the fractions of 242 dates
    assert pos[seg.valid[0]] - pos[seg.train[1]] == 6
    assert pos[seg.test[0]] - pos[seg.valid[1]] == 6
    assert pos[seg.train[1]] - pos[seg.train[0]] + 1 == int(242 * 0.6)
    assert seg.train[0] == "2023-01-02" and seg.test[1] <= dates[-1].strftime("%Y-%m-%d")
    with pytest.raises(ValueError, match="trading dates"):
        resolve_segments(spec, dates[:30], gap=5)
    with pytest.raises(ValueError, match="fractions"):
        parse_segments({"fractions": {"train": 0.9, "valid": 0.2, "test": 0.2}})
    explicit = parse_segments({"train": ["2000-01-01", "2001-01-01"],
                               "valid": ["2001-02-01", "2002-01-01"],
                               "test": ["2002-02-01", "2003-01-01"]})
    assert resolve_segments(explicit, dates) is explicit  # explicit dates stay as given
    # walk-forward windows shrink for one year of data, and stay as they are for 13 years
    wf = scale_walkforward(WalkForwardConfig(), 252, 5)
    assert wf.train_days + wf.valid_days + 2 * wf.test_days + 10 <= 252
    assert min(wf.train_days, wf.valid_days, wf.test_days) >= 10
    assert scale_walkforward(WalkForwardConfig(), 3270, 5) == WalkForwardConfig()
