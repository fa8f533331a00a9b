"""The hook contract: a schedule, `setup(state)`, `__call__(state) -> dict[str, float]`.

A hook is read-only unless it sets `controller = True`: it must not change parameters, optimizer
state, the train/eval mode it found, or any RNG stream the trainer draws from. The engine decides
*when* a hook runs; the hook decides *what* it measures.
"""
from __future__ import annotations

from contextlib import contextmanager

import torch


class Hook:
    name: str = "hook"
    controller: bool = False

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
def eval_mode(model: torch.nn.Module):
    """Evaluate without side effects: eval mode (BatchNorm statistics untouched, dropout off), no
    autograd graph, and the original train/eval flags of every submodule restored afterwards."""
    modes = [(m, m.training) for m in model.modules()]
    if all(type(m).train is torch.nn.Module.train for m, _ in modes):
        for m, _ in modes:  # what model.eval() does, without Module.__setattr__ on every submodule
            object.__setattr__(m, "training", False)
    else:  # a module overrides train(): let it see the call
        model.eval()
    try:
        with torch.inference_mode():
            yield
    finally:
        for m, training in modes:  # plain attribute writes: Module.__setattr__ costs ~2 us a module
            object.__setattr__(m, "training", training)
