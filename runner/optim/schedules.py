"""Learning-rate plans that produce checkpoints at several budgets B_1 < ... < B_K in one run.

A plan is a list of `Segment`s along the *path* (the sequence of updates that the final weights
went through) plus, for WSD, decay *branches* forked from the path and discarded afterwards:

- `wsd`: warmup, a constant peak LR, and at each budget B_k a decay of D_k = decay_fraction * B_k
  steps forked from the stable main branch at B_k - D_k. The branch for the last budget is the end
  of the path; earlier branches are discarded (their steps still cost compute).
- `wsd_s`: the same decays placed on the path: after the decay to B_k, training resumes at the peak
  LR from the decayed weights (no rewind, no re-warmup).
- `cyclic_cosine`: one cosine cycle per interval [B_{k-1}, B_k); with one budget it is the cosine
  schedule tuned to that budget.

`BudgetSchedule` is a `LambdaLR` over the path position (`last_epoch`); it follows the path unless
a trainer runs a branch (`enter(i)`), so with a plain trainer `wsd` is WSD for the last budget.
`runner.trainers.budgets.BudgetTrainer` runs the branches (snapshot, decay, restore).
Decay shapes: linear, cosine, sqrt (1 - sqrt(t), the "inverse-sqrt-style" cooldown) and inverse
(eta_max / (1 + c t), the inverse-proportional form), each ending at final_lr_ratio * peak.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from torch.optim.lr_scheduler import LambdaLR

from runner.errors import OptrunError

SHAPES = ("linear", "cosine", "sqrt", "inverse")


def decay_multiplier(shape: str, t: float, final: float) -> float:
    """LR multiplier at fraction t in (0, 1] of a decay from 1 to `final`."""
    if shape == "linear":
        return 1.0 - (1.0 - final) * t
    if shape == "cosine":
        return final + (1.0 - final) * 0.5 * (1.0 + math.cos(math.pi * t))
    if shape == "sqrt":
        return 1.0 - (1.0 - final) * math.sqrt(t)
    if shape == "inverse":
        if final <= 0:
            raise OptrunError("schedule.final_lr_ratio: the inverse decay shape needs a ratio > 0")
        return 1.0 / (1.0 + (1.0 / final - 1.0) * t)
    raise OptrunError(f"schedule.shape: unknown '{shape}' (expected one of: {', '.join(SHAPES)})")


@dataclass
class Segment:
    """`steps` updates starting at path position `start`. kind: stable | decay | branch | cosine.

    `budget`: the budget B_k this segment ends at (its last step is a checkpoint), `fork`: the budget
    whose decay starts right after it. A `branch` is discarded afterwards (weights are rewound)."""

    start: int
    steps: int
    kind: str
    shape: str = "linear"
    final: float = 0.0
    warmup: int = 0
    budget: int | None = None
    fork: int | None = None

    @property
    def rewind(self) -> bool:
        return self.kind == "branch"

    def multiplier(self, j: int) -> float:
        """LR multiplier of the j-th step of this segment (0-based)."""
        p = self.start + j
        warm = min(1.0, (p + 1) / self.warmup) if self.warmup else 1.0
        if self.kind == "stable":
            return warm
        t = (min(max(j, 0), self.steps - 1) + 1) / self.steps
        if self.kind == "cosine":
            return warm * decay_multiplier("cosine", t, self.final)
        return decay_multiplier(self.shape, t, self.final)


def _check(budgets, warmup: int, decay_fraction: float | None = None, final_lr_ratio: float = 0.01) -> list[int]:
    try:
        b = [int(x) for x in budgets]
    except (TypeError, ValueError):
        raise OptrunError(f"schedule.budgets: expected a list of step counts, got {budgets}") from None
    if not b or b[0] <= 0 or any(x >= y for x, y in zip(b, b[1:])):
        raise OptrunError(f"schedule.budgets: expected positive, strictly increasing step counts, got {b}")
    if warmup < 0 or warmup >= b[0]:
        raise OptrunError(f"schedule.warmup: expected 0 <= warmup < first budget ({b[0]}), got {warmup}")
    if decay_fraction is not None and not 0.0 < decay_fraction <= 1.0:
        raise OptrunError(f"schedule.decay_fraction: expected a number in (0, 1], got {decay_fraction}")
    if not 0.0 <= final_lr_ratio <= 1.0:
        raise OptrunError(f"schedule.final_lr_ratio: expected a number in [0, 1], got {final_lr_ratio}")
    return b


def _forks(b: list[int], decay_fraction: float, warmup: int) -> list[int]:
    forks = [x - max(1, round(decay_fraction * x)) for x in b]
    if forks[0] < warmup:
        raise OptrunError(f"schedule: the first decay would start at step {forks[0]}, inside the warmup ({warmup})")
    return forks


def wsd_segments(budgets, warmup: int = 0, decay_fraction: float = 0.1, shape: str = "linear",
                 final_lr_ratio: float = 0.01) -> list[Segment]:
    """Main-branch segments split at every fork point, each followed by its decay branch."""
    b = _check(budgets, warmup, decay_fraction, final_lr_ratio)
    decay_multiplier(shape, 1.0, final_lr_ratio)  # validates the shape
    forks = _forks(b, decay_fraction, warmup)
    if any(x >= y for x, y in zip(forks, forks[1:])):
        raise OptrunError(f"schedule: decay branches must start in budget order, got fork points {forks}")
    segs, pos = [], 0
    for k, (f, end) in enumerate(zip(forks, b)):
        if f > pos:
            segs.append(Segment(pos, f - pos, "stable", warmup=warmup, fork=end))
        kind = "decay" if k == len(b) - 1 else "branch"
        segs.append(Segment(f, end - f, kind, shape=shape, final=final_lr_ratio, budget=end))
        pos = f
    return segs


def wsd_s_segments(budgets, warmup: int = 0, decay_fraction: float = 0.1, shape: str = "linear",
                   final_lr_ratio: float = 0.01) -> list[Segment]:
    """Decays on the path: stable to the fork, decay to B_k, resume at the peak from there."""
    b = _check(budgets, warmup, decay_fraction, final_lr_ratio)
    decay_multiplier(shape, 1.0, final_lr_ratio)
    forks = _forks(b, decay_fraction, warmup)
    segs, pos = [], 0
    for f, end in zip(forks, b):
        if f < pos:
            raise OptrunError(f"schedule: the decay to {end} would start at {f}, before the previous budget {pos}")
        if f > pos:
            segs.append(Segment(pos, f - pos, "stable", warmup=warmup, fork=end))
        segs.append(Segment(f, end - f, "decay", shape=shape, final=final_lr_ratio, budget=end))
        pos = end
    return segs


def cyclic_cosine_segments(budgets, warmup: int = 0, final_lr_ratio: float = 0.01) -> list[Segment]:
    b = _check(budgets, warmup, None, final_lr_ratio)
    starts = [0, *b[:-1]]
    return [Segment(s, e - s, "cosine", final=final_lr_ratio, warmup=warmup if k == 0 else 0, budget=e)
            for k, (s, e) in enumerate(zip(starts, b))]


class BudgetSchedule(LambdaLR):
    """LambdaLR over the path position; `enter(i)` switches to branch segment i (None: the path)."""

    def __init__(self, optimizer, segments: list[Segment]):
        self.segments = list(segments)
        self.path = [s for s in self.segments if not s.rewind]
        self.active: int | None = None
        super().__init__(optimizer, self.multiplier)

    @property
    def total_steps(self) -> int:
        """Updates in the whole plan, discarded branches included."""
        return sum(s.steps for s in self.segments)

    @property
    def budgets(self) -> list[int]:
        return [s.start + s.steps for s in self.segments if s.budget is not None]

    def multiplier(self, p: int) -> float:
        if self.active is not None:
            seg = self.segments[self.active]
            return seg.multiplier(p - seg.start)
        for seg in self.path:
            if p < seg.start + seg.steps:
                return seg.multiplier(p - seg.start)
        return self.path[-1].multiplier(self.path[-1].steps - 1)

    def enter(self, index: int | None) -> None:
        """Run segment `index` next (a branch, or None to follow the path) and refresh the LRs."""
        self.active = index if index is not None and self.segments[index].rewind else None
        for group, base in zip(self.optimizer.param_groups, self.base_lrs):
            group["lr"] = base * self.multiplier(self.last_epoch)
        self._last_lr = [g["lr"] for g in self.optimizer.param_groups]

    def state_dict(self) -> dict:
        return {"last_epoch": self.last_epoch, "active": self.active, "base_lrs": list(self.base_lrs),
                "_last_lr": list(self._last_lr), "_step_count": self._step_count,
                "segments": [asdict(s) for s in self.segments]}

    def load_state_dict(self, sd: dict) -> None:
        self.last_epoch, self.active, self._step_count = sd["last_epoch"], sd["active"], sd["_step_count"]
        self.base_lrs, self._last_lr = list(sd["base_lrs"]), list(sd["_last_lr"])


def wsd(optimizer, budgets, warmup: int = 0, decay_fraction: float = 0.1, shape: str = "linear",
        final_lr_ratio: float = 0.01) -> BudgetSchedule:
    return BudgetSchedule(optimizer, wsd_segments(budgets, warmup, decay_fraction, shape, final_lr_ratio))


def wsd_s(optimizer, budgets, warmup: int = 0, decay_fraction: float = 0.1, shape: str = "linear",
          final_lr_ratio: float = 0.01) -> BudgetSchedule:
    return BudgetSchedule(optimizer, wsd_s_segments(budgets, warmup, decay_fraction, shape, final_lr_ratio))


def cyclic_cosine(optimizer, budgets, warmup: int = 0, final_lr_ratio: float = 0.01) -> BudgetSchedule:
    return BudgetSchedule(optimizer, cyclic_cosine_segments(budgets, warmup, final_lr_ratio))
