"""Randomized progressive training (RPT): each step updates only the layers s..b of a b-layer net.

Drop-Muon is this trainer with `optimizer=muon`. Each step draws a start layer s (1-based) from
`sampling`: `uniform` over 1..b, `full` (always 1: ordinary training, the Muon baseline with the
same bookkeeping), or `custom` with `probs` (one probability per start layer). Layers 1..s-1 get
`requires_grad=False` for the step, so autograd builds no graph below layer s and the backward pass
stops there; their `.grad` stays None, so the optimizer leaves their weights *and* momentum as they
are. The flags are restored after the step, so hooks always see an ordinary model.

Layers are `runner.models.param_layers(model)` (modules owning parameters, in registration order,
which must be the forward order).

**Compute, counted in FLOPs from the layer shapes** (`layer_costs`; 1 multiply-accumulate = 2 FLOPs).
Per sample, layer i's forward pass costs F_i (a conv: output elements x in_channels/groups x kernel
size; a linear layer: output elements x in_features; any other parameter layer: its output elements),
measured once at setup by one forward pass of one training sample. Backpropagation from the loss down
to layer s costs, per sample, F_i for the weight gradient of every updated layer i >= s plus F_i for
the input gradient of every layer i > s (layer s's input gradient is not needed: nothing below it
learns); activations, pooling and bias gradients are left out. Muon's Newton-Schulz iteration costs
ns_steps x (2 a^2 c + a^3) multiply-accumulates for an a x c kernel matrix (a <= c) of an updated
layer (other optimizers: 0, their element-wise work is left out). Logged, cumulative:
`backward_flops` (the backward pass), `train_flops` (forward + backward + Newton-Schulz).

**Budget.** `budget=steps` (default) runs `steps` steps with the configured lr schedule. `budget=flops`
gives every arm the compute of `steps` full-network steps: the run stops after the step at which
`train_flops` reaches `steps` x (the FLOPs of one full step), so Drop-Muon, whose steps are cheaper,
takes more of them; the lr schedule is then a function of the budget spent (progress = train_flops /
budget), not of the step count: `schedule=cosine` becomes the same cosine over that progress
(eta_min kept), no schedule stays constant. For `sampling=full` both budgets give the same steps and,
up to rounding, the same learning rates.

Logged: start_layer, layers_updated (b - s + 1), layer_backward (cumulative layers updated),
backward_flops, train_flops, budget_used (train_flops / budget; budget=flops only), train_time_s
(cumulative wall time inside steps, excluding hooks; synchronized on CUDA).
"""
from __future__ import annotations

import math
import time

import torch
from torch import nn

from runner import seeding
from runner.errors import OptrunError
from runner.models import param_layers
from runner.trainers.base import Phase, TrainState
from runner.trainers.supervised import SupervisedTrainer

SAMPLING = ("uniform", "full", "custom")
BUDGETS = ("steps", "flops")


