"""One-shot global pruning of a model's weight matrices: magnitude, diagonal Fisher, and Optimal
Brain Surgeon (OBS) with the static M-FAC inverse Fisher.

All three rank the alive weights w_q of every >= 2-D parameter together (global pruning):
- `magnitude`: |w_q|.
- `fisher`: w_q^2 F_qq / 2 with the diagonal of the empirical Fisher F = damp I + G^T G / m.
- `mfac` (OBS): w_q^2 / (2 [F^-1]_qq) with [F^-1]_qq from M-FAC; then the surviving weights get the
  OBS compensation dw = -F^-1 u, u_q = w_q / [F^-1]_qq on the removed set (the sum of the
  single-weight OBS updates), and the removed weights are set to exactly 0.
`rounds > 1` reaches the target sparsity in equal steps, recomputing the m gradients (and F) on the
pruned, compensated model each time, with F restricted to the weights still alive.

`damp` is relative: the absolute damping is damp * mean(diag(G^T G / m)), so one value fits models
whose gradients differ in scale. Gradients are of the mean cross-entropy over `grad_batch` training
samples each (1 = per-sample gradients, the empirical Fisher), computed with torch.func.vmap.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.func import functional_call, grad, vmap

from runner.errors import OptrunError
from runner.optim.mfac import StaticMFAC

METHODS = ("magnitude", "fisher", "mfac")


def prunable(model: torch.nn.Module) -> list[str]:
    """Names of the weight matrices / kernels (biases and norms are kept dense)."""
    return [n for n, p in model.named_parameters() if p.dim() >= 2]


def flat_gradients(model: torch.nn.Module, names: list[str], x: torch.Tensor, y: torch.Tensor, m: int,
                   grad_batch: int, generator: torch.Generator) -> torch.Tensor:
    """(m, d) gradients of the mean CE over `grad_batch` random training samples each."""
    params = {n: p.detach() for n, p in model.named_parameters()}
    idx = torch.randint(len(y), (m * grad_batch,), generator=generator, device=generator.device).to(y.device)
    xb, yb = x[idx].view(m, grad_batch, *x.shape[1:]), y[idx].view(m, grad_batch)

    def loss(weights, xs, ys):
        return F.cross_entropy(functional_call(model, {**params, **weights}, (xs,)), ys)

    was_training = model.training
    model.eval()
    try:
        g = vmap(grad(loss), in_dims=(None, 0, 0), chunk_size=64)({n: params[n] for n in names}, xb, yb)
    finally:
        model.train(was_training)
    return torch.cat([g[n].reshape(m, -1) for n in names], dim=1)


def prune(model: torch.nn.Module, method: str, sparsity: float, x: torch.Tensor, y: torch.Tensor,
          generator: torch.Generator, m: int = 256, grad_batch: int = 1, damp: float = 1e-2,
          rounds: int = 1, method_mfac: str = "recursion", alive: torch.Tensor | None = None,
          damp_absolute: bool = False) -> dict:
    """Prune `model` in place to `sparsity` of its weight matrices; return diagnostics.

    `method_mfac`: how M-FAC computes its coefficients (recursion, or cholesky for large m).
    `damp` is relative to the mean Fisher diagonal unless `damp_absolute` (then it is lambda itself).
    `alive` (gradual pruning): a boolean mask over the flattened weight matrices of the weights still
    in the model; the others are already pruned, stay zero and are neither candidates nor compensated,
    and the rounds go from the current density to the target geometrically, as the official gradual
    pruner's recomputations. Without it every weight is a candidate and the rounds step linearly.
    Diagnostics: `predicted` (sum of the removed weights' OBS saliencies, the loss increase OBS
    predicts; mfac only), `damp` (the absolute damping used last) and `alive` (the new mask)."""
    if method not in METHODS:
        raise OptrunError(f"prune method: unknown '{method}' (expected one of: {', '.join(METHODS)})")
    if not 0.0 <= sparsity < 1.0 or rounds < 1:
        raise OptrunError(f"prune: expected 0 <= sparsity < 1 and rounds >= 1, got {sparsity}, {rounds}")
    names = prunable(model)
    params = dict(model.named_parameters())
    with torch.no_grad():
        w = torch.cat([params[n].reshape(-1) for n in names])
    gradual = alive is not None
    alive = torch.ones_like(w, dtype=torch.bool) if alive is None else alive.to(w.device, torch.bool).clone()
    total = w.numel()
    info = {"predicted": 0.0, "damp": float("nan")}
    n_rounds = 1 if method == "magnitude" else rounds
    density0 = float(alive.sum()) / total
    for r in range(1, n_rounds + 1):
        if gradual:  # density (1 - s0) * fac^r, fac = ((1 - s) / (1 - s0))^(1/rounds)
            target = 1.0 - density0 * ((1.0 - sparsity) / density0) ** (r / n_rounds) if density0 > 0 else 1.0
            n_remove = round(target * total) - int((~alive).sum())
        else:
            n_remove = round(sparsity * total * r / n_rounds) - int((~alive).sum())
        if n_remove <= 0:
            continue
        idx = alive.nonzero().squeeze(1)
        wa = w[idx]
        if method == "magnitude":
            saliency = wa.abs()
        else:
            G = flat_gradients(model, names, x, y, m, grad_batch, generator)[:, idx]
            fisher_diag = G.pow(2).mean(0)
            lam = damp if damp_absolute or float(fisher_diag.mean()) <= 0 else damp * float(fisher_diag.mean())
            info["damp"] = lam
            if method == "fisher":
                saliency = wa.pow(2) * (lam + fisher_diag) / 2
            else:
                inv = StaticMFAC(G, lam, method_mfac)
                inv_diag = inv.diag()
                saliency = wa.pow(2) / (2 * inv_diag)
        drop = saliency.topk(n_remove, largest=False).indices
        if method == "mfac":
            u = torch.zeros_like(wa)
            u[drop] = wa[drop] / inv_diag[drop]
            wa = wa - inv.ihvp(u)
            info["predicted"] += float(saliency[drop].sum())
        wa[drop] = 0.0
        w[idx] = wa
        alive[idx[drop]] = False
        _write(model, names, w)
    info["alive"] = alive
    return info


def _write(model: torch.nn.Module, names: list[str], w: torch.Tensor) -> None:
    params = dict(model.named_parameters())
    offset = 0
    with torch.no_grad():
        for n in names:
            p = params[n]
            p.copy_(w[offset:offset + p.numel()].view_as(p))
            offset += p.numel()


def sparsity_of(model: torch.nn.Module) -> float:
    names = prunable(model)
    params = dict(model.named_parameters())
    zeros = sum(int((params[n] == 0).sum()) for n in names)
    return zeros / sum(params[n].numel() for n in names)
