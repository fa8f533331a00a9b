"""Optimizers that are not in torch.optim, usable by any experiment as `optimizer=<name>`."""
from __future__ import annotations

import torch


def evaluate_closure(closure):
    """torch's convention: an optimizer step may get a closure that re-evaluates the loss (with grad)."""
    if closure is None:
        return None
    with torch.enable_grad():
        return closure()
