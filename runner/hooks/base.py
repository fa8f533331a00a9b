"""The hook contract: a schedule, `setup(state)`, `columns(state)`, `__call__(state) -> dict`.

- **Read-only or controller.** A hook is read-only unless it sets `controller = True`: it must not
  change parameters, optimizer state, the train/eval mode it found, or any stream but its own. A
  controller changes the update (the rho-controller rescales it): at each step the engine runs the
  due controllers right after the trainer's step, then the read-only hooks, which therefore always
  measure the parameters the controller left.
- **Names.** Every metric a hook returns is logged as `<hook name>/<metric>` (the hook's name is its
  key under `hooks:`), except the names it lists in `global_metrics`; `columns(state)` declares the
  names (before prefixing) at setup, so `metrics.csv` has a fixed header and two writers of one
  column are an error before anything runs. Array values (per-run positions, spectra, curves) go to
  `arrays/` (`runner.arrays`), scalars to `metrics.csv`.
- **Randomness.** `self.stream(state)` is the hook's own generator, from (seed, "hook.<name>"):
  adding or removing another hook changes nothing this hook draws.
- **Objective.** A hook with `needs_objective = True` evaluates the trainer's functional objective
  (`state.trainer.objective(params, batch)`, `criterion(output, target)`); a trainer without one
  makes selecting the hook a one-line config error.

The engine decides *when* a hook runs; the hook decides *what* it measures.
"""
from __future__ import annotations

from contextlib import contextmanager

import torch


class Hook:
    name: str = "hook"
    controller: bool = False
    needs_objective: bool = False
    global_metrics: tuple[str, ...] = ()

    def __init__(self, every: int = 1, at_start: bool = False, at_phase_end: bool = True, at_end: bool = True):
        if every < 0:
            from runner.errors import OptrunError

            raise OptrunError(f"hooks.{self.name}.every: expected an integer >= 0 (0 = only at events), got {every}")
        self.every, self.at_start, self.at_phase_end, self.at_end = every, at_start, at_phase_end, at_end

    def due(self, step: int, *, start: bool = False, phase_end: bool = False, end: bool = False) -> bool:
        if start:
            return self.at_start
        return (self.every > 0 and step % self.every == 0) or (phase_end and self.at_phase_end) or (end and self.at_end)

    def setup(self, state) -> None:
        """Called once before training (after the state is built)."""

    def columns(self, state) -> list[str]:
        """The metric names this hook logs (before prefixing), known after `setup`. Every hook declares
        them (the engine refuses one that does not): `metrics.csv` has a fixed header."""
        return []

    def stream(self, state) -> torch.Generator:
        """This hook's own random stream."""
        return state.stream(f"hook.{self.name}")

    def column(self, key: str) -> str:
        """The logged name of metric `key`."""
        return key if key in self.global_metrics else f"{self.name}/{key}"

    def publish(self, out: dict) -> dict:
        return {self.column(k): v for k, v in out.items()}

    def begin_phase(self, state) -> None:
        """Called when a new phase (task) starts, before its first step."""

    def before_step(self, state) -> None:
        """Called just before a step after which this hook is due (e.g. snapshot the parameters to
        see the update the optimizer applies)."""

    def __call__(self, state) -> dict:
        raise NotImplementedError

    def summary(self) -> dict:
        """Final scalars this hook adds to summary.json (beyond the last logged values)."""
        return {}

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, sd: dict) -> None:
        pass


@contextmanager
def eval_mode(model: torch.nn.Module, inference: bool = True):
    """Evaluate without side effects: eval mode (BatchNorm statistics untouched, dropout off), no
    autograd graph, and the original train/eval flags of every submodule restored afterwards.

    `inference=False` uses `no_grad` instead of `inference_mode`: forward-mode AD (dual tensors)
    still works there, and inference mode would drop the tangents."""
    modes = [(m, m.training) for m in model.modules()]
    if all(type(m).train is torch.nn.Module.train for m, _ in modes):
        for m, _ in modes:  # what model.eval() does, without Module.__setattr__ on every submodule
            object.__setattr__(m, "training", False)
    else:  # a module overrides train(): let it see the call
        model.eval()
    try:
        with torch.inference_mode() if inference else torch.no_grad():
            yield
    finally:
        for m, training in modes:  # plain attribute writes: Module.__setattr__ costs ~2 us a module
            object.__setattr__(m, "training", training)
