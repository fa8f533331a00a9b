"""STE and ReSTE as gradient estimators: backprop through a binarized network (`runner.models.binary`)
with a surrogate derivative for sign(), and the paper's two indicators logged every step.

o follows the paper's schedule o(r) = 1 + (o_end - 1)(1 - cos(pi r / 2)), r = step / total steps
(the ReSTE code updates it once per epoch, r = epoch / epochs; per step is the same curve, smoother),
so o rises from 1 (STE with clip t) to o_end; `schedule: fixed` keeps o = o_end throughout (the
trade-off study). o is a function of `state.step` and `state.total_steps` only, so `estimate` is pure:
it sets the surrogate for its own forward/backward (`runner.models.binary.using`) and restores it.

Indicators (the official code's `--cal_ind`, over the binarized layers' latent weights w and their
estimated gradients g on this step's batch):
- `estimating_error` = sum over layers of ||f_o(w) - sign(w)||_2 with o = o_end (the estimator's
  equivalent forward function against sign; for STE, o = 1: the identity);
- `gradient_variance` = sum over layers of Var(|g|) (the code's "gradient stability": a larger
  variance is a less stable gradient).
Also logged: the current `o` and `frac_beyond_t`, the share of binarized weights with |w| > t, whose
ReSTE gradient is zero.
"""
from __future__ import annotations

import math

import torch

from runner.errors import OptrunError
from runner.estimators.base import Estimate, GradientEstimator
from runner.models.binary import Surrogate, binary_layers, f_o, using

SCHEDULES = ("cosine", "fixed")


def o_schedule(o_end: float, ratio: float) -> float:
    """The paper's o at training progress `ratio` in [0, 1]."""
    return 1.0 + (o_end - 1.0) * (1.0 - math.cos(math.pi * min(max(ratio, 0.0), 1.0) / 2))


class SurrogateGradient(GradientEstimator):
    """Backprop with sign' replaced by STE's clipped identity (`kind: ste`) or ReSTE's f_o' (`kind: reste`)."""

    def __init__(self, kind: str = "reste", o_end: float = 3.0, schedule: str = "cosine", t: float = 1.5,
                 interval: float = 0.1, clip: float = 1.0):
        if schedule not in SCHEDULES:
            raise OptrunError(f"trainer.estimator.schedule: unknown '{schedule}' (expected cosine or fixed)")
        if o_end < 1:
            raise OptrunError(f"trainer.estimator.o_end: expected >= 1, got {o_end}")
        self.kind, self.o_end, self.schedule = kind, float(o_end), schedule
        self.t, self.interval, self.clip = float(t), float(interval), float(clip)
        Surrogate(kind, self.o_end, self.t, self.interval, self.clip)  # validates
        self.name = kind

    def cost(self) -> dict[str, int]:
        return {"forward_passes": 1, "backward_passes": 1, "function_evals": 1}

    def columns(self) -> list[str]:
        return ["o", "estimating_error", "gradient_variance", "frac_beyond_t"]

    def o(self, state) -> float:
        if self.kind == "ste":
            return 1.0
        if self.schedule == "fixed":
            return self.o_end
        return o_schedule(self.o_end, state.step / max(int(state.total_steps or 0), 1))

    def surrogate(self, state) -> Surrogate:
        return Surrogate(self.kind, self.o(state), self.t, self.interval, self.clip)

    def estimate(self, problem, batch, state, generator: torch.Generator) -> Estimate:
        names = list(problem.params)
        with using(problem.module, self.surrogate(state)), torch.enable_grad():
            loss, out = problem.loss(problem.params, batch)
            grads = torch.autograd.grad(loss, [problem.params[n] for n in names], allow_unused=True)
        grads = {n: (g if g is not None else torch.zeros_like(problem.params[n])) for n, g in zip(names, grads)}
        metrics = {"o": self.o(state), **self.indicators(problem, grads)}
        return Estimate(loss.detach(), grads, self.cost(), output=out.detach(), metrics=metrics)

    def indicators(self, problem, grads: dict) -> dict[str, float]:
        keys = [f"{n}.weight" for n, _ in binary_layers(problem.module)]
        keys = [k for k in keys if k in problem.params]
        if not keys:
            raise OptrunError(f"estimator {self.name}: the model has no binarized layers (use a binary model, "
                              "e.g. model=binary_mlp)")
        o_ind = self.o_end if self.kind == "reste" else 1.0
        err = var = beyond = 0.0
        n = 0
        with torch.no_grad():
            for k in keys:
                w = problem.params[k].detach().reshape(-1)
                err += float((f_o(w, o_ind) - torch.sign(w)).norm())
                var += float(grads[k].reshape(-1).abs().var())
                beyond += float((w.abs() > self.t).sum())
                n += w.numel()
        return {"estimating_error": err, "gradient_variance": var, "frac_beyond_t": beyond / n}
