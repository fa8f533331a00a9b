"""Loss (and accuracy, for classification) on the held-out test split every `every` updates.

Evaluated in batches with the trainer's loss (`loss: ce | mse | corr`), in eval mode without
autograd; a fixed, seeded subset of at most `max_samples` test points is chosen once, so curves are
not noisy from resampling. Logs `test_loss` (and `test_acc`, percent, when the targets are class labels).
"""
from __future__ import annotations

import torch

from runner.errors import OptrunError
from runner.hooks.base import Hook, eval_mode
from runner.trainers.base import accuracy
from runner.trainers.supervised import LOSSES, loss_fn


class TestEval(Hook):
    name = "test_eval"
    __test__ = False  # not a pytest test class

    def __init__(self, every: int = 10, loss: str = "ce", max_samples: int | None = None, batch_size: int = 8192,
                 at_start: bool = True, at_phase_end: bool = True, at_end: bool = True):
        super().__init__(every=every, at_start=at_start, at_phase_end=at_phase_end, at_end=at_end)
        if loss not in LOSSES:
            raise OptrunError(f"hooks.test_eval.loss: unknown '{loss}' (expected one of: {', '.join(LOSSES)})")
        self.loss, self.max_samples, self.batch_size = loss, max_samples, batch_size

    def setup(self, state) -> None:
        x, y = state.data.x_test, state.data.y_test
        if self.max_samples is not None and len(y) > self.max_samples:
            idx = torch.randperm(len(y), generator=state.generators["probe"], device=state.generators["probe"].device)
            idx = idx[: self.max_samples].to(y.device)
            x, y = x[idx], y[idx]
        self.x, self.y = x, y

    def __call__(self, state) -> dict:
        total, correct = 0.0, 0.0
        with eval_mode(state.model):
            for i in range(0, len(self.y), self.batch_size):
                x, y = self.x[i:i + self.batch_size], self.y[i:i + self.batch_size]
                out = state.model(x)
                total += float(loss_fn(self.loss, out, y)) * len(y)
                if not y.is_floating_point():
                    correct += float(accuracy(out, y)) * len(y)
        n = len(self.y)
        labels = not self.y.is_floating_point()
        return {"test_loss": total / n, **({"test_acc": correct / n} if labels else {})}
