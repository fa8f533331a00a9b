"""Convergence radius of the softmax cross-entropy along a parameter direction (Ghosts of Softmax).

Along a unit direction v the logits move, to first order, as z(t) = z + t·a with a = J_z(x)·v. The
partition function sum_k exp(z_k + t·a_k) has complex zeros; the nearest one caps the radius of the
loss's Taylor series in t. With Δ_a(x) = max_k a_k − min_k a_k, no zero lies within π/Δ_a(x) (all
terms stay in an open half-plane), so ρ_a = π / max_x Δ_a(x) is a lower bound over a probe set S.
For two classes the nearest zero is exact: t* = (iπ − δ)/(a_1 − a_2), |t*| = sqrt(δ² + π²)/Δ_a with
δ = z_1 − z_2 the logit margin. A temperature T (loss CE(z/T)) divides z and a by T.

All per-sample slopes come from ONE batched forward-mode product (`torch.func.jvp`) over S.
"""
from __future__ import annotations

import math

import torch
from torch.func import functional_call, jvp

from runner.hooks.base import eval_mode


def logit_jvp(model: torch.nn.Module, params: dict, tangent: dict, x: torch.Tensor
              ) -> tuple[torch.Tensor, torch.Tensor]:
    """(z, a): logits at `params` and their directional derivative along `tangent`, for every row of x.

    Evaluated in eval mode (BatchNorm uses its running statistics and is not updated)."""
    buffers = dict(model.named_buffers())
    with eval_mode(model):
        return jvp(lambda p: functional_call(model, (p, buffers), (x,)), (params,), (tangent,))


def slope_spread(a: torch.Tensor) -> torch.Tensor:
    """Δ_a(x) = max_k a_k − min_k a_k, per sample."""
    return a.amax(dim=-1) - a.amin(dim=-1)


def radius(a: torch.Tensor, temperature: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """(Δ_a, ρ_a) as float64 scalars: the largest spread over the probe set and ρ_a = π·T/Δ_a (inf when
    Δ_a = 0)."""
    delta = slope_spread(a).max().double()
    return delta, math.pi * temperature / delta


def binary_radius(z: torch.Tensor, a: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """Exact radius for two classes: min over samples of sqrt(δ² + π²)/Δ_a with δ, Δ_a at temperature T."""
    if z.shape[-1] != 2:
        raise ValueError(f"binary_radius: expected 2 logits per sample, got {z.shape[-1]}")
    delta_z = (z[:, 0] - z[:, 1]) / temperature
    spread = (a[:, 0] - a[:, 1]).abs() / temperature
    return (torch.sqrt(delta_z ** 2 + math.pi ** 2) / spread).min()


def joint_norm(tensors) -> torch.Tensor:
    """Euclidean norm of several tensors taken together, accumulated in float64."""
    return torch.stack([torch.linalg.vector_norm(t, dtype=torch.float64) for t in tensors]).norm()


def unit_direction(tensors: dict) -> tuple[dict, torch.Tensor]:
    """(v, norm): `tensors` divided by their joint Euclidean norm (a zero vector stays zero)."""
    norm = joint_norm(tensors.values())
    scale = torch.where(norm > 0, 1.0 / norm.clamp_min(1e-300), torch.zeros_like(norm))
    return {k: t * scale.to(t.dtype) for k, t in tensors.items()}, norm
