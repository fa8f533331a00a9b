"""The methods compared: the proximal subgradient method and Lan's gradient sliding, restarted in phases
for strong convexity (M-GS). One optrun step = one outer iteration = one evaluation of grad f; the
subgradients of h spent inside it (the prox-sliding inner loop) are counted by the problem's oracles,
and the cumulative counts are the x-axes of the figures and claims.

The paper's own restart-free methods (RF-SGS, RF-ASGS) are NOT here: their schedules (beta_k, gamma_k,
T_k) are in Sections 2-3 of arXiv 2602.04161, which could not be read (see README.md). Nothing below
guesses them.

Gradient sliding (G. Lan, Gradient sliding for composite optimization, Math. Program. 159, 2016; the
convex-case parameters of its Corollary 2.2), with V(x, u) = ||u - x||^2 / 2:
  x_lo = (1 - gamma_k) x_bar + gamma_k x,   g = grad f(x_lo)                     (one grad f)
  prox-sliding, u_0 = u~_0 = x, t = 1..T_k:                                        (T_k subgradients)
    u_t = argmin_u <g + h'(u_{t-1}), u> + beta_k V(x, u) + beta_k p_t V(u_{t-1}, u) + chi(u)
    u~_t = (1 - theta_t) u~_{t-1} + theta_t u_t
  x = u_T,  x_bar = (1 - gamma_k) x_bar + gamma_k u~_T
  gamma_k = 2/(k+1), beta_k = 2L/k, p_t = t/2, theta_t = 2(t+1)/(t(t+3)), T_k = ceil(M^2 N k^2 / (D L^2)).
With chi = (mu/2)||u||^2 the inner argmin is closed form:
  u_t = (beta x + beta p_t u_{t-1} - g - h'(u_{t-1})) / (beta (1 + p_t) + mu).
"""
from __future__ import annotations

import math

import numpy as np
import torch

from runner.errors import OptrunError
from runner.trainers.solver import Algorithm


def prox_sliding(problem, g: np.ndarray, x: np.ndarray, beta: float, T: int) -> tuple[np.ndarray, np.ndarray]:
    """Lan's PS procedure for chi = (mu/2)||.||^2: returns (u_T, the theta-weighted average u~_T)."""
    u, u_avg, mu = x.copy(), x.copy(), problem.mu
    anchor = beta * x - g
    for t in range(1, T + 1):
        p, theta = 0.5 * t, 2.0 * (t + 1) / (t * (t + 3))
        u = (anchor + beta * p * u - problem.subgrad_h(u)) / (beta * (1.0 + p) + mu)
        u_avg = (1.0 - theta) * u_avg + theta * u
    return u, u_avg


class _Method(Algorithm):
    """Shared bookkeeping: the output point, the metrics every method logs, resume."""

    name = "method"
    _state: tuple[str, ...] = ()

    def __init__(self, name: str | None = None, iters: int | None = None):
        self.name, self.iters = name or self.name, iters
        self.k = 0

    def metrics(self, problem, out: np.ndarray, **extra) -> dict:
        gap = problem.rel_gap(out)
        return {"loss": problem.psi(out), "rel_gap": gap, **problem.counters(), **extra}

    def state_dict(self) -> dict:
        return {"k": self.k, **{a: torch.from_numpy(getattr(self, a).copy()) for a in self._state}}

    def load_state_dict(self, sd: dict) -> None:
        self.k = sd["k"]
        for a in self._state:
            setattr(self, a, sd[a].numpy().copy())


class ProxSubgradient(_Method):
    """x+ = argmin_u <grad f(x) + h'(x), u> + ||u - x||^2 / (2 eta_k) + chi(u) = (x - eta_k G) / (1 + eta_k mu),
    eta_k = 2 / (mu (k + k0)) with k0 = ceil(2L/mu) (so eta_0 <= 1/L); the output is the average of the
    iterates with weights (k + k0), the usual choice for strongly convex subgradient methods (ours: the
    papers do not give the baseline's steps). One grad f and one h' per iteration."""

    name = "subgradient"
    _state = ("x", "x_avg")

    def setup(self, problem, state) -> None:
        self.x, self.x_avg, self.w = problem.x0.copy(), problem.x0.copy(), 0.0
        self.k0 = math.ceil(2 * problem.L / problem.mu)

    def step(self, problem, state) -> dict:
        weight, eta = self.k + self.k0, 2.0 / (problem.mu * (self.k + self.k0))
        G = problem.grad_f(self.x) + problem.subgrad_h(self.x)
        self.x = (self.x - eta * G) / (1.0 + eta * problem.mu)
        self.w += weight
        self.x_avg += weight / self.w * (self.x - self.x_avg)
        self.k += 1
        return self.metrics(problem, self.x_avg, step_size=eta, last_rel_gap=problem.rel_gap(self.x))


class RestartGradientSliding(_Method):
    """Multi-phase gradient sliding (restart-based, the baseline the paper removes): phase s runs N0 outer
    iterations of GS (Corollary 2.2 parameters, horizon N = N0) from the previous phase's output, with the
    distance estimate D_s = 2 Delta_0 / (mu 2^(s-1)) >= ||p_{s-1} - x*||^2 (strong convexity of chi and a
    gap halved per phase). N0 = ceil(phase_factor sqrt(L/mu)), phase_factor = 4 sqrt(2) by default (ours:
    the smallest constant of the form that halves the Corollary 2.2 bound, not transcribed from Lan)."""

    name = "restart_gs"
    _state = ("x", "x_bar")

    def __init__(self, name: str | None = None, iters: int | None = None, phase_factor: float = 4 * math.sqrt(2),
                 max_inner: int = 10**7):
        super().__init__(name, iters)
        if phase_factor <= 0:
            raise OptrunError(f"algorithm.phase_factor: expected > 0, got {phase_factor}")
        self.phase_factor, self.max_inner = phase_factor, max_inner

    def setup(self, problem, state) -> None:
        self.N0 = math.ceil(self.phase_factor * math.sqrt(problem.L / problem.mu))
        self.delta0 = problem.gap0  # Delta_0 >= Psi(x0) - Psi*, an input of M-GS (here: exact)
        self.x, self.x_bar = problem.x0.copy(), problem.x0.copy()

    def step(self, problem, state) -> dict:
        phase, k = divmod(self.k, self.N0)
        k += 1  # iteration within the phase, 1..N0
        if k == 1:  # restart: both sequences from the previous phase's output
            self.x = self.x_bar.copy()
        D = 2.0 * self.delta0 / (problem.mu * 2.0**phase)
        gamma, beta = 2.0 / (k + 1), 2.0 * problem.L / k
        T = min(math.ceil(problem.M**2 * self.N0 * k**2 / (D * problem.L**2)), self.max_inner)
        g = problem.grad_f((1 - gamma) * self.x_bar + gamma * self.x)
        self.x, u_avg = prox_sliding(problem, g, self.x, beta, T)
        self.x_bar = (1 - gamma) * self.x_bar + gamma * u_avg
        self.k += 1
        return self.metrics(problem, self.x_bar, T_k=float(T), beta_k=beta, gamma_k=gamma, phase=float(phase + 1),
                            N0=float(self.N0))
