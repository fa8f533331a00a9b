"""NPSolver: the refined target contracts the error in the A-norm, the stop-gradient makes the loss's
gradient exactly the gap u_hat - u_tilde (and its absence does not), a tiny run logs what the claims and
figures read, and the cross-run claims compute their ratios (a diverged no-stop-gradient seed counts as
unstable)."""
from __future__ import annotations

import math
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest
import torch

from experiments.npsolver.claims import cross_run_claims
from experiments.npsolver.trainer import NPSolverTrainer, masked_rms
from runner.data.poisson import apply_laplacian, make_instances

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = ["trainer.grid_size=12", "trainer.n_train=8", "trainer.n_test=5", "trainer.steps=20", "trainer.eval_every=10",
        "trainer.batch_size=4", "device=cpu"]


def _system(n=10, count=3, seed=0):
    d = make_instances(count, n, torch.Generator().manual_seed(seed))
    h2 = (1.0 / (n + 1)) ** 2
    return d["f"].double(), d["mask"], d["u"], h2 * d["f"].double() * d["mask"]


def _a_norm(e, mask):
    return float((e * apply_laplacian(e, mask)).sum().sqrt())


def test_the_refined_target_is_closer_in_the_a_norm():
    """CG from u_hat minimises the A-norm error over its Krylov space: K steps never increase it."""
    f, mask, u, b = _system()
    u_hat = (u + 0.02 * torch.randn(u.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)) * mask
    errs = []
    for k in (1, 5, 20):
        t = NPSolverTrainer(pcg_steps=k, grid_size=10)
        errs.append(_a_norm(t._refine(u_hat, b, mask) - u, mask))
    assert _a_norm(u_hat - u, mask) > errs[0] > errs[1] > errs[2]


def test_the_stop_gradient_makes_the_gradient_the_gap():
    """d/du_hat of 0.5 ||u_hat - sg(u_tilde)||^2 is u_hat - u_tilde; through the PCG steps it is not."""
    f, mask, u, b = _system(seed=2)
    start = (u + 0.01 * torch.randn(u.shape, generator=torch.Generator().manual_seed(3), dtype=torch.float64)) * mask
    grads = {}
    for stop in (True, False):
        t = NPSolverTrainer(pcg_steps=5, stop_grad=stop, grid_size=10)
        u_hat = start.clone().requires_grad_(True)
        target = t._refine(u_hat, b, mask)
        assert target.requires_grad == (not stop)
        (0.5 * (u_hat - target).pow(2).sum()).backward()
        grads[stop] = u_hat.grad
    gap = (start - t._refine(start, b, mask)).detach()
    torch.testing.assert_close(grads[True], gap)
    assert float((grads[False] - gap).norm()) > 1e-3 * float(gap.norm())


def test_masked_rms_ignores_cells_off_the_domain():
    mask = torch.zeros(1, 1, 4, 4, dtype=torch.bool)
    mask[..., :2, :] = True
    v = torch.where(mask, 3.0, 100.0)
    assert float(masked_rms(v, mask)) == pytest.approx(3.0)


@pytest.mark.parametrize("arm", [["trainer.method=supervised"], ["trainer.method=residual"],
                                 ["trainer.method=npsolver", "trainer.stop_grad=false"]])
def test_a_tiny_run_logs_what_claims_and_figures_read(make_cfg, tmp_path, arm):
    from runner.dispatch import build
    from runner.engine import Engine
    from runner.results import MetricsWriter

    cfg = make_cfg("experiment=npsolver", *TINY, *arm, f"results_dir={tmp_path}")
    state, trainer, hooks = build(cfg)
    out = Engine(trainer, hooks, MetricsWriter(tmp_path / "metrics.csv"), progress=False).run(state)
    assert out.status == "completed"
    df = pd.read_csv(tmp_path / "metrics.csv")
    ev = df.dropna(subset=["test_rel_l2"])
    assert list(ev.step) == [10, 20] and (ev.test_rel_l2 > 0).all() and ev.data_seconds.notna().all()
    last = df.dropna(subset=["cg_iters_pred"]).iloc[-1]
    assert last.cg_converged_pred == 1.0 and 0 < last.cg_iters_zero <= 12 * 12
    assert (tmp_path / "arrays" / "example").is_dir()


def _run(arm, seed, rel, status="completed", study="losses"):
    df = pd.DataFrame({"step": [600], "test_rel_l2": [rel], "cg_iters_pred": [50.0], "cg_iters_zero": [80.0]})
    return SimpleNamespace(arm=arm, seed=seed, metrics=df, completed=status == "completed",
                           diverged=status == "diverged", is_in=lambda s, _study=study: s == _study, path=Path("."))


def test_cross_run_claims_compute_ratios_of_means():
    runs = [_run("npsolver_k5", s, 0.1) for s in range(3)] + [_run("residual", s, 0.9) for s in range(3)]
    runs += [_run("supervised", s, 0.08) for s in range(3)] + [_run("npsolver_k1", s, 0.2) for s in range(3)]
    runs += [_run("no_stopgrad_k5", 0, math.nan, status="diverged"), _run("no_stopgrad_k5", 1, 0.05)]
    runs += [_run("npsolver_k20", 0, 0.12, study="k20")]
    rows = {r["name"].split()[0]: r for r in cross_run_claims(runs)}
    assert rows["H1"]["measured"] == pytest.approx(0.1 / 0.9) and rows["H1"]["passed"]
    assert rows["H2"]["measured"] == pytest.approx(1.25) and rows["H2"]["passed"]
    assert rows["H3"]["measured"] == pytest.approx(2.0) and rows["H3"]["passed"]
    assert rows["H4"]["passed"] and rows["H4"]["measured"] == pytest.approx(0.5)  # better, but one seed diverged
    assert rows["S2"]["measured"] == pytest.approx(1.2) and not rows["S2"]["passed"]
