"""Continual training on a sequence of tasks, one phase per task, through the shared engine.

Methods:
- `finetune`: train on the current task only.
- `er`: experience replay. Each new batch is joined by an equal-size batch from a class-balanced
  memory of earlier tasks; loss = lw_new * CE_new + (1 - lw_new) * CE_mem. As in the official code of
  De Lange et al., the first task's loss is lw_new * CE (set `scale_first_task=false` to drop that).
- `joint`: incremental joint training, batches drawn from the union of all tasks seen so far.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from runner.data import ContinualData
from runner.errors import OptrunError
from runner.trainers.base import (
    IndexSampler,
    ModelObjective,
    Phase,
    TrainState,
    apply_update,
    ensure_train_mode,
    logged_accuracy,
)
from runner.trainers.replay import ReplayBuffer

METHODS = ("finetune", "er", "joint")


class ContinualTrainer(ModelObjective):
    def __init__(self, method: str = "er", batch_size: int = 64, iters_per_task: int | None = 100,
                 epochs_per_task: float | None = None, memory_size: int = 500, replay_batch_size: int | None = None,
                 lw_new: float = 0.5, scale_first_task: bool = True):
        if method not in METHODS:
            raise OptrunError(f"trainer.method: unknown '{method}' (expected one of: {', '.join(METHODS)})")
        if (iters_per_task is None) == (epochs_per_task is None):
            raise OptrunError("trainer: set exactly one of trainer.iters_per_task and trainer.epochs_per_task "
                              "(the other to null)")
        if (iters_per_task or 1) <= 0 or (epochs_per_task or 1) <= 0:
            raise OptrunError("trainer.iters_per_task / trainer.epochs_per_task: expected a positive number")
        if not 0.0 <= lw_new <= 1.0:
            raise OptrunError(f"trainer.lw_new: expected a weight in [0, 1], got {lw_new}")
        self.method, self.batch_size = method, batch_size
        self.iters_per_task, self.epochs_per_task = iters_per_task, epochs_per_task
        self.memory_size, self.replay_batch_size = memory_size, replay_batch_size or batch_size
        self.lw_new, self.scale_first_task = lw_new, scale_first_task
        self.buffer: ReplayBuffer | None = None
        self.sampler: IndexSampler | None = None
        self.replay_sampler: IndexSampler | None = None
        self.x = self.y = None

    def criterion(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(out, y)

    def columns(self, state: TrainState) -> list[str]:
        return ["loss", "loss_new", "train_acc"] + (["loss_mem"] if self.method == "er" else [])

    def phases(self, state: TrainState) -> list[Phase]:
        data = state.data
        if not isinstance(data, ContinualData):
            raise OptrunError("trainer=continual needs a continual dataset (e.g. dataset=split_digits)")
        if self.method == "er":
            self.buffer = ReplayBuffer(self.memory_size, state.generators["replay"])
        out = []
        for k, task in enumerate(data.tasks, start=1):
            if self.iters_per_task is not None:
                steps = self.iters_per_task
            else:
                steps = round(self.epochs_per_task * -(-len(task.y_train) // self.batch_size))
            out.append(Phase(steps=steps, task=k, name=f"task{k}"))
        return out

    def begin_phase(self, state: TrainState, phase: Phase) -> None:
        tasks = state.data.tasks
        k = phase.task
        if self.method == "er" and k > 1:
            prev = tasks[k - 2]
            self.buffer.add_task(k - 1, prev.x_train, prev.y_train)
            self.replay_sampler = IndexSampler(len(self.buffer), self.replay_batch_size, state.generators["replay"])
        if self.method == "joint":
            self.x = torch.cat([t.x_train for t in tasks[:k]])
            self.y = torch.cat([t.y_train for t in tasks[:k]])
        else:
            self.x, self.y = tasks[k - 1].x_train, tasks[k - 1].y_train
        self.sampler = IndexSampler(len(self.y), self.batch_size, state.generators["batch"])

    def step(self, state: TrainState) -> dict:
        idx = self.sampler.next()
        x, y = self.x[idx], self.y[idx]
        ensure_train_mode(state.model)
        replay = self.method == "er" and self.replay_sampler is not None
        if replay:
            ridx = self.replay_sampler.next()
            xm, ym = self.buffer.x[ridx], self.buffer.y[ridx]
            logits = state.model(torch.cat([x, xm]))
            loss_new = F.cross_entropy(logits[: len(y)], y)
            loss_mem = F.cross_entropy(logits[len(y):], ym)
            loss = self.lw_new * loss_new + (1.0 - self.lw_new) * loss_mem
            new_logits = logits[: len(y)]
        else:
            new_logits = state.model(x)
            loss_new = F.cross_entropy(new_logits, y)
            scale = self.lw_new if (self.method == "er" and self.scale_first_task) else 1.0
            loss = scale * loss_new
        apply_update(state, loss)
        out = {"loss": loss.detach(), "loss_new": loss_new.detach(), "train_acc": logged_accuracy(new_logits.detach(), y)}
        if replay:
            out["loss_mem"] = loss_mem.detach()
        return out

    def state_dict(self) -> dict:
        return {"sampler": self.sampler.state_dict() if self.sampler else None,
                "replay_sampler": self.replay_sampler.state_dict() if self.replay_sampler else None,
                "buffer": self.buffer.state_dict() if self.buffer else None}

    def load_state_dict(self, sd: dict) -> None:
        """Called after `begin_phase` of the phase being resumed (which rebuilt the samplers)."""
        if sd["buffer"] is not None:
            self.buffer.load_state_dict(sd["buffer"])
        if sd["replay_sampler"] is not None:
            self.replay_sampler.load_state_dict(sd["replay_sampler"])
        if sd["sampler"] is not None:
            self.sampler.load_state_dict(sd["sampler"])
