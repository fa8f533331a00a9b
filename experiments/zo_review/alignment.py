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
from runner.hooks.grad_alignment import GradAlignment


class ZOAlignment(GradAlignment):
    name = "zo_alignment"

    def __init__(self, trials: int = 300, batch_size: int = 32, estimator=None, every: int = 0,
                 at_start: bool = True, at_phase_end: bool = False, at_end: bool = False):
        if not (isinstance(trials, int) and trials > 1):
            raise OptrunError(f"hooks.{self.name}.trials: expected an integer > 1, got {trials!r}")
        super().__init__(every=every, trials=trials, estimator=estimator, at_start=at_start,
                         at_phase_end=at_phase_end, at_end=at_end)
        self.batch_size = int(batch_size)

    def setup(self, state) -> None:
        x, y = state.trainer.probe_data(state, "train")
        idx = torch.randperm(len(y), generator=self.stream(state), device=y.device)[: self.batch_size]
        self.fixed = (x[idx], y[idx])
        super().setup(state)

    def columns(self, state) -> list[str]:
        return ["cos", "cos_sd", "cos_theory", "dim", "ratio"]

    def __call__(self, state) -> dict:
        cos, _, _ = self.draws(state, self.fixed)
        dim = theory_dim(self.estimator, state.trainer.estimation_problem(state), self.fixed)
        theory = math.sqrt(2 / (math.pi * dim))
        mean = float(cos.mean())
        return {"cos": mean, "cos_sd": float(cos.std()), "cos_theory": theory, "dim": dim, "ratio": mean / theory}
