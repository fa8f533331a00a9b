"""Whatever the optimizer reports about its last step (`optimizer.stats`, a dict of numbers), e.g.
M-FAC's IHVP time and cos(F^-1 g, g), as `optimizer_stats/<name>`. Logs nothing for optimizers
without `stats`; an optimizer with stats declares their names in `stat_names()`."""
from __future__ import annotations

from runner.hooks.base import Hook


class OptimizerStats(Hook):
    name = "optimizer_stats"

    def columns(self, state) -> list[str]:
        names = getattr(state.optimizer, "stat_names", None)
        return list(names()) if names else []

    def __call__(self, state) -> dict:
        return dict(getattr(state.optimizer, "stats", None) or {})
