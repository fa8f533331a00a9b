"""A solver run interrupted after a checkpoint resumes to the same metrics.csv as an uninterrupted
one (problem data regenerated from the seed, iterate and adaptive constants from the checkpoint)."""
import pandas as pd
import pytest

from runner.dispatch import execute

pytestmark = pytest.mark.usefixtures("one_thread")

CASES = {
    "sns": ("experiments.sinkhorn_newton.solvers.SinkhornNewtonSparse",
            ["experiment=sinkhorn_newton", "problem.n=30", "problem.eta=300", "problem.reference=false",
             "algorithm.n_sinkhorn=12"]),
    "cbo": ("experiments.cbo.methods.CBO", ["experiment=cbo", "algorithm.runs=4", "algorithm.iters=40"]),
    "langevin": ("experiments.cbo.methods.Langevin",
                 ["experiment=cbo", "algorithm=langevin", "algorithm.runs=4", "algorithm.iters=40"]),
    "gns": ("experiments.gn_smoothness.gns.GradNormSmooth",
            ["experiment=gn_smoothness", "problem.n=20", "problem.m=20", "problem.mu=0.25",
             "algorithm.hessian=weighted_gn"]),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_interrupted_solver_run_resumes_identically(case, make_cfg, tmp_path, monkeypatch):
    import importlib

    target, overrides = CASES[case]
    module, cls = target.rsplit(".", 1)
    algorithm = getattr(importlib.import_module(module), cls)
    cfg = make_cfg(*overrides, "checkpoint.every_steps=10", "flush_every=5", "device=cpu")
    execute(cfg, tmp_path / "reference")

    original, calls = algorithm.step, []

    def interrupted(self, problem, state):
        calls.append(1)
        if len(calls) == 17:  # after the checkpoint at step 10
            raise KeyboardInterrupt
        return original(self, problem, state)

    monkeypatch.setattr(algorithm, "step", interrupted)
    with pytest.raises(KeyboardInterrupt):
        execute(cfg, tmp_path / "resumed")
    monkeypatch.setattr(algorithm, "step", original)
    execute(cfg, tmp_path / "resumed")
    a, b = (pd.read_csv(tmp_path / r / "metrics.csv").drop(columns="time_s") for r in ("reference", "resumed"))
    assert len(a) > 17
    pd.testing.assert_frame_equal(a, b)
