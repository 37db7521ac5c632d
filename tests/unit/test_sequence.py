"""Sequence-model plumbing without Ray: windows (no look-ahead, no crossing tickers),
segments and per-horizon purging, scalers fitted on train only, the masked loss, the
shipped YAML preset."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from training.sequence import (
    EpochState,
    SequenceConfig,
    SequenceNet,
    build_windows,
    fit_scalers,
    load_sequence_yaml,
    load_state,
    make_optimizer,
    masked_mse,
    purge_labels,
    save_state,
    segment_masks,
    train_epochs,
    worker_runtime_env,
)

REPO = Path(__file__).resolve().parents[2]


def panel(n_tickers=3, n_days=12) -> pd.DataFrame:
    """f0 = ticker number * 1000 + day number, so every window cell names its source row."""
    dates = pd.bdate_range("2021-03-01", periods=n_days, tz="UTC")
    rows = [
        pd.DataFrame(
            {
                "ticker": f"T{k}",
                "ts": dates,
                "f0": k * 1000.0 + np.arange(n_days),
                "f1": -np.arange(n_days, dtype=float),
                "fwd_ret_1d": np.arange(n_days) * 0.01,
                "fwd_ret_5d": np.arange(n_days) * 0.05,
            }
        )
        for k in range(n_tickers)
    ]
    # shuffled: windows must not depend on the frame's row order
    return pd.concat(rows, ignore_index=True).sample(frac=1.0, random_state=0)


def test_windows_end_at_ts_and_stay_in_their_ticker():
    f = panel()
    w = build_windows(f, ["f0", "f1"], window=4, label_columns=["fwd_ret_1d"])
    assert w.x.shape == (36, 4, 2) and w.y.shape == (36, 1)
    assert list(w.index.names) == ["ts", "ticker"]
    assert w.index.is_monotonic_increasing  # (ts, ticker) order
    for (ts, tk), win in zip(w.index, w.x, strict=True):
        k, day = int(tk[1:]), int(f[(f.ticker == tk) & (f.ts == ts)]["f0"].iloc[0]) % 1000
        want = [k * 1000.0 + d if d >= 0 else np.nan for d in range(day - 3, day + 1)]
        np.testing.assert_array_equal(win[:, 0], np.array(want, np.float32))
    # label is the sample row's own
    row = f[(f.ticker == "T2") & (f.ts == w.index[-1][0])]
    assert w.y[-1, 0] == np.float32(row["fwd_ret_1d"].iloc[0])


def test_windows_do_not_look_ahead():
    f = panel().sort_values(["ticker", "ts"]).reset_index(drop=True)
    cut = f["ts"].unique()[6]
    before = build_windows(f, ["f0", "f1"], 5, mask=(f["ts"] <= cut).to_numpy())
    shocked = f.copy()
    later = shocked["ts"] > cut
    shocked.loc[later, ["f0", "f1"]] = 1e9  # the future changes completely
    after = build_windows(shocked, ["f0", "f1"], 5, mask=(shocked["ts"] <= cut).to_numpy())
    np.testing.assert_array_equal(before.x, after.x)
    assert before.index.equals(after.index)


def test_mask_selects_samples_but_windows_reach_back():
    f = panel(n_tickers=1, n_days=10)
    m = (f["ts"] >= f["ts"].sort_values().iloc[7]).to_numpy()
    w = build_windows(f, ["f0"], 3, mask=m)
    assert len(w) == 3
    np.testing.assert_array_equal(w.x[0, :, 0], [5.0, 6.0, 7.0])  # rows before the mask


def test_segments_and_per_horizon_purge():
    f = panel(n_tickers=2, n_days=12).sort_values(["ticker", "ts"]).reset_index(drop=True)
    d = sorted(f["ts"].unique())
    seg = {"train": [d[0].date(), d[5].date()], "valid": [d[7].date(), d[11].date()]}
    tr, va, te = segment_masks(f, seg)
    assert tr.sum() == 12 and va.sum() == 10 and not te.any()
    p = purge_labels(f, (1, 5), d[7], rows=tr)
    for k in ("T0", "T1"):
        g = p[p.ticker == k].reset_index(drop=True)
        # 1-day labels survive up to day 5 (ends day 6 < 7), 5-day ones up to day 1 (ends 6)
        assert g["fwd_ret_1d"].notna().tolist() == [True] * 12
        assert g["fwd_ret_5d"].notna().tolist() == [True] * 2 + [False] * 4 + [True] * 6
        # validation rows keep their labels (they are not subject to the purge)


def test_scalers_see_the_train_segment_only():
    f = panel().sort_values(["ticker", "ts"]).reset_index(drop=True)
    cfg = SequenceConfig(window=4, hidden=4, horizons=(1, 5))
    tr = (f["ts"] <= f["ts"].unique()[5]).to_numpy()

    def buffers(frame):
        w = build_windows(frame, ["f0", "f1"], 4, cfg.label_columns, tr)
        net = SequenceNet(2, cfg)
        fit_scalers(net, w.x, w.y)
        return [b.clone() for b in (net.x_mean, net.x_std, net.y_mean, net.y_std)]

    shocked = f.copy()
    shocked.loc[~tr, ["f0", "f1", "fwd_ret_1d", "fwd_ret_5d"]] = 1e6
    for a, b in zip(buffers(f), buffers(shocked), strict=True):
        torch.testing.assert_close(a, b)


def test_net_reads_nan_as_the_train_mean():
    cfg = SequenceConfig(window=3, hidden=4, horizons=(1,))
    net = SequenceNet(2, cfg).eval()
    with torch.no_grad():
        net.x_mean.copy_(torch.tensor([1.0, -2.0]))
        net.x_std.copy_(torch.tensor([2.0, 0.5]))
    x = torch.tensor([[[np.nan, np.nan], [3.0, -1.0], [1.0, -2.0]]])
    filled = torch.tensor([[[1.0, -2.0], [3.0, -1.0], [1.0, -2.0]]])
    torch.testing.assert_close(net(x), net(filled))


def test_masked_loss_ignores_missing_labels():
    pred = torch.tensor([[1.0, 2.0, 0.0], [3.0, 0.0, 0.0]], requires_grad=True)
    y = torch.tensor([[0.0, np.nan, np.nan], [1.0, 1.0, np.nan]])
    loss = masked_mse(pred, y)
    # horizon 0: (1 + 4) / 2; horizon 1: 1 / 1; horizon 2 has no label
    assert loss.item() == pytest.approx((2.5 + 1.0) / 2)
    loss.backward()
    assert pred.grad[0, 1] == 0 and (pred.grad[:, 2] == 0).all()
    assert pred.grad[0, 0] != 0
    empty = masked_mse(pred, torch.full((2, 3), float("nan")))
    assert empty.item() == 0.0 and empty.requires_grad


def test_config_rejects_bad_values():
    with pytest.raises(ValueError, match="lstm"):
        SequenceConfig(model="gru")
    with pytest.raises(ValueError, match="divisible"):
        SequenceConfig(model="transformer", hidden=10, heads=4)
    with pytest.raises(ValueError, match="unknown SequenceConfig keys"):
        SequenceConfig.from_dict({"hiden": 3})


def test_shipped_yaml_preset_loads():
    spec = load_sequence_yaml(REPO / "configs" / "sequence.yaml")
    assert isinstance(spec["model"], SequenceConfig)
    assert spec["model"].horizons == (1, 5, 20)
    seg = {k: [pd.Timestamp(v) for v in spec["segments"][k]] for k in ("train", "valid", "test")}
    assert seg["train"][1] < seg["valid"][0] <= seg["valid"][1] < seg["test"][0]
    assert {"model", "hidden", "lr", "window"} <= set(spec["search_space"])
    assert spec["tune"]["num_samples"] >= 1


def test_resume_from_a_checkpoint_equals_an_uninterrupted_run(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((300, 4, 3)).astype(np.float32)
    y = (0.01 * rng.standard_normal((300, 2))).astype(np.float32)
    y[::3, 1] = np.nan
    cfg = SequenceConfig(window=4, hidden=6, epochs=4, batch_size=64, horizons=(1, 5), dropout=0.0)

    def fresh():
        torch.manual_seed(0)
        net = SequenceNet(3, cfg)
        fit_scalers(net, x, y)
        return net, make_optimizer(net, cfg)

    net, opt = fresh()
    straight = train_epochs(net, opt, x, y, cfg)

    net2, opt2 = fresh()
    stop = SequenceConfig(**{**cfg.__dict__, "epochs": 2})
    first = train_epochs(net2, opt2, x, y, stop)
    save_state(tmp_path / "s.pt", net2, opt2, first, cfg, 3)
    blob = load_state(tmp_path / "s.pt")
    net3, opt3 = fresh()
    net3.load_state_dict(blob["model"])
    opt3.load_state_dict(blob["optimizer"])
    resumed = train_epochs(
        net3,
        opt3,
        x,
        y,
        cfg,
        start_epoch=blob["epoch"] + 1,
        state=EpochState(blob["epoch"], list(blob["history"])),
    )
    assert [h["epoch"] for h in resumed.history] == [0, 1, 2, 3]
    for a, b in zip(net.state_dict().values(), net3.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b)
    assert resumed.history[-1]["train_loss"] == pytest.approx(straight.history[-1]["train_loss"])


def test_ray_train_workers_are_not_reniced_unless_told(monkeypatch):
    # Ray starts workers at +15 (RAY_worker_niceness); fit_ray_train's default cancels it
    monkeypatch.delenv("RAY_worker_niceness", raising=False)
    assert worker_runtime_env(0) == {"env_vars": {"RAY_worker_niceness": "0"}}
    assert worker_runtime_env(None) is None
    monkeypatch.setenv("RAY_worker_niceness", "15")  # the user's choice wins
    assert worker_runtime_env(0) == {"env_vars": {"RAY_worker_niceness": "15"}}
