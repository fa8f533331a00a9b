"""Two-layer ReLU network f(x) = sum_j a_j relu(w_j . x + b_j), with its path norm.

The hidden layer is initialised like nn.Linear; the output weights are scaled by `init_scale`
(small: feature learning; 1: nn.Linear's default). `norms()` reports the path norm
sum_j |a_j| ||(w_j, b_j)||, the parameter norm the Hessian trace of a two-layer ReLU net at an
interpolating minimum is equivalent to (Wu & Su 2023).
"""
from __future__ import annotations

import math

import torch
from torch import nn

from runner.errors import OptrunError


class TwoLayerReLU(nn.Module):
    def __init__(self, input_shape, n_classes: int = 1, width: int = 100, bias: bool = True,
                 init_scale: float = 1.0):
        super().__init__()
        if width <= 0 or init_scale <= 0:
            raise OptrunError(f"model.width / model.init_scale: expected positive numbers, got {width}, {init_scale}")
        self.hidden = nn.Linear(math.prod(input_shape), width, bias=bias)
        self.out = nn.Linear(width, n_classes, bias=False)
        with torch.no_grad():
            self.out.weight.mul_(init_scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(torch.relu(self.hidden(x.flatten(1))))

    def norms(self) -> dict:
        with torch.no_grad():
            w = self.hidden.weight
            if self.hidden.bias is not None:
                w = torch.cat([w, self.hidden.bias[:, None]], 1)
            return {"path_norm": float((self.out.weight.abs() * w.norm(dim=1)).sum())}
