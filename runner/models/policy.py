"""Stochastic policies for environment runs: an observation batch in, a distribution over actions out.

Every policy has the same three methods, so a policy-gradient trainer never asks which kind it holds:

    policy.sample(obs, generator) -> actions        # no graph; draws only from `generator`
    policy.log_prob(obs, actions) -> log pi(a | s)  # with its graph, any leading shape (E, T, ...)
    policy.entropy(obs)           -> H(pi(. | s))   # per state, same leading shape

Sampling and scoring are separate on purpose: a trainer rolls out without a graph, then scores the whole
(episodes x steps) batch in one forward pass, at the parameters it wants (the current ones, a look-ahead
point, or any `torch.func.functional_call` parameters: a Hessian-vector product re-scores the same batch).
"""
from __future__ import annotations

import torch
from torch import nn

from runner.errors import OptrunError


def tanh_mlp(in_dim: int, hidden, out_dim: int) -> nn.Sequential:
    """Linear layers of widths `hidden` with tanh between them: the policy networks of PG benchmarks."""
    layers, width = [], in_dim
    for h in hidden:
        layers += [nn.Linear(width, h), nn.Tanh()]
        width = h
    return nn.Sequential(*layers, nn.Linear(width, out_dim))


def _check_dims(obs_dim: int, n_out: int, least: int) -> None:
    if obs_dim <= 0 or n_out < least:
        raise OptrunError(f"policy: expected obs_dim >= 1 and an action size >= {least}, got {obs_dim} and {n_out}")


class CategoricalPolicy(nn.Module):
    """pi(a | s) = softmax(self(s))_a for discrete actions; a subclass defines `forward` -> logits."""

    @torch.no_grad()
    def sample(self, obs: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        probs = torch.softmax(self(obs), dim=-1)
        flat = probs.reshape(-1, probs.shape[-1])
        return torch.multinomial(flat, 1, generator=generator).reshape(probs.shape[:-1])

    def log_prob(self, obs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        return torch.log_softmax(self(obs), dim=-1).gather(-1, actions.long().unsqueeze(-1)).squeeze(-1)

    def entropy(self, obs: torch.Tensor) -> torch.Tensor:
        logp = torch.log_softmax(self(obs), dim=-1)
        return -(logp.exp() * logp).sum(-1)


class LinearSoftmaxPolicy(CategoricalPolicy):
    """pi(a | s) = softmax(W s + b)_a: the linear-softmax policy of policy-gradient theory (CartPole: 2 x 4
    weights and 2 biases). `init_std` 0 starts at the uniform policy."""

    def __init__(self, obs_dim: int, n_actions: int, bias: bool = True, init_std: float = 0.0):
        super().__init__()
        _check_dims(obs_dim, n_actions, 2)
        self.linear = nn.Linear(obs_dim, n_actions, bias=bias)
        nn.init.normal_(self.linear.weight, std=init_std) if init_std > 0 else nn.init.zeros_(self.linear.weight)
        if bias:
            nn.init.zeros_(self.linear.bias)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        """Logits (..., n_actions)."""
        return self.linear(obs)


class SoftmaxMLPPolicy(CategoricalPolicy):
    """pi(a | s) = softmax(MLP(s))_a with tanh hidden layers (garage's discrete-action policy; 32-32 in
    the policy-gradient papers' cartpole and acrobot runs)."""

    def __init__(self, obs_dim: int, n_actions: int, hidden: tuple[int, ...] | list[int] = (32, 32)):
        super().__init__()
        _check_dims(obs_dim, n_actions, 2)
        self.net = tanh_mlp(obs_dim, hidden, n_actions)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.net(obs)


class GaussianMLPPolicy(nn.Module):
    """pi(a | s) = N(mu(s), diag(exp(2 log_std))): a tanh MLP mean and a state-independent learned log
    standard deviation, the usual policy of MuJoCo policy-gradient benchmarks. Actions are not squashed
    (the environment clips them)."""

    def __init__(self, obs_dim: int, act_dim: int, hidden: tuple[int, ...] | list[int] = (64, 64), log_std: float = -0.5):
        super().__init__()
        _check_dims(obs_dim, act_dim, 1)
        self.mean = tanh_mlp(obs_dim, hidden, act_dim)
        self.log_std = nn.Parameter(torch.full((act_dim,), float(log_std)))

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.mean(obs)

    @torch.no_grad()
    def sample(self, obs: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        mu = self(obs)
        return mu + self.log_std.exp() * torch.randn(mu.shape, generator=generator, device=generator.device).to(mu)

    def log_prob(self, obs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        z = (actions - self(obs)) / self.log_std.exp()
        return (-0.5 * z.pow(2) - self.log_std - 0.5 * torch.log(torch.tensor(2 * torch.pi))).sum(-1)

    def entropy(self, obs: torch.Tensor) -> torch.Tensor:
        h = (self.log_std + 0.5 * torch.log(torch.tensor(2 * torch.pi * torch.e))).sum()
        return h.expand(obs.shape[:-1])
