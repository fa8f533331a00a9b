"""Diagonal linear network: f(x) = <u*u - v*v, x>, the "u squared minus v squared" parametrisation.

A linear predictor beta = u*u - v*v (elementwise; one row per output), trained through (u, v): its
gradient flow from u = v = init_scale keeps u*v fixed, so the initial scale decides between a
kernel-like (large scale) and a sparse, l1-like (small scale) interpolating solution (Woodworth et
al. 2020), and the SGD noise / step size shrinks the effective scale (Pesme et al. 2021; Wu & Su
2023). For squared loss the Hessian trace at an interpolating minimum is a weighted l1 norm of
u*u + v*v, which is why stability (tr(H) <= 2/eta) favours sparse solutions.

`parametrization="product"` is the other common form, f(x) = <a*b, x> (beta = a*b), and `init="normal"`
draws every weight from N(0, init_scale^2) (from the global generator, which the engine seeds from the
init stream) instead of setting it to init_scale; the defaults ("squares", "constant") are the above.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from runner.errors import OptrunError


class DiagonalLinear(nn.Module):
    def __init__(self, input_shape, n_classes: int = 1, init_scale: float = 0.1, parametrization: str = "squares",
                 init: str = "constant"):
        super().__init__()
        if init_scale <= 0:
            raise OptrunError(f"model.init_scale: expected a positive number, got {init_scale}")
        if parametrization not in ("squares", "product"):
            raise OptrunError(f"model.parametrization: expected squares or product, got {parametrization!r}")
        if init not in ("constant", "normal"):
            raise OptrunError(f"model.init: expected constant or normal, got {init!r}")
        d = math.prod(input_shape)
        self.parametrization = parametrization
        if init == "constant":
            self.u = nn.Parameter(torch.full((n_classes, d), float(init_scale)))
            self.v = nn.Parameter(torch.full((n_classes, d), float(init_scale)))
        else:
            self.u = nn.Parameter(float(init_scale) * torch.randn(n_classes, d))
            self.v = nn.Parameter(float(init_scale) * torch.randn(n_classes, d))

    @property
    def beta(self) -> torch.Tensor:
        """The effective linear predictor (n_classes, d)."""
        if self.parametrization == "product":
            return self.u * self.v
        return self.u * self.u - self.v * self.v

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1) @ self.beta.T

    def norms(self) -> dict:
        """l1 / l2 norms of the effective predictor and the effective scale sqrt(mean |u*v|)."""
        with torch.no_grad():
            b = self.beta
            return {"beta_l1": float(b.abs().sum()), "beta_l2": float(b.norm()),
                    "effective_scale": float((self.u * self.v).abs().mean().sqrt())}
