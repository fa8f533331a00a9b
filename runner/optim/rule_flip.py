"""Gradient descent with rule-flipped ("sign-diverse") plasticity: curl descent.

Each weight matrix W (out x in) is updated by dW = -lr * g D, where g is its gradient and D is
diagonal with -1 on the columns of "rule-flipped" presynaptic units (their outgoing synapses learn
with the opposite sign) and +1 elsewhere. With no flipped unit this is plain gradient descent; with
some, the update field is no longer a gradient (it has a curl). `flipped[i]` is the number of flipped
presynaptic units of the i-th parameter (in `model.parameters()` order; the units are exchangeable,
so the first ones are flipped); `flipped_fraction[i]` gives the same as a fraction of the columns
(rounded). Optionally, as in the official code, every matrix is rescaled to
its initial Frobenius norm after each update.

After each step `stats` holds the cosine between the applied update (rescaling included) and
-grad (1 for plain GD without rescaling, < 1 when curl terms act) and each parameter's norm; the
`optimizer_stats` hook logs them.
"""
from __future__ import annotations

import torch

from runner.errors import OptrunError
from runner.optim import closure_loss


class RuleFlippedSGD(torch.optim.Optimizer):
    def __init__(self, params, lr: float = 0.1, flipped: list[int] = (), flipped_fraction: list[float] = (),
                 rescale: bool = True):
        if not lr > 0:
            raise OptrunError(f"optimizer.lr: expected a positive number, got {lr}")
        super().__init__(params, {"lr": lr})
        plist = [p for g in self.param_groups for p in g["params"]]
        flipped, fractions = list(flipped or ()), list(flipped_fraction or ())
        if flipped and fractions:
            raise OptrunError("optimizer.flipped / optimizer.flipped_fraction: set one of them, not both")
        if any(not 0 <= f <= 1 for f in fractions):
            raise OptrunError(f"optimizer.flipped_fraction: expected fractions in [0, 1], got {fractions}")
        if max(len(flipped), len(fractions)) > len(plist):
            raise OptrunError(f"optimizer.flipped: {max(len(flipped), len(fractions))} entries for {len(plist)} "
                              f"parameters")
        if fractions:
            flipped = [round(f * (p.shape[1] if p.dim() == 2 else 0)) for f, p in zip(fractions, plist)]
        self.rescale, self.stats = rescale, {}
        for i, p in enumerate(plist):
            k = int(flipped[i]) if i < len(flipped) else 0
            if k and (p.dim() != 2 or not 0 <= k <= p.shape[1]):
                raise OptrunError(f"optimizer.flipped[{i}]: {k} flipped units, but parameter {i} has shape "
                                  f"{tuple(p.shape)} (a matrix with at least {k} columns is needed)")
            sign = torch.ones(p.shape[1] if p.dim() == 2 else 1, dtype=p.dtype, device=p.device)
            sign[:k] = -1
            self.state[p]["column_sign"] = sign
            self.state[p]["init_norm"] = p.detach().norm()

    def stat_names(self) -> list[str]:
        """The keys of `stats` (declared so that metrics.csv has them from the start)."""
        n = sum(len(group["params"]) for group in self.param_groups)
        return ["update_cosine", *(f"weight_norm{i}" for i in range(1, n + 1))]

    @torch.no_grad()
    def step(self, closure=None):
        loss = closure_loss(closure)
        dot = g_sq = d_sq = 0.0
        norms = {}
        index = 0
        for group in self.param_groups:
            for p in group["params"]:
                index += 1
                if p.grad is None:
                    continue
                st, g = self.state[p], p.grad
                old = p.detach().clone()
                p.add_(g * st["column_sign"] if p.dim() == 2 else g, alpha=-group["lr"])
                if self.rescale:
                    p.mul_(st["init_norm"] / p.norm().clamp_min(1e-30))
                delta = p - old
                dot, g_sq, d_sq = dot - (delta * g).sum(), g_sq + g.pow(2).sum(), d_sq + delta.pow(2).sum()
                norms[f"weight_norm{index}"] = p.norm()
        cos = dot / (g_sq * d_sq).sqrt().clamp_min(1e-30) if norms else torch.tensor(float("nan"))
        self.stats = {"update_cosine": cos, **norms}
        return loss
