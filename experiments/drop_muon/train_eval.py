"""Training accuracy on a fixed subset of the training split, densely early: the Drop-Muon paper's
measure (its figures plot training accuracy against wall-clock time).

The subset (`max_samples` rows, null = the whole split) is drawn once at setup from this hook's own
stream, so it is the same for every arm of a seed and never shifts the trainer's batches. The hook
runs after every step up to `dense_steps`, then every `every` steps, so the first step at which a
run reaches a target accuracy is resolved to one step early on. Logs `train_loss` and `train_acc`
(percent) as `<hook name>/...`. Evaluation time is not training time: the progressive trainer's
`train_time_s` excludes hooks.
"""
from __future__ import annotations

import torch

from runner.errors import OptrunError
from runner.hooks.base import Hook, eval_mode
from runner.hooks.probe_set import probe_split


class TrainSubsetEval(Hook):
    name = "train_eval"
    needs_objective = True

    def __init__(self, max_samples: int | None = 1024, dense_steps: int = 100, every: int = 5,
                 batch_size: int = 8192, at_start: bool = True, at_phase_end: bool = True, at_end: bool = True):
        super().__init__(every=every, at_start=at_start, at_phase_end=at_phase_end, at_end=at_end)
        if dense_steps < 0:
            raise OptrunError(f"hooks.{self.name}.dense_steps: expected an integer >= 0, got {dense_steps}")
        self.max_samples, self.dense_steps, self.batch_size = max_samples, int(dense_steps), int(batch_size)

    def due(self, step: int, *, start: bool = False, phase_end: bool = False, end: bool = False) -> bool:
        if not start and 0 < step <= self.dense_steps:
            return True
        return super().due(step, start=start, phase_end=phase_end, end=end)

    def setup(self, state) -> None:
        self.x, self.y = probe_split(state, "train", self.max_samples, self)
        if self.y.is_floating_point():
            raise OptrunError(f"hooks.{self.name}: training accuracy needs class labels")

    def columns(self, state) -> list[str]:
        return ["train_loss", "train_acc"]

    def __call__(self, state) -> dict:
        n = len(self.y)
        with eval_mode(state.model):
            z = torch.cat([state.model(self.x[i:i + self.batch_size]) for i in range(0, n, self.batch_size)])
        return {"train_loss": state.trainer.criterion(z.float(), self.y),
                "train_acc": (z.argmax(-1) == self.y).double().mean() * 100.0}
