"""Full-data evaluation of plain supervised runs: train/test loss (and accuracy for `ce`) over the
whole split, not the last mini-batch, plus parameter norms.

Logs `train_loss`, `test_loss` with the trainer's loss (`state.trainer.criterion`), `train_acc`,
`test_acc` when the targets are class labels, `param_norm` (l2 of all trainable parameters) and
whatever the model's optional `norms()` returns (e.g. `beta_l1` of a diagonal linear network,
`path_norm` of a two-layer ReLU net), each as `evaluate/<name>`. Evaluation runs in
`runner.hooks.base.eval_mode`, in chunks of `batch_size` samples.
"""
from __future__ import annotations

import torch

from runner.errors import OptrunError
from runner.hooks.base import Hook, eval_mode


class Evaluate(Hook):
    name = "evaluate"
    needs_objective = True

    def __init__(self, every: int = 100, at_start: bool = True, at_phase_end: bool = True, at_end: bool = True,
                 splits: list[str] = ("train", "test"), batch_size: int = 8192):
        super().__init__(every=every, at_start=at_start, at_phase_end=at_phase_end, at_end=at_end)
        bad = [s for s in splits if s not in ("train", "test")]
        if bad:
            raise OptrunError(f"hooks.evaluate.splits: expected a list of train/test, got {list(splits)}")
        self.splits, self.batch_size = tuple(splits), max(int(batch_size), 1)

    def setup(self, state) -> None:
        if state.model is None or state.data is None or not hasattr(state.data, "x_train"):
            raise OptrunError("hooks=evaluate needs a model and a plain (non-continual) dataset")

    def columns(self, state) -> list[str]:
        labels = not state.data.y_train.is_floating_point()
        out = [f"{s}_{m}" for s in self.splits for m in (("loss", "acc") if labels else ("loss",))]
        return out + ["param_norm"] + (list(state.model.norms()) if hasattr(state.model, "norms") else [])

    def __call__(self, state) -> dict:
        out = {}
        model = state.model
        with eval_mode(model):
            for split in self.splits:
                x, y = getattr(state.data, f"x_{split}"), getattr(state.data, f"y_{split}")
                preds = torch.cat([model(x[i:i + self.batch_size]) for i in range(0, len(x), self.batch_size)])
                out[f"{split}_loss"] = float(state.trainer.criterion(preds, y))
                if not y.is_floating_point():
                    out[f"{split}_acc"] = float((preds.argmax(-1) == y).double().mean() * 100)
            params = [p for p in model.parameters() if p.requires_grad]
            out["param_norm"] = float(torch.sqrt(sum((p.double() ** 2).sum() for p in params)))
        if hasattr(model, "norms"):
            out.update(model.norms())
        return out
