"""Autoregressive rollouts of a learned time stepper over held-out trajectories: the long-horizon probe.

Protocol (any trainer of a one-step operator can offer it; the hook imports no trainer):

    trainer.rollout_data(state) -> {set_name: trajectories (B, T+1, C, *space)}   # true states, t = 0..T
    trainer.advance(state, u)   -> the model's next state from u (B, C, *space)    # called under no_grad

From u_0 of every trajectory the hook applies `advance` T times (eval mode, inference mode, no random numbers:
read-only) and logs, per set `<s>` (as `rollout_eval/<s>_<metric>`):

- `rel_l2@<h>`: mean over trajectories of ||u_hat_h - u_h|| / ||u_h|| at each horizon h <= T in `horizons`;
- `blowup_step`: the mean over trajectories of the first step whose relative L2 error exceeds `threshold` or is
  not finite (T + 1 for a trajectory that never does);
- `spectrum_ratio@<h>`: energy of the prediction above the cut-off wavenumber over that of the truth, at step
  h = `spectrum_at` (1-D: the last axis' rfft modes m >= k_cut * n/2; more axes: the radial |m|), summed over
  trajectories: < 1 is over-smoothing, > 1 spectral blow-up;
- `grad_ratio@<h>`: mean over trajectories of max|D u_hat| / max|D u| at step h (D: the periodic forward
  difference along the last axis), the sharpness of fronts (1 = shocks as steep as the truth's);
- `mass_drift`: mean over trajectories of |mean(u_hat_T) - mean(u_0)| / rms(u_0), the conservation error.

Arrays (`runner.arrays`): the per-step error curve `<s>_rel_l2` (T+1,) at every call; at the end of the run
the first `save_trajectories` rollouts `<s>_pred` and their truth `<s>_true` (n, T+1, C, *space), and the
mean energy spectra `<s>_spectrum_pred` / `<s>_spectrum_true` at step `spectrum_at`, for figures.
"""
from __future__ import annotations

import torch

from runner.errors import OptrunError
from runner.hooks.base import Hook, eval_mode


def rollout(advance, u0: torch.Tensor, steps: int) -> torch.Tensor:
    """(B, steps+1, ...) from u0 (B, ...) by repeated `advance`."""
    out = [u0]
    for _ in range(steps):
        out.append(advance(out[-1]))
    return torch.stack(out, dim=1)


def relative_l2(pred: torch.Tensor, true: torch.Tensor) -> torch.Tensor:
    """Per trajectory and step: ||pred - true|| / ||true|| over the field dims, (B, T+1)."""
    err = (pred - true).flatten(2).norm(dim=-1)
    return err / true.flatten(2).norm(dim=-1).clamp_min(torch.finfo(true.dtype).tiny)


def blowup_step(rel: torch.Tensor, threshold: float) -> torch.Tensor:
    """First step index with rel > threshold or not finite, per trajectory; T+1 where none, (B,)."""
    bad = ~torch.isfinite(rel) | (rel > threshold)
    never = torch.full((rel.shape[0],), rel.shape[1], dtype=torch.long, device=rel.device)
    first = torch.where(bad.any(1), bad.float().argmax(1), never)
    return first


def energy_spectrum(u: torch.Tensor) -> torch.Tensor:
    """Mean |u_hat(m)|^2 over the batch and channels by the last axis' rfft mode (B, C, ..., n) -> (n/2+1,)."""
    return torch.fft.rfft(u, dim=-1).abs().pow(2).flatten(0, -2).mean(0)


