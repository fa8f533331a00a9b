"""Multi-layer perceptron on flattened inputs (`layer_norm: true` puts a LayerNorm after each hidden
linear layer, before its activation; `hidden: []` is a linear classifier)."""
from __future__ import annotations

import math

import torch
from torch import nn

from runner.errors import OptrunError

ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh, "gelu": nn.GELU, "identity": nn.Identity}


def make_activation(name: str) -> nn.Module:
    if name not in ACTIVATIONS:
        raise OptrunError(f"model.activation: unknown '{name}' (expected one of: {', '.join(ACTIVATIONS)})")
    return ACTIVATIONS[name]()


class MLP(nn.Module):
    def __init__(self, input_shape, n_classes: int, hidden: list[int] = (256, 256), activation: str = "relu",
                 bias: bool = True, layer_norm: bool = False):
        super().__init__()
        if any(h <= 0 for h in hidden):
            raise OptrunError(f"model.hidden: expected positive layer widths, got {list(hidden)}")
        sizes = [math.prod(input_shape), *hidden, n_classes]
        layers: list[nn.Module] = [nn.Flatten()]
        for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
            layers.append(nn.Linear(a, b, bias=bias))
            if i < len(sizes) - 2:
                if layer_norm:
                    layers.append(nn.LayerNorm(b))
                layers.append(make_activation(activation))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)
