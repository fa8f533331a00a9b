"""Continual benchmarks derived from any classification `Dataset`.

- `split`: class-incremental, the classes partitioned into tasks (default 5 tasks of 2 classes).
- `rotated`: domain-incremental, every task holds all classes, images rotated by a task angle.
"""
from __future__ import annotations

import torch

from runner.data import ContinualData, Dataset, load
from runner.errors import OptrunError


def _subset(d: Dataset, classes: list[int], name: str) -> Dataset:
    c = torch.tensor(classes)
    tr, te = torch.isin(d.y_train, c), torch.isin(d.y_test, c)
    return Dataset(d.x_train[tr], d.y_train[tr], d.x_test[te], d.y_test[te], n_classes=d.n_classes, name=name,
                   classes=tuple(classes))


def _base(base, seed: int) -> Dataset:
    return base if isinstance(base, Dataset) else load(seed=seed, **base)


def split(base, seed: int = 0, n_tasks: int = 5, class_order: list[int] | None = None) -> ContinualData:
    """Class-incremental split: `class_order` (default 0..C-1) cut into `n_tasks` equal groups."""
    d = _base(base, seed)
    order = list(class_order) if class_order is not None else list(range(d.n_classes))
    if n_tasks <= 0 or len(order) % n_tasks:
        raise OptrunError(f"dataset.n_tasks: expected a positive divisor of {len(order)} classes, got {n_tasks}")
    k = len(order) // n_tasks
    tasks = [_subset(d, order[i * k:(i + 1) * k], f"{d.name}-task{i + 1}") for i in range(n_tasks)]
    return ContinualData(tasks, n_classes=d.n_classes, kind="class", name=f"split_{d.name}")


def rotate(x: torch.Tensor, angle: float) -> torch.Tensor:
    """Rotate (N, C, H, W) images counter-clockwise; multiples of 90 degrees are exact (rot90)."""
    if x.dim() != 4:
        raise OptrunError(f"dataset: rotation needs image inputs (N, C, H, W), got shape {tuple(x.shape)}")
    if float(angle) % 90 == 0:
        return torch.rot90(x, k=int(angle) // 90 % 4, dims=(2, 3))
    from torchvision.transforms.functional import rotate as tv_rotate

    return tv_rotate(x, float(angle))


def rotated(base, seed: int = 0, angles: list[float] = (0, 90, 180)) -> ContinualData:
    """Domain-incremental: task k is the whole data set rotated by angles[k]."""
    d = _base(base, seed)
    if not angles:
        raise OptrunError("dataset.angles: expected at least one angle")
    tasks = [Dataset(rotate(d.x_train, a), d.y_train, rotate(d.x_test, a), d.y_test, n_classes=d.n_classes,
                     name=f"{d.name}-rot{a:g}", classes=d.classes) for a in angles]
    return ContinualData(tasks, n_classes=d.n_classes, kind="domain", name=f"rotated_{d.name}",
                         meta={"angles": list(angles)})
