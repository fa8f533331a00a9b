"""ResNets for small images.

`ResNet`: CIFAR-style ResNet (He et al. 2016, Sec. 4.2): 3 stages of `blocks` basic blocks with 16/32/64
channels, batch norm, 1x1 projection shortcuts where the shape changes. blocks=3 is ResNet-20.
`resnet18`: torchvision's ResNet-18 with a 3x3 stride-1 stem and no max-pool, as usual for 32x32 inputs."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from runner.errors import OptrunError


def resnet18(input_shape, n_classes: int) -> nn.Module:
    from torchvision.models import resnet18 as tv_resnet18

    if len(input_shape) != 3:
        raise OptrunError(f"model=resnet18: expected (C, H, W) image inputs, got shape {tuple(input_shape)}")
    model = tv_resnet18(weights=None, num_classes=n_classes)
    model.conv1 = nn.Conv2d(input_shape[0], 64, kernel_size=3, stride=1, padding=1, bias=False)
    model.maxpool = nn.Identity()
    return model


class BasicBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut = nn.Sequential()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class ResNet(nn.Module):
    def __init__(self, input_shape, n_classes: int, blocks: int = 3, width: int = 16):
        super().__init__()
        if len(input_shape) != 3:
            raise OptrunError(f"model=resnet: expected (C, H, W) images, got shape {tuple(input_shape)}")
        self.stem = nn.Sequential(nn.Conv2d(input_shape[0], width, 3, 1, 1, bias=False), nn.BatchNorm2d(width),
                                  nn.ReLU())
        layers, c = [], width
        for stage, c_out in enumerate((width, 2 * width, 4 * width)):
            for b in range(blocks):
                layers.append(BasicBlock(c, c_out, 2 if stage > 0 and b == 0 else 1))
                c = c_out
        self.layers = nn.Sequential(*layers)
        self.head = nn.Linear(c, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(F.adaptive_avg_pool2d(self.layers(self.stem(x)), 1).flatten(1))
