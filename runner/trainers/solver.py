"""Iterative solvers on the shared engine: a `problem` and an `algorithm` whose `step()` is one iteration.

Papers whose object is not a network (optimal transport, particle methods, second-order methods on
a fixed objective) plug in here and get everything the engine gives a training run: the hook
schedule, `metrics.csv` / `status.json` / `summary.json`, divergence handling, early stop, the
progress bar and the reporter. Select with `trainer=solver model=none optimizer=none dataset=none`
plus the config groups `problem=<name>` and `algorithm=<name>` (`conf/problem/`, `conf/algorithm/`),
which the trainer receives through `trainer.problem: ${problem}` / `trainer.algorithm: ${algorithm}`
and Hydra instantiates recursively.

The contract (duck-typed; `Problem` and `Algorithm` below give the optional parts as no-ops):

problem
  setup(state)            build the instance: random data from `state.generators["data"]` (or
                          `runner.seeding.stream_seed(state.seed, ...)` for numpy consumers), tensors
                          on `state.device`. Called once, before the algorithm's setup.
  reference() -> dict     optional constants from an exact or library solver (e.g. POT, a dense
                          solve), logged once, in the last row, next to the iterate's final metrics
                          (also called at setup, for the column names: keep it cheap or cache it).
algorithm
  setup(problem, state)   the initial iterate (random starts from `state.generators["init"]`,
                          algorithmic noise from `state.generators["solver"]`).
  step(problem, state)    one iteration -> dict of scalars (floats or 0-d tensors). Must contain
                          `loss` (the objective or a residual): the engine stops the run as
                          `diverged` when it is not finite. May set `state.stop = True` (e.g. a
                          method that detects it cannot make progress).
  columns(problem)        optional: names of metrics that do not appear from the first step on.
                          Vector-valued metrics (tensors/arrays) go to the run's `arrays/` store.
  iters                   optional: the iteration budget the method comes with (e.g. a paper's K),
                          used when `trainer.max_iters` is null.
  state_dict() / load_state_dict(sd)   the iterate and any adaptive constants, for resume.

The trainer itself stops the run (as completed) once `metrics[trainer.monitor] <= trainer.tol`, and
logs `converged` (1/0) in the last row. One `optrun` run is one solver run; sweeps over methods,
parameters and seeds are Hydra multiruns, compared across runs by the experiment's claims.
"""
from __future__ import annotations

import math

import torch

from runner.errors import OptrunError
from runner.trainers.base import Phase, TrainState


class Problem:
    """Optional parts of the problem contract (subclassing is not required)."""

    def setup(self, state: TrainState) -> None:
        pass

    def reference(self) -> dict:
        return {}

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, sd: dict) -> None:
        pass


class Algorithm:
    """Optional parts of the algorithm contract (subclassing is not required)."""

    iters: int | None = None

    def setup(self, problem, state: TrainState) -> None:
        pass

    def step(self, problem, state: TrainState) -> dict:
        raise NotImplementedError

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, sd: dict) -> None:
        pass


def _as_float(v) -> float:
    return float(v.item() if isinstance(v, torch.Tensor) else v)


class SolverTrainer:
    def __init__(self, problem=None, algorithm=None, max_iters: int | None = None, tol: float | None = None,
                 monitor: str = "loss"):
        if problem is None:
            raise OptrunError("problem: trainer=solver needs a problem (choose one with problem=<name>, "
                              "see conf/problem/)")
        if algorithm is None or not callable(getattr(algorithm, "step", None)):
            raise OptrunError("algorithm: trainer=solver needs an algorithm with a step() method "
                              "(choose one with algorithm=<name>, see conf/algorithm/)")
        max_iters = max_iters if max_iters is not None else getattr(algorithm, "iters", None)
        if max_iters is None or int(max_iters) <= 0:
            raise OptrunError(f"trainer.max_iters: expected a positive integer (or null to use the algorithm's "
                              f"own budget), got {max_iters}")
        if tol is not None and not tol > 0:
            raise OptrunError(f"trainer.tol: expected a positive number or null, got {tol}")
        self.problem, self.algorithm = problem, algorithm
        self.max_iters, self.tol, self.monitor = int(max_iters), tol, monitor
        self.converged = False

    def phases(self, state: TrainState) -> list[Phase]:
        if getattr(self.problem, "setup", None):
            self.problem.setup(state)
        if getattr(self.algorithm, "setup", None):
            self.algorithm.setup(self.problem, state)
        return [Phase(steps=self.max_iters, name="solve")]

    def begin_phase(self, state: TrainState, phase: Phase) -> None:
        pass

    def columns(self, state: TrainState) -> list[str]:
        """Metrics that may first appear late (the last row's references and verdict), and those the
        algorithm declares (`algorithm.columns(problem)`, optional); every-step metrics need not be."""
        reference = getattr(self.problem, "reference", None)
        declared = getattr(self.algorithm, "columns", None)
        return [*(declared(self.problem) if declared else []), *(reference() if reference else {}), "converged"]

    def step(self, state: TrainState) -> dict:
        metrics = self.algorithm.step(self.problem, state)
        if "loss" not in metrics or self.monitor not in metrics:
            missing = "loss" if "loss" not in metrics else self.monitor
            raise OptrunError(f"algorithm: step() returned no '{missing}' metric "
                              f"(got: {', '.join(metrics) or 'nothing'})")
        if self.tol is not None:
            value = _as_float(metrics[self.monitor])
            if math.isfinite(value) and value <= self.tol:
                self.converged, state.stop = True, True
        if state.stop or state.step + 1 >= self.max_iters:  # the last row: add references and the verdict
            reference = getattr(self.problem, "reference", None)
            metrics = {**metrics, **(reference() if reference else {}), "converged": float(self.converged)}
        return metrics

    def state_dict(self) -> dict:
        return {"problem": self.problem.state_dict() if hasattr(self.problem, "state_dict") else {},
                "algorithm": self.algorithm.state_dict() if hasattr(self.algorithm, "state_dict") else {},
                "converged": self.converged}

    def load_state_dict(self, sd: dict) -> None:
        if hasattr(self.problem, "load_state_dict"):
            self.problem.load_state_dict(sd["problem"])
        if hasattr(self.algorithm, "load_state_dict"):
            self.algorithm.load_state_dict(sd["algorithm"])
        self.converged = sd["converged"]
