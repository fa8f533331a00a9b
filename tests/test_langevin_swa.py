"""langevin_swa: a short in-process run through the real config logs the overlaps; both scales compose
(the paper scale with batch size 1 and the horizon 2 d^3 / beta^2); the sample-size claims read the
sweep right."""
import json
import math
from types import SimpleNamespace

import pandas as pd

from experiments.langevin_swa import claims
from runner.dispatch import execute
from runner.experiments import studies


def test_langevin_swa_short_run_logs_overlaps(make_cfg, tmp_path):
    cfg = make_cfg("experiment=langevin_swa", "study=k3_d12", "arm=langevin", "trainer.steps=400",
                   "hooks.iterate_average.report_every=100", "device=cpu")
    summary = execute(cfg, tmp_path / "run")
    df = pd.read_csv(tmp_path / "run" / "metrics.csv")
    overlaps = {f"iterate_average/overlap_{k}" for k in ("last", "avg", "second")}
    assert df.step.iloc[-1] == 400 and overlaps <= set(df.columns)
    assert df["iterate_average/overlap_avg"].dropna().between(0, 1).all()
    assert json.loads((tmp_path / "run" / "status.json").read_text())["status"] == "completed"
    assert [c["name"][:2] for c in summary["claims"]] == ["L1", "L2"]  # the default run is at the paper's n


def test_scales_compose_with_the_papers_settings(make_cfg):
    smoke, paper = make_cfg("experiment=langevin_swa"), make_cfg("experiment=langevin_swa", "scale=paper")
    assert (smoke.dataset.dim, smoke.dataset.n_train, smoke.optimizer.lr, smoke.trainer.steps) == (12, 1440, 0.09, 4300)
    assert smoke.trainer.batch_size is None
    assert (paper.dataset.dim, paper.dataset.n_train, paper.optimizer.lr) == (100, 100000, 0.01)
    assert paper.trainer.batch_size == 1 and paper.device == "cuda"
    for cfg in (smoke, paper):
        assert cfg.dataset.k == cfg.model.k == 3 and cfg.optimizer.beta == 3.0 and cfg.trainer.loss == "corr"
        d, k, beta = cfg.dataset.dim, cfg.dataset.k, cfg.optimizer.beta
        horizon = cfg.trainer.steps * cfg.optimizer.lr
        assert 2 * d ** k / beta ** 2 <= horizon < 1.01 * 2 * d ** k / beta ** 2  # T = 2 d^k* / beta^2
        assert claims.at_paper_n(cfg)  # n = 10 d^ceil(k*/2)


def test_every_scale_runs_a_sweep_at_two_dims_and_the_claims_find_their_runs():
    for scale in ("smoke", "paper"):
        declared = studies("langevin_swa", scale)
        sweeps = [s for s in declared if s.startswith("k3")]
        assert len(sweeps) >= 2 and "k4" in declared
        for name in sweeps:
            grid = next(o for o in declared[name]["sweep"] if o.startswith("dataset.n_train="))
            assert len(grid.split("=")[1].split(",")) == 5
    k4 = {"study": "k4", "arm": "langevin", "scale": "smoke", "dataset": {"k": 4, "dim": 12, "n_train": 1440}}
    assert [c.name[:2] for c in claims.CLAIMS if c.relevant(k4)] == ["L3", "L4", "L5"]
    k3 = {"study": "k3_d18", "arm": "langevin", "scale": "smoke", "dataset": {"k": 3, "dim": 18, "n_train": 3240}}
    assert [c.name[:2] for c in claims.CLAIMS if c.relevant(k3)] == ["L1", "L2"]
    assert not [c for c in claims.CLAIMS if c.relevant({**k3, "dataset": {"k": 3, "dim": 18, "n_train": 810}})]
    assert not [c for c in claims.CLAIMS if c.relevant({**k4, "study": None})]


def _fake_run(dim, n, seed, avg, last):
    steps = [0, 50, 100]
    metrics = pd.DataFrame({"step": steps, claims.LAST: [0.1, last, last], claims.AVG: [0.0, avg / 2, avg],
                            claims.SECOND: [0.0, avg / 2, avg]})
    cfg = {"study": f"k3_d{dim}", "arm": "langevin", "scale": "smoke", "seed": seed,
           "dataset": {"k": 3, "dim": dim, "n_train": n}}
    return SimpleNamespace(completed=True, study=cfg["study"], cfg=cfg, metrics=metrics)


def test_cross_run_claims_find_the_sample_thresholds():
    runs = []
    for dim in (10, 20):
        for c, avg in zip((1.25, 2.5, 5, 10), (0.5, 0.8, 0.9, 0.95)):
            runs += [_fake_run(dim, int(c * dim ** 2), s, avg + 0.01 * s, 0.2) for s in (0, 1)]
    rows = {r["name"][:2]: r for r in claims.cross_run_claims(runs)}
    assert rows["S1"]["passed"] and math.isclose(rows["S1"]["measured"], 2.5)
    assert rows["S2"]["passed"] and math.isclose(rows["S2"]["max"], 0.2)
    assert rows["S3"]["passed"] and math.isclose(rows["S3"]["measured"], 1.0)
    # the average never recovers at d = 20: S1 fails there, and so does the growth claim
    runs = [r for r in runs if r.cfg["dataset"]["dim"] == 10] + [
        _fake_run(20, int(c * 400), s, 0.6, 0.2) for c in (1.25, 2.5, 5, 10) for s in (0, 1)]
    rows = {r["name"][:2]: r for r in claims.cross_run_claims(runs)}
    assert not rows["S1"]["passed"] and rows["S1"]["n_passed"] == 1 and not rows["S3"]["passed"]
    assert "inf" in rows["S1"]["note"]
