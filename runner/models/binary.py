"""Sign-binarized layers (1-bit weights and activations) with a pluggable surrogate backward for sign().

The forward pass of a binary layer is that of a binary neural network (BNN): the weight W is replaced
by sign(W) * mean|W| (one scaling factor per layer, kept differentiable as in the ReSTE code) and the
layer's input x by sign(x) (unless `binarize_input=False`, the 1W/32A setting). sign() has zero
derivative almost everywhere, so the backward pass uses a *surrogate* derivative, chosen per model by
a `Surrogate`:

- `ste`: the straight-through estimator as BNN code uses it, the clipped identity 1{|x| <= clip}.
- `reste`: the rectified STE (Wu et al., ICCV 2023), the derivative of f_o(x) = sign(x)|x|^(1/o):
  (1/o)|x|^((1-o)/o) for interval < |x| <= t, the secant slope f_o(interval)/interval for |x| <=
  interval (the power is unbounded at 0), and 0 for |x| > t (interval = 0.1, t = 1.5 in the paper's
  code). o = 1 is the identity on |x| <= t, i.e. STE with clip = t; a larger o makes f_o closer to
  sign (smaller estimating error) and its derivative spikier (less stable gradients).

`binarize(model)` turns an existing `runner.models.mlp.MLP` or `runner.models.resnet.ResNet` into a
BNN, keeping the first and the last layer full precision (as BNN papers do). `binary_mlp` and
`binary_resnet` are the model configs' factories. The surrogate of a built model is changed with
`set_surrogate(model, s)` or, for one computation only, `with using(model, s): ...` (what a gradient
estimator does, so that estimating stays free of side effects).
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from runner.errors import OptrunError

KINDS = ("ste", "reste")


def f_o(x: torch.Tensor, o: float) -> torch.Tensor:
    """ReSTE's equivalent forward function sign(x)|x|^(1/o) (o = 1: identity; o -> inf: sign)."""
    return torch.sign(x) * x.abs().pow(1.0 / o)


@dataclass(frozen=True)
class Surrogate:
    """Which derivative stands in for sign'(x): kind ste (clip) or reste (o, t, interval)."""

    kind: str = "ste"
    o: float = 1.0
    t: float = 1.5
    interval: float = 0.1
    clip: float = 1.0

    def __post_init__(self):
        if self.kind not in KINDS:
            raise OptrunError(f"surrogate kind: unknown '{self.kind}' (expected one of: {', '.join(KINDS)})")
        if not (self.o >= 1 and self.t > self.interval > 0 and self.clip > 0):
            raise OptrunError(f"surrogate: expected o >= 1, t > interval > 0, clip > 0, got {self}")

    def grad(self, x: torch.Tensor) -> torch.Tensor:
        """The surrogate derivative at x (elementwise)."""
        a = x.abs()
        if self.kind == "ste":
            return (a <= self.clip).to(x.dtype)
        o = self.o
        power = (1.0 / o) * a.clamp_min(self.interval).pow((1.0 - o) / o)
        inner = torch.full_like(x, self.interval ** (1.0 / o) / self.interval)
        return torch.where(a > self.t, torch.zeros_like(x), torch.where(a <= self.interval, inner, power))


class _Sign(torch.autograd.Function):
    """sign(x) forward, grad * surrogate.grad(x) backward."""

    @staticmethod
    def forward(ctx, x, surrogate):
        ctx.save_for_backward(x)
        ctx.surrogate = surrogate
        return torch.sign(x)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return grad * ctx.surrogate.grad(x), None


def sign(x: torch.Tensor, surrogate: Surrogate) -> torch.Tensor:
    return _Sign.apply(x, surrogate)


class _Binary:
    """Shared by the binary layers: the scaled sign of the weight and the sign of the input."""

    surrogate: Surrogate
    binarize_input: bool

    def binary_weight(self) -> torch.Tensor:
        w = self.weight
        return sign(w, self.surrogate) * w.abs().mean()

    def binary_input(self, x: torch.Tensor) -> torch.Tensor:
        return sign(x, self.surrogate) if self.binarize_input else x


class BinaryLinear(_Binary, nn.Linear):
    def __init__(self, *args, binarize_input: bool = True, surrogate: Surrogate = Surrogate(), **kwargs):
        super().__init__(*args, **kwargs)
        self.binarize_input, self.surrogate = binarize_input, surrogate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(self.binary_input(x), self.binary_weight(), self.bias)


class BinaryConv2d(_Binary, nn.Conv2d):
    def __init__(self, *args, binarize_input: bool = True, surrogate: Surrogate = Surrogate(), **kwargs):
        super().__init__(*args, **kwargs)
        self.binarize_input, self.surrogate = binarize_input, surrogate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv_forward(self.binary_input(x), self.binary_weight(), self.bias)


