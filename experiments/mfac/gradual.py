"""Gradual pruning with fine-tuning, as the official M-FAC pruner (`main_prun.py` of IST-DASLab/M-FAC).

A controller hook: from epoch `start_epoch` on (the dense training before it is the run's own), it
prunes the weight matrices to `sparsities[k]` at the start of epoch `start_epoch + k * prune_every`
(M-FAC OBS with `rounds` recomputations from the current density to the target, or global magnitude),
clears the optimizer's state there (the official code builds a fresh SGD at every pruning step, so
the momentum restarts), sets the learning rate of each fine-tuning epoch from `epoch_lrs`, and after
every step sets the pruned weights back to zero (the official `apply_mask`). Sparsity counts the
weight matrices / kernels only (`runner.prune.prunable`: biases and norms stay dense), as the
official pruner's conv and fc weights.

Official ResNet-20 / CIFAR-10 example (README): sparsities 0.5, 0.75, 0.875, one every 2 epochs,
`prun_lrs` 0.005, 0.0005 within each interval, then base lr 0.005 dropped x0.1 at epochs 7 and 9,
10 epochs; M-FAC with 64 gradients of 32 samples each (`ngrads_schedule`, `prun_batchsize`), 16
recomputations, damping 1e-5 (absolute), blocks of 128 (here unblocked: one inverse over all weights).
Logs `sparsity` and `lr` when they change.
"""
from __future__ import annotations

import math

import torch

from runner.errors import OptrunError
from runner.hooks.base import Hook
from runner.prune import prunable, prune

# the official example's learning rate per fine-tuning epoch (prun_lrs twice, then lr 0.005 dropped at 7, 9)
OFFICIAL_LRS = (0.005, 0.0005, 0.005, 0.0005, 0.005, 0.005, 0.005, 0.0005, 0.0005, 0.00005)


class GradualPrune(Hook):
    name = "gradual_prune"
    controller = True

    def __init__(self, method: str = "mfac", start_epoch: int = 0, sparsities: list[float] = (0.5, 0.75, 0.875),
                 prune_every: int = 2, epoch_lrs: list[float] = OFFICIAL_LRS, m: int = 64, grad_batch: int = 32,
                 damp: float = 1e-5, damp_absolute: bool = True, rounds: int = 16, method_mfac: str = "cholesky"):
        super().__init__(every=1, at_start=True, at_phase_end=False, at_end=False)
        if method not in ("mfac", "magnitude"):
            raise OptrunError(f"hooks.gradual_prune.method: expected mfac or magnitude, got {method!r}")
        if not sparsities or any(not 0.0 < s < 1.0 for s in sparsities) or list(sparsities) != sorted(sparsities):
            raise OptrunError(f"hooks.gradual_prune.sparsities: expected rising fractions in (0, 1), got {sparsities}")
        if start_epoch < 0 or prune_every < 1:
            raise OptrunError("hooks.gradual_prune: expected start_epoch >= 0 and prune_every >= 1")
        self.method, self.start_epoch, self.prune_every = method, int(start_epoch), int(prune_every)
        self.sparsities, self.epoch_lrs = [float(s) for s in sparsities], [float(x) for x in epoch_lrs]
        self.kw = {"m": m, "grad_batch": grad_batch, "damp": damp, "damp_absolute": damp_absolute,
                   "rounds": rounds, "method_mfac": method_mfac}
        self.alive: torch.Tensor | None = None

    def setup(self, state) -> None:
        d, trainer = state.data, state.trainer
        if not hasattr(d, "y_train") or state.model is None:
            raise OptrunError("hooks=gradual_prune needs a model and a supervised data set")
        batch = getattr(trainer, "batch_size", None) or len(d.y_train)
        self.steps_per_epoch = math.ceil(len(d.y_train) / batch)
        spe, e0 = self.steps_per_epoch, self.start_epoch
        self.prune_at = {(e0 + k * self.prune_every) * spe: s for k, s in enumerate(self.sparsities)}
        self.lr_at = {(e0 + e) * spe: lr for e, lr in enumerate(self.epoch_lrs)}
        self.names = prunable(state.model)

    def columns(self, state) -> list[str]:
        return ["sparsity", "lr"]

    def _mask(self, state) -> None:
        params = dict(state.model.named_parameters())
        i = 0
        with torch.no_grad():
            for n in self.names:
                p = params[n]
                p.mul_(self.alive[i:i + p.numel()].view_as(p).to(p.device, p.dtype))
                i += p.numel()

    def __call__(self, state) -> dict:
        step, out = state.step, {}
        if step in self.prune_at:
            info = prune(state.model, self.method, self.prune_at[step], state.data.x_train, state.data.y_train,
                         self.stream(state), alive=self.alive, **self.kw)
            self.alive = info["alive"]
            for opt in state.optimizers.values():
                opt.state.clear()  # a fresh optimizer at every pruning step, as the official code
            out["sparsity"] = float((~self.alive).float().mean())
        if step in self.lr_at:
            for opt in state.optimizers.values():
                for group in opt.param_groups:
                    group["lr"] = self.lr_at[step]
            out["lr"] = self.lr_at[step]
        if self.alive is not None:
            self._mask(state)
        return out

    def state_dict(self) -> dict:
        return {"alive": None if self.alive is None else self.alive.cpu()}

    def load_state_dict(self, sd: dict) -> None:
        alive = sd.get("alive")
        self.alive = None if alive is None else alive.to(torch.bool)
