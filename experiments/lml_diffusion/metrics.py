"""Sample-set distances for the 2-D toy: sliced Wasserstein-2 and an RBF-kernel MMD.

FID needs Inception weights that are not available offline, so the smoke scale compares sample sets
directly. Both distances are floored by sampling noise; `problem.reference()` measures that floor with
two independent exact sample sets of the same size, so a method is judged against what 20k exact
samples can resolve.
"""
from __future__ import annotations

import torch


def projections(d: int, n: int, seed: int = 12345) -> torch.Tensor:
    """Fixed unit directions (the same for every run, so that runs are compared on one metric)."""
    g = torch.Generator().manual_seed(seed)
    v = torch.randn(n, d, generator=g, dtype=torch.float64)
    return v / v.norm(dim=1, keepdim=True)


def sliced_w2(x: torch.Tensor, y: torch.Tensor, dirs: torch.Tensor) -> float:
    """sqrt(mean over directions of W2^2 of the 1-D projections); x and y of equal size."""
    px, _ = torch.sort(dirs @ x.to(dirs).T, dim=1)  # (directions, samples): contiguous rows sort fastest
    py, _ = torch.sort(dirs @ y.to(dirs).T, dim=1)
    return float(((px - py) ** 2).mean().sqrt())


def mmd2(x: torch.Tensor, y: torch.Tensor, bandwidth: float, n: int = 3000) -> float:
    """Unbiased MMD^2 with a Gaussian kernel on the first n points of each set (may be slightly < 0)."""
    x, y = x[:n].double(), y[:n].double()

    def k(a, b):
        return torch.exp(-torch.cdist(a, b) ** 2 / (2 * bandwidth ** 2))

    kxx, kyy, kxy = k(x, x), k(y, y), k(x, y)
    m = x.shape[0]
    off = (kxx.sum() - kxx.diagonal().sum() + kyy.sum() - kyy.diagonal().sum()) / (m * (m - 1))
    return float(off - 2 * kxy.mean())
