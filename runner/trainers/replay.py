"""A class-balanced replay memory (experience replay, ER).

Samples are grouped by (task, class): in class-incremental streams this is the usual class-balanced
buffer; in domain-incremental streams, where every task holds every class, it also keeps the tasks
balanced. After each task the capacity is shared equally among all groups seen so far; a group that
must shrink keeps a uniformly random subset of what it held (what reservoir sampling would keep).
"""
from __future__ import annotations

import torch

from runner.errors import OptrunError


class ReplayBuffer:
    def __init__(self, capacity: int, generator: torch.Generator):
        if capacity <= 0:
            raise OptrunError(f"trainer.memory_size: expected a positive integer, got {capacity}")
        self.capacity, self.generator = capacity, generator
        self.groups: dict[tuple[int, int], tuple[torch.Tensor, torch.Tensor]] = {}
        self.x: torch.Tensor | None = None
        self.y: torch.Tensor | None = None

    def __len__(self) -> int:
        return 0 if self.y is None else len(self.y)

    def _keep(self, x: torch.Tensor, y: torch.Tensor, quota: int):
        if len(y) <= quota:
            return x, y
        idx = torch.randperm(len(y), generator=self.generator, device=self.generator.device)[:quota].to(y.device)
        idx = idx.sort().values
        return x[idx], y[idx]

    def add_task(self, task: int, x: torch.Tensor, y: torch.Tensor) -> None:
        for c in torch.unique(y).tolist():
            mask = y == c
            self.groups[(task, c)] = (x[mask], y[mask])
        quota = self.capacity // len(self.groups)
        if quota == 0:
            raise OptrunError(f"trainer.memory_size={self.capacity} is smaller than the {len(self.groups)} "
                              "(task, class) groups it must hold")
        self.groups = {k: self._keep(gx, gy, quota) for k, (gx, gy) in sorted(self.groups.items())}
        self.x = torch.cat([gx for gx, _ in self.groups.values()])
        self.y = torch.cat([gy for _, gy in self.groups.values()])

    def counts(self) -> dict[tuple[int, int], int]:
        return {k: len(gy) for k, (_, gy) in self.groups.items()}

    def state_dict(self) -> dict:
        return {"groups": self.groups}

    def load_state_dict(self, sd: dict) -> None:
        self.groups = sd["groups"]
        if self.groups:
            self.x = torch.cat([gx for gx, _ in self.groups.values()])
            self.y = torch.cat([gy for _, gy in self.groups.values()])