def layer_macs(model: nn.Module, x1: torch.Tensor) -> list[int]:
    """Multiply-accumulates of each parameter layer's forward pass for the one-sample batch `x1`."""
    modules = [model.get_submodule(name) for name, _ in param_layers(model)]
    outs: dict[int, torch.Size] = {}
    handles = [m.register_forward_hook(lambda mod, inp, out, i=i: outs.__setitem__(i, out.shape))
               for i, m in enumerate(modules)]
    try:
        with torch.no_grad():
            model(x1)
    finally:
        for h in handles:
            h.remove()
    macs = []
    for i, m in enumerate(modules):
        n_out = math.prod(outs[i]) // x1.shape[0]
        if isinstance(m, nn.modules.conv._ConvNd):
            macs.append(n_out * (m.in_channels // m.groups) * math.prod(m.kernel_size))
        elif isinstance(m, nn.Linear):
            macs.append(n_out * m.in_features)
        else:
            macs.append(n_out)
    return macs


def newton_schulz_macs(shape: torch.Size, steps: int) -> int:
    """Multiply-accumulates of `steps` quintic Newton-Schulz iterations on a kernel of `shape`, viewed as
    (out, in*k*...): per iteration A = X X^T (a^2 c), A @ A (a^3), (bA + cA^2) X (a^2 c), a <= c."""
    rows, cols = shape[0], math.prod(shape[1:])
    a, c = min(rows, cols), max(rows, cols)
    return steps * (2 * a * a * c + a ** 3)


def layer_costs(model: nn.Module, x1: torch.Tensor, optimizer=None) -> tuple[list[int], list[int]]:
    """Per layer: forward FLOPs per sample, and the optimizer's FLOPs per update of the layer
    (Newton-Schulz of Muon's matrices; 0 for other optimizers)."""
    fwd = [2 * m for m in layer_macs(model, x1)]
    muon = set()
    ns = 0
    for group in getattr(optimizer, "param_groups", []):
        if group.get("algorithm") == "muon":
            muon |= {id(p) for p in group["params"]}
            ns = int(group.get("ns_steps", 5))
    opt = [sum(2 * newton_schulz_macs(p.shape, ns) for p in params if id(p) in muon)
           for _, params in param_layers(model)]
    return fwd, opt


def step_flops(fwd: list[int], opt: list[int], s: int, batch: int) -> tuple[int, int]:
    """(backward FLOPs, total training FLOPs) of one step that updates layers s.. (0-based) on `batch`
    samples: forward of every layer, weight gradients of layers >= s, input gradients of layers > s,
    the optimizer's work on layers >= s."""
    backward = batch * (sum(fwd[s:]) + sum(fwd[s + 1:]))
    return backward, batch * sum(fwd) + backward + sum(opt[s:])


class ProgressiveTrainer(SupervisedTrainer):
    def __init__(self, sampling: str = "uniform", probs: list[float] | None = None, budget: str = "steps", **kw):
        super().__init__(**kw)
        if sampling not in SAMPLING:
            raise OptrunError(f"trainer.sampling: unknown '{sampling}' (expected one of: {', '.join(SAMPLING)})")
        if (sampling == "custom") != (probs is not None):
            raise OptrunError("trainer.probs: give start-layer probabilities exactly when trainer.sampling=custom")
        if budget not in BUDGETS:
            raise OptrunError(f"trainer.budget: unknown '{budget}' (expected one of: {', '.join(BUDGETS)})")
        self.sampling, self.probs, self.budget_kind = sampling, probs, budget
        self.layers, self.dist, self.gen = [], None, None
        self.layer_backward, self.train_time = 0, 0.0
        self.backward_flops = self.train_flops = 0  # Python ints: exact, so a full run ends exactly on budget
        self.budget: int | None = None
        self.fwd: list[int] = []
        self.opt: list[int] = []

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
        (phase,) = super().phases(state)
        self.fwd, self.opt = layer_costs(state.model, state.data.x_train[:1], state.optimizer)
        if self.budget_kind == "steps":
            return [phase]
        sizes = self._batch_sizes(phase.steps)  # full training's batches (the last of an epoch is smaller)
        self.budget = sum(step_flops(self.fwd, self.opt, 0, n)[1] for n in sizes)
        cheapest = min(step_flops(self.fwd, self.opt, s, min(sizes))[1] for s in range(b) if self.dist[s] > 0)
        self._schedule_over_budget(state)
        return [Phase(steps=math.ceil(self.budget / cheapest))]  # an upper bound: the run stops on budget

    def _batch_sizes(self, steps: int) -> list[int]:
        """The sizes of the first `steps` batches of a fresh sampler (slices of one permutation per epoch)."""
        n, bs = self.sampler.n, self.sampler.batch_size
        per_epoch = [min(bs, n - i) for i in range(0, n, bs)]
        return [per_epoch[k % len(per_epoch)] for k in range(steps)]

    def _next_batch_size(self) -> int:
        src = self.sampler
        return src.batch_size if src.batch_size == src.n or src.pos >= src.n else min(src.batch_size, src.n - src.pos)

    def _schedule_over_budget(self, state: TrainState) -> None:
        """Replace a per-step cosine schedule by the same cosine over the budget spent."""
        old = state.scheduler
        if old is not None and not isinstance(old, torch.optim.lr_scheduler.CosineAnnealingLR):
            raise OptrunError(f"trainer.budget=flops: the lr schedule over the budget supports schedule=cosine or "
                              f"none, not {type(old).__name__}")
        if old is None:
            return
        eta_min = float(old.eta_min)

        def factor(base: float):
            floor = eta_min / base if base else 0.0
            return lambda _step: floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * self.progress()))

        opt = state.optimizer
        state.scheduler = torch.optim.lr_scheduler.LambdaLR(opt, [factor(g["initial_lr"]) for g in opt.param_groups])

    def progress(self) -> float:
        """The fraction of the compute budget spent (budget=flops)."""
        return min(self.train_flops / self.budget, 1.0) if self.budget else 0.0

    def sample_start(self) -> int:
        """0-based index of the first layer updated this step."""
        return int(torch.multinomial(self.dist, 1, generator=self.gen))

    def step(self, state: TrainState) -> dict:
        t0 = time.perf_counter()
        s = self.sample_start()
        frozen = [p for params in self.layers[:s] for p in params if p.requires_grad]
        for p in frozen:
            p.requires_grad_(False)
        # the schedule (stepped inside the update) reads the budget spent including this step
        backward, total = step_flops(self.fwd, self.opt, s, self._next_batch_size())
        self.backward_flops += backward
        self.train_flops += total
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
                       backward_flops=float(self.backward_flops), train_flops=float(self.train_flops),
                       train_time_s=self.train_time)
        if self.budget:
            metrics["budget_used"] = self.train_flops / self.budget
            if self.train_flops >= self.budget:
                state.stop = True
        return metrics

    def state_dict(self) -> dict:
        return {**super().state_dict(), "gen": self.gen.get_state(), "layer_backward": self.layer_backward,
                "train_time": self.train_time, "backward_flops": self.backward_flops, "train_flops": self.train_flops}

    def load_state_dict(self, sd: dict) -> None:
        super().load_state_dict(sd)
        self.gen.set_state(sd["gen"])
        self.layer_backward, self.train_time = sd["layer_backward"], sd["train_time"]
        self.backward_flops, self.train_flops = sd["backward_flops"], sd["train_flops"]
