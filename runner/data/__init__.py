"""Data sets as tensors that live on the device; batches are drawn by index, never by a DataLoader.

`Dataset` is one supervised problem; `ContinualData` is a sequence of them (tasks). Loaders are
registered by name in `LOADERS` so that configs (and scale presets) can switch data with a string.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

import torch


@dataclass
class Dataset:
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    n_classes: int
    name: str = "data"
    classes: tuple[int, ...] = ()

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])

    def to(self, device) -> "Dataset":
        return replace(self, **{k: getattr(self, k).to(device) for k in ("x_train", "y_train", "x_test", "y_test")})


@dataclass
class ContinualData:
    """Tasks seen one after another. `kind` is 'class' (class-incremental) or 'domain'."""

    tasks: list[Dataset]
    n_classes: int
    kind: str = "class"
    name: str = "continual"
    meta: dict = field(default_factory=dict)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return self.tasks[0].input_shape

    @property
    def n_tasks(self) -> int:
        return len(self.tasks)

    def to(self, device) -> "ContinualData":
        return replace(self, tasks=[t.to(device) for t in self.tasks])


def load(name: str, seed: int = 0, **kwargs) -> Dataset:
    """Load a registered data set by name (see `LOADERS`)."""
    from runner.data import embedded, regression, synthetic, vision  # noqa: F401  (registration side effects)
    from runner.errors import OptrunError

    if name not in LOADERS:
        raise OptrunError(f"dataset.name: unknown data set '{name}' (expected one of: {', '.join(sorted(LOADERS))})")
    return LOADERS[name](seed=seed, **kwargs)


LOADERS: dict = {}


def register(name: str):
    def wrap(fn):
        LOADERS[name] = fn
        return fn

    return wrap
