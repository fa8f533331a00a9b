"""Two-layer networks for training-dynamics studies, with an explicit initialisation scale.

`init_scale` (epsilon) multiplies the standard 1/sqrt(fan_in) initialisation: epsilon = 1 is the
usual scale, epsilon = 1e-4 the small-initialisation regime where gradient descent moves from saddle
to saddle. Each model exposes what a probe needs to measure the complexity of what it has learned:
`end_to_end()` (the linear map, for linear models), `unit_norms()` (|a_h| * |w_h| per hidden unit or
channel) and, for univariate ReLU nets, `kink_positions()`.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from runner.errors import OptrunError
from runner.models.mlp import make_activation

INITS = ("gaussian", "uniform")


def _activation(name: str) -> nn.Module:
    return make_activation("identity" if name == "linear" else name)


def scaled_init_(w: torch.Tensor, scale: float, fan_in: int, init: str) -> None:
    """N(0, scale^2/fan_in) or U(+-scale/sqrt(fan_in)) in place."""
    std = scale / math.sqrt(fan_in)
    with torch.no_grad():
        if init == "gaussian":
            w.normal_(0.0, std)
        else:
            w.uniform_(-std, std)


def _check(init_scale: float, init: str) -> None:
    if not init_scale > 0:
        raise OptrunError(f"model.init_scale: expected a positive number, got {init_scale}")
    if init not in INITS:
        raise OptrunError(f"model.init: unknown '{init}' (expected one of: {', '.join(INITS)})")


class TwoLayer(nn.Module):
    """f(x) = phi_out(W2 phi(W1 x + b1)); inputs are flattened. No output bias (teachers have none)."""

    def __init__(self, input_shape, n_classes: int, hidden: int = 50, activation: str = "linear",
                 output_activation: str = "linear", bias: bool = False, init_scale: float = 1.0,
                 init: str = "gaussian"):
        super().__init__()
        _check(init_scale, init)
        if hidden <= 0:
            raise OptrunError(f"model.hidden: expected a positive width, got {hidden}")
        d_in = math.prod(input_shape)
        self.activation_name = activation
        self.fc1, self.fc2 = nn.Linear(d_in, hidden, bias=bias), nn.Linear(hidden, n_classes, bias=False)
        self.phi, self.phi_out = _activation(activation), _activation(output_activation)
        fan1 = d_in + int(bias)  # the bias is one more input weight
        scaled_init_(self.fc1.weight, init_scale, fan1, init)
        if bias:
            scaled_init_(self.fc1.bias, init_scale, fan1, init)
        scaled_init_(self.fc2.weight, init_scale, hidden, init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.phi_out(self.fc2(self.phi(self.fc1(x.flatten(1)))))

    def end_to_end(self) -> torch.Tensor:
        """W2 W1, the network's map when it is linear (activation=linear, no bias)."""
        return self.fc2.weight @ self.fc1.weight

    def unit_norms(self) -> torch.Tensor:
        """|a_h| * |(w_h, b_h)| for each hidden unit h: how much unit h contributes."""
        w_in = self.fc1.weight if self.fc1.bias is None else torch.cat([self.fc1.weight, self.fc1.bias[:, None]], 1)
        return self.fc2.weight.norm(dim=0) * w_in.norm(dim=1)

    def kink_positions(self) -> torch.Tensor:
        """-b_h / w_h per unit: where a univariate ReLU unit bends (inf where w_h = 0)."""
        if self.fc1.weight.shape[1] != 1 or self.fc1.bias is None:
            raise OptrunError("model: kink positions need a univariate input and bias=true")
        return -self.fc1.bias / self.fc1.weight[:, 0]


class LinearConv(nn.Module):
    """A two-layer linear conv net on 1-D signals: H kernels of width k applied with stride k
    (non-overlapping patches), then a linear readout over channels and positions to one output. Its
    map is the position-by-tap matrix M = sum_h a_h w_h^T, whose rank is the number of kernels it
    effectively uses (with overlapping patches M would not be identifiable from the function)."""

    def __init__(self, input_shape, n_classes: int, channels: int = 10, kernel_size: int = 5,
                 init_scale: float = 1.0, init: str = "gaussian"):
        super().__init__()
        _check(init_scale, init)
        if len(input_shape) != 2 or input_shape[0] != 1:
            raise OptrunError(f"model=linear_conv: expected (1, L) signals, got shape {tuple(input_shape)}")
        if n_classes != 1:
            raise OptrunError(f"model=linear_conv: expected one output, the data set has {n_classes}")
        positions = input_shape[1] // kernel_size if kernel_size > 0 else 0
        if positions <= 0 or input_shape[1] % kernel_size or channels <= 0:
            raise OptrunError(f"model.kernel_size / model.channels: need a kernel size dividing the signal length "
                              f"{input_shape[1]} and channels >= 1, got {kernel_size} and {channels}")
        self.kernels = nn.Parameter(torch.empty(channels, kernel_size))
        self.readout = nn.Parameter(torch.empty(channels, positions))
        scaled_init_(self.kernels, init_scale, kernel_size, init)
        scaled_init_(self.readout, init_scale, channels * positions, init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # non-overlapping patches of a (1, L) signal are its consecutive blocks: a plain matmul
        return x.flatten(1) @ self.end_to_end().reshape(-1, 1)

    def end_to_end(self) -> torch.Tensor:
        return self.readout.T @ self.kernels

    def unit_norms(self) -> torch.Tensor:
        return self.readout.norm(dim=1) * self.kernels.norm(dim=1)
