"""Hypergradients of two-level problems by implicit differentiation, with oracle counts.

A bilevel problem min_x Phi(x) = f(x, y*(x)), y*(x) = argmin_y g(x, y), has (for g strongly convex
in y) the hypergradient

    grad Phi(x) = grad_x f(x, y*) - (d^2 g / dx dy)(x, y*) z*,    z* solves  (d^2 g / dy^2) z = grad_y f,

and bilevel methods differ mostly in how they approximate y* and z*. The helpers here take f and g
as functions of two flat tensors (x, y) and compute the pieces with `torch.func`, never forming a
Hessian unless asked (`solver="exact"`):

- `hvp_yy(g, x, y, v)`: (d^2 g/dy^2) v, forward-over-reverse (one Hessian-vector product);
- `cross_xy(g, x, y, z)`: (d^2 g/dx dy) z = grad_x <grad_y g(x, y), z> (one Jacobian-vector product, in
  the papers' words; computed as reverse-over-reverse);
- `solve_z(g, x, y, b, solver)`: z with (d^2 g/dy^2) z ~ b by `cg` (conjugate gradients), `neumann`
  (alpha * sum_k (I - alpha H)^k b, the truncated series), or `exact` (a dense solve, for checks);
- `hypergradient(f, g, x, y, solver)`: the whole estimate, and the z it used (to warm-start the next).

Every helper takes an optional `Oracles` counter and adds what it called: `grad_f`, `grad_g` (first
derivatives of f and g), `hvp` (Hessian-vector products in y), `jvp` (cross products), `hessian`
(dense Hessians). Trainers log `oracles.metrics()`, so reports and claims can put oracle calls on
the x-axis instead of iterations.
"""
from __future__ import annotations

from collections import Counter
from typing import Callable

import torch
from torch.func import grad, hessian, jvp

from runner.errors import OptrunError

Fn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
SOLVERS = ("cg", "neumann", "exact")
ORACLES = ("grad_f", "grad_g", "hvp", "jvp", "hessian", "samples")


class Oracles:
    """Cumulative counts of oracle calls; `metrics()` gives them as `<name>_calls` columns."""

    def __init__(self):
        self.counts: Counter = Counter({name: 0 for name in ORACLES})

    def add(self, name: str, n: int = 1) -> None:
        if name not in ORACLES:
            raise OptrunError(f"oracle '{name}': expected one of {', '.join(ORACLES)}")
        self.counts[name] += int(n)

    def metrics(self) -> dict[str, int]:
        return {f"{name}_calls": self.counts[name] for name in ORACLES}

    def state_dict(self) -> dict:
        return dict(self.counts)

    def load_state_dict(self, sd: dict) -> None:
        self.counts = Counter({name: int(sd.get(name, 0)) for name in ORACLES})


def _count(oracles: Oracles | None, name: str, n: int = 1) -> None:
    if oracles is not None:
        oracles.add(name, n)


def grad_y(g: Fn, x: torch.Tensor, y: torch.Tensor, oracles: Oracles | None = None) -> torch.Tensor:
    _count(oracles, "grad_g")
    return grad(g, argnums=1)(x, y)


def hvp_yy(g: Fn, x: torch.Tensor, y: torch.Tensor, v: torch.Tensor, oracles: Oracles | None = None) -> torch.Tensor:
    """(d^2 g / dy^2)(x, y) v by forward-over-reverse."""
    _count(oracles, "hvp")
    return jvp(lambda y_: grad(g, argnums=1)(x, y_), (y,), (v,))[1]


def cross_xy(g: Fn, x: torch.Tensor, y: torch.Tensor, z: torch.Tensor, oracles: Oracles | None = None) -> torch.Tensor:
    """(d^2 g / dx dy)(x, y) z, a vector shaped like x: the gradient in x of <grad_y g(x, y), z>."""
    _count(oracles, "jvp")
    return grad(lambda x_: torch.dot(grad(g, argnums=1)(x_, y).reshape(-1), z.reshape(-1)))(x)


def solve_z(g: Fn, x: torch.Tensor, y: torch.Tensor, b: torch.Tensor, solver: str = "cg", iters: int = 20,
            alpha: float = 0.1, tol: float = 0.0, z0: torch.Tensor | None = None,
            oracles: Oracles | None = None) -> torch.Tensor:
    """An approximate solution of (d^2 g/dy^2) z = b.

    `cg`: at most `iters` conjugate-gradient iterations from `z0` (default 0), stopping once the
    residual norm is <= tol * ||b||; one HVP each (plus one for a nonzero z0). `neumann`:
    alpha * sum_{k < iters} (I - alpha H)^k b (converges for 0 < alpha < 2 / lambda_max; z0 ignored),
    iters - 1 HVPs. `exact`: a dense solve with the Hessian from `torch.func.hessian` (checks only)."""
    if solver not in SOLVERS:
        raise OptrunError(f"hypergradient solver: unknown '{solver}' (expected one of: {', '.join(SOLVERS)})")
    if iters < 1:
        raise OptrunError(f"hypergradient iters: expected a positive integer, got {iters}")
    if solver == "exact":
        _count(oracles, "hessian")
        h = hessian(g, argnums=1)(x, y).reshape(b.numel(), b.numel())
        return torch.linalg.solve(h, b.reshape(-1)).reshape(b.shape)
    if solver == "neumann":
        if not alpha > 0:
            raise OptrunError(f"hypergradient alpha: the Neumann series needs alpha > 0, got {alpha}")
        term, total = b, b
        for _ in range(iters - 1):
            term = term - alpha * hvp_yy(g, x, y, term, oracles)
            total = total + term
        return alpha * total
    z = torch.zeros_like(b) if z0 is None else z0.clone()
    r = b - hvp_yy(g, x, y, z, oracles) if z0 is not None else b.clone()
    p, rr = r.clone(), torch.dot(r.reshape(-1), r.reshape(-1))
    stop = (tol * b.norm()) ** 2
    for _ in range(iters):
        if rr <= stop or rr == 0:
            break
        hp = hvp_yy(g, x, y, p, oracles)
        step = rr / torch.dot(p.reshape(-1), hp.reshape(-1))
        z, r = z + step * p, r - step * hp
        rr_new = torch.dot(r.reshape(-1), r.reshape(-1))
        p, rr = r + (rr_new / rr) * p, rr_new
    return z


def hypergradient(f: Fn, g: Fn, x: torch.Tensor, y: torch.Tensor, solver: str = "cg", iters: int = 20,
                  alpha: float = 0.1, tol: float = 0.0, z0: torch.Tensor | None = None,
                  oracles: Oracles | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(grad_x f - (d^2g/dx dy) z, z) at (x, y), with z from `solve_z` on b = grad_y f."""
    _count(oracles, "grad_f")
    fx, fy = grad(f, argnums=(0, 1))(x, y)
    z = solve_z(g, x, y, fy, solver, iters, alpha, tol, z0, oracles)
    return fx - cross_xy(g, x, y, z, oracles), z
