"""How complex is what the network has learned: rank, active units, kink clusters, teacher modes.

Reads what the model exposes (see `runner.models.two_layer`) and, when the data set has a teacher
(`runner.data.synthetic.TeacherDataset`), compares against it. Logs, as available:
- `rank`: singular values of the model's map `end_to_end()` above `rank_threshold`; `sv1..svK`;
- `mode1..modeK`: u_i^T M v_i / s_i, the fraction of teacher mode i learned (teacher SVD);
- `active_units`: units with |a_h| |w_h| above `unit_threshold`; `unit_norm1..m` (sorted, top m);
- `kinks` (univariate ReLU nets): distinct rays, i.e. clusters of the directions (w_h, b_h) of
  active units (angle gap > `angle_tolerance` rad), whose kink -b/w lies inside the data range; two
  units bending at the same x in opposite orientations are two rays. Small-initialisation units
  condense onto a few exact directions, so the count is sharp;
- `grad_norm`: norm of the gradient the last step used (read from `.grad`).
The thresholds are absolute and part of the config, so counts can be compared across runs.
"""
from __future__ import annotations

import math

import torch

from runner.hooks.base import Hook, eval_mode


def angle_clusters(angles: torch.Tensor, tolerance: float) -> list[torch.Tensor]:
    """Group angles (radians) on the circle: neighbours closer than `tolerance` share a group.
    Returns the indices of each group's members."""
    if angles.numel() == 0:
        return []
    a, order = torch.remainder(angles, 2 * math.pi).sort()
    gap_after = torch.cat([a.diff(), a[:1] + 2 * math.pi - a[-1:]]) > tolerance  # the last gap wraps around
    if not bool(gap_after.any()):
        return [order]
    shift = int(gap_after.nonzero()[-1]) + 1  # start at a group boundary
    order, gap_after = order.roll(-shift), gap_after.roll(-shift)
    ends = (gap_after.nonzero().flatten() + 1).tolist()
    return [order[s:e] for s, e in zip([0] + ends[:-1], ends)]


class Complexity(Hook):
    name = "complexity"

    def __init__(self, every: int = 10, rank_threshold: float = 0.1, unit_threshold: float = 0.05,
                 angle_tolerance: float = 0.05, n_singular: int = 6, n_units: int = 6, at_start: bool = True,
                 at_phase_end: bool = True, at_end: bool = True):
        super().__init__(every=every, at_start=at_start, at_phase_end=at_phase_end, at_end=at_end)
        self.rank_threshold, self.unit_threshold, self.angle_tolerance = rank_threshold, unit_threshold, angle_tolerance
        self.n_singular, self.n_units = n_singular, n_units
        self.modes = None

    def setup(self, state) -> None:
        teacher = getattr(state.data, "teacher", {}) or {}
        if "weight" in teacher and hasattr(state.model, "end_to_end"):
            u, s, vh = torch.linalg.svd(teacher["weight"].double(), full_matrices=False)
            k = len(teacher["singular_values"]) if "singular_values" in teacher else int((s > 1e-4 * s[0]).sum())
            self.modes = (u[:, :k].float(), s[:k].float(), vh[:k].float())
        self.range = (teacher.get("low"), teacher.get("high"))

    def columns(self, state) -> list[str]:
        names = list(self(state))  # pure (eval mode, no writes): one evaluation gives the names
        return names + ([] if "grad_norm" in names else ["grad_norm"])

    def __call__(self, state) -> dict:
        m, out = state.model, {}
        with eval_mode(m):
            if hasattr(m, "end_to_end") and getattr(m, "activation_name", "linear") == "linear":
                out.update(self._linear(m.end_to_end()))
            if hasattr(m, "unit_norms"):
                norms = m.unit_norms()
                active = norms > self.unit_threshold
                out["active_units"] = int(active.sum())
                top = norms.sort(descending=True).values[: self.n_units]
                out.update({f"unit_norm{i + 1}": float(v) for i, v in enumerate(top)})
                if getattr(m, "activation_name", None) == "relu" and self.range[0] is not None:
                    out["kinks"] = self._kinks(m, active)
        grads = [p.grad.flatten() for p in m.parameters() if p.grad is not None]
        if grads:
            out["grad_norm"] = float(torch.cat(grads).norm())
        return out

    def _kinks(self, m, active: torch.Tensor) -> int:
        w, b = m.fc1.weight[active, 0], m.fc1.bias[active]
        groups = angle_clusters(torch.atan2(b, w), self.angle_tolerance)
        kinks = [float((-b[g] / w[g]).median()) for g in groups]
        return sum(self.range[0] < k < self.range[1] for k in kinks)

    def _linear(self, w: torch.Tensor) -> dict:
        sv = torch.linalg.svdvals(w.double())
        out = {"rank": int((sv > self.rank_threshold).sum())}
        out.update({f"sv{i + 1}": float(v) for i, v in enumerate(sv[: self.n_singular])})
        if self.modes is not None:
            u, s, vh = self.modes
            learned = torch.einsum("ik,ij,kj->k", u, w.float(), vh) / s
            out.update({f"mode{i + 1}": float(v) for i, v in enumerate(learned)})
        return out
