"""Gradient estimators: one pluggable part that turns (model, loss, batch) into an update direction.

Backprop, zeroth-order estimators (SPSA, forward gradient, antithetic ES, node perturbation) and the
papers' own rules (straight-through variants, equilibrium propagation, PolyStep's transport step) all
implement `GradientEstimator.estimate(problem, batch, state, generator) -> Estimate`: a direction per
parameter, in the optimizer's convention (the optimizer *descends* it, like a gradient), plus what it
cost in forward passes, backward passes and function evaluations. The trainer writes the direction
into `p.grad` and calls the optimizer, so any estimator pairs with any `torch.optim` optimizer.

Selected by config: `estimator=spsa` (the group `conf/estimator/`, placed at `trainer.estimator`),
with `trainer.budget_forward_passes` to compare methods at equal forward passes. The read-only probe
`hooks=[grad_alignment]` compares a direction with the true backprop gradient on the same batch.
See `runner/estimators/base.py` for the protocol a user's own estimator follows.
"""
from runner.estimators.base import Backprop, Estimate, GradientEstimator, Problem, cosine, flat

__all__ = ["Backprop", "Estimate", "GradientEstimator", "Problem", "cosine", "flat"]
