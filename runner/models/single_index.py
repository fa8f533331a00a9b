"""A single-index estimator: one direction theta on the unit sphere, f(x) = He_k(theta . x)/sqrt(k!).

With the correlation loss (`trainer.loss=corr`) and data from `runner.data.synthetic.single_index`,
the population loss is -(theta . theta*)^k: the landscape of tensor PCA with information exponent k.
theta starts uniform on the sphere (drawn from the init stream); keeping it there is the
optimizer's job (e.g. `runner.optim.langevin.SphericalLangevin`).
"""
from __future__ import annotations

import math

import torch
from torch import nn

from runner.data.synthetic import hermite
from runner.errors import OptrunError


class SingleIndex(nn.Module):
    def __init__(self, input_shape, n_classes: int = 1, k: int = 3):
        super().__init__()
        if k < 1:
            raise OptrunError(f"model.k: expected an information exponent >= 1, got {k}")
        theta = torch.randn(math.prod(input_shape))
        self.theta, self.k = nn.Parameter(theta / theta.norm()), k

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return hermite(x.flatten(1) @ self.theta, self.k)[:, None]