BINARY = (BinaryLinear, BinaryConv2d)


def binary_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The binarized layers of a model, (name, module), in registration order."""
    return [(n, m) for n, m in model.named_modules() if isinstance(m, BINARY)]


def set_surrogate(model: nn.Module, surrogate: Surrogate) -> None:
    for _, m in binary_layers(model):
        m.surrogate = surrogate


@contextlib.contextmanager
def using(model: nn.Module, surrogate: Surrogate):
    """Set the surrogate of every binary layer for the block, then restore the previous ones."""
    layers = [m for _, m in binary_layers(model)]
    before = [m.surrogate for m in layers]
    try:
        for m in layers:
            m.surrogate = surrogate
        yield model
    finally:
        for m, s in zip(layers, before):
            m.surrogate = s


def _binary_copy(m: nn.Module, binarize_input: bool, surrogate: Surrogate) -> nn.Module:
    if isinstance(m, nn.Linear):
        new = BinaryLinear(m.in_features, m.out_features, bias=m.bias is not None,
                           binarize_input=binarize_input, surrogate=surrogate)
    else:
        new = BinaryConv2d(m.in_channels, m.out_channels, m.kernel_size, m.stride, m.padding, m.dilation,
                           m.groups, bias=m.bias is not None, padding_mode=m.padding_mode,
                           binarize_input=binarize_input, surrogate=surrogate)
    new.load_state_dict(m.state_dict())
    return new.to(m.weight.device, m.weight.dtype)


class _BinaryBlock(nn.Module):
    """A residual basic block in the order of the ReSTE code's 1W/1A block: BN(ReLU(conv(x))) twice,
    plus the shortcut. BN last makes the next binary layer's input signed; after a ReLU its sign
    would be 0 or 1 only."""

    def __init__(self, block: nn.Module):
        super().__init__()
        self.conv1, self.bn1, self.conv2, self.bn2, self.shortcut = (
            block.conv1, block.bn1, block.conv2, block.bn2, block.shortcut)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn1(F.relu(self.conv1(x)))
        return self.bn2(F.relu(self.conv2(out))) + self.shortcut(x)


def binarize(model: nn.Module, binarize_input: bool = True, surrogate: Surrogate = Surrogate()) -> nn.Module:
    """Replace every nn.Linear / nn.Conv2d but the first and the last (registration order) by its
    binary counterpart with the same weights, in place; returns the model.

    For `runner.models.resnet.ResNet` the blocks and the stem are first reordered to BN after ReLU
    (see `_BinaryBlock`); for an MLP use `activation: identity` with `layer_norm: true`, so that each
    binary layer sees the normalised (signed) output of the previous one."""
    from runner.models.resnet import BasicBlock, ResNet

    if isinstance(model, ResNet):
        conv, bn, relu = model.stem
        model.stem = nn.Sequential(conv, relu, bn)
        model.layers = nn.Sequential(*[_BinaryBlock(b) if isinstance(b, BasicBlock) else b for b in model.layers])
    names = [n for n, m in model.named_modules() if type(m) in (nn.Linear, nn.Conv2d)]
    if len(names) < 3:
        raise OptrunError(f"binarize: the model has {len(names)} linear/conv layers; it needs at least 3 "
                          "(the first and the last stay full precision)")
    for name in names[1:-1]:
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, _binary_copy(getattr(parent, child), binarize_input, surrogate))
    return model


def _kaiming(model: nn.Module) -> None:
    """Kaiming-normal (ReLU gain) weights for every conv and linear layer, as the ReSTE code initialises."""
    for m in model.modules():
        if isinstance(m, (nn.Linear, nn.Conv2d)):
            nn.init.kaiming_normal_(m.weight, nonlinearity="relu")


def binary_mlp(input_shape, n_classes: int, hidden: list[int] = (256, 256, 256), bias: bool = True,
               binarize_input: bool = True, kaiming_init: bool = True) -> nn.Module:
    """MLP Linear -> LayerNorm -> (sign in the next layer) with the hidden-to-hidden layers binarized."""
    from runner.models.mlp import MLP

    model = MLP(input_shape, n_classes, list(hidden), activation="identity", bias=bias, layer_norm=True)
    if kaiming_init:
        _kaiming(model)
    return binarize(model, binarize_input)


def binary_resnet(input_shape, n_classes: int, blocks: int = 3, width: int = 16, binarize_input: bool = True,
                  kaiming_init: bool = True) -> nn.Module:
    """CIFAR ResNet (blocks=3: ResNet-20) with every block conv binarized, stem conv and head full
    precision. `kaiming_init`: see `_kaiming`."""
    from runner.models.resnet import ResNet

    model = ResNet(input_shape, n_classes, blocks, width)
    if kaiming_init:
        _kaiming(model)
    return binarize(model, binarize_input)
