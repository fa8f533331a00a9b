"""saddle_to_saddle, curl_descent and langevin_swa: claim measurements on known curves, and short
in-process runs through the real configs."""
import json
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from experiments.curl_descent import claims as curl
from experiments.saddle_to_saddle import claims as s2s
from runner.dispatch import execute


def _staircase(levels=(4.0, 1.4, 0.5, 0.1), width=300, every=10):
    """A loss that sits on each level for `width` steps and drops (sigmoid) to the next; the rank
    rises by one at each drop; mode i is learned at the i-th drop."""
    steps = np.arange(0, width * (len(levels) + 1), every)
    loss = np.full(len(steps), 1e-6)
    rank = np.zeros(len(steps))
    targets = list(levels) + [1e-6]
    for i, t in enumerate(steps):
        k = min(int(t // width), len(levels))
        frac = 1 / (1 + np.exp(-(t - (k + 1) * width + 30) / 5)) if k < len(levels) else 1.0
        loss[i] = np.exp((1 - frac) * np.log(targets[k]) + frac * np.log(targets[k + 1])) if k < len(levels) else 1e-6
        rank[i] = k
    df = pd.DataFrame({"step": steps, "loss": loss, "rank": rank})
    for i in range(len(levels)):
        df[f"mode{i + 1}"] = (df.step >= (i + 1) * width).astype(float)
    return df


def test_plateau_detector_and_staircase_claims_on_a_known_curve():
    df = _staircase()
    p = s2s.plateaus(df)
    assert len(p) == 4 and [q["complexity"] for q in p] == [0, 1, 2, 3]
    assert s2s.drop_increments(df) == 0 and s2s.bad_steps(df) == 0 and s2s.order_inversions(df) == 0
    assert s2s.rank_times(df) == [300, 600, 900, 1200]
    smooth = pd.DataFrame({"step": np.arange(0, 1000, 10), "loss": np.exp(-np.arange(100) / 8.0), "rank": 4})
    assert s2s.n_plateaus(smooth) == 0
    jumpy = df.copy()
    jumpy.loc[jumpy.step >= 600, "rank"] += 1  # two units learned in one drop
    assert s2s.drop_increments(jumpy) == 1 and s2s.bad_steps(jumpy) == 1
    swapped = df.rename(columns={"mode1": "mode2", "mode2": "mode1"})
    assert s2s.order_inversions(swapped) == 1


def _run(cfg, metrics, status="completed"):
    return SimpleNamespace(cfg=cfg, metrics=metrics, status={"status": status}, path=None)


def test_epsilon_ratio_cross_run_claim():
    base = {"experiment_id": "saddle_to_saddle", "seed": 0,
            "model": {"_target_": "runner.models.two_layer.TwoLayer", "activation": "linear"},
            "dataset": {"name": "linear_teacher"}}
    cfg = lambda eps: {**base, "model": {**base["model"], "init_scale": eps}}  # noqa: E731
    fast, slow = _staircase(width=300), _staircase(width=600)
    rows = s2s.cross_run_claims([_run(cfg(1e-3), fast), _run(cfg(1e-6), slow)])
    assert rows[0]["passed"] and rows[0]["n"] == 4 and rows[0]["measured"] == pytest.approx(2.0)
    rows = s2s.cross_run_claims([_run(cfg(1e-3), fast), _run(cfg(1e-6), fast)])
    assert not rows[0]["passed"] and rows[0]["max"] == pytest.approx(1.0)
    assert not s2s.cross_run_claims([_run(cfg(1e-3), fast)])[0]["passed"]


def test_saddle_to_saddle_short_run_passes_its_staircase_claims(make_cfg, tmp_path):
    cfg = make_cfg("experiment=saddle_to_saddle", "trainer.steps=1200", "device=cpu")
    summary = execute(cfg, tmp_path / "run")
    claims = {c["name"][:2]: c for c in summary["claims"]}
    assert set(claims) == {"S1", "S2", "S3", "S4"}, claims
    assert all(c["passed"] for c in claims.values()), claims
    df = pd.read_csv(tmp_path / "run" / "metrics.csv")
    assert {"rank", "sv1", "mode4", "grad_norm", "unit_norm1"} <= set(df.columns)
    assert (tmp_path / "run" / "dynamics.png").exists()


def test_curl_flip_counts_and_speedup_claim():
    c = {"optimizer": {"flipped": [], "flipped_fraction": [0.5, 0]}, "dataset": {"d_in": 20},
         "model": {"hidden": 199, "activation": "linear"}}
    assert curl.flipped_counts(c) == (10, 0) and curl.expanding_half(c)
    c["optimizer"] = {"flipped": [1, 0]}
    assert curl.flipped_counts(c) == (1, 0) and not curl.expanding_half(c)

    def run(seed, flips, value):
        cfg = {"experiment_id": "curl_descent", "seed": seed, "optimizer": {"flipped": flips},
               "dataset": {"d_in": 100}, "model": {"hidden": 10, "activation": "tanh"}}
        return _run(cfg, pd.DataFrame({"step": [0, 1000], "test_loss": [1.0, value]}))

    runs = [run(0, [0, 0], 1e-3), run(0, [0, 1], 2e-4), run(1, [0, 0], 1e-3), run(1, [0, 1], 4e-4),
            run(2, [0, 0], 1e-3), run(2, [0, 1], 9e-4)]
    row = curl.cross_run_claims(runs)[0]
    assert row["n"] == 3 and row["n_passed"] == 2 and row["passed"]
    slower = [run(0, [0, 0], 1e-3), run(0, [0, 1], 2e-4), run(1, [0, 0], 1e-3), run(1, [0, 1], 8e-4)]
    assert curl.cross_run_claims(slower)[0]["n_passed"] == 1 and not curl.cross_run_claims(slower)[0]["passed"]


def test_curl_descent_short_run_logs_the_curl_share(make_cfg, tmp_path):
    cfg = make_cfg("experiment=curl_descent", "trainer.steps=300", "optimizer.flipped=[1,0]", "device=cpu")
    summary = execute(cfg, tmp_path / "run")
    df = pd.read_csv(tmp_path / "run" / "metrics.csv")
    assert {"loss", "test_loss", "update_cosine", "weight_norm1", "weight_norm2"} <= set(df.columns)
    assert df.weight_norm1.dropna().std() < 1e-5  # rescaled to the initial norm after every update
    assert df.update_cosine.dropna().abs().max() <= 1 + 1e-6
    assert [c["name"][:2] for c in summary["claims"]] == ["C1"]


def test_langevin_swa_short_run_logs_overlaps(make_cfg, tmp_path):
    cfg = make_cfg("experiment=langevin_swa", "trainer.steps=400", "hooks.iterate_average.report_every=100",
                   "dataset.n_train=500", "device=cpu")
    execute(cfg, tmp_path / "run")
    df = pd.read_csv(tmp_path / "run" / "metrics.csv")
    assert df.step.iloc[-1] == 400 and {"overlap_last", "overlap_avg", "overlap_second"} <= set(df.columns)
    assert df.overlap_avg.dropna().between(0, 1).all()
    assert json.loads((tmp_path / "run" / "status.json").read_text())["status"] == "completed"
