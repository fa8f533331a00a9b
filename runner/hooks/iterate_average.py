"""Iterate averaging as a probe: the time-averaged parameters theta_bar and, optionally, the averaged
second moment M_bar = mean theta theta^T, accumulated every step (from `burn_in` on) and compared
with the teacher's planted direction when the data set has one (`teacher["direction"]`).

Logs every `report_every` steps (and at the end):
- `overlap_last` |theta_t . theta*| (theta normalised), `overlap_avg` |theta_bar . theta*| / |theta_bar|,
- `overlap_second` |v1(M_bar) . theta*| (top eigenvector; sign-free, for even information exponents),
- `theta_bar_norm` |theta_bar| (small when the iterate wanders symmetrically).
The parameters are flattened and concatenated; `second_order` needs their total size <= `max_dim`.
Averaging is read-only: the trainer and optimizer never see it (stochastic weight averaging as a
measurement, not as a change of the dynamics).
"""
from __future__ import annotations

import torch

from runner.errors import OptrunError
from runner.hooks.base import Hook


class IterateAverage(Hook):
    name = "iterate_average"

    def __init__(self, report_every: int = 200, burn_in: int = 0, second_order: bool = True, max_dim: int = 2000,
                 at_start: bool = True):
        super().__init__(every=1, at_start=at_start, at_phase_end=True, at_end=True)
        if report_every <= 0 or burn_in < 0:
            raise OptrunError(f"hooks.iterate_average: expected report_every > 0 and burn_in >= 0, got "
                              f"{report_every} and {burn_in}")
        self.report_every, self.burn_in, self.second_order, self.max_dim = report_every, burn_in, second_order, max_dim

    def _flat(self, state) -> torch.Tensor:
        params = [p.detach().reshape(-1) for p in state.model.parameters()]
        return params[0] if len(params) == 1 else torch.cat(params)  # one tensor (a single-index model): no copy

    def setup(self, state) -> None:
        theta = self._flat(state)
        if self.second_order and theta.numel() > self.max_dim:
            raise OptrunError(f"hooks.iterate_average.second_order: {theta.numel()} parameters exceed max_dim "
                              f"{self.max_dim} (a dense d x d average); set second_order=false")
        star = (getattr(state.data, "teacher", None) or {}).get("direction")
        self.star = star.reshape(-1).to(theta) / star.norm() if star is not None and star.numel() == theta.numel() \
            else None
        # running sums in float64 (divided only when reported): tens of thousands of steps add up
        self.count, self.total = 0, torch.zeros_like(theta, dtype=torch.float64)
        self.moment = torch.zeros(theta.numel(), theta.numel(), dtype=torch.float64, device=theta.device) \
            if self.second_order else None

    def columns(self, state) -> list[str]:
        if self.star is None:
            return ["theta_bar_norm"]
        return ["theta_bar_norm", "overlap_last", "overlap_avg"] + (["overlap_second"] if self.moment is not None else [])

    def __call__(self, state) -> dict:
        theta = self._flat(state)
        if state.step >= self.burn_in:
            self.count += 1
            t64 = theta.double()
            self.total += t64
            if self.moment is not None:
                self.moment.addr_(t64, t64)
        if not (state.step % self.report_every == 0 or state.phase_end):
            return {}
        mean = (self.total / max(self.count, 1)).to(theta)
        out = {"theta_bar_norm": float(mean.norm())}
        if self.star is not None:
            out["overlap_last"] = float((theta @ self.star).abs() / theta.norm())
            if self.count:
                out["overlap_avg"] = float((mean @ self.star).abs() / mean.norm().clamp_min(1e-30))
                if self.moment is not None:
                    top = torch.linalg.eigh(self.moment)[1][:, -1].to(theta)
                    out["overlap_second"] = float((top @ self.star).abs())
        return out

    def state_dict(self) -> dict:
        return {"count": self.count, "total": self.total, "moment": self.moment}

    def load_state_dict(self, sd: dict) -> None:
        self.count, self.total, self.moment = sd["count"], sd["total"], sd["moment"]
