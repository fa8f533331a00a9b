"""One-step probe of a trained model: loss inflation L(θ + τ·v)/L(θ) against r = τ/ρ_a(v).

For each direction v (unit norm) at the current θ: ρ_a(v) from one batched jvp over the probe set,
then one step of length τ = r·ρ_a(v) for every r of a log-spaced grid, recording the loss ratio and
the accuracy kept. Directions: `ascent` (+∇L/‖∇L‖, the worst case, as in the paper's code),
`descent` (−∇L/‖∇L‖) and `random` (`n_random` Gaussian directions, from the hook's own stream; the
median curve is logged, and for the ratio also the max over directions). Nothing is changed: the
steps are evaluated with `functional_call` on copies. The loss is the trainer's objective (CE(z/T)
for softmax training; `temperature` must be the trainer's T, which it is by default), in float64,
and so ρ_a(v) = π·T/Δ_a.

Logged (by default once, at the end of training), as `step_sweep/<name>`: scalars `rho_<dir>`,
`onset_<dir>` (the r at which the ratio first reaches `threshold`, interpolated on log axes; NaN if
never), `tau_onset_<dir>` = onset·ρ_a (the same threshold in raw step length), `probe_loss`,
`probe_acc`; arrays (`runner.arrays`) `r` (the grid), `ratio_<dir>`, `acc_<dir>` (percent) and
`ratio_randmax`, one value per grid point.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from torch.func import functional_call

from runner.errors import OptrunError
from runner.hooks.base import Hook, eval_mode
from runner.hooks.probe_set import probe_split
from runner.metrics.radius import logit_jvp, radius, unit_direction

DIRECTIONS = ("ascent", "descent", "random")


def r_grid(r_min: float, r_max: float, n: int) -> np.ndarray:
    return np.logspace(math.log10(r_min), math.log10(r_max), n)


def onset(r: np.ndarray, ratio: np.ndarray, threshold: float) -> float:
    """First r where ratio >= threshold, interpolated linearly in (log r, log ratio); NaN if never."""
    hit = np.flatnonzero(ratio >= threshold)
    if hit.size == 0:
        return math.nan
    i = hit[0]
    if i == 0 or not ratio[i - 1] > 0:
        return float(r[i])
    lo, hi = math.log(ratio[i - 1]), math.log(ratio[i])
    w = (math.log(threshold) - lo) / (hi - lo) if hi > lo else 1.0
    return float(math.exp(math.log(r[i - 1]) + w * (math.log(r[i]) - math.log(r[i - 1]))))


class StepSweep(Hook):
    name = "step_sweep"
    needs_objective = True

    def __init__(self, r_min: float = 0.1, r_max: float = 10.0, n_r: int = 25,
                 directions: list[str] = ("descent", "random"), n_random: int = 10, threshold: float = 1.1,
                 probe: str = "train", max_samples: int | None = None, temperature: float = 1.0,
                 every: int = 0, at_phase_end: bool = False, at_end: bool = True):
        super().__init__(every=every, at_start=False, at_phase_end=at_phase_end, at_end=at_end)
        bad = [d for d in directions if d not in DIRECTIONS]
        if bad or not directions:
            raise OptrunError(f"hooks.step_sweep.directions: expected a non-empty list of {', '.join(DIRECTIONS)}"
                              f" (got {list(directions)})")
        if not 0 < r_min < r_max or n_r < 2:
            raise OptrunError("hooks.step_sweep: expected 0 < r_min < r_max and n_r >= 2")
        if "random" in directions and n_random < 1:
            raise OptrunError("hooks.step_sweep.n_random: expected >= 1 with the random direction")
        self.r = r_grid(r_min, r_max, n_r)
        self.directions, self.n_random, self.threshold = tuple(directions), n_random, threshold
        self.probe, self.max_samples, self.temperature = probe, max_samples, temperature

    def setup(self, state) -> None:
        self.x, self.y = probe_split(state, self.probe, self.max_samples, self)

    def columns(self, state) -> list[str]:
        per_dir = [f"{k}_{d}" for d in self.directions for k in ("rho", "onset", "tau_onset")]
        return ["probe_loss", "probe_acc", *per_dir]

    def _loss_acc(self, model, params: dict, criterion) -> tuple[float, float]:
        buffers = dict(model.named_buffers())
        with eval_mode(model):
            z = functional_call(model, (params, buffers), (self.x,))
        loss = criterion(z.double(), self.y)
        return float(loss), float((z.argmax(-1) == self.y).double().mean() * 100.0)

    def _gradient(self, model, params: dict, criterion) -> dict:
        buffers = dict(model.named_buffers())
        live = {n: p.detach().clone().requires_grad_(True) for n, p in params.items()}
        modes = [(m, m.training) for m in model.modules()]
        model.eval()
        try:
            with torch.enable_grad():
                loss = criterion(functional_call(model, (live, buffers), (self.x,)), self.y)
                grads = torch.autograd.grad(loss, list(live.values()))
        finally:
            for m, training in modes:
                m.training = training
        return dict(zip(live, grads))

    def _directions(self, state, params: dict) -> list[tuple[str, dict]]:
        out = []
        if {"ascent", "descent"} & set(self.directions):
            g, _ = unit_direction(self._gradient(state.model, params, state.trainer.criterion))
            for name, sign in (("ascent", 1.0), ("descent", -1.0)):
                if name in self.directions:
                    out.append((name, {n: sign * t for n, t in g.items()}))
        if "random" in self.directions:
            gen = self.stream(state)
            for _ in range(self.n_random):
                raw = {n: torch.randn(p.shape, generator=gen, device=gen.device).to(p.device)
                       for n, p in params.items()}
                out.append(("random", unit_direction(raw)[0]))
        return out

    def _curve(self, model, params: dict, v: dict, rho: float, loss0: float, criterion) -> tuple[np.ndarray, np.ndarray]:
        ratios, accs = [], []
        for r in self.r:
            tau = float(r * rho)
            loss, acc = self._loss_acc(model, {n: params[n] + tau * v[n] for n in params}, criterion)
            ratios.append(loss / loss0 if loss0 > 0 else math.inf)
            accs.append(acc)
        return np.array(ratios), np.array(accs)

    def __call__(self, state) -> dict:
        model = state.model
        params = {n: p.detach() for n, p in model.named_parameters()}
        criterion = state.trainer.criterion
        loss0, acc0 = self._loss_acc(model, params, criterion)
        curves: dict[str, list] = {}
        for name, v in self._directions(state, params):
            _, a = logit_jvp(model, params, v, self.x)
            rho = float(radius(a, self.temperature)[1])
            ratio, acc = self._curve(model, params, v, rho, loss0, criterion)
            curves.setdefault(name, []).append((rho, ratio, acc))
        out = {"probe_loss": loss0, "probe_acc": acc0, "r": self.r.copy()}
        for name, items in curves.items():
            rhos = np.array([it[0] for it in items])
            ratios = np.stack([it[1] for it in items])
            accs = np.stack([it[2] for it in items])
            ratio, acc = np.median(ratios, axis=0), np.median(accs, axis=0)
            out[f"ratio_{name}"], out[f"acc_{name}"] = ratio, acc
            if name == "random":
                out["ratio_randmax"] = ratios.max(axis=0)
            out[f"rho_{name}"] = float(np.median(rhos))
            out[f"onset_{name}"] = onset(self.r, ratio, self.threshold)
            out[f"tau_onset_{name}"] = out[f"onset_{name}"] * out[f"rho_{name}"]
        return out
