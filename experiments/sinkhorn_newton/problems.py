"""Entropic optimal transport instances for the Sinkhorn-Newton-Sparse paper, with POT references.

The entropic problem at strength eta is solved through its concave dual in the potentials (x, y):

    f(x, y) = -(1/eta) sum_ij P_ij + r.x + c.y,   P_ij = exp(eta (x_i + y_j - C_ij) - 1),

whose maximizer's plan P has marginals r and c. `reference()` gives the exact transport cost
(`ot.emd`) and POT's entropic cost at the same eta, computed once at setup so that the logged wall
time of the iterations does not include them. POT's reference uses `sinkhorn_epsilon_scaling`
(stabilized Sinkhorn warm-started along a decreasing sequence of regularizations): at eta = 600 it
reaches a marginal error of ~2e-8 in about a second, where POT's plain log-domain Sinkhorn is still at
~1e-6 after 20,000 iterations, too far from the solution for a 1e-6 comparison of costs.
"""
from __future__ import annotations

import math
import os
import warnings

import numpy as np
import torch

from runner.errors import OptrunError
from runner.trainers.solver import Problem


class EntropicOT(Problem):
    """Cost C (n x m), marginals r, c, strength eta; subclasses fill C, r, c in `build(state)`."""

    def __init__(self, eta: float = 200.0, reference: bool = True, reference_inner_iters: int = 1000):
        if not eta > 0:
            raise OptrunError(f"problem.eta: expected a positive number, got {eta}")
        self.eta, self.with_reference, self.reference_inner_iters = float(eta), reference, int(reference_inner_iters)
        self.C = self.r = self.c = None
        self.refs: dict = {}

    def build(self, state) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def setup(self, state) -> None:
        C, r, c = self.build(state)
        dt = dict(dtype=torch.float64, device=state.device)
        self.C, self.r, self.c = C.to(**dt), r.to(**dt), c.to(**dt)
        self.log_r, self.log_c = self.r.log(), self.c.log()
        self.neg_eta_C = -self.eta * self.C
        if self.with_reference:
            self.refs = self._pot_references()

    # --- the dual, its plan and the quantities every method logs -------------------------------
    def log_plan(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.neg_eta_C + self.eta * (x[:, None] + y[None, :]) - 1.0

    def evaluate(self, x: torch.Tensor, y: torch.Tensor) -> dict:
        """Marginal error ||P1 - r||_1 + ||P^T 1 - c||_1, the dual objective and <C, P> at (x, y)."""
        P = self.log_plan(x, y).exp()
        err = (P.sum(1) - self.r).abs().sum() + (P.sum(0) - self.c).abs().sum()
        dual = -P.sum() / self.eta + self.r @ x + self.c @ y
        return {"loss": err, "marginal_err": err, "dual_obj": dual, "transport_cost": (self.C * P).sum()}

    # --- references ----------------------------------------------------------------------------
    def _pot_references(self) -> dict:
        os.environ.setdefault("POT_BACKEND_DISABLE_JAX", "1")  # POT would import jax (seconds) if installed
        import ot

        C, r, c = (t.detach().cpu().numpy() for t in (self.C, self.r, self.c))
        emd = ot.emd(r, c, C)
        with warnings.catch_warnings():  # its inner solves warn when they stop at numInnerItermax
            warnings.simplefilter("ignore", UserWarning)
            P = ot.bregman.sinkhorn_epsilon_scaling(r, c, C, 1.0 / self.eta, numItermax=100000, stopThr=1e-13,
                                                    numInnerItermax=self.reference_inner_iters, warn=False)
        err = np.abs(P.sum(1) - r).sum() + np.abs(P.sum(0) - c).sum()
        return {"ref_emd_cost": float((C * emd).sum()), "ref_pot_cost": float((C * P).sum()),
                "ref_pot_marginal_err": float(err)}

    def reference(self) -> dict:
        return dict(self.refs)


class RandomOT(EntropicOT):
    """Uniform random costs C ~ U[0,1]^{n x n} and uniform marginals (a random linear assignment
    problem, the paper's first benchmark)."""

    def __init__(self, n: int = 100, **kw):
        super().__init__(**kw)
        if n < 2:
            raise OptrunError(f"problem.n: expected an integer >= 2, got {n}")
        self.n = int(n)

    def build(self, state):
        C = torch.rand(self.n, self.n, generator=state.generators["data"], dtype=torch.float64,
                       device=state.generators["data"].device)
        r = torch.full((self.n,), 1.0 / self.n, dtype=torch.float64)
        return C, r, r.clone()


class ImageOT(EntropicOT):
    """W_p between two images of a data set seen as densities on the pixel grid (the paper's MNIST
    benchmark; scikit-learn digits offline). Cost |p_i - p_j|_p^p on the grid scaled to [0, 1]^2;
    a small `floor` keeps every pixel's mass positive, as log-domain Sinkhorn needs. `stand_in=true`
    passes on to the loader of a file-based data set (MNIST): random images of the same shape (tests)."""

    def __init__(self, dataset: str = "digits", p: int = 2, n: int | None = None, data_dir: str = "data",
                 download: bool = False, floor: float = 1e-6, stand_in: bool = False, **kw):
        super().__init__(**kw)
        if p not in (1, 2):
            raise OptrunError(f"problem.p: expected 1 (W1, L1 ground cost) or 2 (W2, squared L2), got {p}")
        if n is not None and (n < 4 or math.isqrt(n) ** 2 != n):
            raise OptrunError(f"problem.n: image_ot needs a square number of pixels (e.g. 256 = 16x16, 784 = 28x28) "
                              f"or null for the native size, got {n}")
        self.dataset, self.p, self.n, self.floor = dataset, p, n, floor
        self.data_dir, self.download, self.stand_in = data_dir, download, bool(stand_in)

    def build(self, state):
        from runner.data import load

        extra = {"stand_in": True} if self.stand_in else {}
        data = load(self.dataset, seed=state.seed, data_dir=self.data_dir, download=self.download, **extra)
        x = data.x_train.reshape(len(data.x_train), -1).double()
        side = math.isqrt(x.shape[1])
        x = x.reshape(-1, 1, side, side)
        if self.n is not None and math.isqrt(self.n) != side:
            side = math.isqrt(self.n)
            x = torch.nn.functional.interpolate(x, size=(side, side), mode="bilinear", align_corners=False)
        idx = torch.randperm(len(x), generator=torch.Generator().manual_seed(state.seed))[:2]
        dens = [x[i].flatten().clamp_min(0) for i in idx]
        dens = [(d / d.sum()).clamp_min(self.floor) for d in dens]
        r, c = (d / d.sum() for d in dens)
        grid = torch.stack(torch.meshgrid(*[torch.linspace(0, 1, side, dtype=torch.float64)] * 2, indexing="ij"), -1)
        pts = grid.reshape(-1, 2)
        diff = (pts[:, None, :] - pts[None, :, :]).abs()
        C = diff.sum(-1) if self.p == 1 else (diff ** 2).sum(-1)
        return C, r, c
