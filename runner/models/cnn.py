"""A small convolutional network for (C, H, W) or (C, L) inputs (2-D or 1-D convolutions).

`pool=true` halves the resolution after every conv block (max pooling), as in classic CNNs;
`hidden=null` (or 0) makes the head a single linear layer."""
from __future__ import annotations

import torch
from torch import nn

from runner.errors import OptrunError
from runner.models.mlp import make_activation


class CNN(nn.Module):
    def __init__(self, input_shape, n_classes: int, channels: list[int] = (16, 32), kernel_size: int = 3,
                 hidden: int | None = 64, activation: str = "relu", batch_norm: bool = False, pool: bool = False):
        super().__init__()
        if len(input_shape) not in (2, 3):
            raise OptrunError(f"model=cnn: expected (C, L) or (C, H, W) inputs, got shape {tuple(input_shape)}")
        two_d = len(input_shape) == 3
        conv, bn = (nn.Conv2d, nn.BatchNorm2d) if two_d else (nn.Conv1d, nn.BatchNorm1d)
        size = min(input_shape[1:])
        layers: list[nn.Module] = []
        c_in = input_shape[0]
        for c in channels:
            layers.append(conv(c_in, c, kernel_size, padding=kernel_size // 2))
            if batch_norm:
                layers.append(bn(c))
            layers.append(make_activation(activation))
            if pool and size >= 4:
                layers.append(nn.MaxPool2d(2) if two_d else nn.MaxPool1d(2))
                size //= 2
            c_in = c
        final_pool = nn.AdaptiveAvgPool2d(2) if two_d else nn.AdaptiveAvgPool1d(4)
        self.features = nn.Sequential(*layers, final_pool, nn.Flatten())
        n_feat = c_in * 4
        if hidden:
            self.head = nn.Sequential(nn.Linear(n_feat, hidden), make_activation(activation),
                                      nn.Linear(hidden, n_classes))
        else:
            self.head = nn.Sequential(nn.Linear(n_feat, n_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))
