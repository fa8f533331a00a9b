"""The paper's learning-rate schedule: linear warm-up over the first epochs, then cosine to zero."""
from __future__ import annotations

import math

import torch


def warmup_cosine(optimizer: torch.optim.Optimizer, warmup_steps: int, total_steps: int):
    """lr * (s + 1) / warmup for s < warmup, then lr * (1 + cos(pi (s - warmup) / (total - warmup))) / 2
    (the ReSTE code warms up per epoch for 5 epochs; this is the same per step)."""
    span = max(total_steps - warmup_steps, 1)

    def factor(s: int) -> float:
        if s < warmup_steps:
            return (s + 1) / warmup_steps
        return 0.5 * (1.0 + math.cos(math.pi * min(s - warmup_steps, span) / span))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
