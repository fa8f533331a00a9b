"""Randomized progressive training (RPT): each step updates only the layers s..b of a b-layer net.

Drop-Muon is this trainer with `optimizer=muon`. Each step draws a start layer s (1-based) from
`sampling`: `uniform` over 1..b, `full` (always 1: ordinary training, the Muon baseline with the
same bookkeeping), or `custom` with `probs` (one probability per start layer). Layers 1..s-1 get
`requires_grad=False` for the step, so autograd builds no graph below layer s and the backward pass
stops there; their `.grad` stays None, so the optimizer leaves their weights *and* momentum as they
are. The flags are restored after the step, so hooks always see an ordinary model.

Layers are `runner.models.param_layers(model)` (modules owning parameters, in registration order,
which must be the forward order). Logged: start_layer, layers_updated (b - s + 1), layer_backward
(cumulative layers updated = layer backward passes), train_time_s (cumulative wall time inside
steps, excluding hooks; synchronized on CUDA).
"""
from __future__ import annotations

import time

import torch

from runner import seeding
from runner.errors import OptrunError
from runner.models import param_layers
from runner.trainers.base import Phase, TrainState
from runner.trainers.supervised import SupervisedTrainer

SAMPLING = ("uniform", "full", "custom")


class ProgressiveTrainer(SupervisedTrainer):
    def __init__(self, sampling: str = "uniform", probs: list[float] | None = None, **kw):
        super().__init__(**kw)
        if sampling not in SAMPLING:
            raise OptrunError(f"trainer.sampling: unknown '{sampling}' (expected one of: {', '.join(SAMPLING)})")
        if (sampling == "custom") != (probs is not None):
            raise OptrunError("trainer.probs: give start-layer probabilities exactly when trainer.sampling=custom")
        self.sampling, self.probs = sampling, probs
        self.layers, self.dist, self.gen = [], None, None
        self.layer_backward, self.train_time = 0, 0.0

    def phases(self, state: TrainState) -> list[Phase]:
        self.layers = [params for _, params in param_layers(state.model)]
        b = len(self.layers)
        if self.sampling == "custom":
            if len(self.probs) != b or min(self.probs) < 0 or sum(self.probs) <= 0:
                raise OptrunError(f"trainer.probs: expected {b} non-negative weights (one per layer), got {self.probs}")
            self.dist = torch.tensor(self.probs, dtype=torch.float64)
        else:
            self.dist = torch.ones(b, dtype=torch.float64) if self.sampling == "uniform" else torch.eye(b)[0].double()
        self.gen = seeding.generator(state.seed, "layers")  # own stream: batches stay those of full training
        return super().phases(state)

    def sample_start(self) -> int:
        """0-based index of the first layer updated this step."""
        return int(torch.multinomial(self.dist, 1, generator=self.gen))

    def step(self, state: TrainState) -> dict:
        t0 = time.perf_counter()
        s = self.sample_start()
        frozen = [p for params in self.layers[:s] for p in params if p.requires_grad]
        for p in frozen:
            p.requires_grad_(False)
        try:
            metrics = super().step(state)
        finally:
            for p in frozen:
                p.requires_grad_(True)
        if state.device.type == "cuda":
            torch.cuda.synchronize(state.device)
        updated = len(self.layers) - s
        self.layer_backward += updated
        self.train_time += time.perf_counter() - t0
        metrics.update(start_layer=s + 1, layers_updated=updated, layer_backward=self.layer_backward,
                       train_time_s=self.train_time)
        return metrics

    def state_dict(self) -> dict:
        return {**super().state_dict(), "gen": self.gen.get_state(), "layer_backward": self.layer_backward,
                "train_time": self.train_time}

    def load_state_dict(self, sd: dict) -> None:
        super().load_state_dict(sd)
        self.gen.set_state(sd["gen"])
        self.layer_backward, self.train_time = sd["layer_backward"], sd["train_time"]
