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
ReSTE gradient is zero. The three are `Indicator` values, computed when the metrics writer flushes and
only for the rows it writes (see `Indicator`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from runner.errors import OptrunError
from runner.estimators.base import Estimate, GradientEstimator
from runner.models.binary import Surrogate, binary_layers, f_o, using
from runner.results import Deferred

SCHEDULES = ("cosine", "fixed")
INDICATORS = ("estimating_error", "gradient_variance", "frac_beyond_t")


def o_schedule(o_end: float, ratio: float) -> float:
    """The paper's o at training progress `ratio` in [0, 1]."""
    return 1.0 + (o_end - 1.0) * (1.0 - math.cos(math.pi * min(max(ratio, 0.0), 1.0) / 2))


@dataclass(frozen=True)
class FastSurrogate(Surrogate):
    """`Surrogate` with the same derivative, bit for bit, in a third to two thirds of the time (it was
    about half of a smoke step's forward and backward; tests/test_reste.py compares the two). The two
    `torch.where` with filled tensors (slow on the CPU) become float masks written by the comparisons:
    `lerp(g, inner, m)` with m in {0, 1} is exactly g or inner, and g * 1{|x| <= t} is g or +0 (g > 0), the
    zero `where` selects; pow and the 1/o scaling run in place."""

    def grad(self, x: torch.Tensor) -> torch.Tensor:
        a = x.abs()
        if self.kind == "ste":
            return torch.le(a, self.clip, out=torch.empty_like(x))
        o = self.o
        power = a.clamp_min(self.interval).pow_((1.0 - o) / o).mul_(1.0 / o)
        inner = x.new_full((), self.interval ** (1.0 / o) / self.interval)
        g = torch.lerp(power, inner, torch.le(a, self.interval, out=torch.empty_like(x)))
        return g.mul_(torch.le(a, self.t, out=torch.empty_like(x)))


class _Snapshot:
    """The binarized layers' weights and gradients of one step (copies: the optimizer updates the weights
    in place) and, once asked for, their indicators."""

    def __init__(self, weights: list, grads: list, o: float, t: float):
        self.weights, self.grads, self.o, self.t = weights, grads, o, t
        self.values: dict[str, float] | None = None

    def __call__(self) -> dict[str, float]:
        if self.values is None:  # the official code's indicators (module docstring)
            err = var = beyond = 0.0
            n = 0
            with torch.no_grad():
                for w, g in zip(self.weights, self.grads):
                    w = w.reshape(-1)
                    err += float((f_o(w, self.o) - torch.sign(w)).norm())
                    var += float(g.reshape(-1).abs().var())
                    beyond += float((w.abs() > self.t).sum())
                    n += w.numel()
            self.values, self.weights, self.grads = {"estimating_error": err, "gradient_variance": var,
                                                     "frac_beyond_t": beyond / n}, None, None
        return self.values


class Indicator(Deferred):
    """One indicator of one step, computed when the metrics writer flushes its row. The engine writes
    only every `log_every`-th step's row (5 at smoke scale, 50 at paper scale) and drops the other
    steps' metrics, so their indicators (a fifth of a smoke step, and a host sync per layer and indicator
    on a GPU) are never computed. The values written are those that computing them at every step gave."""

    __slots__ = ("snapshot", "key")

    def __init__(self, snapshot: _Snapshot, key: str):
        self.snapshot, self.key = snapshot, key

    def __float__(self) -> float:
        return self.snapshot()[self.key]

    @classmethod
    def resolve_all(cls, items: list["Indicator"]) -> list[float]:
        return [float(it) for it in items]


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
        return FastSurrogate(self.kind, self.o(state), self.t, self.interval, self.clip)

    def estimate(self, problem, batch, state, generator: torch.Generator) -> Estimate:
        names = list(problem.params)
        with using(problem.module, self.surrogate(state)), torch.enable_grad():
            loss, out = problem.loss(problem.params, batch)
            grads = torch.autograd.grad(loss, [problem.params[n] for n in names], allow_unused=True)
        grads = {n: (g if g is not None else torch.zeros_like(problem.params[n])) for n, g in zip(names, grads)}
        metrics = {"o": self.o(state), **self.indicators(problem, grads)}
        return Estimate(loss.detach(), grads, self.cost(), output=out.detach(), metrics=metrics)

    def indicators(self, problem, grads: dict) -> dict[str, Indicator]:
        keys = [f"{n}.weight" for n, _ in binary_layers(problem.module)]
        keys = [k for k in keys if k in problem.params]
        if not keys:
            raise OptrunError(f"estimator {self.name}: the model has no binarized layers (use a binary model, "
                              "e.g. model=binary_mlp)")
        o_ind = self.o_end if self.kind == "reste" else 1.0
        snapshot = _Snapshot([problem.params[k].detach().clone() for k in keys],
                             [grads[k].detach().clone() for k in keys], o_ind, self.t)
        return {key: Indicator(snapshot, key) for key in INDICATORS}
