"""Spiking networks of hard-threshold leaky integrate-and-fire (LIF) neurons, with a time loop.

Each layer is a linear map followed by LIF neurons: at every time step the membrane integrates its
input current, u <- beta * u + W x, emits a spike s = H(u - threshold) (a Heaviside step) and resets
(`reset: zero` sets u to 0 where it spiked, as the PolyStep code does; `subtract` removes the
threshold). Inputs are encoded as a direct current: the flattened input drives the first layer with
the same current at every one of the `timesteps` steps, so that current is computed once.

The readout is the output layer's spike count over the time steps, times `readout_scale`, used as
logits (PolyStep's MNIST SNN feeds the raw counts to cross-entropy, scale 1; its 4-class starter uses
10 x the mean rate, i.e. scale 10 / timesteps). The spike is a true step: its derivative is exactly
zero everywhere, so backprop through the network returns a zero gradient (the reason gradient-free
methods are needed). The step is written H(u - threshold) + 0 * (u - stop_grad(u)): same value, and
the graph stays connected, so autograd (and forward-mode, and vmap) return zeros instead of failing
on an output that does not depend on the parameters at all.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from runner.errors import OptrunError

RESETS = ("zero", "subtract")


def hard_spike(u: torch.Tensor, threshold: float) -> torch.Tensor:
    """H(u - threshold) in {0, 1}, with derivative exactly 0 (not a surrogate)."""
    return (u >= threshold).to(u.dtype) + 0.0 * (u - u.detach())


class LIFNet(nn.Module):
    """Linear -> LIF layers (`hidden` widths, then `n_classes` output neurons); logits are the
    output spike counts times `readout_scale`."""

    def __init__(self, input_shape, n_classes: int, hidden: list[int] = (128,), beta: float = 0.95,
                 threshold: float = 1.0, timesteps: int = 15, reset: str = "zero", readout_scale: float = 1.0):
        super().__init__()
        if any(h <= 0 for h in hidden):
            raise OptrunError(f"model.hidden: expected positive layer widths, got {list(hidden)}")
        if not 0.0 <= beta <= 1.0:
            raise OptrunError(f"model.beta: expected a membrane decay in [0, 1], got {beta}")
        if timesteps <= 0 or int(timesteps) != timesteps:
            raise OptrunError(f"model.timesteps: expected a positive integer, got {timesteps}")
        if reset not in RESETS:
            raise OptrunError(f"model.reset: unknown '{reset}' (expected one of: {', '.join(RESETS)})")
        sizes = [math.prod(input_shape), *hidden, n_classes]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:]))
        self.beta, self.threshold, self.timesteps = float(beta), float(threshold), int(timesteps)
        self.reset, self.readout_scale = reset, float(readout_scale)

    def lif(self, current: torch.Tensor, u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One LIF update: integrate, spike, reset. Returns (spikes, new membrane)."""
        u = self.beta * u + current
        s = hard_spike(u, self.threshold)
        u = u * (1.0 - s) if self.reset == "zero" else u - s * self.threshold
        return s, u

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.reshape(x.shape[0], -1)
        drive = self.layers[0](x)  # the direct-current input: the same at every time step
        membranes = [torch.zeros_like(drive)] + [None] * (len(self.layers) - 1)
        counts = None
        for _ in range(self.timesteps):
            s, membranes[0] = self.lif(drive, membranes[0])
            for i, layer in enumerate(self.layers[1:], 1):
                current = layer(s)
                if membranes[i] is None:
                    membranes[i] = torch.zeros_like(current)
                s, membranes[i] = self.lif(current, membranes[i])
            counts = s if counts is None else counts + s
        return counts * self.readout_scale
