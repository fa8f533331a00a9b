"""Held-out evaluation of a plain (non-continual) data set: `test_loss` and `test_acc` (percent).

A fixed, seeded subset of the test split (`max_samples`, null = all of it), evaluated in eval mode
in one pass (chunked only for very large sets), with the trainer's loss (`loss: ce | mse | corr`, see
`runner.trainers.supervised.loss_fn`); `test_acc` only when the targets are class labels.
"""
from __future__ import annotations

import torch

from runner.errors import OptrunError
from runner.hooks.base import Hook, eval_mode
from runner.hooks.probe_set import probe_split
from runner.trainers.supervised import LOSSES, loss_fn


class TestEval(Hook):
    name = "test_eval"
    __test__ = False  # not a pytest test class despite its name

    def __init__(self, every: int = 1, max_samples: int | None = None, batch_size: int = 8192, loss: str = "ce",
                 at_start: bool = True, at_phase_end: bool = True, at_end: bool = True):
        super().__init__(every=every, at_start=at_start, at_phase_end=at_phase_end, at_end=at_end)
        if loss not in LOSSES:
            raise OptrunError(f"hooks.test_eval.loss: unknown '{loss}' (expected one of: {', '.join(LOSSES)})")
        self.max_samples, self.batch_size, self.loss = max_samples, batch_size, loss

    def setup(self, state) -> None:
        self.x, self.y = probe_split(state, "test", self.max_samples, self.name)

    def __call__(self, state) -> dict:
        n = len(self.y)
        with eval_mode(state.model):
            z = torch.cat([state.model(self.x[i:i + self.batch_size]) for i in range(0, n, self.batch_size)])
        out = {"test_loss": loss_fn(self.loss, z.float(), self.y)}
        if not self.y.is_floating_point():
            out["test_acc"] = (z.argmax(-1) == self.y).float().mean() * 100.0
        return out
