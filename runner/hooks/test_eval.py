"""Held-out evaluation of a plain (non-continual) data set: `test_loss` and `test_acc` (percent).

A fixed, seeded subset of the test split (`max_samples`, null = all of it), evaluated in eval mode
in one pass (chunked only for very large sets), with the trainer's loss (`state.trainer.criterion`);
`test_acc` only when the targets are class labels. Logged as `test_eval/test_loss`, `test_eval/test_acc`.
"""
from __future__ import annotations

import torch

from runner.hooks.base import Hook, eval_mode
from runner.hooks.probe_set import probe_split


class TestEval(Hook):
    name = "test_eval"
    __test__ = False  # not a pytest test class despite its name
    needs_objective = True

    def __init__(self, every: int = 1, max_samples: int | None = None, batch_size: int = 8192,
                 at_start: bool = True, at_phase_end: bool = True, at_end: bool = True):
        super().__init__(every=every, at_start=at_start, at_phase_end=at_phase_end, at_end=at_end)
        self.max_samples, self.batch_size = max_samples, batch_size

    def setup(self, state) -> None:
        self.x, self.y = probe_split(state, "test", self.max_samples, self)

    def columns(self, state) -> list[str]:
        return ["test_loss"] if self.y.is_floating_point() else ["test_loss", "test_acc"]

    def __call__(self, state) -> dict:
        n = len(self.y)
        with eval_mode(state.model):
            z = torch.cat([state.model(self.x[i:i + self.batch_size]) for i in range(0, n, self.batch_size)])
        out = {"test_loss": state.trainer.criterion(z.float(), self.y)}
        if not self.y.is_floating_point():
            out["test_acc"] = (z.argmax(-1) == self.y).float().mean() * 100.0
        return out
