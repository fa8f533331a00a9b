"""Pieces every trainer shares: phases, the training state, and index-based batch sampling."""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from runner.errors import OptrunError
from runner.results import PercentEqual


@dataclass
class Phase:
    """A stretch of steps with one training distribution (a task, or the whole run)."""

    steps: int
    task: int | None = None  # 1-based task id, None for plain supervised training
    name: str = "train"


@dataclass
class TrainState:
    """Everything a step or a hook may read. The engine advances `step`, `task` and the flags."""

    model: torch.nn.Module | None  # None for solver experiments that train no network
    optimizer: torch.optim.Optimizer | None
    scheduler: object | None
    data: object | None
    device: torch.device
    seed: int
    generators: dict[str, torch.Generator]
    step: int = 0  # updates done so far
    task: int | None = None
    phase_index: int = 0
    phase_end: bool = False  # True while hooks run after the last step of a phase
    stop: bool = False  # set by a trainer or controller to end the run early (as completed)
    total_steps: int = 0
    extras: dict = field(default_factory=dict)

    @property
    def lr(self) -> float:
        """The learning rate the optimizer will use for its next step (first parameter group)."""
        return self.optimizer.param_groups[0]["lr"]


class IndexSampler:
    """Mini-batches by index over n items: one permutation per epoch, drawn on the data's device.

    The last batch of an epoch may be smaller (no sample is dropped)."""

    def __init__(self, n: int, batch_size: int, generator: torch.Generator, device=None):
        from runner.errors import OptrunError

        if n <= 0:
            raise OptrunError("data: cannot sample batches from an empty set")
        if batch_size <= 0:
            raise OptrunError(f"trainer.batch_size: expected a positive integer, got {batch_size}")
        self.n, self.batch_size, self.generator = n, min(batch_size, n), generator
        self.device = device or generator.device
        self.perm, self.pos, self.epoch = None, n, -1

    def next(self) -> torch.Tensor:
        if self.pos >= self.n:
            self.perm = torch.randperm(self.n, generator=self.generator, device=self.device)
            self.pos, self.epoch = 0, self.epoch + 1
        idx = self.perm[self.pos:self.pos + self.batch_size]
        self.pos += len(idx)
        return idx

    def batches_per_epoch(self) -> int:
        return -(-self.n // self.batch_size)

    def state_dict(self) -> dict:
        return {"n": self.n, "batch_size": self.batch_size, "perm": self.perm, "pos": self.pos, "epoch": self.epoch}

    def load_state_dict(self, sd: dict) -> None:
        self.n, self.batch_size = sd["n"], sd["batch_size"]
        self.perm, self.pos, self.epoch = sd["perm"], sd["pos"], sd["epoch"]


def accuracy(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Percent correct, as a 0-d tensor (no host sync)."""
    return (logits.argmax(dim=-1) == y).float().mean() * 100.0


# logits up to this many entries are kept until the flush (argmax batched there); larger ones (a
# language model's N x L x V) are reduced to predictions at once, so pending rows stay small
DEFER_ARGMAX_NUMEL = 16384


def logged_accuracy(logits: torch.Tensor, y: torch.Tensor) -> PercentEqual:
    """Percent correct for a metrics row, computed at the flush, batched over pending rows (for small
    logits even the argmax waits: no extra op per step)."""
    if logits.numel() <= DEFER_ARGMAX_NUMEL:
        return PercentEqual(logits, y, from_logits=True)
    return PercentEqual(logits.argmax(dim=-1), y)


def ensure_train_mode(model: torch.nn.Module) -> None:
    """`model.train()` unless it is already in training mode (hooks restore the modes they change),
    which spares a walk over every submodule on each step."""
    if not model.training:
        model.train()


def apply_update(state: TrainState, loss: torch.Tensor, clip_grad_norm: float | None = None,
                 closure=None) -> None:
    """Backward, optional gradient-norm clipping, optimizer step and per-step schedule: the one
    update every trainer performs.

    An optimizer that sets `needs_closure = True` gets `closure`: `closure()` re-evaluates the loss
    at the current parameters and back-propagates (torch's LBFGS convention), `closure(backward=False)`
    only returns the loss with its graph (for Hessian-vector products); other optimizers never see
    it, so no extra forward pass is spent."""
    state.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if clip_grad_norm is not None:
        torch.nn.utils.clip_grad_norm_(state.model.parameters(), clip_grad_norm)
    if getattr(state.optimizer, "needs_closure", False):
        if closure is None:
            raise OptrunError(f"optimizer {type(state.optimizer).__name__} needs a closure; this trainer gives none")
        state.optimizer.step(closure)
    else:
        state.optimizer.step()
    if state.scheduler is not None:
        state.scheduler.step()