def high_k_ratio(pred: torch.Tensor, true: torch.Tensor, k_cut: float) -> torch.Tensor:
    """Energy above mode k_cut * (n/2) of pred over that of true (one number for the batch)."""
    ep, et = energy_spectrum(pred), energy_spectrum(true)
    m0 = int(round(k_cut * (true.shape[-1] // 2)))
    return ep[m0:].sum() / et[m0:].sum().clamp_min(torch.finfo(true.dtype).tiny)


def gradient_ratio(pred: torch.Tensor, true: torch.Tensor) -> torch.Tensor:
    """Mean over trajectories of max|forward difference| of pred over that of true."""
    def steep(u):
        return (u.roll(-1, dims=-1) - u).abs().flatten(1).amax(1)
    return (steep(pred) / steep(true).clamp_min(torch.finfo(true.dtype).tiny)).mean()


def mass_drift(pred: torch.Tensor, u0: torch.Tensor) -> torch.Tensor:
    """Mean over trajectories of |mean(pred) - mean(u0)| / rms(u0)."""
    d = (pred.flatten(1).mean(1) - u0.flatten(1).mean(1)).abs()
    return (d / u0.flatten(1).pow(2).mean(1).sqrt().clamp_min(torch.finfo(u0.dtype).tiny)).mean()


class RolloutEval(Hook):
    name = "rollout_eval"

    def __init__(self, every: int = 0, horizons: list[int] = (10, 50, 100, 200), threshold: float = 1.0,
                 spectrum_at: int = 100, k_cut: float = 0.25, sets: list[str] | None = None,
                 max_trajectories: int | None = None, save_trajectories: int = 4, at_start: bool = False,
                 at_phase_end: bool = True, at_end: bool = True):
        super().__init__(every=every, at_start=at_start, at_phase_end=at_phase_end, at_end=at_end)
        if threshold <= 0 or not 0 < k_cut < 1:
            raise OptrunError(f"hooks.{self.name}: expected threshold > 0 and 0 < k_cut < 1, got {threshold}, {k_cut}")
        self.horizons, self.threshold = [int(h) for h in horizons], float(threshold)
        self.spectrum_at, self.k_cut = int(spectrum_at), float(k_cut)
        self.only, self.max_trajectories, self.save = sets, max_trajectories, int(save_trajectories)

    def setup(self, state) -> None:
        trainer = state.trainer
        if not (hasattr(trainer, "rollout_data") and hasattr(trainer, "advance")):
            raise OptrunError(f"hooks.{self.name}: the trainer offers no rollout_data(state) / advance(state, u) "
                              "(a trainer of a one-step operator must, see runner/hooks/rollout_eval.py)")
        data = trainer.rollout_data(state)
        if self.only is not None:
            missing = [s for s in self.only if s not in data]
            if missing:
                raise OptrunError(f"hooks.{self.name}.sets: unknown {missing} (the trainer offers: {', '.join(data)})")
            data = {s: data[s] for s in self.only}
        self.data = {s: (t if self.max_trajectories is None else t[:self.max_trajectories]) for s, t in data.items()}

    def _set_columns(self, steps: int) -> list[str]:
        cols = [f"rel_l2@{h}" for h in self.horizons if h <= steps] + ["blowup_step", "mass_drift"]
        if self.spectrum_at <= steps:
            cols += [f"spectrum_ratio@{self.spectrum_at}", f"grad_ratio@{self.spectrum_at}"]
        return cols

    def columns(self, state) -> list[str]:
        return [f"{s}_{c}" for s, t in self.data.items() for c in self._set_columns(t.shape[1] - 1)]

    def __call__(self, state) -> dict:
        out = {}
        end = state.step >= state.total_steps
        with eval_mode(state.model):
            for s, true in self.data.items():
                steps = true.shape[1] - 1
                pred = rollout(lambda u: state.trainer.advance(state, u), true[:, 0], steps).to(true.dtype)
                rel = relative_l2(pred, true)
                curve = rel.mean(0)
                for h in self.horizons:
                    if h <= steps:
                        out[f"{s}_rel_l2@{h}"] = curve[h]
                out[f"{s}_blowup_step"] = blowup_step(rel, self.threshold).float().mean()
                out[f"{s}_mass_drift"] = mass_drift(pred[:, -1], true[:, 0])
                h = self.spectrum_at
                if h <= steps:
                    out[f"{s}_spectrum_ratio@{h}"] = high_k_ratio(pred[:, h], true[:, h], self.k_cut)
                    out[f"{s}_grad_ratio@{h}"] = gradient_ratio(pred[:, h], true[:, h])
                out[f"{s}_rel_l2"] = curve
                if end:
                    out[f"{s}_pred"], out[f"{s}_true"] = pred[:self.save], true[:self.save]
                    if h <= steps:
                        out[f"{s}_spectrum_pred"] = energy_spectrum(pred[:, h])
                        out[f"{s}_spectrum_true"] = energy_spectrum(true[:, h])
        return out
