"""Test-set loss and accuracy of a plain supervised data set, every `every` updates.

Evaluates a fixed, seeded subset of the test split (all of it unless `max_samples` is smaller), in
eval mode, in batches of `batch_size`. Logs `test_loss` and `test_acc` (percent).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from runner.errors import OptrunError
from runner.hooks.base import Hook, eval_mode


class TestEval(Hook):
    name = "test_eval"
    __test__ = False  # not a pytest test class despite its name

    def __init__(self, every: int = 50, max_samples: int | None = None, batch_size: int = 4096,
                 at_start: bool = True, at_phase_end: bool = True, at_end: bool = True):
        super().__init__(every=every, at_start=at_start, at_phase_end=at_phase_end, at_end=at_end)
        if max_samples is not None and max_samples <= 0:
            raise OptrunError(f"hooks.test_eval.max_samples: expected a positive integer or null, got {max_samples}")
        self.max_samples, self.batch_size = max_samples, batch_size

    def setup(self, state) -> None:
        d = state.data
        if not hasattr(d, "x_test"):
            raise OptrunError("hooks=test_eval needs a data set with a test split (x_test, y_test)")
        idx = torch.arange(len(d.y_test), device=d.y_test.device)
        if self.max_samples is not None and len(idx) > self.max_samples:
            g = state.generators["probe"]
            idx = torch.randperm(len(idx), generator=g, device=g.device)[: self.max_samples].sort().values
            idx = idx.to(d.y_test.device)
        self.x, self.y = d.x_test[idx], d.y_test[idx]

    def __call__(self, state) -> dict:
        loss = correct = 0.0
        with eval_mode(state.model):
            for i in range(0, len(self.y), self.batch_size):
                out = state.model(self.x[i:i + self.batch_size])
                y = self.y[i:i + self.batch_size]
                loss += F.cross_entropy(out, y, reduction="sum").item()
                correct += (out.argmax(-1) == y).sum().item()
        n = len(self.y)
        return {"test_loss": loss / n, "test_acc": 100.0 * correct / n}
