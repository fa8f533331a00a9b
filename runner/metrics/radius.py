"""Convergence radius of the softmax cross-entropy along a parameter direction (Ghosts of Softmax).

Along a unit direction v the logits move, to first order, as z(t) = z + t·a with a = J_z(x)·v. The
partition function sum_k exp(z_k + t·a_k) has complex zeros; the nearest one caps the radius of the
loss's Taylor series in t. With Δ_a(x) = max_k a_k − min_k a_k, no zero lies within π/Δ_a(x) (all
terms stay in an open half-plane), so ρ_a = π / max_x Δ_a(x) is a lower bound over a probe set S.
For two classes the nearest zero is exact: t* = (iπ − δ)/(a_1 − a_2), |t*| = sqrt(δ² + π²)/Δ_a with
δ = z_1 − z_2 the logit margin. A temperature T (loss CE(z/T)) divides z and a by T.

All per-sample slopes come from ONE batched forward-mode pass over S: dual tensors
(`torch.autograd.forward_ad`) through the module's own forward, with the dual parameters put in place
by `swapped_parameters`; this costs less than half of `torch.func.jvp(functional_call(...))` on small
models (bench/bench_radius.py; `functional_call` alone adds ~75 us to an 87 us MLP forward) and gives
the same numbers.
"""
from __future__ import annotations

import math
import weakref
from contextlib import contextmanager

import torch
import torch.autograd.forward_ad as fwAD

from runner.hooks.base import eval_mode

_SLOTS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def parameter_slots(model: torch.nn.Module) -> list[tuple[torch.nn.Module, str, str, torch.Tensor]]:
    """(module, attribute, name, parameter) for every parameter entry of every submodule (a tied parameter
    appears under each owner, named as `named_parameters` names it). Cached per model and rebuilt when a
    parameter was replaced: walking the module tree costs ~60 us a call on a small MLP."""
    slots = _SLOTS.get(model)
    if slots is None or any(m._parameters.get(attr) is not p for m, attr, _, p in slots):
        names = {id(p): n for n, p in model.named_parameters()}
        slots = [(m, attr, names[id(p)], p) for m in model.modules() for attr, p in m._parameters.items()
                 if p is not None]
        _SLOTS[model] = slots
    return slots


@contextmanager
def swapped_parameters(model: torch.nn.Module, tensors: dict):
    """Run the module with some parameters replaced by other tensors (by `named_parameters` name; tied
    parameters follow their owner), restored on exit. What `torch.func.functional_call` does, without
    its per-call bookkeeping, which costs as much as the forward of a small MLP."""
    slots = [(m, attr, name, p) for m, attr, name, p in parameter_slots(model) if name in tensors]
    try:
        for m, attr, name, _ in slots:
            m._parameters[attr] = tensors[name]
        yield model
    finally:
        for m, attr, _, p in slots:
            m._parameters[attr] = p


def logit_jvp(model: torch.nn.Module, params: dict, tangent: dict, x: torch.Tensor
              ) -> tuple[torch.Tensor, torch.Tensor]:
    """(z, a): logits at `params` and their directional derivative along `tangent`, for every row of x.

    Evaluated in eval mode (BatchNorm uses its running statistics and is not updated), with no
    autograd graph; `params` and `tangent` map parameter names to tensors (a missing tangent is 0)."""
    with eval_mode(model, inference=False), fwAD.dual_level():
        duals = {n: fwAD.make_dual(p, tangent[n]) if n in tangent else p for n, p in params.items()}
        with swapped_parameters(model, duals):
            z, a = fwAD.unpack_dual(model(x))
    return z, torch.zeros_like(z) if a is None else a


def slope_spread(a: torch.Tensor) -> torch.Tensor:
    """Δ_a(x) = max_k a_k − min_k a_k, per sample."""
    lo, hi = torch.aminmax(a, dim=-1)
    return hi - lo


def radius(a: torch.Tensor, temperature: float = 1.0, scale: torch.Tensor | float = 1.0
           ) -> tuple[torch.Tensor, torch.Tensor]:
    """(Δ_a, ρ_a) as float64 scalars: the largest spread over the probe set and ρ_a = π·T/Δ_a (inf when
    Δ_a = 0). The slopes are `scale`·a (a JVP along an unnormalised step p with scale = 1/‖p‖: the
    scalar is applied after the reduction, not to every slope)."""
    delta = slope_spread(a).max().double() * scale
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
    tensors = list(tensors)
    if len({(t.device, t.dtype) for t in tensors}) == 1 and tensors[0].dtype in (torch.float32, torch.float64):
        # one fused call (the usual case): per-tensor norms in the tensors' precision, combined in float64
        return torch.stack(torch._foreach_norm(tensors)).double().norm()
    return torch.stack([torch.linalg.vector_norm(t, dtype=torch.float64) for t in tensors]).norm()


def unit_direction(tensors: dict) -> tuple[dict, torch.Tensor]:
    """(v, norm): `tensors` divided by their joint Euclidean norm (a zero vector stays zero)."""
    norm = joint_norm(tensors.values())
    scale = torch.where(norm > 0, 1.0 / norm.clamp_min(1e-300), torch.zeros_like(norm))
    return {k: t * scale.to(t.dtype) for k, t in tensors.items()}, norm
