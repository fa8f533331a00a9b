"""The estimator protocol, the problem an estimator sees, and backprop (the reference every other
estimator is compared with).

A user's own estimator subclasses `GradientEstimator`:

    class MyEstimator(GradientEstimator):
        name = "mine"
        def cost(self):                       # per step; lets trainer.budget_forward_passes set the steps
            return {"forward_passes": 3, "backward_passes": 0, "function_evals": 3}
        def estimate(self, problem, batch, state, generator):
            loss, out = problem.loss(problem.params, batch)   # a functional forward at any parameters
            ...
            return Estimate(loss, {name: direction}, self.cost(), output=out)

Rules that keep probes honest: `estimate` draws randomness only from `generator` and changes neither
the model, nor the estimator, nor `state` (the `grad_alignment` probe calls it with its own stream
between steps); state an estimator carries across steps (a schedule, a subspace, particles) is
updated in `after_step(state)`, which only the trainer calls, and saved by `state_dict`.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch.func import functional_call

COUNTS = ("forward_passes", "backward_passes", "function_evals")


@dataclass
class Estimate:
    """An update direction (descended by the optimizer) per parameter name, and its cost.

    `loss` is the batch loss at the current parameters where the estimator computed it (else the best
    available value, said in the estimator's docstring); `output` the model output there, when
    computed (the trainer logs train_acc from it)."""

    loss: torch.Tensor
    grads: dict[str, torch.Tensor]
    counts: dict[str, int] = field(default_factory=dict)
    output: torch.Tensor | None = None
    metrics: dict = field(default_factory=dict)  # estimator-specific scalars to log (declared in `columns`)


class Problem:
    """What an estimator may evaluate: `module` with its trainable parameters `params` (name -> tensor),
    the loss `criterion(output, target)` (batch mean) and, where the loss allows, `per_example(output,
    target)` (a vector of per-sample losses, for estimators that perturb each sample on its own)."""

    def __init__(self, module: torch.nn.Module, criterion, per_example=None, params: dict | None = None):
        self.module, self.criterion, self.per_example = module, criterion, per_example
        self.params = params if params is not None else {
            n: p for n, p in module.named_parameters() if p.requires_grad}

    def forward(self, params: dict, x) -> torch.Tensor:
        """The model's output at `params` (any subset of the parameters; the rest are the module's)."""
        return functional_call(self.module, params, (x,))

    def loss(self, params: dict, batch) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = batch
        out = self.forward(params, x)
        return self.criterion(out, y), out

    def perturbed(self, direction: dict, scale: float) -> dict:
        """params + scale * direction (a new dict; the module is untouched)."""
        return {n: p.detach() + scale * direction[n] for n, p in self.params.items()}

    def randn(self, generator: torch.Generator, rademacher: bool = False) -> dict:
        """One random direction over the parameters: standard normal, or +-1 (Rademacher)."""
        out = {}
        for n, p in self.params.items():
            if rademacher:
                v = torch.randint(0, 2, p.shape, generator=generator, device=p.device).to(p.dtype) * 2 - 1
            else:
                v = torch.randn(p.shape, generator=generator, device=p.device, dtype=p.dtype)
            out[n] = v
        return out

    @property
    def dim(self) -> int:
        """The number of trainable scalars (the perturbation dimension of weight perturbation)."""
        return sum(p.numel() for p in self.params.values())


class GradientEstimator:
    """The protocol (see the module docstring). Subclasses set `name` and implement `estimate`; `cost`
    is the per-step count of forward/backward passes and function evaluations when it is fixed."""

    name = "estimator"

    def cost(self) -> dict[str, int]:
        raise NotImplementedError(f"estimator {self.name} has no fixed per-step cost")

    def columns(self) -> list[str]:
        """Names of the estimator-specific metrics in `Estimate.metrics` (logged as `estimator/<name>`)."""
        return []

    def setup(self, problem: Problem, state) -> None:
        """Called once by the trainer before the first step (e.g. to size a subspace)."""

    def estimate(self, problem: Problem, batch, state, generator: torch.Generator) -> Estimate:
        raise NotImplementedError

    def after_step(self, state) -> None:
        """Called by the trainer after the optimizer step (schedules, absorption into base weights)."""

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, sd: dict) -> None:
        pass


class Backprop(GradientEstimator):
    """The exact gradient of the batch loss by reverse mode: one forward and one backward pass."""

    name = "backprop"

    def cost(self) -> dict[str, int]:
        return {"forward_passes": 1, "backward_passes": 1, "function_evals": 1}

    def estimate(self, problem: Problem, batch, state, generator: torch.Generator) -> Estimate:
        names = list(problem.params)
        with torch.enable_grad():
            loss, out = problem.loss(problem.params, batch)
            grads = torch.autograd.grad(loss, [problem.params[n] for n in names], allow_unused=True)
        grads = {n: (g if g is not None else torch.zeros_like(problem.params[n])) for n, g in zip(names, grads)}
        return Estimate(loss.detach(), grads, self.cost(), output=out.detach())


def flat(grads: dict[str, torch.Tensor], names=None) -> torch.Tensor:
    """The directions of `names` (all, in order) as one vector."""
    return torch.cat([grads[n].reshape(-1) for n in (names or grads)])


def cosine(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """cos(a, b); NaN where either is zero (no direction to compare, e.g. backprop through a step function)."""
    na, nb = a.norm(), b.norm()
    return torch.where((na > 0) & (nb > 0), (a @ b) / (na * nb).clamp_min(1e-300), torch.full_like(na, float("nan")))
