"""Estimator quality: how well a gradient estimator's direction points along the true gradient.

On the batch of the step that just ran (`state.extras["batch"]`; the whole train split with
`batch: train`), at the current parameters, the hook draws `trials` directions from the estimator
(the trainer's own, or `estimator:` — any estimator config — to probe one that is not training) and
the exact backprop gradient of the same loss, and logs

    cos       mean over trials of cos(ĝ, g)          (NaN where g = 0: no true direction exists,
    cos_sd    its standard deviation over trials      e.g. backprop through a hard threshold)
    rel_norm  mean of ‖ĝ‖ / ‖g‖
    cos_theory  √(2 / (π D)) with D the number of trainable scalars: the expected |cos| of one
              Gaussian weight perturbation, a reference line for zeroth-order estimators

Read-only: the estimator draws from this hook's stream (`hook.<name>`), never the trainer's, and
`GradientEstimator.estimate` changes neither the model nor the estimator. The trainer must offer
`estimation_problem(state)` (the supervised trainer does; a paper's trainer may).
"""
from __future__ import annotations

import math

import torch

from runner.errors import OptrunError
from runner.estimators.base import Backprop, cosine, flat
from runner.hooks.base import Hook
from runner.trainers.estimated import build_estimator


class GradAlignment(Hook):
    name = "grad_alignment"

    def __init__(self, every: int = 10, trials: int = 1, estimator=None, batch: str = "step",
                 at_start: bool = False, at_phase_end: bool = False, at_end: bool = True):
        super().__init__(every=every, at_start=at_start, at_phase_end=at_phase_end, at_end=at_end)
        if not (isinstance(trials, int) and trials > 0):
            raise OptrunError(f"hooks.{self.name}.trials: expected a positive integer, got {trials!r}")
        if batch not in ("step", "train"):
            raise OptrunError(f"hooks.{self.name}.batch: expected step (the step's mini-batch) or train, got {batch!r}")
        self.trials, self.batch = trials, batch
        self.own = build_estimator(estimator)

    def setup(self, state) -> None:
        if not hasattr(state.trainer, "estimation_problem"):
            raise OptrunError(f"hooks.{self.name}: trainer {type(state.trainer).__name__} offers no estimation_problem(state)")
        self.estimator = self.own or getattr(state.trainer, "estimator", None)
        if self.estimator is None:
            raise OptrunError(f"hooks.{self.name}: the trainer updates by plain backprop; select an estimator "
                              f"(estimator=spsa) or give the hook one (hooks.{self.name}.estimator)")
        if self.own is not None:
            self.own.setup(state.trainer.estimation_problem(state), state)

    def columns(self, state) -> list[str]:
        return ["cos", "cos_sd", "rel_norm", "cos_theory"]

    def _batch(self, state):
        if self.batch == "step" and "batch" in state.extras:
            return state.extras["batch"]
        return state.trainer.probe_data(state, "train")

    def draws(self, state, batch) -> tuple[torch.Tensor, torch.Tensor, int]:
        """`trials` draws on `batch`: (cosines, norm ratios, D), the true gradient by backprop first."""
        problem, g = state.trainer.estimation_problem(state), self.stream(state)
        names = list(problem.params)
        true = flat(Backprop().estimate(problem, batch, state, g).grads, names)
        cos, ratio = [], []
        for _ in range(self.trials):
            est = flat(self.estimator.estimate(problem, batch, state, g).grads, names)
            cos.append(cosine(est, true))
            ratio.append(est.norm() / true.norm())
        return torch.stack(cos), torch.stack(ratio), problem.dim

    def __call__(self, state) -> dict:
        cos, ratio, dim = self.draws(state, self._batch(state))
        return {"cos": float(cos.mean()), "cos_sd": float(cos.std()) if self.trials > 1 else 0.0,
                "rel_norm": float(ratio.mean()), "cos_theory": math.sqrt(2 / (math.pi * dim))}
