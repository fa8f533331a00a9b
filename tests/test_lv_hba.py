"""LV-HBA: one iteration against the paper's equations written out by hand on the toy (its gradients
in closed form), the toy's x* against the closed form of its active branch, convergence on a tiny toy,
the oracle counts and divergence through the engine, the QP projection of the SVM problem, its data
loaders on tiny files written here, and the paper-scale composition on a stand-in."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from experiments.lv_hba.problems import CoupledQuadratic, SVMHyperparameters, read_libsvm
from experiments.lv_hba.trainer import lvhba_step
from runner import seeding
from runner.dispatch import build, execute

pytestmark = pytest.mark.usefixtures("one_thread")
EXP = ["experiment=lv_hba", "device=cpu"]
HYPER = dict(alpha=0.02, beta=0.02, eta=0.02, gamma1=1.0, gamma2=1.0, c0=3.0, power=0.3)


def _toy(dim=5, seed=0) -> CoupledQuadratic:
    p = CoupledQuadratic(dim)
    p.setup(seeding.generator(seed, "data", "cpu"))
    return p


def test_x_star_by_lbfgs_is_the_closed_form_of_the_active_branch():
    """On the active branch y* = J x + 1/n, J = I - (1.5/n) 1 1^T, so grad Phi = 0 is the linear system
    (I + J^T J) x = a + J^T (b - 1/n); the constraint is active there for these a, b."""
    for dim, seed in ((5, 0), (50, 1)):
        p = _toy(dim, seed)
        n = dim
        J = torch.eye(n, dtype=torch.float64) - 1.5 / n
        exact = torch.linalg.solve(torch.eye(n, dtype=torch.float64) + J.T @ J, p.a + J.T @ (p.b - 1.0 / n))
        assert 1.5 * exact.sum() > 1  # active
        assert torch.allclose(p.x_star, exact, rtol=0, atol=1e-8)


def test_one_iteration_is_the_papers_update_in_closed_form():
    p = _toy(5)
    gen = torch.Generator().manual_seed(3)
    x, y, th = (torch.randn(5, generator=gen, dtype=torch.float64) for _ in range(3))
    lam, z = torch.tensor([0.7], dtype=torch.float64), torch.tensor([0.2], dtype=torch.float64)
    k, h = 4, HYPER
    ck = h["c0"] * (k + 1) ** h["power"]
    one = torch.ones(5, dtype=torch.float64)
    g = lambda x_, y_: y_.sum() + 0.5 * x_.sum() - 1  # noqa: E731
    th1 = th - h["eta"] * ((th - x) + lam * one + (th - y) / h["gamma1"])
    lam1 = torch.clamp(lam + h["eta"] * (g(x, th) - (lam - z) / h["gamma2"]), min=0)
    dx = (x - p.a) / ck + (x - y) - (x - th1) - lam1 * 0.5 * one
    dy = (y - p.b) / ck + (y - x) - (y - th1) / h["gamma1"]
    x1, y1 = x - h["alpha"] * dx, y - h["alpha"] * dy
    viol = g(x1, y1)
    if viol > 0:  # the projection onto the half-space, normal (1/2, 1)
        t = viol / (5 * 0.25 + 5)
        x1, y1 = x1 - 0.5 * t, y1 - t
    z1 = torch.clamp(z - h["beta"] * (z - lam1) / h["gamma2"], min=0)
    got = lvhba_step(p, x, y, th, lam, z, k, **h)
    for a, b in zip(got[:5], (x1, y1, th1, lam1, z1)):
        assert torch.allclose(a, b, rtol=0, atol=1e-13)
    assert got[5] == pytest.approx(ck)


def test_lvhba_approaches_x_star_on_a_tiny_toy():
    p = _toy(5, seed=2)
    x, y, lam = p.init()
    th, z = y.clone(), lam.clone()
    errs = {}
    for k in range(4000):
        x, y, th, lam, z, _ = lvhba_step(p, x, y, th, lam, z, k, **HYPER)
        if k + 1 in (100, 4000):
            errs[k + 1] = float((x - p.x_star).norm() / p.x_star.norm())
        assert float(g := p.g(x, y)) <= 1e-12, g
    assert errs[4000] < 0.1 and errs[4000] < errs[100] / 10, errs  # 0.68 -> 0.052 at seed 2


def test_oracle_counts_and_feasibility_through_the_engine(make_cfg, tmp_path):
    summary = execute(make_cfg(*EXP, "trainer.steps=30", "trainer.dim=50"), tmp_path / "run")
    m = summary["metrics"]
    assert summary["status"] == "completed"
    assert (m["grad_f_calls"], m["grad_g_calls"], m["hvp_calls"], m["jvp_calls"], m["hessian_calls"]) == (30, 90, 0, 0, 0)
    assert m["violation"] <= 1e-12 and m["rel_error"] < 1


def test_large_steps_diverge_and_are_recorded(make_cfg, tmp_path):
    summary = execute(make_cfg(*EXP, "trainer.steps=2000", "trainer.alpha=0.5", "trainer.beta=0.5", "trainer.eta=0.5"),
                      tmp_path / "run")
    assert summary["status"] == "diverged" and 1 <= summary["diverged_at"] < 2000


def _write_libsvm(path, n=60, d=3, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.uniform(-1, 1, size=(n, d))
    lab = np.where(X @ np.array([1.0, -2.0, 0.5][:d]) > 0, 1, -1)
    lines = [f"{'+1' if lab[i] > 0 else '-1'} " + " ".join(f"{j + 1}:{X[i, j]:.6f}" for j in range(d) if X[i, j] != 0)
             for i in range(n)]
    path.write_text("\n".join(lines) + "\n")
    return X, lab


def test_libsvm_loader_reads_a_tiny_file(tmp_path):
    X, lab = _write_libsvm(tmp_path / "diabetes_scale")
    got_X, got_lab = read_libsvm(tmp_path / "diabetes_scale")
    assert got_X.shape == X.shape and np.allclose(got_X, X, atol=1e-6) and np.array_equal(got_lab, lab)


def test_svm_problem_from_a_tiny_file_projects_onto_the_hinge_constraints(tmp_path):
    _write_libsvm(tmp_path / "diabetes_scale", n=60)
    p = SVMHyperparameters("diabetes", str(tmp_path), n_train=30, n_val=15)
    p.setup(seeding.generator(0, "data", "cpu"))
    assert (p.d, p.dim_x, p.dim_y, p.m, len(p.l_test)) == (3, 30, 34, 30, 15)
    assert 0 <= p.baseline["test_acc"] <= 100
    x, y, _ = p.init()
    y = y + torch.randn(y.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    _, proj = p.project(x, y)
    assert float(p.g(x, proj).max()) <= 1e-8
    # the nearest feasible point: no feasible point on a segment towards random feasible points is closer
    for s in range(5):
        other = proj + 0.1 * torch.randn(proj.shape, generator=torch.Generator().manual_seed(10 + s), dtype=torch.float64)
        _, other = p.project(x, other)
        for t in (0.01, 0.1, 0.5):
            q = (1 - t) * proj + t * other  # feasible: C is convex
            assert (q - y).norm() >= (proj - y).norm() - 1e-7


def test_svm_run_on_breast_cancer_counts_oracles(make_cfg, tmp_path):
    summary = execute(make_cfg(*EXP, "trainer.problem=svm", "trainer.dataset=breast_cancer", "trainer.steps=3",
                               "components.upper.module.dim=285", "components.lower.module.dim=316"), tmp_path / "run")
    m = summary["metrics"]
    assert summary["status"] == "completed" and (m["grad_f_calls"], m["grad_g_calls"], m["hvp_calls"]) == (3, 9, 0)
    assert 0 <= m["test_acc"] <= 100 and m["violation"] <= 1e-6


def test_paper_scale_composes_the_papers_svm_setup(make_cfg):
    from runner import experiments

    runs = {(s, a): o for s, a, o in experiments.arm_runs("lv_hba", "paper")}
    assert set(runs) >= {("svm", "diabetes"), ("svm", "fourclass"), ("svm", "breast_cancer"), ("coupled_toy", "lv_hba")}
    ovr = [o.split(",")[0] if o.startswith("seed=") else o for o in runs[("svm", "diabetes")]]
    ovr = [o if not o.startswith("seed=range") else "seed=1" for o in ovr]
    cfg = make_cfg(*ovr, "trainer.stand_in=true")
    t = cfg.trainer
    assert (t.problem, t.dataset, t.steps, t.alpha, t.beta, t.eta, t.c0, t.power) == ("svm", "diabetes", 80, 0.01, 0.1, 0.01, 1, 0.5)
    assert cfg.scale == "paper" and "range(1,40)" in " ".join(runs[("svm", "diabetes")])
    state, trainer, _ = build(cfg)
    trainer.phases(state)  # the stand-in of diabetes' shape: 768 x 8, split 500 / 150 / 118
    p = trainer.problem
    assert (p.d, p.dim_x, len(p.l_val), len(p.l_test)) == (8, 500, 150, 118)
