"""LV-HBA (Yao, Yu, Zeng, Zhang, ICLR 2024): a single-loop, Hessian-free method for bilevel problems
whose lower-level (LL) constraints couple the upper-level (UL) variable x and the LL variable y.

The LL is replaced by its proximal Lagrangian value function
    v(x, y, z) = min_theta max_{lambda >= 0} f(x, theta) + lambda^T g(x, theta) + |theta - y|^2 / (2 gamma1)
                                              - |lambda - z|^2 / (2 gamma2),
and LV-HBA runs, at iteration k (c_k = c0 (k + 1)^p, 0 < p < 1/2, weighs the UL objective down over time),
    theta  <- theta - eta [grad_y f(x, theta) + grad_y g(x, theta)^T lambda + (theta - y) / gamma1]
    lambda <- max(0, lambda + eta [g(x, theta) - (lambda - z) / gamma2])      (both from the old theta, lambda)
    d_x = grad_x F(x, y) / c_k + grad_x f(x, y) - grad_x f(x, theta) - grad_x g(x, theta)^T lambda
    d_y = grad_y F(x, y) / c_k + grad_y f(x, y) - (y - theta) / gamma1       (the new theta, lambda)
    d_z = (z - lambda) / gamma2
    (x, y) <- Proj_C[(x, y) - alpha (d_x, d_y)],   z <- max(0, z - beta d_z),
with C = {(x, y) : g(x, y) <= 0}. Only first derivatives: per iteration one UL gradient (`grad_f`) and
three gradients of the LL Lagrangian f + lambda^T g (`grad_g`), counted in `self.oracles`; no
Hessian or Hessian-vector product is ever formed. The equations are the paper's (as the task's note
summarises them from the official code); the official toy script diverges as released, so nothing is
taken from it but the form of the updates.

The trainer's components `upper` and `lower` hold x and y (modules `Vector`, each stepped by its own
optimizer: SGD with lr 1 on the step alpha d that this trainer computes); theta, lambda, z are the
trainer's state (checkpointed with it).
"""
from __future__ import annotations

import torch

from experiments.lv_hba.problems import CoupledQuadratic, SVMHyperparameters
from runner.errors import OptrunError
from runner.trainers.base import TrainState
from runner.trainers.bilevel import BilevelTrainer

PROBLEMS = {"coupled_quadratic": CoupledQuadratic, "svm": SVMHyperparameters}


def _grad(fn, args: tuple, wrt: tuple[int, ...]) -> tuple[torch.Tensor, ...]:
    """Gradients of fn(*args) in the arguments `wrt`, by plain autograd (a quarter of torch.func.grad's
    overhead on these small vectors, which is most of an iteration's cost; the values are the same)."""
    leaves = [a.detach().requires_grad_(i in wrt) for i, a in enumerate(args)]
    grads = torch.autograd.grad(fn(*leaves), [leaves[i] for i in wrt], allow_unused=True)
    return tuple(torch.zeros_like(args[i]) if gr is None else gr for i, gr in zip(wrt, grads))  # F may not use x


def lvhba_step(p, x, y, theta, lam, z, k: int, alpha: float, beta: float, eta: float, gamma1: float,
               gamma2: float, c0: float, power: float, oracles=None):
    """One LV-HBA iteration on problem `p` (F, f, g, project); returns (x, y, theta, lambda, z, c_k)."""
    def lagrangian(x_, th_, lam_):
        return p.f(x_, th_) + (lam_ * p.g(x_, th_)).sum()

    ck = c0 * (k + 1) ** power
    (gx_old,) = _grad(lagrangian, (x, theta, lam), (1,))
    g_old = p.g(x, theta)
    theta = theta - eta * (gx_old + (theta - y) / gamma1)
    lam = torch.clamp(lam + eta * (g_old - (lam - z) / gamma2), min=0)
    (lx_theta,) = _grad(lagrangian, (x, theta, lam), (0,))
    fx_y, fy_y = _grad(p.f, (x, y), (0, 1))
    Fx, Fy = _grad(p.F, (x, y), (0, 1))
    if oracles is not None:
        oracles.add("grad_g", 3)
        oracles.add("grad_f")
    dx = Fx / ck + fx_y - lx_theta
    dy = Fy / ck + fy_y - (y - theta) / gamma1
    x, y = p.project(x - alpha * dx, y - alpha * dy)
    z = torch.clamp(z - beta * (z - lam) / gamma2, min=0)
    return x, y, theta, lam, z, ck


