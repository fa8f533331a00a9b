"""Muon for every matrix-shaped parameter (conv kernels included), AdamW for the rest.

`torch.optim.Muon` (torch 2.14) accepts only 2-D parameters and orthogonalizes in bfloat16. Here a
kernel of shape (out, in, k...) is viewed as the matrix (out, in*k*...) for the momentum and the
Newton-Schulz step, exactly as the Muon and Drop-Muon papers describe for CNNs, in the parameter's
own dtype (fast and exact enough on the CPU). The update of a matrix W with gradient G is
    M <- mu M + (1 - mu) G,   U = G + mu (M - G) if nesterov else M   (torch's lerp form),
    W <- (1 - lr wd) W - lr * sqrt(max(1, rows/cols)) * NS5(U),
NS5 being five quintic Newton-Schulz steps with (a, b, c) = (3.4445, -4.7750, 2.0315) from U/|U|_F.
Biases, norms and other non-matrix tensors get AdamW (`adamw_*` settings).

A parameter whose `.grad` is None is skipped entirely: its weights, momentum and AdamW state (step
count included) stay as they are. Drop-Muon relies on this (`trainer=progressive`).
"""
from __future__ import annotations

import math

import torch

from runner.optim import closure_loss

NS_COEFFICIENTS = (3.4445, -4.7750, 2.0315)


def newton_schulz(g: torch.Tensor, steps: int = 5, coefficients=NS_COEFFICIENTS, eps: float = 1e-7) -> torch.Tensor:
    """Approximately U V^T for G = U S V^T (singular values pushed into roughly [0.7, 1.2])."""
    a, b, c = coefficients
    x = g.T if g.shape[0] > g.shape[1] else g
    x = x / x.norm().clamp_min(eps)
    for _ in range(steps):
        gram = x @ x.T
        x = a * x + (b * gram + c * gram @ gram) @ x
    return x.T if g.shape[0] > g.shape[1] else x


def lr_scale(rows: int, cols: int, adjust: str) -> float:
    if adjust == "original":
        return math.sqrt(max(1.0, rows / cols))
    if adjust == "match_rms_adamw":
        return 0.2 * math.sqrt(max(rows, cols))
    if adjust == "none":
        return 1.0
    raise ValueError(f"optimizer.adjust_lr: unknown '{adjust}' (expected original, match_rms_adamw or none)")


class Muon(torch.optim.Optimizer):
    def __init__(self, params, lr: float = 0.02, momentum: float = 0.95, nesterov: bool = True,
                 weight_decay: float = 0.0, ns_steps: int = 5, adjust_lr: str = "original",
                 adamw_lr: float = 1e-3, adamw_betas=(0.9, 0.999), adamw_eps: float = 1e-8,
                 adamw_weight_decay: float = 0.0):
        from runner.errors import OptrunError

        if lr < 0 or adamw_lr < 0 or not 0.0 <= momentum < 1.0:
            raise OptrunError("optimizer: expected lr >= 0, adamw_lr >= 0 and 0 <= momentum < 1")
        lr_scale(2, 1, adjust_lr)  # validates the name
        params = [p for p in params if p.requires_grad]
        matrices = [p for p in params if p.dim() >= 2]
        others = [p for p in params if p.dim() < 2]
        groups = [{"params": matrices, "algorithm": "muon", "lr": lr, "weight_decay": weight_decay}] if matrices else []
        if others:
            groups.append({"params": others, "algorithm": "adamw", "lr": adamw_lr, "weight_decay": adamw_weight_decay,
                           "betas": tuple(adamw_betas), "eps": adamw_eps})
        defaults = {"momentum": momentum, "nesterov": nesterov, "ns_steps": ns_steps, "adjust_lr": adjust_lr}
        super().__init__(groups, defaults)

    @torch.no_grad()
    def step(self, closure=None):
        loss = closure_loss(closure)
        for group in self.param_groups:
            (self._muon if group["algorithm"] == "muon" else self._adamw)(group)
        return loss

    def _muon(self, group: dict) -> None:
        mu, lr, wd = group["momentum"], group["lr"], group["weight_decay"]
        for p in group["params"]:
            if p.grad is None:
                continue
            g = p.grad.reshape(p.shape[0], -1)
            state = self.state[p]
            if "momentum_buffer" not in state:
                state["momentum_buffer"] = torch.zeros_like(g)
            buf = state["momentum_buffer"]
            buf.lerp_(g, 1 - mu)
            update = g.lerp(buf, mu) if group["nesterov"] else buf
            ortho = newton_schulz(update, group["ns_steps"])
            if wd:
                p.mul_(1 - lr * wd)
            p.add_(ortho.view_as(p), alpha=-lr * lr_scale(g.shape[0], g.shape[1], group["adjust_lr"]))

    def _adamw(self, group: dict) -> None:
        (b1, b2), lr, wd, eps = group["betas"], group["lr"], group["weight_decay"], group["eps"]
        for p in group["params"]:
            if p.grad is None:
                continue
            state = self.state[p]
            if not state:
                state.update(step=0, exp_avg=torch.zeros_like(p), exp_avg_sq=torch.zeros_like(p))
            state["step"] += 1
            t = state["step"]
            state["exp_avg"].lerp_(p.grad, 1 - b1)
            state["exp_avg_sq"].mul_(b2).addcmul_(p.grad, p.grad, value=1 - b2)
            denom = (state["exp_avg_sq"] / (1 - b2 ** t)).sqrt_().add_(eps)
            if wd:
                p.mul_(1 - lr * wd)
            p.addcdiv_(state["exp_avg"], denom, value=-lr / (1 - b1 ** t))
