"""Learning-rate spike: the LR is multiplied by `factor` from update `start` on, for `length` updates
(null = held to the end; 1 = a single-step spike). Updates are counted from 0, so `start: 50` leaves
the first 50 updates at the base LR. A `torch.optim.lr_scheduler.LambdaLR` (stepped every update).
"""
from __future__ import annotations

from torch.optim.lr_scheduler import LambdaLR

from runner.errors import OptrunError


class SpikeFactor:
    """The multiplier of update k (a picklable callable, so the scheduler's state can be saved)."""

    def __init__(self, start: int, factor: float, length: int | None):
        self.start, self.factor, self.length = start, factor, length

    def __call__(self, k: int) -> float:
        end = None if self.length is None else self.start + self.length
        return self.factor if k >= self.start and (end is None or k < end) else 1.0


def spike(optimizer, start: int = 50, factor: float = 1000.0, length: int | None = None) -> LambdaLR:
    if start < 0:
        raise OptrunError(f"schedule.start: expected an integer >= 0, got {start}")
    if factor <= 0:
        raise OptrunError(f"schedule.factor: expected a positive number, got {factor}")
    if length is not None and length <= 0:
        raise OptrunError(f"schedule.length: expected a positive integer or null (held), got {length}")
    return LambdaLR(optimizer, SpikeFactor(start, factor, length))
