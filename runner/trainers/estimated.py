"""Updates by a gradient estimator (`trainer.estimator`, e.g. `estimator=spsa`): the part a trainer uses
to replace `loss.backward()` by any `runner.estimators.GradientEstimator`.

The estimator's direction goes into each parameter's `.grad` and the trainer's optimizer steps on it
(clipping and the schedule as usual), so estimators and optimizers combine freely. The cumulative
costs `forward_passes`, `backward_passes` and `function_evals` are logged every step (the x-axis of
equal-cost comparisons) and checkpointed; `trainer.budget_forward_passes` sets the number of steps
from the estimator's per-step cost, so runs of different estimators stop at equal forward passes.
"""
from __future__ import annotations

import math

import torch
from hydra.utils import instantiate

from runner.errors import OptrunError
from runner.estimators.base import COUNTS, GradientEstimator, Problem


def build_estimator(spec) -> GradientEstimator | None:
    """None, a built estimator, or a mapping with `_target_` (a test, or `_recursive_: false`)."""
    if spec is None or isinstance(spec, GradientEstimator):
        return spec
    if isinstance(spec, dict) and "_target_" in spec:
        est = instantiate(spec)
        if isinstance(est, GradientEstimator):
            return est
    raise OptrunError(f"trainer.estimator: expected a gradient estimator config (e.g. estimator=spsa, a mapping with "
                      f"_target_ naming a runner.estimators.GradientEstimator), got {spec!r}")


class EstimatedUpdate:
    """One estimator step: estimate, write `.grad`, clip, optimizer step, schedule, counters."""

    def __init__(self, estimator: GradientEstimator, budget_forward_passes: int | None = None):
        self.estimator = estimator
        if budget_forward_passes is not None and not (int(budget_forward_passes) == budget_forward_passes
                                                      and budget_forward_passes > 0):
            raise OptrunError(f"trainer.budget_forward_passes: expected a positive integer, got {budget_forward_passes!r}")
        self.budget = budget_forward_passes
        self.counts = dict.fromkeys(COUNTS, 0)

    def steps(self) -> int | None:
        """Steps that spend the forward-pass budget (the last step may pass it by less than one step's cost)."""
        if self.budget is None:
            return None
        per_step = self.estimator.cost().get("forward_passes", 0)
        if per_step <= 0:
            raise OptrunError(f"trainer.budget_forward_passes: estimator {self.estimator.name} spends no forward passes per step")
        return max(1, math.ceil(self.budget / per_step))

    def columns(self) -> list[str]:
        return list(COUNTS) + [f"estimator/{c}" for c in self.estimator.columns()]

    def setup(self, problem: Problem, state) -> None:
        self.estimator.setup(problem, state)

    def step(self, state, problem: Problem, batch, clip_grad_norm: float | None = None):
        """The update; returns (loss, model output or None, metrics to log)."""
        if getattr(state.optimizer, "needs_closure", False):
            raise OptrunError(f"optimizer {type(state.optimizer).__name__} re-evaluates the loss by backprop; it "
                              f"cannot step on the directions of estimator {self.estimator.name}")
        est = self.estimator.estimate(problem, batch, state, state.stream("trainer.estimator"))
        state.optimizer.zero_grad(set_to_none=True)
        for name, p in problem.params.items():
            g = est.grads.get(name)
            p.grad = None if g is None else g.detach().to(p.dtype)
        if clip_grad_norm is not None:
            torch.nn.utils.clip_grad_norm_(list(problem.params.values()), clip_grad_norm)
        state.optimizer.step()
        if state.scheduler is not None:
            state.scheduler.step()
        self.estimator.after_step(state)
        for k, v in est.counts.items():
            self.counts[k] = self.counts.get(k, 0) + int(v)
        metrics = dict(self.counts)
        metrics.update({f"estimator/{k}": v for k, v in est.metrics.items()})
        return est.loss, est.output, metrics

    def state_dict(self) -> dict:
        return {"counts": dict(self.counts), "estimator": self.estimator.state_dict()}

    def load_state_dict(self, sd: dict) -> None:
        self.counts = dict(sd["counts"])
        self.estimator.load_state_dict(sd["estimator"])
