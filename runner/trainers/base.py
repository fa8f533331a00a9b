"""Pieces every trainer shares: phases, the training state, and index-based batch sampling."""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from runner.errors import OptrunError
from runner.results import PercentEqual


@dataclass
class Phase:
    """A stretch of steps with one training distribution (a task, or the whole run)."""

    steps: int
    task: int | None = None  # 1-based task id, None for plain supervised training
    name: str = "train"


class TrainState:
    """Everything a step or a hook may read. The engine advances `step`, `task` and the flags.

    Components are named collections: `modules`, `optimizers`, `schedulers` (a one-model trainer
    uses the name `model` in each, reachable as `state.model`, `state.optimizer`, `state.scheduler`;
    a bilevel trainer has e.g. `upper` and `lower`). Builders, checkpoints, resume, `compile`,
    `precision` and `device` cover every entry. `stream(name)` is the random stream of one consumer
    (a hook, a trainer part, a data source), derived from `(seed, name)` only, so adding a consumer
    never shifts another one's numbers. `trainer` is the run's trainer: probes get the objective
    from it (`objective(params, batch)`), never by importing a trainer module.
    """

    def __init__(self, data=None, device: torch.device | str = "cpu", seed: int = 0,
                 generators: dict[str, torch.Generator] | None = None, *, model=None, optimizer=None,
                 scheduler=None, modules: dict | None = None, optimizers: dict | None = None,
                 schedulers: dict | None = None, trainer=None):
        self.modules = dict(modules or {})
        self.optimizers = dict(optimizers or {})
        self.schedulers = dict(schedulers or {})
        for coll, value in ((self.modules, model), (self.optimizers, optimizer), (self.schedulers, scheduler)):
            if value is not None:
                coll["model"] = value
        self.data, self.device, self.seed = data, torch.device(device), int(seed)
        self.generators: dict[str, torch.Generator] = dict(generators or {})
        self.trainer = trainer
        self.step = 0  # updates done so far
        self.task: int | None = None
        self.phase_index = 0
        self.phase_end = False  # True while hooks run after the last step of a phase
        self.stop = False  # set by a trainer or controller to end the run early (as completed)
        self.total_steps = 0
        self.extras: dict = {}

    # the one-model names: what most trainers and hooks use
    model = property(lambda self: self.modules.get("model"),
                     lambda self, v: self._set(self.modules, v))
    optimizer = property(lambda self: self.optimizers.get("model"),
                         lambda self, v: self._set(self.optimizers, v))
    scheduler = property(lambda self: self.schedulers.get("model"),
                         lambda self, v: self._set(self.schedulers, v))

    @staticmethod
    def _set(coll: dict, value) -> None:
        if value is None:
            coll.pop("model", None)
        else:
            coll["model"] = value

    def stream(self, name: str) -> torch.Generator:
        """The random stream of consumer `name`, seeded from (seed, name) on first use; checkpointed
        with the others."""
        g = self.generators.get(name)
        if g is None:
            from runner.seeding import generator

            g = self.generators[name] = generator(self.seed, name, self.device)
        return g

    @property
    def lr(self) -> float:
        """The learning rate the optimizer will use for its next step (first parameter group)."""
        return self.optimizer.param_groups[0]["lr"]


class StepTrainer:
    """The optional parts of the engine's trainer protocol, for trainers that write their own step (two-level,
    rollout): a subclass defines `phases(state)` and `step(state) -> dict with loss`, and may keep state
    of its own for resume in `extra_state` / `load_extra_state`. Divergence is data: a step returns
    `loss = self.guarded(loss, *tensors)`, which is +inf once the loss or a tensor's norm is not finite or
    the norm exceeds `self.diverge_above`; the engine then ends the run `diverged` at that step."""

    diverge_above: float = 1e6

    def guarded(self, loss, *tensors: torch.Tensor) -> torch.Tensor:
        loss = torch.as_tensor(loss)
        blown = ~torch.isfinite(loss)
        for v in tensors:
            n = v.detach().norm().to(loss.device)
            blown = blown | ~torch.isfinite(n) | (n > self.diverge_above)
        return torch.where(blown, torch.full_like(loss, math.inf), loss)

    def begin_phase(self, state: TrainState, phase: Phase) -> None:
        pass

    def step(self, state: TrainState) -> dict:
        raise NotImplementedError

    def extra_state(self) -> dict:
        return {}

    def load_extra_state(self, sd: dict) -> None:
        pass


class ModelObjective:
    """The functional objective of a trainer that fits `model(x)` to targets with `criterion`.

    Probes (sharpness, evaluate, test_eval, step_sweep, prune, the curvature estimators) use these
    three and import no trainer:

        trainer.criterion(output, target)        # the training loss on a model output
        trainer.objective(params, (x, y))        # criterion(model(x; params), y), for torch.func
        trainer.probe_data(state, "train")       # (x, y) a probe of that split should use

    `params` may hold any subset of the model's parameters and buffers (the rest are the model's
    own). A trainer without a differentiable objective (the solver trainer) defines none of them.
    """

    module = "model"  # the component the objective differentiates

    def bind(self, state: TrainState) -> None:
        """Called by the engine at setup: the objective's module is the state's."""
        self._module = state.modules[self.module]

    def criterion(self, out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def objective(self, params: dict, batch) -> torch.Tensor:
        from torch.func import functional_call

        x, y = batch
        return self.criterion(functional_call(self._module, params, (x,)), y)

    def probe_data(self, state: TrainState, split: str = "train") -> tuple[torch.Tensor, torch.Tensor]:
        """The whole `split` of the data the model is trained on now (continual: the current task)."""
        data = state.data
        if hasattr(data, "tasks"):
            data = data.tasks[(state.task or 1) - 1]
        if not hasattr(data, f"x_{split}"):
            raise OptrunError(f"the data set has no {split} split for probes")
        return getattr(data, f"x_{split}"), getattr(data, f"y_{split}")


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


def clear_grads(optimizer: torch.optim.Optimizer) -> None:
    """`optimizer.zero_grad(set_to_none=True)`, without its profiler record and dynamo wrapper where the
    optimizer keeps torch's own zero_grad: ~17 us a call on this CPU vs ~1 us, 3 % of a step of the
    smallest models (langevin_swa). An optimizer with its own zero_grad gets it."""
    if type(optimizer).zero_grad is not torch.optim.Optimizer.zero_grad:
        optimizer.zero_grad(set_to_none=True)
        return
    for group in optimizer.param_groups:
        for p in group["params"]:
            p.grad = None


def apply_update(state: TrainState, loss: torch.Tensor, clip_grad_norm: float | None = None,
                 closure=None) -> None:
    """Backward, optional gradient-norm clipping, optimizer step and per-step schedule: the one
    update every trainer performs.

    An optimizer that sets `needs_closure = True` gets `closure`: `closure()` re-evaluates the loss
    at the current parameters and back-propagates (torch's LBFGS convention), `closure(backward=False)`
    only returns the loss with its graph (for Hessian-vector products); other optimizers never see
    it, so no extra forward pass is spent."""
    clear_grads(state.optimizer)
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
