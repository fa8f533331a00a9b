"""Restart-free gradient sliding (the baselines that run): the prox-sliding inner step is the argmin it
claims to be, the reference optimum agrees with an independent solver, the methods count their oracles
and converge, and a small sweep runs end to end with its claims."""
import math

import numpy as np
import pytest
from scipy.optimize import minimize

from experiments.gradient_sliding.methods import ProxSubgradient, RestartGradientSliding, prox_sliding
from experiments.gradient_sliding.problems import TVRegression, diff, diff_t, dual_reference

pytestmark = pytest.mark.usefixtures("one_thread")


def _problem(state, **kw):
    p = TVRegression(**{"m": 60, "n": 12, "lam": 0.3, "mu": 0.2, "pieces": 3, **kw})
    p.setup(state)
    return p


def test_difference_operator_and_its_transpose():
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal(7), rng.standard_normal(6)
    D = np.diff(np.eye(7), axis=0)
    np.testing.assert_allclose(diff(x), D @ x)
    np.testing.assert_allclose(diff_t(y), D.T @ y)


def test_one_prox_sliding_step_is_the_argmin_of_its_model(solver_state):
    p = _problem(solver_state(0))
    rng = np.random.default_rng(1)
    x, g, beta = rng.standard_normal(p.n), rng.standard_normal(p.n), 0.7
    hx = p.subgrad_h(x)
    # t = 1: p_1 = 1/2, and u_0 = x, so the model is <g + h'(x), u> + beta (1 + 1/2) ||u - x||^2 / 2 + mu ||u||^2 / 2
    model = lambda u: (g + hx) @ u + 0.5 * beta * 1.5 * (u - x) @ (u - x) + 0.5 * p.mu * u @ u  # noqa: E731
    expected = minimize(model, x, method="BFGS", options={"gtol": 1e-12}).x
    calls = p.subgrad_calls
    u, u_avg = prox_sliding(p, g, x, beta, T=1)
    np.testing.assert_allclose(u, expected, atol=1e-7)
    np.testing.assert_allclose(u_avg, u)  # theta_1 = 1
    assert p.subgrad_calls == calls + 1
    prox_sliding(p, g, x, beta, T=5)
    assert p.subgrad_calls == calls + 6


def test_prox_sliding_averages_with_lans_weights(solver_state):
    """u~_T = sum_t w_t u_t with w_t proportional to t + 1 (the theta_t = 2(t+1)/(t(t+3)) recursion)."""
    p = _problem(solver_state(0))
    rng = np.random.default_rng(2)
    x, g, beta, T = rng.standard_normal(p.n), rng.standard_normal(p.n), 0.5, 6
    us = [prox_sliding(p, g, x, beta, t)[0] for t in range(1, T + 1)]
    w = np.arange(2, T + 2, dtype=float)
    np.testing.assert_allclose(prox_sliding(p, g, x, beta, T)[1], (w[:, None] * np.array(us)).sum(0) / w.sum())


def test_reference_optimum_matches_an_independent_qp_solve(solver_state):
    p = _problem(solver_state(3), m=30, n=8)
    n = p.n
    # the same problem as a smooth QP in (x, s): 1/2||Ax-b||^2 + lam sum s + mu/2 ||x||^2, -s <= Dx <= s
    D = np.diff(np.eye(n), axis=0)

    def obj(z):
        x, s = z[:n], z[n:]
        return 0.5 * np.sum((p.A @ x - p.b) ** 2) + p.lam * s.sum() + 0.5 * p.mu * x @ x

    cons = [{"type": "ineq", "fun": lambda z: z[n:] - D @ z[:n]}, {"type": "ineq", "fun": lambda z: z[n:] + D @ z[:n]}]
    z0 = np.r_[np.zeros(n), np.ones(n - 1)]
    qp = minimize(obj, z0, method="SLSQP", constraints=cons, options={"ftol": 1e-14, "maxiter": 1000})
    assert qp.success
    ref = p.reference()
    assert ref["ref_dual_gap"] <= 1e-9
    assert abs(ref["ref_psi_star"] - qp.fun) <= 1e-7 * max(1.0, abs(qp.fun))
    assert p.psi(qp.x[:n]) >= ref["ref_psi_star"] - 1e-9


def test_dual_reference_gap_is_a_certificate():
    rng = np.random.default_rng(4)
    A, b = rng.standard_normal((40, 10)) / math.sqrt(40), rng.standard_normal(40)
    ref = dual_reference(A, b, lam=0.5, mu=0.1, iters=50000, tol=1e-12)
    assert 0 <= ref["ref_dual_gap"] <= 1e-10 * max(1.0, abs(ref["ref_psi_star"]))


