"""Per-layer update norms: ||W_after - W_before||_F of every layer over one optimizer step.

Layers are `runner.models.param_layers(model)` (modules owning parameters, input side first); the
hook snapshots the weights in `before_step` of the steps after which it is due, so it costs one
parameter copy every `every` steps. Logs `update_norm_<i>` (1-based layer index) and `update_norm`
(all layers together), as `update_norms/<name>`. A frozen layer (e.g. under `trainer=progressive`) shows 0.
"""
from __future__ import annotations

import torch

from runner.hooks.base import Hook
from runner.models import param_layers


class LayerUpdateNorms(Hook):
    name = "update_norms"

    def __init__(self, every: int = 10, at_phase_end: bool = False, at_end: bool = False):
        super().__init__(every=every, at_start=False, at_phase_end=at_phase_end, at_end=at_end)
        self.before = None

    def setup(self, state) -> None:
        self.layers = [params for _, params in param_layers(state.model)]

    def columns(self, state) -> list[str]:
        return [f"update_norm_{i}" for i in range(1, len(self.layers) + 1)] + ["update_norm"]

    def before_step(self, state) -> None:
        self.before = [[p.detach().clone() for p in params] for params in self.layers]

    def __call__(self, state) -> dict:
        if self.before is None:
            return {}
        out, total = {}, 0.0
        with torch.no_grad():
            for i, (params, old) in enumerate(zip(self.layers, self.before), start=1):
                sq = sum(float((p - o).pow(2).sum()) for p, o in zip(params, old))
                out[f"update_norm_{i}"] = sq ** 0.5
                total += sq
        out["update_norm"] = total ** 0.5
        self.before = None
        return out
