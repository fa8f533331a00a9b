"""The cosine study's probe: cos(ĝ, ∇L) over many draws of an estimator, beside √(2/(π·dim)) with
the dimension the estimator really perturbs (`theory.theory_dim`).

Unlike the core probe `grad_alignment` (whose reference line uses the parameter count for every
estimator), this one also runs at step 0 on a fixed mini-batch of the trainer's batch size, drawn
from its own stream, so the three seeds measure the same kind of batch at initialisation. Read-only:
the estimator draws from this hook's stream and changes nothing.
"""
from __future__ import annotations

import math

import torch

from experiments.zo_review.theory import theory_dim
from runner.errors import OptrunError
from runner.estimators.base import Backprop, cosine, flat
from runner.hooks.base import Hook
from runner.trainers.estimated import build_estimator


class ZOAlignment(Hook):
    name = "zo_alignment"

    def __init__(self, trials: int = 300, batch_size: int = 32, estimator=None, every: int = 0,
                 at_start: bool = True, at_phase_end: bool = False, at_end: bool = False):
        super().__init__(every=every, at_start=at_start, at_phase_end=at_phase_end, at_end=at_end)
        if not (isinstance(trials, int) and trials > 1):
            raise OptrunError(f"hooks.{self.name}.trials: expected an integer > 1, got {trials!r}")
        self.trials, self.batch_size = trials, int(batch_size)
        self.own = build_estimator(estimator)

    def setup(self, state) -> None:
        if not hasattr(state.trainer, "estimation_problem"):
            raise OptrunError(f"hooks.{self.name}: trainer {type(state.trainer).__name__} offers no estimation_problem(state)")
        self.estimator = self.own or getattr(state.trainer, "estimator", None)
        if self.estimator is None:
            raise OptrunError(f"hooks.{self.name}: no estimator to probe (select estimator=... or hooks.{self.name}.estimator)")
        x, y = state.trainer.probe_data(state, "train")
        idx = torch.randperm(len(y), generator=self.stream(state), device=y.device)[: self.batch_size]
        self.batch = (x[idx], y[idx])
        if self.own is not None:
            self.own.setup(state.trainer.estimation_problem(state), state)

    def columns(self, state) -> list[str]:
        return ["cos", "cos_sd", "cos_theory", "dim", "ratio"]

    def __call__(self, state) -> dict:
        problem, g = state.trainer.estimation_problem(state), self.stream(state)
        names = list(problem.params)
        true = flat(Backprop().estimate(problem, self.batch, state, g).grads, names)
        cos = torch.stack([cosine(flat(self.estimator.estimate(problem, self.batch, state, g).grads, names), true)
                           for _ in range(self.trials)])
        dim = theory_dim(self.estimator, problem, self.batch)
        theory = math.sqrt(2 / (math.pi * dim))
        mean = float(cos.mean())
        return {"cos": mean, "cos_sd": float(cos.std()), "cos_theory": theory, "dim": dim, "ratio": mean / theory}
