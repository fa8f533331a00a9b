"""Hypergradient helpers against dense references: HVPs and cross products against
`torch.func.hessian`/`jacrev`, CG and the Neumann series against a dense solve, the whole hypergradient
against autograd through y*(x) on a quadratic lower level, and the oracle counts."""
from __future__ import annotations

import pytest
import torch
from torch.func import grad, hessian, jacrev

from runner.curvature.implicit import Oracles, cross_xy, hvp_yy, hypergradient, solve_z
from runner.errors import OptrunError

DX, DY = 4, 7


@pytest.fixture
def problem():
    g0 = torch.Generator().manual_seed(0)
    q, _ = torch.linalg.qr(torch.randn(DY, DY, generator=g0, dtype=torch.float64))
    A = (q * torch.linspace(1, 5, DY, dtype=torch.float64)) @ q.T
    B = torch.randn(DY, DX, generator=g0, dtype=torch.float64)
    c = torch.randn(DY, generator=g0, dtype=torch.float64)

    def g(x, y):  # strongly convex in y, coupled nonlinearly with x
        return 0.5 * y @ A @ y - y @ B @ torch.tanh(x) + 0.1 * (x.pow(2).sum()) * y.pow(2).sum()

    def f(x, y):
        return 0.5 * (y - c).pow(2).sum() + 0.3 * x.pow(4).sum() + torch.sin(x) @ (B.T @ y)

    x = torch.randn(DX, generator=g0, dtype=torch.float64)
    y = torch.randn(DY, generator=g0, dtype=torch.float64)
    return f, g, x, y, A, B, c


def test_hvp_and_cross_product_match_dense_derivatives(problem):
    f, g, x, y, *_ = problem
    v = torch.randn(DY, dtype=torch.float64)
    h = hessian(g, argnums=1)(x, y)
    assert torch.allclose(hvp_yy(g, x, y, v), h @ v, atol=1e-12)
    gxy = jacrev(grad(g, argnums=1), argnums=0)(x, y)  # (DY, DX)
    assert torch.allclose(cross_xy(g, x, y, v), gxy.T @ v, atol=1e-12)


@pytest.mark.parametrize("solver,iters,tol", [("cg", DY, 1e-10), ("neumann", 400, 1e-8), ("exact", 1, 1e-12)])
def test_linear_solvers_reach_the_dense_solution(problem, solver, iters, tol):
    f, g, x, y, *_ = problem
    b = torch.randn(DY, dtype=torch.float64)
    h = hessian(g, argnums=1)(x, y)
    alpha = 1.0 / float(torch.linalg.eigvalsh(h).max())
    z = solve_z(g, x, y, b, solver, iters=iters, alpha=alpha)
    assert torch.allclose(z, torch.linalg.solve(h, b), atol=tol, rtol=0)


def test_cg_warm_start_from_the_solution_stays_there(problem):
    f, g, x, y, *_ = problem
    b = torch.randn(DY, dtype=torch.float64)
    z_star = torch.linalg.solve(hessian(g, argnums=1)(x, y), b)
    o = Oracles()
    z = solve_z(g, x, y, b, "cg", iters=5, z0=z_star, tol=1e-8, oracles=o)
    assert torch.allclose(z, z_star, atol=1e-10) and o.counts["hvp"] == 1  # the residual only


def test_hypergradient_at_the_lower_solution_is_grad_phi():
    """Quadratic lower level: y*(x) = A^{-1} B x is differentiable in closed form, so grad Phi comes
    from autograd through the solve; the implicit formula must agree at y = y*(x)."""
    g0 = torch.Generator().manual_seed(1)
    A = torch.randn(DY, DY, generator=g0, dtype=torch.float64)
    A = A @ A.T + DY * torch.eye(DY, dtype=torch.float64)
    B = torch.randn(DY, DX, generator=g0, dtype=torch.float64)

    def g(x, y):
        return 0.5 * y @ A @ y - y @ B @ x

    def f(x, y):
        return (y.pow(3).sum() + (x * x.sum()).sum()) / 3

    def phi(x):
        return f(x, torch.linalg.solve(A, B @ x))

    x = torch.randn(DX, generator=g0, dtype=torch.float64)
    y_star = torch.linalg.solve(A, B @ x)
    for solver in ("exact", "cg"):
        hg, _ = hypergradient(f, g, x, y_star, solver, iters=DY)
        assert torch.allclose(hg, grad(phi)(x), atol=1e-10)


def test_oracle_counts(problem):
    f, g, x, y, *_ = problem
    o = Oracles()
    hypergradient(f, g, x, y, "neumann", iters=5, alpha=0.1, oracles=o)
    assert o.metrics() == {"grad_f_calls": 1, "grad_g_calls": 0, "hvp_calls": 4, "jvp_calls": 1, "hessian_calls": 0,
                           "samples_calls": 0}
    hypergradient(f, g, x, y, "cg", iters=3, tol=0.0, oracles=o)
    assert o.counts["hvp"] == 4 + 3 and o.counts["jvp"] == 2
    restored = Oracles()
    restored.load_state_dict(o.state_dict())
    assert restored.metrics() == o.metrics()
    with pytest.raises(OptrunError, match="solver: unknown 'lu'"):
        solve_z(g, x, y, y, "lu")
    with pytest.raises(OptrunError, match="oracle 'calls'"):
        o.add("calls")
