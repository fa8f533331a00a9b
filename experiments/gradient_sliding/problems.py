"""The composite problem min_x Psi(x) = f(x) + h(x) + chi(x) of the gradient-sliding papers, as a 1-D
total-variation regression: f(x) = 1/2 ||Ax - b||^2 (smooth, L = ||A||^2: the expensive oracle, two
products with A per gradient), h(x) = lam ||Dx||_1 with D the (n-1) x n forward difference (nonsmooth,
M = ||h'|| <= 2 lam sqrt(n-1): its subgradient costs O(n)), chi(x) = (mu/2) ||x||^2 (simple and
mu-strongly convex: the only strong convexity the methods are told about).

The reference optimum Psi* comes from a long, accurate solve of the dual, not from cvxpy (which is not
a dependency of optrun): lam ||Dx||_1 = max_{|y|_inf <= lam} <y, Dx>, so with Q = A^T A + mu I and
c = A^T b the dual is the box-constrained quadratic max_y -1/2 (c - D^T y)^T Q^{-1} (c - D^T y) + ||b||^2/2,
solved by FISTA with projection onto the box; x(y) = Q^{-1}(c - D^T y). The primal-dual gap
Psi(x(y)) - dual(y) certifies the result (it is logged as `ref_dual_gap`).
"""
from __future__ import annotations

import math

import numpy as np

from runner.errors import OptrunError
from runner.seeding import stream_seed
from runner.trainers.solver import Problem


def diff(x: np.ndarray) -> np.ndarray:
    """D x, the forward differences x_{i+1} - x_i."""
    return x[1:] - x[:-1]


def diff_t(y: np.ndarray) -> np.ndarray:
    """D^T y for y of length n-1."""
    out = np.zeros(y.size + 1)
    out[:-1] -= y
    out[1:] += y
    return out


class TVRegression(Problem):
    """Random instance: A with N(0, 1/m) entries, a piecewise-constant signal with `pieces` levels ~ N(0, 1),
    b = A x_true + noise * N(0, 1). Oracles count themselves (`grad_calls`, `subgrad_calls`)."""

    def __init__(self, m: int = 2000, n: int = 200, lam: float = 0.2, mu: float = 0.1, pieces: int = 8,
                 noise: float = 0.1, subgrad_noise: float = 0.0, ref_iters: int = 200000, ref_tol: float = 1e-11):
        if m <= 0 or n <= 1 or lam < 0 or mu <= 0:
            raise OptrunError(f"problem: need m > 0, n > 1, lam >= 0, mu > 0 (got m={m}, n={n}, lam={lam}, mu={mu})")
        self.m, self.n, self.lam, self.mu, self.pieces, self.noise = m, n, lam, mu, pieces, noise
        self.subgrad_noise, self.ref_iters, self.ref_tol = subgrad_noise, ref_iters, ref_tol
        self._ref: dict | None = None

    def setup(self, state) -> None:
        rng = np.random.default_rng(stream_seed(state.seed, "data"))
        self.A = rng.standard_normal((self.m, self.n)) / math.sqrt(self.m)
        cuts = np.sort(rng.choice(np.arange(1, self.n), self.pieces - 1, replace=False))
        self.x_true = np.repeat(rng.standard_normal(self.pieces), np.diff(np.r_[0, cuts, self.n]))
        self.b = self.A @ self.x_true + self.noise * rng.standard_normal(self.m)
        self.L = float(np.linalg.eigvalsh(self.A.T @ self.A)[-1])
        self.M = 2.0 * self.lam * math.sqrt(self.n - 1)
        self.noise_rng = np.random.default_rng(stream_seed(state.seed, "solver"))
        self.x0 = np.zeros(self.n)
        self.grad_calls = self.subgrad_calls = 0
        self.psi_star = self._solve_reference()["ref_psi_star"]
        self.gap0 = self.psi(self.x0) - self.psi_star

    # --- oracles (counted) ---------------------------------------------------------------------------
    def grad_f(self, x: np.ndarray) -> np.ndarray:
        self.grad_calls += 1
        return self.A.T @ (self.A @ x - self.b)

    def subgrad_h(self, x: np.ndarray) -> np.ndarray:
        """lam D^T sign(Dx), plus N(0, subgrad_noise^2 / n) per coordinate when the oracle is stochastic."""
        self.subgrad_calls += 1
        g = self.lam * diff_t(np.sign(diff(x)))
        if self.subgrad_noise:
            g = g + self.subgrad_noise / math.sqrt(self.n) * self.noise_rng.standard_normal(self.n)
        return g

    # --- evaluation (not counted) --------------------------------------------------------------------
    def psi(self, x: np.ndarray) -> float:
        r = self.A @ x - self.b
        return float(0.5 * r @ r + self.lam * np.abs(diff(x)).sum() + 0.5 * self.mu * x @ x)

    def rel_gap(self, x: np.ndarray) -> float:
        """(Psi(x) - Psi*) / (Psi(x0) - Psi*): 1 at the start, 0 at the optimum."""
        return (self.psi(x) - self.psi_star) / self.gap0

    def counters(self) -> dict:
        return {"grad_f_calls": float(self.grad_calls), "subgrad_calls": float(self.subgrad_calls)}

    # --- reference ---------------------------------------------------------------------------------
    def _solve_reference(self) -> dict:
        if self._ref is None:
            self._ref = dual_reference(self.A, self.b, self.lam, self.mu, self.ref_iters, self.ref_tol)
        return self._ref

    def reference(self) -> dict:
        if self._ref is None:  # column names only (called before setup)
            return {"ref_psi_star": math.nan, "ref_dual_gap": math.nan, "ref_iters": math.nan}
        return dict(self._ref)


