"""Gradient-normalized smoothness: oracles against autograd, f* against scikit-learn, the step
against its formula, and a short sweep with the cross-run claims."""
import numpy as np
import pytest
import torch

from experiments.gn_smoothness.gns import GradNormSmooth
from experiments.gn_smoothness.problems import Logistic, LogSumExp, PowerResidual
from runner.errors import OptrunError

pytestmark = pytest.mark.usefixtures("one_thread")


def _check_oracles(p, x):
    torch.testing.assert_close(p.grad(x), torch.func.grad(p.f)(x))
    torch.testing.assert_close(p.hessian(x, "exact"), torch.func.hessian(p.f)(x))


@pytest.mark.parametrize("mu", [1.0, 0.25])
def test_logsumexp_oracles_optimum_and_weighted_gauss_newton(mu, solver_state):
    p = LogSumExp(n=7, m=11, mu=mu)
    p.setup(solver_state())
    x = 0.3 * torch.randn(7, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    _check_oracles(p, x)
    g = p.grad(x)
    torch.testing.assert_close(p.hessian(x, "weighted_gn"), p.hessian(x, "exact") + torch.outer(g, g) / mu)
    assert p.grad(torch.zeros(7, dtype=torch.float64)).abs().max() < 1e-14  # re-centred: x* = 0
    assert p.f_star == float(p.f(torch.zeros(7, dtype=torch.float64)))


def test_logistic_oracles_and_f_star_agree_with_scikit_learn(solver_state):
    from sklearn.linear_model import LogisticRegression

    p = Logistic(dataset="breast_cancer", reg=1e-3)
    p.setup(solver_state())
    x = 0.1 * torch.randn(p.X.shape[1], dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    _check_oracles(p, x)
    N = len(p.y)
    clf = LogisticRegression(C=1.0 / (N * p.reg), fit_intercept=False, tol=1e-12, max_iter=10000)
    clf.fit(p.X.numpy(), p.y.numpy())
    f_sklearn = float(p.f(torch.as_tensor(clf.coef_[0])))
    assert p.f_star <= f_sklearn + 1e-12 and f_sklearn - p.f_star < 1e-8


def test_power_residual_oracles_and_fisher_term(solver_state):
    p = PowerResidual(n=5, m=9, p=4.0)
    p.setup(solver_state())
    x = p.x0 * 0.3
    _check_oracles(p, x)
    u = p.A @ x - p.b
    torch.testing.assert_close(p.hessian(x, "fisher"), p.hessian(x, "exact") - u.norm() ** 2 * p.A.T @ p.A)


def test_one_step_is_the_regularized_newton_formula(solver_state):
    p = LogSumExp(n=10, m=10, mu=1.0)
    p.setup(solver_state())
    alg = GradNormSmooth(hessian="exact", gamma0=1.0)
    alg.setup(p, solver_state())
    x0, g = alg.x.clone(), p.grad(alg.x)
    m = alg.step(p, solver_state())
    assert m["search_steps"] == 1 and m["gamma"] == 2.0  # accepted at once: gamma doubles
    lam = p.dual_norm(g) / (1.0 + alg.eps)
    expected = x0 - torch.linalg.solve(p.hessian(x0, "exact") + lam * p.B, g)
    torch.testing.assert_close(alg.x, expected)
    assert float(m["grad_norm"]) == pytest.approx(float(p.dual_norm(p.grad(alg.x))))


def test_unsupported_hessian_names_the_key(solver_state):
    p = LogSumExp(n=4, m=4)
    p.setup(solver_state())
    with pytest.raises(OptrunError, match="algorithm.hessian: LogSumExp offers exact, none, weighted_gn"):
        GradNormSmooth(hessian="fisher").setup(p, solver_state())
    with pytest.raises(OptrunError, match="algorithm.metric"):
        GradNormSmooth(metric="euclid")


def test_short_sweep_and_cross_run_claims(make_cfg, tmp_path):
    from experiments.gn_smoothness.claims import cross_run_claims
    from runner.dispatch import execute
    from runner.report.runs import load_runs

    arms = {"exact": "exact", "weighted_gn": "weighted_gn", "none": "precond_gradient"}
    for hess in ("exact", "weighted_gn", "none"):
        cfg = make_cfg("experiment=gn_smoothness", "study=logsumexp", f"arm={arms[hess]}", "problem.n=30",
                       "problem.m=30", "problem.mu=0.25", f"algorithm.hessian={hess}", "trainer.max_iters=400")
        summary = execute(cfg, tmp_path / "gn_smoothness" / hess)
        assert summary["status"] == "completed"
    runs, _ = load_runs(tmp_path)
    by = {r.path.name: r for r in runs}
    assert by["exact"].metrics.converged.iloc[-1] == 1 and by["weighted_gn"].metrics.converged.iloc[-1] == 1
    assert np.all(np.diff(by["exact"].metrics.loss.to_numpy()) <= 1e-12)  # monotone decrease
    assert [(c["name"][:2], c["kind"]) for c in by["weighted_gn"].summary["claims"]] == [("G1", "headline")]
    x1, x2 = cross_run_claims(runs)
    assert x1["n"] == 1 and x2["n"] == 1 and x1["measured"] >= 1.0 and x1["kind"] == "supporting"


def test_scales_and_studies(make_cfg):
    from runner import experiments

    cfg = make_cfg("experiment=gn_smoothness")
    assert cfg.problem.n == 100 and cfg.trainer.max_iters == 3000 and cfg.threads == 1
    cfg = make_cfg("experiment=gn_smoothness", "scale=paper")
    assert cfg.problem.n == 1000 and cfg.problem.m == 1000 and cfg.problem.mu == 1.0 and cfg.trainer.max_iters == 1000
    cfg = make_cfg("experiment=gn_smoothness", "scale=paper", "problem=power_residual", "problem.n=100",
                   "problem.m=200", "algorithm.hessian=fisher")
    assert cfg.problem.n == 100 and cfg.problem.p == 4.0
    smoke, paper = (experiments.studies("gn_smoothness", s) for s in ("smoke", "paper"))
    assert list(smoke) == ["logsumexp", "logistic"] and list(paper) == ["logsumexp", "power_residual"]
    assert list(paper["power_residual"]["arms"]) == ["exact", "fisher", "precond_gradient"]
