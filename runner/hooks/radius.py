"""Radius ratio r = τ/ρ_a of the update the optimizer actually applies (Ghosts of Softmax), and the
ρ-controller that keeps it at or below 1.

`before_step` snapshots the parameters θ_old; after the step p = θ_new − θ_old is the real update
(Adam's preconditioned step, SGD's momentum buffer, clipping, the LR schedule: all included, with no
second optimizer-state update). τ = ‖p‖, v = p/τ, and the logit slopes a = J_z(x)·v at θ_old for the
whole probe set S come from one batched forward-mode pass along p itself (runner.metrics.radius;
a = J_z p / τ by linearity, so no normalised copy of p is made). The snapshot is one `_foreach_copy_`
into buffers kept across steps, the difference one `_foreach_sub`. Logs `tau`, `delta_a`, `rho_a`,
`r`, `lr` (the LR the step used), and `rho_star` for two classes, as `radius/<name>`.

Probe set S (`probe`): `batch` = the mini-batch of this step (the trainer's `state.extras["batch"]`),
`train` / `test` = a fixed seeded subset of that split (`max_samples`, null = all of it).

`controller: true` makes it a controller (the engine runs it right after the trainer's step, before
every read-only hook, so those measure the update actually applied): the update becomes s·p with
`mode: cap` s = min(1, target_r·ρ_a/τ) (the paper's ρ-controller, target_r = 1: r ≤ 1 always), or
`mode: set` s = target_r·ρ_a/τ (the "ρ-set" variant: every step has r = target_r). It then also logs
`scale` and `r_raw` (the ratio before control); `r` is the ratio of the step actually applied.
The optimizer state (moments, momentum buffers) is left as the optimizer wrote it.
"""
from __future__ import annotations

import torch

from runner.errors import OptrunError
from runner.hooks.base import Hook
from runner.hooks.probe_set import probe_split
from runner.metrics.radius import binary_radius, joint_norm, logit_jvp, parameter_slots, radius

PROBES = ("batch", "train", "test")
MODES = ("cap", "set")


class Radius(Hook):
    name = "radius"

    def __init__(self, every: int = 1, probe: str = "train", max_samples: int | None = None,
                 controller: bool = False, mode: str = "cap", target_r: float = 1.0, temperature: float = 1.0,
                 at_phase_end: bool = False, at_end: bool = False):
        super().__init__(every=every, at_start=False, at_phase_end=at_phase_end, at_end=at_end)
        if probe not in PROBES:
            raise OptrunError(f"hooks.radius.probe: unknown '{probe}' (expected one of: {', '.join(PROBES)})")
        if mode not in MODES:
            raise OptrunError(f"hooks.radius.mode: unknown '{mode}' (expected one of: {', '.join(MODES)})")
        if target_r <= 0 or temperature <= 0:
            raise OptrunError("hooks.radius.target_r / temperature: expected positive numbers")
        self.probe, self.max_samples = probe, max_samples
        self.controller, self.mode, self.target_r, self.temperature = bool(controller), mode, target_r, temperature
        self.old: dict | None = None  # name -> θ_old buffer, kept across steps
        self.armed = False  # a snapshot was taken and not yet used
        self.lr_used = None

    def setup(self, state) -> None:
        if state.model is None or state.optimizer is None:
            raise OptrunError("hooks=radius needs a model and an optimizer")
        self.x = None
        if self.probe != "batch":
            self.x = probe_split(state, self.probe, self.max_samples, self)[0]

    def columns(self, state) -> list[str]:
        binary = ["rho_star"] if getattr(state.data, "n_classes", None) == 2 else []
        return ["tau", "delta_a", "rho_a", "r", "lr", *binary] + (["scale", "r_raw"] if self.controller else [])

    def _parameters(self, model) -> dict:
        return {name: p for _, _, name, p in parameter_slots(model)}  # cached: named_parameters() costs ~60 us

    def before_step(self, state) -> None:
        params = self._parameters(state.model)
        if self.old is None or self.old.keys() != params.keys() or any(
                b.shape != p.shape or b.dtype != p.dtype or b.device != p.device for b, p in zip(self.old.values(), params.values())):
            self.old = {n: p.detach().clone() for n, p in params.items()}
        else:
            torch._foreach_copy_(list(self.old.values()), [p.detach() for p in params.values()])
        self.armed = True
        self.lr_used = state.lr

    def _probe_inputs(self, state) -> torch.Tensor:
        if self.x is not None:
            return self.x
        batch = state.extras.get("batch")
        if batch is None:
            raise OptrunError("hooks.radius.probe=batch: the trainer does not expose its mini-batch "
                              "(state.extras['batch']); use probe=train")
        return batch[0]

    def __call__(self, state) -> dict:
        if not self.armed:  # called without a preceding step (nothing to measure)
            return {}
        params = self._parameters(state.model)
        names = list(self.old)
        step = dict(zip(names, torch._foreach_sub([params[n].detach() for n in names], list(self.old.values()))))
        tau = joint_norm(step.values())
        z, a = logit_jvp(state.model, self.old, step, self._probe_inputs(state))
        inv_tau = torch.where(tau > 0, 1.0 / tau.clamp_min(1e-300), torch.zeros_like(tau))  # slopes along v = p/τ
        delta, rho = radius(a, self.temperature, scale=inv_tau)
        out = {"tau": tau, "delta_a": delta, "rho_a": rho, "r": tau / rho, "lr": self.lr_used}
        if z.shape[-1] == 2:
            out["rho_star"] = binary_radius(z.double(), a.double() * inv_tau, self.temperature)
        if self.controller:
            want = self.target_r * rho / tau
            scale = want.clamp(max=1.0) if self.mode == "cap" else want
            scale = torch.where(torch.isfinite(scale) & (tau > 0), scale, torch.ones_like(scale))
            applied = {n: scale.to(s.dtype) * s for n, s in step.items()}
            with torch.no_grad():
                for n, p in params.items():
                    p.copy_(torch.where(scale != 1.0, self.old[n] + applied[n], p))
            tau_applied = joint_norm(applied.values())
            out.update(scale=scale, r_raw=out["r"], r=tau_applied / rho, tau=tau_applied)
        self.armed = False
        return out
