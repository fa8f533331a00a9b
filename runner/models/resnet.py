"""ResNet-18 for small images (CIFAR-style): torchvision's network with a 3x3 stride-1 stem and no
max-pool, as is usual for 32x32 inputs."""
from __future__ import annotations

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
