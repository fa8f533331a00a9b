"""langevin_swa: a short in-process run through the real config logs the overlaps; both scales compose."""
import json

import pandas as pd

from experiments.langevin_swa import claims
from runner.dispatch import execute


def test_langevin_swa_short_run_logs_overlaps(make_cfg, tmp_path):
    cfg = make_cfg("experiment=langevin_swa", "study=k3", "arm=langevin", "trainer.steps=400",
                   "hooks.iterate_average.report_every=100", "dataset.n_train=500", "device=cpu")
    summary = execute(cfg, tmp_path / "run")
    df = pd.read_csv(tmp_path / "run" / "metrics.csv")
    overlaps = {f"iterate_average/overlap_{k}" for k in ("last", "avg", "second")}
    assert df.step.iloc[-1] == 400 and overlaps <= set(df.columns)
    assert df["iterate_average/overlap_avg"].dropna().between(0, 1).all()
    assert json.loads((tmp_path / "run" / "status.json").read_text())["status"] == "completed"
    assert [c["name"][:2] for c in summary["claims"]] == ["L1", "L2"]


def test_scales_compose_and_claims_follow_the_studies(make_cfg):
    smoke, paper = make_cfg("experiment=langevin_swa"), make_cfg("experiment=langevin_swa", "scale=paper")
    assert (smoke.dataset.dim, smoke.dataset.n_train, smoke.optimizer.lr, smoke.trainer.steps) == (30, 9000, 0.02, 20000)
    assert (paper.dataset.dim, paper.dataset.n_train, paper.optimizer.lr, paper.trainer.steps) == (100, 100000, 0.01,
                                                                                                    200000)
    for cfg in (smoke, paper):
        assert cfg.dataset.k == cfg.model.k == 3 and cfg.optimizer.beta == 5.0 and cfg.trainer.loss == "corr"
    k4 = {"study": "k4", "arm": "langevin", "scale": "smoke", "dataset": {"k": 4}}
    assert [c.name[:2] for c in claims.CLAIMS if c.relevant(k4)] == ["L3", "L4", "L5"]
    assert not [c for c in claims.CLAIMS if c.relevant({**k4, "study": None})]
