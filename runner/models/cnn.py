"""A small convolutional network for (C, H, W) or (C, L) inputs (2-D or 1-D convolutions)."""
from __future__ import annotations

import torch
from torch import nn

from runner.errors import OptrunError
from runner.models.mlp import make_activation


class CNN(nn.Module):
    def __init__(self, input_shape, n_classes: int, channels: list[int] = (16, 32), kernel_size: int = 3,
                 hidden: int = 64, activation: str = "relu", batch_norm: bool = False):
        super().__init__()
        if len(input_shape) not in (2, 3):
            raise OptrunError(f"model=cnn: expected (C, L) or (C, H, W) inputs, got shape {tuple(input_shape)}")
        conv, bn = (nn.Conv2d, nn.BatchNorm2d) if len(input_shape) == 3 else (nn.Conv1d, nn.BatchNorm1d)
        layers: list[nn.Module] = []
        c_in = input_shape[0]
        for c in channels:
            layers.append(conv(c_in, c, kernel_size, padding=kernel_size // 2))
            if batch_norm:
                layers.append(bn(c))
            layers.append(make_activation(activation))
            c_in = c
        pool = nn.AdaptiveAvgPool2d(2) if len(input_shape) == 3 else nn.AdaptiveAvgPool1d(4)
        self.features = nn.Sequential(*layers, pool, nn.Flatten())
        n_feat = c_in * 4
        self.head = nn.Sequential(nn.Linear(n_feat, hidden), make_activation(activation), nn.Linear(hidden, n_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))
