"""CAPO's last-layer curvature model: what a proposed update does to the policy, predicted from the
softmax head alone.

With the features h held fixed, a change dW of the head moves token t's logits by dz_t = dW h_t, and
the KL between the softmax policies is, to second order, the Fisher quadratic form of the softmax,

    KL(pi(z + dz) || pi(z)) ~ 1/2 dz^T (diag(pi) - pi pi^T) dz = 1/2 (E_pi[dz^2] - E_pi[dz]^2),

the variance of dz under pi (the Fisher of a categorical in its logits is its covariance). The update
is the optimizer's own step (Adam's, with its moments and bias correction), obtained by a trial step on
copies of the parameters: the prediction is about the step that would be taken, not the raw gradient.

Two displacements dz are available (trainer.curvature): `head`, the last layer alone (dz = dW h, the
features fixed: the cheapest model, exact for a linear-softmax policy), and `network`, the logits of
the trial parameters minus the current ones (one extra forward pass; every layer's step moves the
features too). Both use the same curvature, the softmax Fisher of the last layer.
"""
from __future__ import annotations

import inspect

import torch


def predicted_kl(dz: torch.Tensor, pi: torch.Tensor) -> torch.Tensor:
    """1/2 dz^T (diag pi - pi pi^T) dz per position: (..., V), (..., V) -> (...)."""
    mean = (pi * dz).sum(-1)
    return 0.5 * ((pi * dz * dz).sum(-1) - mean * mean).clamp_min(0)


def trial_update(opt: torch.optim.Optimizer, params: list[torch.Tensor], grads: list[torch.Tensor]) -> list[torch.Tensor]:
    """The change `opt.step()` would make to each of `params` given `grads`: an optimizer of the same
    class, with each parameter group's hyperparameters and a copy of each parameter's state, steps copies
    of the parameters. Neither the parameters (nor the autograd graph that saved them) nor the optimizer's
    state is touched. Any optimizer whose step is per parameter (SGD, Adam, AdamW) is predicted exactly."""
    accepted = set(inspect.signature(type(opt)).parameters)
    grad_of = {id(p): g for p, g in zip(params, grads)}
    delta = {}
    for group in opt.param_groups:
        mine = [p for p in group["params"] if id(p) in grad_of]
        if not mine:
            continue
        copies = [torch.nn.Parameter(p.detach().clone()) for p in mine]
        trial = type(opt)(copies, **{k: v for k, v in group.items() if k != "params" and k in accepted})
        for p, c in zip(mine, copies):
            if p in opt.state:
                trial.state[c] = {k: (v.clone() if torch.is_tensor(v) else v) for k, v in opt.state[p].items()}
            c.grad = grad_of[id(p)].detach().to(p.dtype).clone()
        trial.step()
        delta.update({id(p): c.detach() - p.detach() for p, c in zip(mine, copies)})
    return [delta[id(p)] for p in params]
