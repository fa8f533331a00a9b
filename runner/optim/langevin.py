"""Spherical Langevin dynamics: d theta = (-(d-1)/2 theta + beta b(theta)) dt + P_perp dW on the unit
sphere, b = -grad_sphere L, integrated by Euler-Maruyama with renormalisation (the renormalisation
supplies the Ito drift -(d-1)/2 theta to first order in dt).

One step per parameter tensor (each is its own point on its own sphere, flattened):
    theta <- normalise(theta - dt * beta * P_perp g + sqrt(dt) * P_perp xi),   xi ~ N(0, I),
where `lr` is the time step dt and `beta` the signal strength (inverse temperature). The noise
comes from its own generator seeded from `seed`, so a run is reproducible and adding a probe never
shifts it. Iterate averaging (the paper's estimators) is a probe: `runner.hooks.iterate_average`.
"""
from __future__ import annotations

import math

import torch

from runner import seeding
from runner.errors import OptrunError
from runner.optim import closure_loss


class SphericalLangevin(torch.optim.Optimizer):
    def __init__(self, params, lr: float = 0.01, beta: float = 3.0, seed: int = 0):
        if not lr > 0 or not beta >= 0:
            raise OptrunError(f"optimizer.lr / optimizer.beta: expected dt > 0 and beta >= 0, got {lr} and {beta}")
        super().__init__(params, {"lr": lr, "beta": beta})
        self.seed, self.generator, self._pending = seed, None, None

    def _noise_like(self, p: torch.Tensor) -> torch.Tensor:
        if self.generator is None or self.generator.device != p.device:
            self.generator = seeding.generator(self.seed, "langevin", p.device)
            if self._pending is not None:  # restored from a checkpoint
                self.generator.set_state(self._pending)
                self._pending = None
        return torch.randn(p.shape, generator=self.generator, device=p.device, dtype=p.dtype)

    @torch.no_grad()
    def step(self, closure=None):
        loss = closure_loss(closure)
        for group in self.param_groups:
            dt, beta = group["lr"], group["beta"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                theta = p.view(-1)
                theta.div_(theta.norm())
                move = self._noise_like(theta).mul_(math.sqrt(dt)).add_(p.grad.view(-1), alpha=-dt * beta)
                theta.add_(move - theta * (theta @ move)).div_(theta.norm())  # tangent step, back to the sphere
        return loss

    def state_dict(self):
        sd = super().state_dict()
        sd["noise_generator"] = None if self.generator is None else self.generator.get_state()
        return sd

    def load_state_dict(self, sd):
        sd = dict(sd)
        self._pending, self.generator = sd.pop("noise_generator", None), None
        super().load_state_dict(sd)
