"""Objectives for the gradient-normalized-smoothness experiments, with exact and approximate Hessians.

Each problem gives f, its gradient, `hessian(x, kind)` (exact, or the approximation the paper pairs
with it: weighted Gauss-Newton for softmax / logistic, the Fisher term for p-th power residuals), the metric
B of the dual norm ||g||_* = (g^T B^-1 g)^1/2, a start x0 and the optimal value f* (exact by
construction, or from a Newton solve to machine precision at setup).
"""
from __future__ import annotations

import torch

from runner.errors import OptrunError
from runner.trainers.solver import Problem

KINDS = ("exact", "weighted_gn", "fisher")


class SmoothProblem(Problem):
    B: torch.Tensor
    x0: torch.Tensor
    f_star: float

    def f(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def grad(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    approximations: tuple[str, ...] = ()

    def hessian(self, x: torch.Tensor, kind: str) -> torch.Tensor:
        raise NotImplementedError

    def check(self, kind: str) -> None:
        if kind not in ("exact", "none") + self.approximations:
            raise OptrunError(f"algorithm.hessian: {type(self).__name__} offers exact, none"
                              + "".join(f", {k}" for k in self.approximations) + f", not '{kind}'")

    def finish_setup(self, device) -> None:
        """Factor B once (dual norms and B-preconditioned steps reuse it)."""
        self.B = self.B.to(device)
        self.B_chol = torch.linalg.cholesky(self.B)

    def solve_B(self, g: torch.Tensor) -> torch.Tensor:
        return torch.cholesky_solve(g[:, None], self.B_chol)[:, 0]

    def dual_norm(self, g: torch.Tensor) -> torch.Tensor:
        return (g @ self.solve_B(g)).clamp_min(0).sqrt()


class LogSumExp(SmoothProblem):
    """f(x) = mu log sum_i exp((<a_i, x> - b_i) / mu), a_i, b_i ~ U[-1, 1], rows re-centred by the
    gradient at 0 so that x* = 0 and f* = f(0) exactly (as in the authors' notebook); x0 = 1, B = A^T A
    with the original rows. Exact Hessian (A^T diag(pi) A - g g^T) / mu; weighted Gauss-Newton drops
    the rank-one term: A^T diag(pi) A / mu, with pi = softmax((Ax - b) / mu)."""

    approximations = ("weighted_gn",)

    def __init__(self, n: int = 100, m: int = 100, mu: float = 1.0):
        if n < 1 or m < 1 or not mu > 0:
            raise OptrunError(f"problem: expected n, m >= 1 and mu > 0, got n={n}, m={m}, mu={mu}")
        self.n, self.m, self.mu = int(n), int(m), float(mu)

    def setup(self, state) -> None:
        g = state.generators["data"]
        kw = dict(generator=g, dtype=torch.float64, device=g.device)
        A = torch.rand(self.m, self.n, **kw) * 2 - 1
        self.b = (torch.rand(self.m, **kw) * 2 - 1).to(state.device)
        A = A.to(state.device)
        self.B = A.T @ A
        self.A = A
        self.A = A - self.grad(torch.zeros(self.n, dtype=torch.float64, device=state.device))
        self.x0 = torch.ones(self.n, dtype=torch.float64, device=state.device)
        self.f_star = float(self.f(torch.zeros_like(self.x0)))
        self.finish_setup(state.device)

    def _softmax(self, x):
        return torch.softmax((self.A @ x - self.b) / self.mu, 0)

    def f(self, x):
        return self.mu * torch.logsumexp((self.A @ x - self.b) / self.mu, 0)

    def grad(self, x):
        return self.A.T @ self._softmax(x)

    def hessian(self, x, kind):
        pi = self._softmax(x)
        H = (self.A.T * pi) @ self.A / self.mu
        if kind == "exact":
            g = self.A.T @ pi
            H = H - torch.outer(g, g) / self.mu
        return H


class Logistic(SmoothProblem):
    """L2-regularized logistic regression on a scikit-learn data set (standardized features and a
    bias): f(w) = mean_i log(1 + exp(-y_i <x_i, w>)) + reg/2 |w|^2. Exact Hessian X^T diag(s(1-s)) X / N
    + reg I with s = sigmoid(-y <x, w>); weighted Gauss-Newton (the softmax one for two classes)
    X^T diag(s) X / N + reg I; B = X^T X / N + reg I. f* from Newton's method to machine precision."""

    approximations = ("weighted_gn",)

    DATASETS = ("breast_cancer", "digits_binary")

    def __init__(self, dataset: str = "breast_cancer", reg: float = 1e-3):
        if dataset not in self.DATASETS:
            raise OptrunError(f"problem.dataset: unknown '{dataset}' (expected one of: {', '.join(self.DATASETS)})")
        if not reg > 0:
            raise OptrunError(f"problem.reg: expected a positive number, got {reg}")
        self.dataset, self.reg = dataset, float(reg)

    def _load(self):
        from sklearn import datasets

        if self.dataset == "breast_cancer":
            X, y = datasets.load_breast_cancer(return_X_y=True)
        else:  # digits, even vs odd
            X, y = datasets.load_digits(return_X_y=True)
            y = y % 2
        return X, 2.0 * y - 1.0

    def setup(self, state) -> None:
        X, y = self._load()
        X = torch.as_tensor(X, dtype=torch.float64)
        X = (X - X.mean(0)) / X.std(0).clamp_min(1e-12)
        self.X = torch.cat([X, torch.ones(len(X), 1, dtype=torch.float64)], 1).to(state.device)
        self.y = torch.as_tensor(y, dtype=torch.float64, device=state.device)
        d = self.X.shape[1]
        self.eye = torch.eye(d, dtype=torch.float64, device=state.device)
        self.B = self.X.T @ self.X / len(self.y) + self.reg * self.eye
        self.x0 = torch.zeros(d, dtype=torch.float64, device=state.device)
        self.f_star = float(self.f(self.newton_solution()))
        self.finish_setup(state.device)

    def _margins(self, w):
        return -self.y * (self.X @ w)

    def f(self, w):
        return torch.nn.functional.softplus(self._margins(w)).mean() + 0.5 * self.reg * w @ w

    def grad(self, w):
        s = torch.sigmoid(self._margins(w))
        return -(self.X.T @ (s * self.y)) / len(self.y) + self.reg * w

    def hessian(self, w, kind):
        s = torch.sigmoid(self._margins(w))
        weights = s * (1 - s) if kind == "exact" else s
        return (self.X.T * weights) @ self.X / len(self.y) + self.reg * self.eye

    def newton_solution(self, tol: float = 1e-13, max_iter: int = 100) -> torch.Tensor:
        """Damped Newton from x0 until |grad| <= tol: the exact reference for f*."""
        w = self.x0.clone()
        for _ in range(max_iter):
            g = self.grad(w)
            if g.norm() <= tol:
                break
            step = torch.linalg.solve(self.hessian(w, "exact"), g)
            t = 1.0
            while self.f(w - t * step) > self.f(w) - 0.25 * t * (g @ step) and t > 1e-10:
                t /= 2
            w = w - t * step
        return w


class PowerResidual(SmoothProblem):
    """f(x) = ||Ax - b||^p / p with A (n x m), b ~ U[-1, 1] and m > n, so that Ax = b is solvable and
    f* = 0; x0 = 1, B = A^T A + 1e-8 I. Exact Hessian |u|^(p-2) A^T A + (p-2) |u|^(p-4) (A^T u)(A^T u)^T
    with u = Ax - b; the Fisher-term approximation keeps only the rank-one second part."""

    approximations = ("fisher",)

    def __init__(self, n: int = 100, m: int = 200, p: float = 4.0):
        if m <= n or p < 2:
            raise OptrunError(f"problem: expected m > n (a solvable system) and p >= 2, got n={n}, m={m}, p={p}")
        self.n, self.m, self.p = int(n), int(m), float(p)

    def setup(self, state) -> None:
        g = state.generators["data"]
        kw = dict(generator=g, dtype=torch.float64, device=g.device)
        self.A = (torch.rand(self.n, self.m, **kw) * 2 - 1).to(state.device)
        self.b = (torch.rand(self.n, **kw) * 2 - 1).to(state.device)
        self.B = self.A.T @ self.A + 1e-8 * torch.eye(self.m, dtype=torch.float64, device=state.device)
        self.x0 = torch.ones(self.m, dtype=torch.float64, device=state.device)
        self.f_star = 0.0
        self.finish_setup(state.device)

    def f(self, x):
        return (self.A @ x - self.b).norm() ** self.p / self.p

    def grad(self, x):
        u = self.A @ x - self.b
        return u.norm() ** (self.p - 2) * (self.A.T @ u)

    def hessian(self, x, kind):
        u = self.A @ x - self.b
        r, Ju = u.norm(), self.A.T @ u
        H = (self.p - 2) * r ** (self.p - 4) * torch.outer(Ju, Ju)
        return H + r ** (self.p - 2) * self.A.T @ self.A if kind == "exact" else H


def check_kind(kind: str) -> str:
    if kind not in KINDS + ("none",):
        raise OptrunError(f"algorithm.hessian: unknown '{kind}' (expected one of: {', '.join(KINDS + ('none',))})")
    return kind

