"""Log-domain Sinkhorn (the baseline) and Sinkhorn-Newton-Sparse (Tang et al., ICLR 2024).

Both act on the dual potentials (x, y) of `problems.EntropicOT`. One Sinkhorn iteration is a column
then a row scaling, in the same order as POT's `sinkhorn_log` (so that the iterates coincide with
POT's, which the tests check). SNS runs `n_sinkhorn` such iterations, then Newton ascent on the
dual: the Hessian -eta [[diag(P1), P], [P^T, diag(P^T 1)]] is sparsified to the largest
ceil(lambda n^2) entries of P (lambda = keep_per_row / n; the diagonal blocks are kept whole), the
Newton system is solved by conjugate gradients, and the step is chosen by backtracking on f.
"""
from __future__ import annotations

import math

import torch

from runner.errors import OptrunError
from runner.trainers.solver import Algorithm


def sinkhorn_iteration(problem, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Match the column marginals, then the row marginals (log domain: exact at any eta)."""
    eta = problem.eta
    y = (problem.log_c + 1.0 - torch.logsumexp(problem.neg_eta_C + eta * x[:, None], dim=0)) / eta
    x = (problem.log_r + 1.0 - torch.logsumexp(problem.neg_eta_C + eta * y[None, :], dim=1)) / eta
    return x, y


class Sinkhorn(Algorithm):
    """Log-domain Sinkhorn from zero potentials; one step = one column and one row scaling."""

    def __init__(self, name: str = "sinkhorn", iters: int | None = None):
        self.name, self.iters = name, iters
        self.x = self.y = None

    def setup(self, problem, state) -> None:
        self.x = torch.zeros(problem.C.shape[0], dtype=torch.float64, device=state.device)
        self.y = torch.zeros(problem.C.shape[1], dtype=torch.float64, device=state.device)

    def step(self, problem, state) -> dict:
        self.x, self.y = sinkhorn_iteration(problem, self.x, self.y)
        return {**problem.evaluate(self.x, self.y), "newton": 0.0}

    def state_dict(self) -> dict:
        return {"x": self.x, "y": self.y}

    def load_state_dict(self, sd: dict) -> None:
        self.x, self.y = sd["x"], sd["y"]


def conjugate_gradient(matvec, b: torch.Tensor, tol: float, max_iter: int) -> tuple[torch.Tensor, int]:
    """Solve A z = b for symmetric positive (semi)definite A; stop at ||r|| <= tol ||b||."""
    z = torch.zeros_like(b)
    r = b.clone()
    p = r.clone()
    rr = r @ r
    stop = (tol * b.norm()) ** 2
    for k in range(1, max_iter + 1):
        Ap = matvec(p)
        alpha = rr / (p @ Ap)
        z += alpha * p
        r -= alpha * Ap
        rr_new = r @ r
        if rr_new <= stop:
            return z, k
        p = r + (rr_new / rr) * p
        rr = rr_new
    return z, max_iter


class SparseHessian:
    """-Hessian of the dual with P sparsified to its `keep` largest entries (diagonal blocks exact).

    Applied matrix-free: (a, b) -> eta (P1 * a + P_s b, P^T 1 * b + P_s^T a), O(n + keep) per product.
    """

    def __init__(self, P: torch.Tensor, eta: float, keep: int):
        n, m = P.shape
        vals, flat = torch.topk(P.flatten(), min(keep, n * m))
        self.rows, self.cols, self.vals = flat // m, flat % m, eta * vals
        self.row_diag, self.col_diag = eta * P.sum(1), eta * P.sum(0)
        self.n, self.keep = n, len(vals)

    def __call__(self, v: torch.Tensor) -> torch.Tensor:
        a, b = v[:self.n], v[self.n:]
        out_a = (self.row_diag * a).index_add_(0, self.rows, self.vals * b[self.cols])
        out_b = (self.col_diag * b).index_add_(0, self.cols, self.vals * a[self.rows])
        return torch.cat([out_a, out_b])


def dual_increase(problem, P: torch.Tensor, dx: torch.Tensor, dy: torch.Tensor, t: float) -> torch.Tensor:
    """f(x + t dx, y + t dy) - f(x, y), computed without cancellation (expm1), so that the line
    search still sees the true increase when it is far below f's rounding error."""
    grow = torch.expm1(problem.eta * t * (dx[:, None] + dy[None, :]))
    return -(P * grow).sum() / problem.eta + t * (problem.r @ dx + problem.c @ dy)


class SinkhornNewtonSparse(Sinkhorn):
    def __init__(self, name: str = "sns", iters: int | None = None, n_sinkhorn: int = 20,
                 keep_per_row: float = 2.0, cg_tol: float = 1e-12, cg_max_iter: int | None = None,
                 armijo: float = 1e-4, max_backtracks: int = 40):
        super().__init__(name, iters)
        if n_sinkhorn < 0 or not keep_per_row > 0 or not 0 < cg_tol < 1:
            raise OptrunError("algorithm: expected n_sinkhorn >= 0, keep_per_row > 0 and 0 < cg_tol < 1 "
                              f"(got {n_sinkhorn}, {keep_per_row}, {cg_tol})")
        self.n_sinkhorn, self.keep_per_row, self.cg_tol = n_sinkhorn, keep_per_row, cg_tol
        self.cg_max_iter, self.armijo, self.max_backtracks = cg_max_iter, armijo, max_backtracks
        self.iteration = 0

    def setup(self, problem, state) -> None:
        super().setup(problem, state)
        n, m = problem.C.shape
        self.keep = math.ceil(self.keep_per_row / n * n * m)  # ceil(lambda n m), lambda = keep_per_row / n
        self.iteration = 0

    def columns(self, problem) -> list[str]:
        """The Newton steps' metrics, first logged after the `n_sinkhorn` warm-start steps."""
        return ["step_size", "cg_iters", "backtracks", "kept"]

    def step(self, problem, state) -> dict:
        self.iteration += 1
        if self.iteration <= self.n_sinkhorn:
            return super().step(problem, state)
        n = problem.C.shape[0]
        P = problem.log_plan(self.x, self.y).exp()
        grad = torch.cat([problem.r - P.sum(1), problem.c - P.sum(0)])
        hess = SparseHessian(P, problem.eta, self.keep)
        delta, cg_iters = conjugate_gradient(hess, grad, self.cg_tol, self.cg_max_iter or 10 * len(grad))
        dx, dy = delta[:n], delta[n:]
        slope = grad @ delta  # > 0: an ascent direction, as the sparsified matrix is positive definite
        t, backtracks = 1.0, 0
        while dual_increase(problem, P, dx, dy, t) < self.armijo * t * slope and backtracks < self.max_backtracks:
            t, backtracks = t / 2, backtracks + 1
        if backtracks == self.max_backtracks:
            t = 0.0  # no ascent found: keep the iterate (the run then stalls at its current error)
        self.x, self.y = self.x + t * dx, self.y + t * dy
        return {**problem.evaluate(self.x, self.y), "newton": 1.0, "step_size": t, "cg_iters": float(cg_iters),
                "backtracks": float(backtracks), "kept": float(hess.keep)}

    def state_dict(self) -> dict:
        return {**super().state_dict(), "iteration": self.iteration}

    def load_state_dict(self, sd: dict) -> None:
        super().load_state_dict(sd)
        self.iteration = sd["iteration"]
