"""saddle_to_saddle: the plateau detector and claim measurements on known curves, the cross-run
epsilon-ratio claim, a short in-process run through the real config, and the paper scale."""
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from experiments.saddle_to_saddle import claims as s2s
from runner.claims import in_study
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
    df = pd.DataFrame({"step": steps, "loss": loss, "complexity/rank": rank})
    for i in range(len(levels)):
        df[f"complexity/mode{i + 1}"] = (df.step >= (i + 1) * width).astype(float)
    return df


def test_plateau_detector_and_staircase_claims_on_a_known_curve():
    df = _staircase()
    p = s2s.plateaus(df)
    assert len(p) == 4 and [q["complexity"] for q in p] == [0, 1, 2, 3]
    assert s2s.drop_increments(df) == 0 and s2s.bad_steps(df) == 0 and s2s.order_inversions(df) == 0
    assert s2s.rank_times(df) == [300, 600, 900, 1200]
    smooth = pd.DataFrame({"step": np.arange(0, 1000, 10), "loss": np.exp(-np.arange(100) / 8.0),
                           "complexity/rank": 4})
    assert s2s.n_plateaus(smooth) == 0
    jumpy = df.copy()
    jumpy.loc[jumpy.step >= 600, "complexity/rank"] += 1  # two units learned in one drop
    assert s2s.drop_increments(jumpy) == 1 and s2s.bad_steps(jumpy) == 1
    swapped = df.rename(columns={"complexity/mode1": "complexity/mode2", "complexity/mode2": "complexity/mode1"})
    assert s2s.order_inversions(swapped) == 1


def _run(cfg, metrics, status="completed"):
    return SimpleNamespace(cfg=cfg, metrics=metrics, status={"status": status}, path=None, study=cfg.get("study"),
                           arm=cfg.get("arm"), is_in=lambda study=None, arms=None: in_study(cfg, study, arms))


def test_epsilon_ratio_cross_run_claim():
    base = {"experiment_id": "saddle_to_saddle", "seed": 0, "study": "linear", "arm": "small_init",
            "model": {"_target_": "runner.models.two_layer.TwoLayer", "activation": "linear"},
            "dataset": {"name": "linear_teacher"}}
    cfg = lambda eps, **kw: {**base, **kw, "model": {**base["model"], "init_scale": eps}}  # noqa: E731
    fast, slow = _staircase(width=300), _staircase(width=600)
    rows = s2s.cross_run_claims([_run(cfg(1e-3), fast), _run(cfg(1e-6), slow)])
    assert rows[0]["passed"] and rows[0]["n"] == 4 and rows[0]["measured"] == pytest.approx(2.0)
    assert rows[0]["kind"] == "supporting"
    rows = s2s.cross_run_claims([_run(cfg(1e-3), fast), _run(cfg(1e-6), fast)])
    assert not rows[0]["passed"] and rows[0]["max"] == pytest.approx(1.0)
    assert not s2s.cross_run_claims([_run(cfg(1e-3), fast)])[0]["passed"]
    # runs of another study (or ad hoc runs) are not paired with the linear study's
    assert not s2s.cross_run_claims([_run(cfg(1e-3), fast), _run(cfg(1e-6, study="conv"), slow)])[0]["passed"]
    assert not s2s.cross_run_claims([_run(cfg(1e-3, study=None), fast), _run(cfg(1e-6, study=None), slow)])[0]["n"]


def test_saddle_to_saddle_short_run_passes_its_staircase_claims(make_cfg, tmp_path):
    cfg = make_cfg("experiment=saddle_to_saddle", "study=linear", "arm=small_init", "trainer.steps=1200",
                   "device=cpu")
    summary = execute(cfg, tmp_path / "run")
    claims = {c["name"][:2]: c for c in summary["claims"]}
    assert set(claims) == {"S1", "S2", "S3", "S4"}, claims
    assert all(c["passed"] for c in claims.values()), claims
    df = pd.read_csv(tmp_path / "run" / "metrics.csv")
    assert {f"complexity/{k}" for k in ("rank", "sv1", "mode4", "grad_norm", "unit_norm1")} <= set(df.columns)
    assert (tmp_path / "run" / "dynamics.png").exists()


def test_scales_compose_the_linear_net_with_gd(make_cfg):
    smoke, paper = make_cfg("experiment=saddle_to_saddle"), make_cfg("experiment=saddle_to_saddle", "scale=paper")
    for cfg in (smoke, paper):
        assert cfg.model.activation == "linear" and cfg.model.init_scale == 1e-4 and cfg.dataset.name == "linear_teacher"
        assert cfg.trainer.batch_size is None and cfg.optimizer.momentum == 0.0
    assert (smoke.optimizer.lr, smoke.trainer.steps, smoke.log_every) == (0.05, 3000, 10)
    assert (paper.optimizer.lr, paper.trainer.steps, paper.log_every, paper.hooks.complexity.every) == (0.01, 20000, 20, 20)
