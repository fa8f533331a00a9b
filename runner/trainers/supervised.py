"""Plain supervised training: one phase, mini-batches (or the full batch) drawn by index.

`loss=ce` (classification, logs train_acc), `loss=mse` (regression: targets are float tensors of
shape (N, out) or (N,), the model's `n_classes` is its output dimension; with class labels it
regresses one-hot targets and logs train_acc too) or `loss=corr` (the
correlation loss -mean(f(x) y) of single-index / tensor-PCA estimation). `batch_size=null` is
full-batch gradient descent. `clip_grad_norm` clips the gradient norm before the optimizer step.
`temperature` T trains on CE(z/T) (ce only; 1 = plain cross-entropy). Each step leaves its mini-batch
in `state.extras["batch"] = (x, y)` for hooks that probe the batch the update was computed on.

`estimator` (the config group `estimator=backprop|spsa|forward_gradient|antithetic_es|node_perturbation`
or a paper's own) replaces backprop by a gradient estimator (`runner.trainers.estimated`): the
optimizer steps on its direction, `forward_passes`/`backward_passes`/`function_evals` are logged, and
`budget_forward_passes` (instead of steps/epochs) stops runs of different estimators at equal cost.

Batches come from a `runner.data.sources.TensorSource` on the `batch` stream (in-memory, by index);
`augment=crop_flip` adds the CIFAR-10 augmentation (random crop of the `augment_padding`-padded
image + horizontal flip), on the device, from a stream derived from the batch stream, so the samples
of each batch are those without augmentation.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from runner.data.sources import RandomCropFlip, TensorSource
from runner.errors import OptrunError
from runner.estimators.base import Problem
from runner.trainers.base import (
    ModelObjective,
    Phase,
    TrainState,
    apply_update,
    ensure_train_mode,
    logged_accuracy,
)
from runner.trainers.estimated import EstimatedUpdate, build_estimator

LOSSES = ("ce", "mse", "corr")
AUGMENTS = (None, "crop_flip")


def loss_fn(kind: str, out: torch.Tensor, y: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    if kind == "ce":
        if out.dim() > 2:  # sequence models: (N, L, V) logits for (N, L) targets
            out, y = out.flatten(0, -2), y.flatten()
        return F.cross_entropy(out / temperature if temperature != 1.0 else out, y)
    if kind == "corr":
        return -(out * y.view_as(out)).mean()
    if not y.is_floating_point():  # class labels: regress one-hot targets (MSE classification)
        y = F.one_hot(y, out.shape[-1]).to(out.dtype)
    # written out rather than F.mse_loss, whose forward-over-reverse derivative (jvp of grad, used by
    # Hessian-vector products) fails in torch 2.x with "ZeroTensors are immutable"
    return (out - y.view_as(out)).pow(2).mean()


def per_example_loss(kind: str, out: torch.Tensor, y: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """The vector of per-sample losses whose mean is `loss_fn` (for estimators that credit each sample)."""
    if kind == "ce":
        if out.dim() > 2:
            return F.cross_entropy((out / temperature).flatten(0, -2), y.flatten(), reduction="none").view(y.shape).flatten(1).mean(1)
        return F.cross_entropy(out / temperature, y, reduction="none")
    if kind == "corr":
        return -(out * y.view_as(out)).flatten(1).mean(1) if out.dim() > 1 else -(out * y)
    if not y.is_floating_point():
        y = F.one_hot(y, out.shape[-1]).to(out.dtype)
    d = (out - y.view_as(out)).pow(2)
    return d.flatten(1).mean(1) if d.dim() > 1 else d


class SupervisedTrainer(ModelObjective):
    def __init__(self, steps: int | None = None, epochs: float | None = None, batch_size: int | None = 64,
                 loss: str = "ce", clip_grad_norm: float | None = None, temperature: float = 1.0,
                 augment: str | None = None, augment_padding: int = 4, estimator=None,
                 budget_forward_passes: int | None = None):
        self.estimator = build_estimator(estimator)
        if budget_forward_passes is not None and self.estimator is None:
            raise OptrunError("trainer.budget_forward_passes: needs a gradient estimator (e.g. estimator=backprop)")
        if sum(v is not None for v in (steps, epochs, budget_forward_passes)) != 1:
            raise OptrunError("trainer: set exactly one of trainer.steps, trainer.epochs and trainer.budget_forward_passes")
        if (steps is not None and steps <= 0) or (epochs is not None and epochs <= 0):
            raise OptrunError("trainer.steps / trainer.epochs: expected a positive number")
        if loss not in LOSSES:
            raise OptrunError(f"trainer.loss: unknown '{loss}' (expected one of: {', '.join(LOSSES)})")
        if clip_grad_norm is not None and clip_grad_norm <= 0:
            raise OptrunError(f"trainer.clip_grad_norm: expected a positive number or null, got {clip_grad_norm}")
        if temperature <= 0 or (temperature != 1.0 and loss != "ce"):
            raise OptrunError(f"trainer.temperature: expected a positive number (with loss=ce), got {temperature}")
        if augment not in AUGMENTS:
            raise OptrunError(f"trainer.augment: unknown '{augment}' (expected null or crop_flip)")
        self.augment = RandomCropFlip(augment_padding) if augment else None
        self.steps, self.epochs, self.batch_size = steps, epochs, batch_size
        self.temperature = temperature
        self.loss, self.clip_grad_norm = loss, clip_grad_norm
        self.sampler: TensorSource | None = None
        self.update = EstimatedUpdate(self.estimator, budget_forward_passes) if self.estimator is not None else None

    def phases(self, state: TrainState) -> list[Phase]:
        d = state.data
        if self.augment is not None and d.x_train.dim() != 4:
            raise OptrunError(f"trainer.augment=crop_flip: expects images (N, C, H, W), the data are {tuple(d.x_train.shape)}")
        if self.batch_size is not None and self.batch_size <= 0:
            raise OptrunError(f"trainer.batch_size: expected a positive integer, got {self.batch_size}")
        self.sampler = TensorSource((d.x_train, d.y_train), self.batch_size, transform=self.augment)
        self.sampler.setup(state.generators["batch"], d.x_train.device)
        if self.update is not None:
            self.update.setup(self.estimation_problem(state), state)
        if self.steps is not None:
            steps = self.steps
        elif self.epochs is not None:
            steps = round(self.epochs * self.sampler.batches_per_epoch())
        else:
            steps = self.update.steps()
        return [Phase(steps=steps)]

    def estimation_problem(self, state: TrainState) -> Problem:
        """What a gradient estimator (the trainer's, or a probe's) evaluates: the model and this loss."""
        return Problem(state.model, self.criterion,
                       lambda out, y: per_example_loss(self.loss, out, y, self.temperature))

    def begin_phase(self, state: TrainState, phase: Phase) -> None:
        pass

    def criterion(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return loss_fn(self.loss, out, y, self.temperature)

    def columns(self, state: TrainState) -> list[str]:
        cols = ["loss"] if state.data.y_train.is_floating_point() else ["loss", "train_acc"]
        return cols + (self.update.columns() if self.update is not None else [])

    def step(self, state: TrainState) -> dict:
        x, y = self.sampler.next()
        state.extras["batch"] = (x, y)
        ensure_train_mode(state.model)
        if self.update is not None:
            return self._estimated_step(state, x, y)
        out = state.model(x)
        loss = self.criterion(out, y)

        def closure(backward: bool = True):  # for optimizers that re-evaluate the loss (needs_closure)
            again = self.criterion(state.model(x), y)
            if backward:
                state.optimizer.zero_grad(set_to_none=True)
                again.backward()
            return again

        apply_update(state, loss, self.clip_grad_norm, closure)
        metrics = {"loss": loss.detach()}
        if not y.is_floating_point():
            metrics["train_acc"] = logged_accuracy(out.detach(), y)
        return metrics

    def _estimated_step(self, state: TrainState, x, y) -> dict:
        loss, out, metrics = self.update.step(state, self.estimation_problem(state), (x, y), self.clip_grad_norm)
        metrics["loss"] = loss.detach()
        if not y.is_floating_point() and out is not None:
            metrics["train_acc"] = logged_accuracy(out.detach(), y)
        return metrics

    def state_dict(self) -> dict:
        sd = {"sampler": self.sampler.state_dict()}
        if self.update is not None:
            sd["estimated"] = self.update.state_dict()
        return sd

    def load_state_dict(self, sd: dict) -> None:
        self.sampler.load_state_dict(sd["sampler"])
        if self.update is not None:
            self.update.load_state_dict(sd["estimated"])