def test_subgradient_method_counts_one_of_each_oracle_and_converges(solver_state):
    st = solver_state(0)
    p = _problem(st)
    alg = ProxSubgradient()
    alg.setup(p, st)
    gaps = [alg.step(p, st)["rel_gap"] for _ in range(3000)]
    assert p.grad_calls == p.subgrad_calls == 3000
    assert 0 <= gaps[-1] <= 1e-2 and gaps[-1] <= gaps[299] / 5  # O(1/k): ten times the iterations, >= 5x smaller


def test_restart_gs_phases_schedule_and_convergence(solver_state):
    st = solver_state(0)
    p = _problem(st)
    alg = RestartGradientSliding()
    alg.setup(p, st)
    assert alg.N0 == math.ceil(4 * math.sqrt(2) * math.sqrt(p.L / p.mu))
    rows = [alg.step(p, st) for _ in range(6 * alg.N0)]
    assert [r["grad_f_calls"] for r in rows] == list(range(1, 6 * alg.N0 + 1))
    assert [r["phase"] for r in rows[:: alg.N0]] == [1, 2, 3, 4, 5, 6]
    first, second = rows[0], rows[alg.N0]  # k = 1 of phases 1 and 2: D halves, so T_k doubles (up to the ceiling)
    assert (first["gamma_k"], first["beta_k"]) == (1.0, 2 * p.L)
    D1 = 2 * p.gap0 / p.mu
    assert first["T_k"] == math.ceil(p.M**2 * alg.N0 / (D1 * p.L**2))
    assert second["T_k"] == math.ceil(2 * p.M**2 * alg.N0 / (D1 * p.L**2))
    assert rows[-1]["subgrad_calls"] == sum(r["T_k"] for r in rows)
    assert 0 <= rows[-1]["rel_gap"] <= 0.05


def test_state_dict_round_trip(solver_state):
    st = solver_state(0)
    p = _problem(st)
    a, b = RestartGradientSliding(), RestartGradientSliding()
    a.setup(p, st)
    b.setup(p, st)
    for _ in range(5):
        a.step(p, st)
    b.load_state_dict(a.state_dict())
    np.testing.assert_array_equal(a.x_bar, b.x_bar)
    assert a.step(p, st)["rel_gap"] == b.step(p, st)["rel_gap"]


def test_small_sweep_runs_and_claims_evaluate(make_cfg, tmp_path):
    from experiments.gradient_sliding.claims import cross_run_claims
    from runner.dispatch import execute
    from runner.report.runs import load_runs

    for alg in ("subgradient", "restart_gs"):
        cfg = make_cfg("experiment=gradient_sliding", "study=tv_regression", f"arm={alg}", f"algorithm={alg}",
                       "problem.m=200", "problem.n=30", "trainer.max_iters=5000", "device=cpu")
        summary = execute(cfg, tmp_path / "gradient_sliding" / alg)
        assert summary["status"] == "completed" and summary["metrics"]["converged"] == 1
        assert (tmp_path / "gradient_sliding" / alg / "convergence.png").exists()
    runs, skipped = load_runs(tmp_path)
    assert len(runs) == 2 and not skipped
    gs = next(r for r in runs if r.is_in("tv_regression", "restart_gs"))
    assert {c["name"][:2] for c in gs.summary["claims"]} == {"C1", "R2", "R4"}
    rows = {r["name"][:2]: r for r in cross_run_claims(runs)}
    assert all(rows[h]["n"] == 0 and rows[h]["passed"] is False and rows[h]["kind"] == "headline"
               for h in ("H1", "H2", "H3"))
    assert rows["R1"]["n"] == 1 and rows["R1"]["measured"] > 0


def test_scales_and_studies_compose(make_cfg):
    from runner import experiments

    smoke = make_cfg("experiment=gradient_sliding")
    assert (smoke.problem.m, smoke.problem.n, smoke.trainer.tol, smoke.trainer.monitor) == (2000, 200, 1e-4, "rel_gap")
    assert smoke.algorithm.name == "restart_gs"
    paper = make_cfg("experiment=gradient_sliding", "scale=paper")
    assert (paper.problem.m, paper.problem.n, paper.trainer.tol) == (10000, 1000, 1e-5)
    plan = {(s, a): o for s, a, o in experiments.arm_runs("gradient_sliding", "paper")}
    noisy = make_cfg(*plan["stochastic", "restart_gs"])
    assert noisy.problem.subgrad_noise == 1.0 and noisy.trainer.tol == 1e-3
