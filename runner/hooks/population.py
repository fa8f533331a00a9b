"""Population loss of a synthetic data set whose distribution is known (e.g. `dataset=zipf_bigram`).

Calls `state.data.population_metrics(model)`, which returns the exact expected loss, the excess over
the Bayes floor and its split by data type; works for any data set that defines that method.
"""
from __future__ import annotations

from runner.errors import OptrunError
from runner.hooks.base import Hook, eval_mode


class PopulationLoss(Hook):
    name = "population"

    def setup(self, state) -> None:
        if not hasattr(state.data, "population_metrics"):
            raise OptrunError("hooks=population needs a data set with a known distribution (e.g. dataset=zipf_bigram)")

    def columns(self, state) -> list[str]:
        return list(self(state))  # exact and side-effect free: its names are those of one evaluation

    def __call__(self, state) -> dict:
        with eval_mode(state.model):
            return state.data.population_metrics(state.model)
