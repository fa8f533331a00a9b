"""lambda_max of the training-loss Hessian by power iteration on Hessian-vector products, and h*lambda_max.

A minimal stand-in, private to this experiment, for the shared sharpness hook that issue 3 is
building (`runner/hooks/sharpness.py`, Lanczos with warm starts and tolerances): replace
`hooks=[..., top_eigenvalue]` by `hooks=[..., sharpness]` once it has landed on main and delete this
file. HVPs use torch.func (forward-over-reverse: jvp of grad) on the full training set (or a seeded
subset of `max_samples`), in eval mode, without touching the parameters or their gradients. The power
iteration is warm-started from the previous call's vector, so a few iterations per call suffice once
training moves slowly. It returns the eigenvalue of largest magnitude (for the cross-entropy of a
small MLP that is lambda_max in practice). h is the step the optimizer applies: its `eff_lr` step
metric when it has one (DAL), else the learning rate of its first parameter group.
"""
from __future__ import annotations

import torch
from torch.func import functional_call, grad, jvp

from runner.hooks.base import Hook, eval_mode
from runner.trainers.supervised import loss_fn


class TopEigenvalue(Hook):
    name = "top_eigenvalue"

    def __init__(self, every: int = 10, loss: str = "ce", iters: int = 20, warm_iters: int = 5,
                 max_samples: int | None = None, at_start: bool = True, at_phase_end: bool = True,
                 at_end: bool = True):
        super().__init__(every=every, at_start=at_start, at_phase_end=at_phase_end, at_end=at_end)
        self.loss, self.iters, self.warm_iters, self.max_samples = loss, iters, warm_iters, max_samples
        self.vector = None

    def setup(self, state) -> None:
        x, y = state.data.x_train, state.data.y_train
        if self.max_samples is not None and len(y) > self.max_samples:
            gen = state.generators["probe"]
            idx = torch.randperm(len(y), generator=gen, device=gen.device)[: self.max_samples].to(y.device)
            x, y = x[idx], y[idx]
        self.x, self.y = x, y

    def _hvp(self, model, params: dict, v: dict) -> dict:
        def loss(p):
            return loss_fn(self.loss, functional_call(model, p, (self.x,)), self.y)
        return jvp(grad(loss), (params,), (v,))[1]

    def __call__(self, state) -> dict:
        model = state.model
        with eval_mode(model), torch.enable_grad():
            params = {k: p.detach() for k, p in model.named_parameters()}
            if self.vector is None:
                gen = state.generators["probe"]
                self.vector = {k: torch.randn(p.shape, generator=gen, device=gen.device).to(p) for k, p in params.items()}
                n = self.iters
            else:
                n = self.warm_iters
            v, lam = self.vector, torch.zeros(())
            for _ in range(n):
                norm = torch.sqrt(sum((t * t).sum() for t in v.values()))
                v = {k: t / norm for k, t in v.items()}
                hv = self._hvp(model, params, v)
                lam = sum((hv[k] * v[k]).sum() for k in v)
                v = hv
            self.vector = {k: t.detach() for k, t in v.items()}
        opt = state.optimizer
        h = (getattr(opt, "stats", None) or {}).get("eff_lr", opt.param_groups[0]["lr"]) if opt else float("nan")
        return {"lambda_max": float(lam), "h_lambda_max": float(h) * float(lam)}

    def state_dict(self) -> dict:
        return {"vector": self.vector}

    def load_state_dict(self, sd: dict) -> None:
        self.vector = sd["vector"]
