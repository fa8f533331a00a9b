"""Gradient-normalized-smoothness Newton (Semenov, Jaggi, Doikov; Algorithm 1 of the paper).

    x+ = x - (H(x) + (||g||_* / gamma) B)^-1 g,   ||g||_* = (g^T B^-1 g)^1/2,

with H the exact Hessian, an approximation of it (weighted Gauss-Newton / Fisher), or none (then the
step is the B-preconditioned gradient step of length gamma in the dual norm; B = I gives the plain
normalized gradient method). gamma adapts: a trial step is accepted when
f(x) - f(x+) >= ||g(x+)||_*^2 / (8 lambda) with lambda = ||g||_* / (gamma + eps), and gamma doubles;
otherwise gamma halves and the step is retried (at most `max_search` times; then the last trial is
taken, as in the authors' code).
"""
from __future__ import annotations

import torch

from experiments.gn_smoothness.problems import check_kind
from runner.errors import OptrunError
from runner.trainers.solver import Algorithm

METRICS = ("data", "identity")


class GradNormSmooth(Algorithm):
    def __init__(self, name: str = "gns", hessian: str = "exact", metric: str = "data", gamma0: float = 1.0,
                 gamma_min: float = 1e-9, eps: float = 1e-8, max_search: int = 40, iters: int | None = None):
        if metric not in METRICS:
            raise OptrunError(f"algorithm.metric: unknown '{metric}' (expected one of: {', '.join(METRICS)})")
        if not gamma0 > 0:
            raise OptrunError(f"algorithm.gamma0: expected a positive number, got {gamma0}")
        self.name, self.hessian, self.metric = name, check_kind(hessian), metric
        self.gamma0, self.gamma_min, self.eps, self.max_search, self.iters = gamma0, gamma_min, eps, max_search, iters

    def setup(self, problem, state) -> None:
        problem.check(self.hessian)
        self.x = problem.x0.clone()
        self.gamma = self.gamma0
        self.grad_calls, self.factorizations = 1, 0
        self.g = problem.grad(self.x)
        self.f = problem.f(self.x)

    def _solve_B(self, problem, g):
        return problem.solve_B(g) if self.metric == "data" else g

    def _dual_norm(self, problem, g):
        return problem.dual_norm(g) if self.metric == "data" else g.norm()

    def _direction(self, problem, H, g, lam):
        """-(H + lam B)^-1 g; with H = None a solve with B's factor (no new factorization)."""
        if H is None:
            return -self._solve_B(problem, g) / lam
        B = problem.B if self.metric == "data" else torch.eye(len(g), dtype=g.dtype, device=g.device)
        L, info = torch.linalg.cholesky_ex(H + lam * B)
        if int(info):
            return None
        self.factorizations += 1
        return -torch.cholesky_solve(g[:, None], L)[:, 0]

    def step(self, problem, state) -> dict:
        H = None if self.hessian == "none" else problem.hessian(self.x, self.hessian)
        g_norm = self._dual_norm(problem, self.g)
        tries, x_new = 0, None
        for tries in range(1, self.max_search + 1):  # noqa: B007 (logged after the loop)
            lam = g_norm / (self.gamma + self.eps)
            delta = self._direction(problem, H, self.g, lam)
            if delta is None:  # H + lam B not positive definite: regularize more
                self.gamma /= 2
                continue
            x_new = self.x + delta
            f_new, g_new = problem.f(x_new), problem.grad(x_new)
            self.grad_calls += 1
            accepted = self.f - f_new >= self._dual_norm(problem, g_new) ** 2 / (8 * lam)
            if accepted:
                self.gamma = max(2 * self.gamma, self.gamma_min)
                break
            self.gamma /= 2
        if x_new is None:
            raise OptrunError(f"algorithm: H + lambda B was never positive definite in {self.max_search} tries "
                              f"(hessian={self.hessian})")
        self.x, self.f, self.g = x_new, f_new, g_new
        return {"loss": self.f - problem.f_star, "grad_norm": self._dual_norm(problem, self.g),
                "gamma": self.gamma, "lambda": float(lam), "search_steps": float(tries),
                "grad_calls": float(self.grad_calls), "factorizations": float(self.factorizations)}

    def state_dict(self) -> dict:
        return {"x": self.x, "f": self.f, "g": self.g, "gamma": self.gamma, "grad_calls": self.grad_calls,
                "factorizations": self.factorizations}

    def load_state_dict(self, sd: dict) -> None:
        self.x, self.f, self.g, self.gamma = sd["x"], sd["f"], sd["g"], sd["gamma"]
        self.grad_calls, self.factorizations = sd["grad_calls"], sd["factorizations"]