class LVHBA(BilevelTrainer):
    """LV-HBA on a problem of `problems.py` (`problem`: coupled_quadratic, of size `dim`, or svm on
    `dataset`, read from `data_dir`, or random data of its shape with `stand_in`). Logged every step: `loss` = F(x, y) (+inf once the iterates blow up), the
    constraint violation max(0, max_i g_i(x, y)) (`violation`), the LV gap f(x, y) - f(x, theta)
    (`lv_gap`), |lambda|, c_k, what the problem reports (toy: relative error to x*, Phi(x) - Phi*, |y - y*(x)|;
    SVM: validation and test accuracy and loss) and the cumulative oracle counts."""

    def __init__(self, steps: int = 10000, problem: str = "coupled_quadratic", dim: int = 50,
                 dataset: str = "breast_cancer", data_dir: str | None = None, stand_in: bool = False,
                 alpha: float = 0.01, beta: float = 0.01, eta: float = 0.01, gamma1: float = 1.0, gamma2: float = 1.0,
                 c0: float = 1.0, power: float = 0.3, diverge_above: float = 1e6):
        super().__init__(steps, diverge_above)
        if problem not in PROBLEMS:
            raise OptrunError(f"trainer.problem: unknown '{problem}' (expected one of: {', '.join(PROBLEMS)})")
        if min(alpha, beta, eta, gamma1, gamma2, c0) <= 0 or not 0 <= power < 1:
            raise OptrunError("trainer: alpha, beta, eta, gamma1, gamma2 and c0 must be positive and 0 <= power < 1")
        self.problem = (CoupledQuadratic(dim) if problem == "coupled_quadratic"
                        else SVMHyperparameters(dataset, data_dir, stand_in))
        self.hyper = dict(alpha=alpha, beta=beta, eta=eta, gamma1=gamma1, gamma2=gamma2, c0=c0, power=power)
        self.theta = self.lam = self.z = None

    def setup(self, state: TrainState, x: torch.Tensor, y: torch.Tensor) -> None:
        p = self.problem
        p.setup(state.generators["data"], dtype=torch.float64)
        if x.numel() != p.dim_x or y.numel() != p.dim_y:
            raise OptrunError(f"components: this problem needs upper.module.dim={p.dim_x} and lower.module.dim={p.dim_y} "
                              f"(got {x.numel()} and {y.numel()})")
        for v in (x, y):  # float64 throughout (the feasibility claim is at 1e-8); SGD keeps no state to cast
            v.data = v.data.to(torch.float64)
        x0, y0, lam0 = p.init(torch.float64)
        with torch.no_grad():
            if self.theta is None:  # a fresh run (a resume restores the state after setup)
                x.copy_(x0)
                y.copy_(y0)
        if self.theta is None:
            self.theta, self.lam, self.z = y0.clone(), lam0.clone(), lam0.clone()

    def step(self, state: TrainState) -> dict:
        upper, lower = state.modules["upper"].value, state.modules["lower"].value
        x, y = upper.detach(), lower.detach()
        nx, ny, self.theta, self.lam, self.z, ck = lvhba_step(self.problem, x, y, self.theta, self.lam, self.z,
                                                              state.step, **self.hyper, oracles=self.oracles)
        for name, param, new in (("upper", upper, nx), ("lower", lower, ny)):
            opt = state.optimizers[name]
            opt.zero_grad(set_to_none=True)
            param.grad = param.detach() - new  # SGD with lr 1 lands exactly on the projected point
            opt.step()
            with torch.no_grad():
                param.copy_(new)  # removes the last-bit rounding of old - (old - new)
        p = self.problem
        with torch.no_grad():
            loss = p.F(nx, ny)
            out = {"loss": self.guarded(loss, nx, ny, self.theta, self.lam), "F": loss,
                   "violation": torch.clamp(p.g(nx, ny).max(), min=0), "lv_gap": p.f(nx, ny) - p.f(nx, self.theta),
                   "lambda_norm": self.lam.norm(), "z_norm": self.z.norm(), "ck": ck}
            out.update(p.report(nx, ny))
        return {**out, **self.oracles.metrics()}

    def extra_state(self) -> dict:
        return {"theta": self.theta, "lam": self.lam, "z": self.z}

    def load_extra_state(self, sd: dict) -> None:
        self.theta, self.lam, self.z = sd.get("theta"), sd.get("lam"), sd.get("z")
