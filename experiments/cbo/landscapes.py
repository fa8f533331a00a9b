"""Objectives for the CBO-vs-gradient-descent experiments, evaluated on whole batches of points.

`f(x)` takes an array of shape (..., d) and returns shape (...), so that 50 independent runs of 200
particles are one call. Each landscape knows its global minimizer `x_star` and the paper's start.
"""
from __future__ import annotations

import numpy as np

from runner.errors import OptrunError
from runner.trainers.solver import Problem


class Landscape(Problem):
    def __init__(self, d: int, start, success_radius: float = 0.5):
        start = np.broadcast_to(np.asarray(start, dtype=float), (d,)).copy()
        self.d, self.start, self.success_radius = d, start, float(success_radius)
        self.x_star = np.zeros(d)

    def f(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError


class GrandCanyon(Landscape):
    """The 2-D test function of the paper's Figs. 1-2 ("GrandCanyon3noisy" in the authors' code): a
    curved canyon v2 = (v1-1)(v1-4)^2/8 + 2 that leads from the start (8, 8) towards the origin,
    a quadratic bowl, cosine ripples of height `ripple` (8: the "noisy" variant) that trap gradient
    descent in local minima, and a wall across the canyon's far end. Global minimum f(0) = 0.
    """

    def __init__(self, ripple: float = 8.0, start=(8.0, 8.0), success_radius: float = 0.5):
        super().__init__(2, start, success_radius)
        self.ripple = float(ripple)

    def f(self, x: np.ndarray) -> np.ndarray:
        v1, v2 = x[..., 0], x[..., 1]
        valley = v2 - ((v1 - 1.0) * (v1 - 4.0) ** 2 / 8.0 + 2.0)
        block = -v1 - 1.6 * v2
        canyon = 100.0 * (1.0 - np.exp(-1.4 * valley ** 2 * np.exp(-0.002 * v1 ** 4)))
        bowl = 1.6 * v1 ** 2 + 0.8 * v2 ** 2
        ripples = self.ripple * (1.0 - np.cos(0.75 * np.pi * x)).sum(-1)
        ahead = np.maximum((1.0 - np.exp(-9.0 * block ** 2)) * np.sign(block), 0)
        wall = 16.0 * np.exp(1.0 - 2.0 * valley ** 4) * ahead
        return canyon + bowl + ripples + wall


class Rastrigin(Landscape):
    """f(x) = 10 d + sum_i (x_i^2 - 10 cos(2 pi x_i)): exponentially many local minima, global at 0."""

    def __init__(self, d: int = 20, start: float = 3.0, success_radius: float = 0.5):
        if d < 1:
            raise OptrunError(f"problem.d: expected a positive dimension, got {d}")
        super().__init__(d, start, success_radius)

    def f(self, x: np.ndarray) -> np.ndarray:
        return 10.0 * self.d + (x ** 2 - 10.0 * np.cos(2.0 * np.pi * x)).sum(-1)
