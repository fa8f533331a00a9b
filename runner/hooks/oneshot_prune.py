"""One-shot pruning probe: prune copies of the model to several sparsities with several methods
(magnitude, diagonal Fisher, OBS with M-FAC; see `runner.prune`) and measure them.

Read-only: the run's model is never touched (each method and sparsity prunes a fresh deep copy).
Runs at the end of training by default. Logs, for method M and sparsity S (percent):
`prune_acc_<M>_<S>` (test accuracy, %), `prune_dloss_<M>_<S>` (increase of the training loss on a
fixed subset), for mfac also `prune_pred_mfac_<S>` (the loss increase OBS predicts), plus
`prune_acc_dense` and `prune_ms_<M>` (time to prune, summed over sparsities).
"""
from __future__ import annotations

import copy
import time

import torch
import torch.nn.functional as F

from runner.errors import OptrunError
from runner.hooks.base import Hook, eval_mode
from runner.prune import METHODS, prune


class OneShotPrune(Hook):
    name = "prune"

    def __init__(self, sparsities: list[float] = (0.5, 0.7, 0.8, 0.9), methods: list[str] = METHODS,
                 m: int = 256, grad_batch: int = 1, damp: float = 1e-2, rounds: int = 16, loss_samples: int = 1000,
                 method_mfac: str = "recursion", every: int = 0, at_phase_end: bool = False, at_end: bool = True):
        super().__init__(every=every, at_start=False, at_phase_end=at_phase_end, at_end=at_end)
        bad = [x for x in methods if x not in METHODS]
        if bad:
            raise OptrunError(f"hooks.prune.methods: unknown {bad} (expected some of: {', '.join(METHODS)})")
        if not sparsities or any(not 0.0 < s < 1.0 for s in sparsities):
            raise OptrunError(f"hooks.prune.sparsities: expected fractions in (0, 1), got {list(sparsities)}")
        self.sparsities, self.methods = [float(s) for s in sparsities], list(methods)
        self.kw = {"m": m, "grad_batch": grad_batch, "damp": damp, "rounds": rounds, "method_mfac": method_mfac}
        self.loss_samples = loss_samples

    def setup(self, state) -> None:
        d = state.data
        if not hasattr(d, "x_test"):
            raise OptrunError("hooks=prune needs a supervised data set with train and test splits")
        g = self.stream(state)
        idx = torch.randperm(len(d.y_train), generator=g, device=g.device)[: self.loss_samples].to(d.y_train.device)
        self.x_loss, self.y_loss = d.x_train[idx], d.y_train[idx]

    def columns(self, state) -> list[str]:
        tags = [(m, f"{m}_{round(100 * s)}") for m in self.methods for s in self.sparsities]
        per = [f"prune_{k}_{t}" for m, t in tags for k in ("acc", "dloss", *(("pred",) if m == "mfac" else ()))]
        return ["prune_acc_dense", *per, *(f"prune_ms_{m}" for m in self.methods)]

    def _measure(self, model, chunk: int = 2048) -> tuple[float, float]:
        d = self.data
        with eval_mode(model):
            hits = sum(int((model(x).argmax(-1) == y).sum())
                       for x, y in zip(d.x_test.split(chunk), d.y_test.split(chunk)))
            loss = F.cross_entropy(model(self.x_loss), self.y_loss).item()
        return 100.0 * hits / len(d.y_test), loss

    def __call__(self, state) -> dict:
        self.data = state.data
        acc0, loss0 = self._measure(state.model)
        out = {"prune_acc_dense": acc0}
        stream = self.stream(state)
        gen = torch.Generator(device=stream.device)
        for method in self.methods:
            spent = 0.0
            for s in self.sparsities:
                gen.set_state(stream.get_state())  # same gradients for every method
                pruned = copy.deepcopy(state.model)
                t0 = time.perf_counter()
                info = prune(pruned, method, s, state.data.x_train, state.data.y_train, gen, **self.kw)
                spent += time.perf_counter() - t0
                acc, loss = self._measure(pruned)
                tag = f"{method}_{round(100 * s)}"
                out[f"prune_acc_{tag}"], out[f"prune_dloss_{tag}"] = acc, loss - loss0
                if method == "mfac":
                    out[f"prune_pred_{tag}"] = info["predicted"]
            out[f"prune_ms_{method}"] = 1000 * spent
        return out
