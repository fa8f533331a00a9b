"""Whatever the optimizer reports about its last step (`optimizer.stats`, a dict of numbers), e.g.
M-FAC's IHVP time and cos(F^-1 g, g). Logs nothing for optimizers without `stats`."""
from __future__ import annotations

from runner.hooks.base import Hook


class OptimizerStats(Hook):
    name = "optimizer_stats"

    def __call__(self, state) -> dict:
        return dict(getattr(state.optimizer, "stats", None) or {})
