"""The fixed probe set a hook measures on: a seeded subset of one split, drawn once."""
from __future__ import annotations

import torch

from runner.errors import OptrunError


def probe_split(state, split: str, max_samples: int | None, hook) -> tuple[torch.Tensor, torch.Tensor]:
    """(x, y) of `split` ('train' or 'test'), or a sorted random subset of `max_samples` rows drawn from
    `hook`'s own stream (so probing never shifts the trainer's batches, nor another hook's subsets)."""
    d, owner = state.data, hook.name
    if split not in ("train", "test"):
        raise OptrunError(f"hooks.{owner}.probe: expected train or test, got '{split}'")
    if not hasattr(d, f"x_{split}"):
        raise OptrunError(f"hooks={owner} needs a plain data set with a {split} split (e.g. dataset=digits)")
    if max_samples is not None and max_samples <= 0:
        raise OptrunError(f"hooks.{owner}.max_samples: expected a positive integer or null, got {max_samples}")
    x, y = getattr(d, f"x_{split}"), getattr(d, f"y_{split}")
    if max_samples is not None and len(y) > max_samples:
        g = hook.stream(state)
        idx = torch.randperm(len(y), generator=g, device=g.device)[:max_samples].sort().values
        x, y = x[idx.to(x.device)], y[idx.to(y.device)]
    return x, y
