"""A layered network whose output is the fixed point of discrete-time dynamics (equilibrium
propagation, holomorphic EP; Laborieux & Zenke, ICLR 2024), complex64 end to end when nudged by a
complex β.

Neurons u = (u_1, ..., u_L) (hidden layers, then the output layer), s = σ(u). One step of the
dynamics replaces every layer by its input:

    u_l ← W_l s_{l-1} + b_l + B_l s_{l+1}        (s_0 = x; no top-down term for the output layer)
    u_L ← ... + β ∂ℓ/∂s_L                          (the nudge: ℓ the per-sample cross-entropy of the
                                                   readout logits R s_L + c)

so the vector field is F(u) = Φ(σ(u)) + β ∂ℓ/∂s_L − u and a fixed point has F = 0. The feed-forward
weights W_l and the feedback weights B_l are independent parameters; at initialisation
B_l = sin α · R_l + cos α · W_{l+1}ᵀ with R_l drawn like a weight (LeCun normal), so α = 0 is the
symmetric network of classic EP and α = 90° an untied one (the authors' `rotate`).

`model(x)` is the readout of the free fixed point after `T1` steps from u = 0, differentiable by
autograd through the steps, so the core `Problem`, `Backprop` and the `grad_alignment` probe apply.
The pieces an EP estimator needs are pure functions of a parameter dict `p` (the names of
`named_parameters()`): `relax` (free or nudged phase, real or complex β, one β per sample allowed),
`phi` (Φ without activation: its Jacobian in s is ∂F/∂s + I), `nudge`, `logits`.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from runner.errors import OptrunError


def sigmoid(u: torch.Tensor) -> torch.Tensor:
    """The logistic function, holomorphic: 1 / (1 + e^{-u}) for real or complex u."""
    return torch.sigmoid(u)


def softmax(z: torch.Tensor) -> torch.Tensor:
    """softmax over the last axis for real or complex logits (the max of the real part is the shift)."""
    z = z - z.real.amax(-1, keepdim=True).detach().to(z.dtype)
    e = torch.exp(z)
    return e / e.sum(-1, keepdim=True)


class EquilibriumMLP(nn.Module):
    """Layers in→hidden...→out with feed-forward `ff.l` (bias) and feedback `fb.l` (no bias, from
    layer l+2 to l+1 in the sizes list), and a linear `readout` of σ(u_out) to the classes."""

    def __init__(self, input_shape, n_classes: int, hidden: list[int] = (256, 256), out_size: int | None = None,
                 angle: float = 0.0, T1: int = 150):
        super().__init__()
        if not hidden or any(h <= 0 for h in hidden):
            raise OptrunError(f"model.hidden: expected positive layer widths (at least one), got {list(hidden)}")
        if int(T1) != T1 or T1 <= 0:
            raise OptrunError(f"model.T1: expected a positive number of free-phase steps, got {T1!r}")
        self.sizes = [math.prod(input_shape), *hidden, out_size or n_classes]
        self.L, self.T1, self.angle0 = len(self.sizes) - 1, int(T1), float(angle)
        s = self.sizes
        self.ff = nn.ModuleList(nn.Linear(s[i], s[i + 1]) for i in range(self.L))
        self.fb = nn.ModuleList(nn.Linear(s[i + 2], s[i + 1], bias=False) for i in range(self.L - 1))
        self.readout = nn.Linear(s[-1], n_classes)
        with torch.no_grad():
            for lin in [*self.ff, *self.fb, self.readout]:  # LeCun normal, zero bias (flax Dense defaults)
                lin.weight.normal_(0.0, 1.0 / math.sqrt(lin.in_features))
                if lin.bias is not None:
                    lin.bias.zero_()
            a = math.radians(angle)
            for i, lin in enumerate(self.fb):
                lin.weight.copy_(math.sin(a) * lin.weight + math.cos(a) * self.ff[i + 1].weight.T)

    # ---- the parts, as functions of a parameter dict ----
    def params(self) -> dict[str, torch.Tensor]:
        return dict(self.named_parameters())

    @property
    def n_neurons(self) -> int:
        return sum(self.sizes[1:])

    def phi(self, p: dict, s: list[torch.Tensor], x: torch.Tensor) -> list[torch.Tensor]:
        """Φ(s): every layer's new state from its neighbours' activities (no nudge)."""
        new = []
        for i in range(self.L):
            below = x if i == 0 else s[i - 1]
            h = below @ p[f"ff.{i}.weight"].T.to(below.dtype) + p[f"ff.{i}.bias"].to(below.dtype)
            if i < self.L - 1:
                h = h + s[i + 1] @ p[f"fb.{i}.weight"].T.to(below.dtype)
            new.append(h)
        return new

    def logits(self, p: dict, s_out: torch.Tensor) -> torch.Tensor:
        return s_out @ p["readout.weight"].T.to(s_out.dtype) + p["readout.bias"].to(s_out.dtype)

    def nudge(self, p: dict, s_out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """∂ℓ/∂s_out of the per-sample cross-entropy (holomorphic in s_out): (softmax(z) − onehot(y)) R."""
        prob = softmax(self.logits(p, s_out))
        err = prob - nn.functional.one_hot(y, prob.shape[-1]).to(prob.dtype)
        return err @ p["readout.weight"].to(err.dtype)

    def zeros(self, x: torch.Tensor) -> list[torch.Tensor]:
        return [x.new_zeros(x.shape[0], n) for n in self.sizes[1:]]

    def relax(self, p: dict, x: torch.Tensor, T: int, y: torch.Tensor | None = None, beta=0.0,
              u0: list[torch.Tensor] | None = None) -> list[torch.Tensor]:
        """T steps u ← Φ(σ(u)) + β ∂ℓ/∂s_out from u0 (zeros). `beta`: a number or a (batch, 1) tensor;
        a complex one makes the whole state complex64."""
        x = x.flatten(1)
        cplx = torch.is_tensor(beta) and beta.is_complex() or isinstance(beta, complex)
        if cplx:
            x = x.to(torch.complex64)
        u = [v.to(x.dtype) for v in u0] if u0 is not None else self.zeros(x)
        nudged = (torch.is_tensor(beta) or beta != 0) and y is not None
        for _ in range(T):
            s = [sigmoid(v) for v in u]
            u = self.phi(p, s, x)
            if nudged:
                u[-1] = u[-1] + beta * self.nudge(p, s[-1], y)
        return u

    def residual(self, p: dict, u: list[torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        """log10 ‖F(u)‖ per sample at β = 0 (how far the free phase is from its fixed point)."""
        new = self.phi(p, [sigmoid(v) for v in u], x.flatten(1))
        return torch.log10(torch.cat([a - b for a, b in zip(new, u)], 1).norm(dim=1) + 1e-12)

    def feedback_angle(self) -> float:
        """The angle in degrees between the feed-forward weights and the transposed feedback weights."""
        if self.L < 2:
            return float("nan")
        w = torch.cat([self.ff[i + 1].weight.detach().T.reshape(-1) for i in range(self.L - 1)])
        b = torch.cat([lin.weight.detach().reshape(-1) for lin in self.fb])
        cos = (w @ b / (w.norm() * b.norm())).clamp(-1, 1)
        return math.degrees(math.acos(float(cos)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = self.params()
        u = self.relax(p, x, self.T1)
        return self.logits(p, sigmoid(u[-1]))