def dual_reference(A: np.ndarray, b: np.ndarray, lam: float, mu: float, iters: int, tol: float) -> dict:
    """Psi* by FISTA (with gradient restarts) on the box-constrained dual; stops once the primal-dual gap
    is <= tol * max(1, |Psi*|)."""
    n = A.shape[1]
    Q = A.T @ A + mu * np.eye(n)
    Q_inv = np.linalg.inv(Q)  # n x n, reused at every iteration
    solve = Q_inv.__matmul__
    c, bb = A.T @ b, 0.5 * float(b @ b)
    step = np.linalg.eigvalsh(Q)[0] / 4.0  # 1 / L_dual, L_dual = ||D||^2 / lambda_min(Q) <= 4 / lambda_min(Q)

    def primal(x):
        r = A @ x - b
        return float(0.5 * r @ r + lam * np.abs(diff(x)).sum() + 0.5 * mu * x @ x)

    def dual(y):
        r = c - diff_t(y)
        return float(-0.5 * r @ solve(r) + bb)

    y = z = np.zeros(n - 1)
    t, gap, best = 1.0, math.inf, (math.inf, None)
    for k in range(iters):
        x_z = solve(c - diff_t(z))
        y_new = np.clip(z + step * diff(x_z), -lam, lam)  # ascent on the dual: its gradient is D x(y)
        t_new = 0.5 * (1 + math.sqrt(1 + 4 * t * t))
        if (y_new - y) @ (z - y_new) > 0:  # restart the momentum when it points uphill
            t_new, z = 1.0, y_new
        else:
            z = y_new + (t - 1) / t_new * (y_new - y)
        y, t = y_new, t_new
        if k % 50 == 0 or k == iters - 1:
            x = solve(c - diff_t(y))
            p, d = primal(x), dual(y)
            gap = p - d
            best = min(best, (p, k), key=lambda v: v[0])
            if gap <= tol * max(1.0, abs(p)):
                break
    return {"ref_psi_star": best[0], "ref_dual_gap": float(gap), "ref_iters": float(k + 1)}
