"""Jacobi-preconditioned conjugate gradients, batched and matrix-free, for training loops.

Neural solvers that learn from an iterative method (NPSolver's "iterative physics supervision") need a few
PCG steps on a whole batch of linear systems inside every training step, started from the network's own
prediction, and an iteration count to a tolerance for evaluation. `pcg` does both on tensors of any shape
(B, ...) with `apply_A` a batched, matrix-free symmetric positive (semi-)definite operator (e.g. a masked
5-point stencil) and `diag` its diagonal (Jacobi preconditioner; entries <= 0 mark unknowns that do not
exist, e.g. cells outside a masked domain: the preconditioner is zero there, so the iterate never moves
there).

Two ways to batch:
- `per_sample=False` (the official NPSolver code): one CG on the block-diagonal system of the whole batch,
  with inner products summed over every sample. Cheapest; what training targets use.
- `per_sample=True`: independent CGs in lockstep, inner products per sample, each sample frozen once
  ||r|| <= tol ||b||: gives per-sample iteration counts (CG iterations to 1e-6 from a prediction vs from 0).

With `tol = 0` and global batching (the training target) a lean loop runs exactly `iters` steps without
convergence bookkeeping. The solver runs under `no_grad` unless `grad=True` (the no-stop-gradient ablation differentiates through
the K steps). The caller picks the dtype (NPSolver: float64, then casts the target back).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class PCGResult:
    x: torch.Tensor           # the iterate after the last step
    iterations: torch.Tensor  # steps taken: a 0-d tensor (global) or (B,) per sample
    residual: torch.Tensor    # ||b - A x|| / ||b|| at the end: 0-d (global) or (B,) per sample
    converged: torch.Tensor   # residual <= tol (bool, same shape)


def pcg(apply_A, b: torch.Tensor, x0: torch.Tensor | None = None, diag: torch.Tensor | None = None,
        iters: int = 100, tol: float = 0.0, per_sample: bool = False, grad: bool = False) -> PCGResult:
    """Up to `iters` PCG steps on A x = b from x0 (zeros if None); stops early at ||r|| <= tol ||b||
    (tol = 0: exactly `iters` steps unless the residual is exactly zero). `diag=None`: plain CG."""
    with torch.set_grad_enabled(grad and torch.is_grad_enabled()):
        return _pcg(apply_A, b, x0, diag, iters, tol, per_sample)


def _fixed_steps(apply_A, b, x, minv, iters) -> tuple[torch.Tensor, int]:
    """The training-target path: exactly `iters` global-batch PCG steps, no convergence bookkeeping
    (a zero curvature p.Ap, i.e. an exact solve, ends early)."""
    r = b - apply_A(x)
    z = minv * r
    p, rz, k = z, (r * z).sum(), 0
    for k in range(1, iters + 1):
        Ap = apply_A(p)
        pAp = (p * Ap).sum()
        if not bool(pAp > 0):
            return x, k - 1
        alpha = rz / pAp
        x = x + alpha * p
        r = r - alpha * Ap
        z = minv * r
        rz_new = (r * z).sum()
        p = z + (rz_new / rz) * p
        rz = rz_new
    return x, k


def _pcg(apply_A, b, x0, diag, iters, tol, per_sample) -> PCGResult:
    dims = tuple(range(1, b.dim()))
    if per_sample:
        def dot(u, v):
            return (u * v).sum(dims).view(-1, *([1] * len(dims)))
    else:
        def dot(u, v):
            return (u * v).sum()
    x = torch.zeros_like(b) if x0 is None else x0.to(b.dtype)
    minv = torch.ones_like(b) if diag is None else torch.where(diag > 0, 1.0 / diag.clamp_min(1e-300), 0.0).to(b.dtype)
    if tol <= 0 and not per_sample:
        x, k = _fixed_steps(apply_A, b, x, minv, iters)
        res = b - apply_A(x)
        rel = (dot(res, res).sqrt() / dot(b, b).sqrt().clamp_min(1e-300)).detach()
        return PCGResult(x, torch.tensor(k), rel, rel <= tol)
    r = b - apply_A(x)
    z = minv * r
    p = z
    rz = dot(r, z)
    bnorm = dot(b, b).sqrt()
    bnorm = torch.where(bnorm > 0, bnorm, torch.ones_like(bnorm))
    done = dot(r, r).sqrt() <= tol * bnorm
    count = torch.zeros_like(bnorm, dtype=torch.long)
    for _ in range(iters):
        if bool(done.all()):
            break
        Ap = apply_A(p)
        pAp = dot(p, Ap)
        safe = torch.where(pAp != 0, pAp, torch.ones_like(pAp))
        alpha = torch.where(done | (pAp == 0), torch.zeros_like(rz), rz / safe)
        x = x + alpha * p
        r = r - alpha * Ap
        count = count + (~done).long()
        done = done | (dot(r, r).sqrt() <= tol * bnorm) | (pAp == 0)
        z = minv * r
        rz_new = dot(r, z)
        beta = torch.where(rz != 0, rz_new / torch.where(rz != 0, rz, torch.ones_like(rz)), torch.zeros_like(rz))
        p = z + beta * p
        rz = rz_new
    res = b - apply_A(x)
    true_res = dot(res, res).sqrt() / bnorm
    shape = (-1,) if per_sample else ()
    return PCGResult(x, count.reshape(shape), true_res.detach().reshape(shape),
                     (true_res <= tol).detach().reshape(shape))
