"""Drift-adjusted learning rate (DAL; Rosca et al., TMLR 2023, and the official
`principal_flow_instability_single_objective/dal.py`): gradient descent whose step size at each
iteration is

    eta_t = min(2 * (|g| / |H g|)^p, max_lr),

so that eta_t * (the curvature along the gradient) stays near 2, the edge of the drift-induced
instability. p = 0 is plain GD with step 2; `max_lr` is the official `max_lr_scale` cap (5). With
q = |H g| / |g|, eta_t = min(2 q^-p, max_lr): where q > 1 a larger p takes a smaller step, where
q < 1 a larger one (and the cap binds once q < (2 / max_lr)^(1/p)).

H g comes from a Hessian-vector product: `hvp=exact` (double backward through the loss, the
default) or `hvp=fd`, the official alternative, a finite difference of gradients
(grad E(theta + e g) - grad E(theta)) / e with e = fd_scale / |g|. The optimizer needs the trainer's
closure (`needs_closure`): called with no argument it re-evaluates loss and gradients (torch's
LBFGS convention); `closure(backward=False)` returns the loss with its graph for the exact HVP.
After each step `stats` holds `eff_lr`, `grad_norm`, `hg_norm` and `hg_ratio` = |Hg|/|g| (logged by
the `optimizer_stats` hook).
"""
from __future__ import annotations

import torch

from runner.errors import OptrunError

HVPS = ("exact", "fd")


class DriftAdjustedSGD(torch.optim.Optimizer):
    needs_closure = True

    def __init__(self, params, p: float = 1.0, max_lr: float = 5.0, hvp: str = "exact", fd_scale: float = 0.01,
                 lr: float = 1.0):
        if hvp not in HVPS:
            raise OptrunError(f"optimizer.hvp: unknown '{hvp}' (expected one of: {', '.join(HVPS)})")
        if p < 0 or not max_lr > 0 or not fd_scale > 0:
            raise OptrunError(f"optimizer: expected p >= 0, max_lr > 0 and fd_scale > 0, got {p}, {max_lr}, {fd_scale}")
        # `lr` is not an input of the rule (the official static learning rate cancels out): after each
        # step it holds the step size just taken, so probes that read the optimizer's lr (the
        # sharpness hook's gd_ratio = lr * lambda_max / 2) see DAL's actual step.
        super().__init__(params, {"lr": lr, "p": p, "max_lr": max_lr})
        self.hvp, self.fd_scale, self.stats = hvp, fd_scale, {}

    def _params(self) -> list[torch.Tensor]:
        return [p for g in self.param_groups for p in g["params"] if p.requires_grad]

    def _grad_and_hvp(self, closure, params):
        if self.hvp == "exact":
            with torch.enable_grad():
                grads = torch.autograd.grad(closure(backward=False), params, create_graph=True)
                hg = torch.autograd.grad(grads, params, grad_outputs=[g.detach() for g in grads])
            return [g.detach() for g in grads], list(hg)
        g = [p.grad.detach().clone() for p in params]
        e = self.fd_scale / torch.sqrt(sum((x * x).sum() for x in g)).clamp_min(1e-30)
        saved = [p.detach().clone() for p in params]
        with torch.no_grad():
            for p, x in zip(params, g):
                p.add_(x * e)
        with torch.enable_grad():
            closure()
        hg = [(p.grad.detach() - x) / e for p, x in zip(params, g)]
        with torch.no_grad():
            for p, s in zip(params, saved):
                p.copy_(s)
        return g, hg

    def stat_names(self) -> list[str]:
        """The keys of `stats` (declared so that metrics.csv has them from the start)."""
        return ["eff_lr", "grad_norm", "hg_norm", "hg_ratio"]

    def step(self, closure=None):
        if closure is None:
            raise OptrunError("DriftAdjustedSGD needs a closure (the trainer re-evaluates the loss for H g)")
        params = self._params()
        g, hg = self._grad_and_hvp(closure, params)
        with torch.no_grad():
            g_norm = torch.sqrt(sum((x * x).sum() for x in g))
            hg_norm = torch.sqrt(sum((x * x).sum() for x in hg))
            group = self.param_groups[0]
            eta = torch.clamp(2 * (g_norm / hg_norm.clamp_min(1e-30)) ** group["p"], max=group["max_lr"])
            for p, x in zip(params, g):
                p.add_(-eta * x)
                p.grad = x
        for grp in self.param_groups:
            grp["lr"] = float(eta)
        self.stats = {"eff_lr": eta, "grad_norm": g_norm, "hg_norm": hg_norm,
                             "hg_ratio": hg_norm / g_norm.clamp_min(1e-30)}
        return None
