"""Synthetic regression problems generated from the seed (Gaussian inputs, float targets (N, 1)).

- `sparse_regression`: y = <beta*, x> + noise with a few active coordinates of beta* and n < d,
  the compressed-sensing setting where the l1-minimal interpolant recovers beta* and the l2-minimal
  one does not (diagonal linear networks, Wu & Su 2023; Pesme et al. 2021).
- `relu_teacher`: y = sum_k a_k relu(w_k . x) from a few random unit-norm teacher neurons.
"""
from __future__ import annotations

import torch

from runner.data import Dataset, register
from runner.errors import OptrunError


def _check(**kw) -> None:
    for k, v in kw.items():
        if v is None or v <= 0:
            raise OptrunError(f"dataset.{k}: expected a positive integer, got {v}")


def _dataset(x_tr, y_tr, x_te, y_te, name: str) -> Dataset:
    return Dataset(x_tr.float(), y_tr.float()[:, None], x_te.float(), y_te.float()[:, None], n_classes=1, name=name)


@register("sparse_regression")
def sparse_regression(seed: int = 0, dim: int = 100, n_train: int = 40, n_test: int = 1000, active: int = 3,
                      value: float = 1.0, noise: float = 0.0, **_) -> Dataset:
    """x ~ N(0, I_dim); beta* has `active` coordinates equal to `value` (the first ones), the rest 0."""
    _check(dim=dim, n_train=n_train, n_test=n_test, active=active)
    if active > dim:
        raise OptrunError(f"dataset.active: expected at most dim={dim} active coordinates, got {active}")
    g = torch.Generator().manual_seed(seed)
    beta = torch.zeros(dim, dtype=torch.float64)
    beta[:active] = value
    x_tr = torch.randn(n_train, dim, generator=g, dtype=torch.float64)
    x_te = torch.randn(n_test, dim, generator=g, dtype=torch.float64)
    y_tr = x_tr @ beta + noise * torch.randn(n_train, generator=g, dtype=torch.float64)
    return _dataset(x_tr, y_tr, x_te, x_te @ beta, "sparse_regression")


@register("relu_teacher")
def relu_teacher(seed: int = 0, dim: int = 10, n_train: int = 40, n_test: int = 1000, neurons: int = 1,
                 noise: float = 0.0, **_) -> Dataset:
    """x ~ N(0, I_dim); y = sum_k a_k relu(w_k . x), unit-norm w_k, a_k = +-1 alternating."""
    _check(dim=dim, n_train=n_train, n_test=n_test, neurons=neurons)
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(neurons, dim, generator=g, dtype=torch.float64)
    w = w / w.norm(dim=1, keepdim=True)
    a = torch.tensor([(-1.0) ** k for k in range(neurons)], dtype=torch.float64)
    f = lambda x: torch.relu(x @ w.T) @ a  # noqa: E731
    x_tr = torch.randn(n_train, dim, generator=g, dtype=torch.float64)
    x_te = torch.randn(n_test, dim, generator=g, dtype=torch.float64)
    return _dataset(x_tr, f(x_tr) + noise * torch.randn(n_train, generator=g, dtype=torch.float64), x_te, f(x_te),
                    "relu_teacher")
