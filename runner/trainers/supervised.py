"""Plain supervised training: one phase, cross-entropy on mini-batches drawn by index."""
from __future__ import annotations

import torch.nn.functional as F

from runner.errors import OptrunError
from runner.trainers.base import IndexSampler, Phase, TrainState, accuracy, apply_update


class SupervisedTrainer:
    def __init__(self, steps: int | None = None, epochs: float | None = None, batch_size: int = 64):
        if (steps is None) == (epochs is None):
            raise OptrunError("trainer: set exactly one of trainer.steps and trainer.epochs")
        if (steps is not None and steps <= 0) or (epochs is not None and epochs <= 0):
            raise OptrunError("trainer.steps / trainer.epochs: expected a positive number")
        self.steps, self.epochs, self.batch_size = steps, epochs, batch_size
        self.sampler: IndexSampler | None = None

    def phases(self, state: TrainState) -> list[Phase]:
        d = state.data
        self.sampler = IndexSampler(len(d.y_train), self.batch_size, state.generators["batch"])
        steps = self.steps if self.steps is not None else round(self.epochs * self.sampler.batches_per_epoch())
        return [Phase(steps=steps)]

    def begin_phase(self, state: TrainState, phase: Phase) -> None:
        pass

    def step(self, state: TrainState) -> dict:
        d = state.data
        idx = self.sampler.next()
        x, y = d.x_train[idx], d.y_train[idx]
        state.model.train()
        logits = state.model(x)
        loss = F.cross_entropy(logits, y)
        apply_update(state, loss)
        return {"loss": loss.detach(), "train_acc": accuracy(logits.detach(), y)}

    def state_dict(self) -> dict:
        return {"sampler": self.sampler.state_dict()}

    def load_state_dict(self, sd: dict) -> None:
        self.sampler.load_state_dict(sd["sampler"])
