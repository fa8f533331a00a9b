"""Levenberg–Marquardt on a batch of small nonlinear least-squares problems, with an implicit gradient.

Hard-constrained PINNs (arXiv 2402.13412) solve, inside every training step, `omega* = argmin_w
1/2 ||r(w; b)||^2` for N weights w of basis fields b that a network produced, then need d omega* / d b to
train the network. Unrolling the solver would differentiate through every iteration; instead:

1. `solve(fn, w0, *args)`: LM in float64 under `no_grad` (at most `max_iters` iterations, Marquardt's
   scaled damping lambda * diag(J^T J), lambda divided by `down` on an accepted step and multiplied by `up`
   on a rejected one), batched with `torch.func.vmap` over the leading axis of `w0` and of every arg.
2. `implicit_step(fn, w_star, *args)`: one differentiable Newton step at w*,
   w = w* - H^{-1} g(w*, args), with g = grad_w 1/2 ||r||^2 computed with the graph to `args` and H (its
   w-Jacobian, the exact Hessian by default) detached. Its value is w* (g(w*) ~ 0) and its derivative is
   -H^{-1} dg/dargs: the implicit function theorem's d omega*/d args at a stationary point. `hessian="gn"`
   uses J^T J instead: exact at zero residual, an approximation otherwise.

`fn(w, *args) -> residual vector` is written for ONE problem (w of shape (N,)); both functions map it
over the batch. Tests (tests/test_lm_solver.py): on a linear problem one undamped step is `lstsq`, and the
implicit gradient equals `jacrev` of the closed-form argmin; on a nonlinear one, finite differences.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.func import grad, jacfwd, vmap


@dataclass
class LMResult:
    omega: torch.Tensor       # (batch, N) float64 solutions
    iters: torch.Tensor       # (batch,) iterations each problem took (<= max_iters)
    cost: torch.Tensor        # (batch,) 1/2 ||r(omega)||^2 at the end
    converged: torch.Tensor   # (batch,) bool: the gradient or the relative decrease fell below tol


def _cost(fn):
    return lambda w, *args: 0.5 * (fn(w, *args) ** 2).sum()


@torch.no_grad()
def solve(fn, omega0: torch.Tensor, *args, max_iters: int = 10, damping: float = 1e-3, up: float = 2.0,
          down: float = 3.0, tol: float = 1e-10, jac=None) -> LMResult:
    """Batched LM from `omega0` (batch, N); `args` are detached and cast to float64 here.

    With `jac`, both `fn` and `jac(w, *args) -> (batch, M, N)` take the whole batch at once (a closed-form
    Jacobian: no vmap, no forward-mode pass, several times faster on small problems); without it, `fn` is
    per problem and its Jacobian comes from `vmap(jacfwd(fn))`."""
    args = tuple(a.detach().double() for a in args)
    w = omega0.detach().double().clone()
    res, jac = (fn, jac) if jac is not None else (vmap(fn), vmap(jacfwd(fn)))
    r, J = res(w, *args), jac(w, *args)
    cost = 0.5 * (r ** 2).sum(-1)
    lam = torch.full_like(cost, damping)
    iters = torch.zeros_like(cost, dtype=torch.long)
    done = torch.zeros_like(cost, dtype=torch.bool)
    eye = torch.eye(w.shape[-1], dtype=w.dtype, device=w.device)
    for _ in range(max_iters):
        g = (J.transpose(1, 2) @ r[..., None])[..., 0]
        A = J.transpose(1, 2) @ J
        done |= g.abs().amax(-1) <= tol * (1 + cost)
        if bool(done.all()):
            break
        diag = torch.diagonal(A, dim1=1, dim2=2).clamp_min(1e-12)
        step = torch.linalg.solve(A + lam[:, None, None] * diag[:, :, None] * eye, -g[..., None])[..., 0]
        w_try = w + step
        r_try = res(w_try, *args)
        cost_try = 0.5 * (r_try ** 2).sum(-1)
        accept = (cost_try < cost) & ~done
        small = accept & ((cost - cost_try) <= tol * cost)
        w = torch.where(accept[:, None], w_try, w)
        r = torch.where(accept[:, None], r_try, r)
        J = torch.where(accept[:, None, None], jac(w, *args), J)
        cost = torch.where(accept, cost_try, cost)
        lam = torch.where(accept, lam / down, lam * up)
        iters += (~done).long()
        done |= small
    return LMResult(w, iters, cost, done)


def implicit_step(fn, omega_star: torch.Tensor, *args, hessian: str = "newton", jac=None,
                  curvature=None) -> torch.Tensor:
    """w* - H^{-1} g(w*, args): the value of w*, the implicit function theorem's gradient to `args`.

    `args` keep their graph (cast them to float64 before, differentiably); `omega_star` is detached. With
    `jac` (batched, as in `solve`), g = J^T r from the closed forms and H = J^T J, plus, for
    `hessian="newton"`, `curvature(w, *args) -> (batch, N, N)` = sum_i r_i d2 r_i / dw2 (required then)."""
    w = omega_star.detach()
    frozen = tuple(a.detach() for a in args)
    if hessian not in ("newton", "gn"):
        raise ValueError(f"hessian={hessian!r}: expected 'newton' or 'gn'")
    if jac is not None:
        r, J = fn(w, *args), jac(w, *args)
        g = (J.transpose(1, 2) @ r[..., None])[..., 0]               # depends on args with the graph
        Jf = J.detach()
        H = Jf.transpose(1, 2) @ Jf
        if hessian == "newton":
            if curvature is None:
                raise ValueError("implicit_step: hessian='newton' with a closed-form jac needs curvature")
            H = H + curvature(w, *frozen)
        return w - torch.linalg.solve(H, g[..., None])[..., 0]
    g = vmap(grad(_cost(fn)))(w, *args)
    if hessian == "newton":
        H = vmap(jacfwd(grad(_cost(fn))))(w, *frozen)
    else:
        J = vmap(jacfwd(fn))(w, *frozen)
        H = J.transpose(1, 2) @ J
    return w - torch.linalg.solve(H, g[..., None])[..., 0]
