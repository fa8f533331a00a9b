"""One-step sweeps at the checkpoints of the paper's random-direction experiments.

The paper's Section 6.3 (Figure 8; official `experiments/randomdirs`) probes one trained trajectory at
three checkpoints, after a fixed number of updates (30, 180, 700). The official phase-transition script
(`experiments/phasetransition`, MLP+LN) instead takes a checkpoint the first time the test accuracy,
checked every 10 updates, reaches each of 0.84, 0.95 and 0.98 (and the final model for a target never
reached). `CheckpointSweep` is the `step_sweep` hook (`runner.hooks.step_sweep.StepSweep`: loss ratio
L(θ + τv)/L(θ) at τ = r·ρ_a(v) for a grid of r, along +∇L, −∇L and random unit directions) run at
those checkpoints instead of at the end, and it also logs every random direction's curve, not only the
median, because the paper's statistics are taken over directions.

Logged as `step_sweep/<name>`: everything StepSweep logs, at each checkpoint; `ratio_random_all`
(array, one row per random direction); `checkpoints` (how many checkpoints this sweep stands for: 2 when
one check reaches two accuracy targets at once, as the official script then reuses the same model) and,
with accuracy targets, `test_acc` (percent) at every check.
"""
from __future__ import annotations

import numpy as np

from runner.errors import OptrunError
from runner.hooks.base import eval_mode
from runner.hooks.step_sweep import StepSweep


class CheckpointSweep(StepSweep):
    def __init__(self, at_steps: list[int] = (), acc_targets: list[float] = (), check_every: int = 10, **kw):
        kw.update(every=0, at_phase_end=False, at_end=False)
        super().__init__(**kw)
        if bool(at_steps) == bool(acc_targets):
            raise OptrunError("hooks.step_sweep: CheckpointSweep needs either at_steps (update counts) or "
                              "acc_targets (test accuracies, fractions), not both")
        if check_every < 1:
            raise OptrunError("hooks.step_sweep.check_every: expected a positive integer")
        self.at_steps = {int(s) for s in at_steps}
        self.acc_targets = sorted(float(t) for t in acc_targets)
        self.check_every = int(check_every)
        self.reached: list[float] = []  # accuracy targets already swept
        self._end = False

    # --- when ---------------------------------------------------------------------------------
    def due(self, step: int, *, start: bool = False, phase_end: bool = False, end: bool = False) -> bool:
        if start:
            return False
        self._end = end
        if self.acc_targets:
            return step % self.check_every == 0 or end
        return step in self.at_steps

    def columns(self, state) -> list[str]:
        return [*super().columns(state), "checkpoints", *(["test_acc"] if self.acc_targets else [])]

    # --- what -----------------------------------------------------------------------------------
    def _test_accuracy(self, state) -> float:
        model = state.model
        with eval_mode(model):
            z = model(state.data.x_test)
        return float((z.argmax(-1) == state.data.y_test).double().mean())

    def _directions(self, state, params: dict) -> list[tuple[str, dict]]:
        dirs = super()._directions(state, params)
        self._names = [name for name, _ in dirs]
        return dirs

    def _curve(self, model, params: dict, v: dict, rho: float, loss0: float, criterion):
        ratio, acc = super()._curve(model, params, v, rho, loss0, criterion)
        self._ratios.append(ratio)
        return ratio, acc

    def _sweep(self, state) -> dict:
        self._ratios: list[np.ndarray] = []
        out = super().__call__(state)
        rand = [c for n, c in zip(self._names, self._ratios) if n == "random"]
        if rand:
            out["ratio_random_all"] = np.stack(rand)
        return out

    def __call__(self, state) -> dict:
        if not self.acc_targets:
            return {**self._sweep(state), "checkpoints": 1}
        acc = self._test_accuracy(state)
        new = [t for t in self.acc_targets if t not in self.reached and (acc >= t or self._end)]
        out = {"test_acc": acc * 100.0}
        if new:
            self.reached += new
            out.update(self._sweep(state), checkpoints=len(new))
        return out

    def state_dict(self) -> dict:
        return {"reached": list(self.reached)}

    def load_state_dict(self, sd: dict) -> None:
        self.reached = [float(t) for t in sd.get("reached", [])]

