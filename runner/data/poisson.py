"""Masked-domain 2-D Poisson systems made in code: -Laplace(u) = f on a square with corners cut out,
u = 0 on every boundary (Dirichlet 0), with direct-solve labels, seeded and cached on disk.

Discretisation: an n x n grid of nodes inside the unit square, h = 1 / (n + 1), node (i, j) at
((j + 1) h, (i + 1) h). `mask` marks the unknowns (True inside the domain); nodes of a removed corner and the
ring around the square are Dirichlet 0. The operator is the 5-point stencil in finite-volume scaling (as the
official NPSolver code assembles it: flux coefficients of one, the source integrated over the cell):

    (A u)_ij = 4 u_ij - u_(i-1)j - u_(i+1)j - u_i(j-1) - u_i(j+1)   for masked-in (i, j), neighbours outside = 0
    b_ij     = h^2 f_ij

so A u = b is -Laplace(u) = f with second-order truncation error. `apply_laplacian` is this operator as a
masked convolution on (B, 1, n, n) tensors (any dtype, differentiable); `laplacian_matrix` the same as a
scipy sparse matrix over the unknowns (for direct solves and tests); its diagonal is 4 on the unknowns.

Source terms: the official generator's random Fourier series, f(x, y) = gamma + sum_{i,j<M} alpha_ij
sin(k_i x + k_j y) + beta_ij cos(k_i x + k_j y) with k_i = i - M // 2, alpha, beta ~ N(0, 1), gamma ~ N(-1, 1),
on coordinates scaled by `length` (the official meshes' extent is not published with the code: our choice),
then divided by its maximum modulus over the domain. Domains: each instance removes c square corners of side
round(corner_frac * n) nodes, c drawn uniformly from `corners`, which corners drawn at random.

`poisson_dataset(...)` makes train and test sets (f, mask, direct-solve u) with one generator seeded from
`seed` and caches them with runner.data.cache.cached; its info carries the generation time in seconds.
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla
import torch
import torch.nn.functional as F

from runner.data.cache import cached
from runner.errors import OptrunError

_NEIGHBOURS = torch.tensor([[0.0, 1.0, 0.0], [1.0, 0.0, 1.0], [0.0, 1.0, 0.0]]).view(1, 1, 3, 3)


def grid(n: int, dtype=torch.float64) -> tuple[torch.Tensor, torch.Tensor, float]:
    """Node coordinates (x, y), each (n, n), and the spacing h of the n x n interior grid."""
    h = 1.0 / (n + 1)
    c = (torch.arange(n, dtype=dtype) + 1) * h
    y, x = torch.meshgrid(c, c, indexing="ij")
    return x, y, h


def apply_laplacian(u: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """A u for (B, 1, n, n) fields: the masked 5-point stencil (zero outside the mask)."""
    m = mask.to(u.dtype)
    v = u * m
    nb = F.conv2d(v, _NEIGHBOURS.to(device=u.device, dtype=u.dtype), padding=1)
    return (4.0 * v - nb) * m


def diagonal(mask: torch.Tensor, dtype=torch.float64) -> torch.Tensor:
    """The diagonal of A: 4 on the unknowns, 0 elsewhere (the Jacobi preconditioner of runner.solvers.pcg)."""
    return 4.0 * mask.to(dtype)


def laplacian_matrix(mask: np.ndarray | torch.Tensor) -> sp.csr_matrix:
    """A over the unknowns of one (n, n) mask, in row-major order of mask.nonzero()."""
    m = np.asarray(mask, dtype=bool)
    n1, n2 = m.shape
    index = -np.ones(m.shape, dtype=np.int64)
    index[m] = np.arange(m.sum())
    rows, cols, vals = [index[m]], [index[m]], [np.full(m.sum(), 4.0)]
    padded = np.pad(index, 1, constant_values=-1)
    for di, dj in ((-1, 0), (1, 0), (0, -1), (0, 1)):
        nb = padded[1 + di:1 + di + n1, 1 + dj:1 + dj + n2][m]
        keep = nb >= 0
        rows.append(index[m][keep]), cols.append(nb[keep]), vals.append(-np.ones(keep.sum()))
    k = int(m.sum())
    return sp.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(k, k))


def direct_solve(mask: torch.Tensor, b: torch.Tensor, lu=None) -> torch.Tensor:
    """u with A u = b on one (n, n) mask by a sparse direct solve (float64); zero outside the mask.
    `lu`: a scipy splu factorisation of laplacian_matrix(mask) to reuse (domains repeat, sources do not)."""
    m = mask.cpu().numpy().astype(bool)
    u = np.zeros(m.shape)
    rhs = b.cpu().numpy().astype(np.float64)[m]
    u[m] = lu.solve(rhs) if lu is not None else spla.spsolve(laplacian_matrix(m).tocsc(), rhs)
    return torch.from_numpy(u)


def corner_mask(n: int, removed: list[int], corner_frac: float = 0.25) -> torch.Tensor:
    """(n, n) bool mask with the listed corners (0: top-left, 1: top-right, 2: bottom-left, 3: bottom-right)
    removed as squares of side round(corner_frac * n) nodes."""
    s = int(round(corner_frac * n))
    mask = torch.ones(n, n, dtype=torch.bool)
    for c in removed:
        rows = slice(0, s) if c in (0, 1) else slice(n - s, n)
        cols = slice(0, s) if c in (0, 2) else slice(n - s, n)
        mask[rows, cols] = False
    return mask


def fourier_source(n: int, mask: torch.Tensor, generator: torch.Generator, modes: int = 10,
                   length: float = 1.0) -> torch.Tensor:
    """The official random Fourier source on the grid, max-normalised over the domain, zero outside."""
    x, y, _ = grid(n)
    x, y = x * length, y * length
    alpha = torch.randn(modes, modes, generator=generator, dtype=torch.float64)
    beta = torch.randn(modes, modes, generator=generator, dtype=torch.float64)
    gamma = torch.randn(1, generator=generator, dtype=torch.float64) - 1.0
    k = torch.arange(modes, dtype=torch.float64) - modes // 2
    phase = k.view(-1, 1, 1, 1) * x + k.view(1, -1, 1, 1) * y          # (M, M, n, n)
    f = (alpha[..., None, None] * phase.sin() + beta[..., None, None] * phase.cos()).sum((0, 1)) + gamma
    f = f * mask
    return f / (f.abs().max() + 1e-8)


def make_instances(count: int, n: int, generator: torch.Generator, corners=(0, 1, 2, 3, 4), modes: int = 10,
                   length: float = 1.0, corner_frac: float = 0.25) -> dict[str, torch.Tensor]:
    """`count` instances: f, mask (bool), u (direct solve of A u = h^2 f), corners (the count removed)."""
    _, _, h = grid(n)
    fs, masks, us, cs, lus = [], [], [], [], {}
    choices = torch.tensor(list(corners))
    for _ in range(count):
        c = int(choices[torch.randint(len(choices), (1,), generator=generator)])
        removed = tuple(sorted(torch.randperm(4, generator=generator)[:c].tolist()))
        mask = corner_mask(n, list(removed), corner_frac)
        f = fourier_source(n, mask, generator, modes, length)
        if removed not in lus:  # at most 16 domains: factorise each once
            lus[removed] = spla.splu(laplacian_matrix(mask).tocsc())
        fs.append(f), masks.append(mask), us.append(direct_solve(mask, h * h * f, lus[removed])), cs.append(c)
    return {"f": torch.stack(fs)[:, None], "mask": torch.stack(masks)[:, None], "u": torch.stack(us)[:, None],
            "corners": torch.tensor(cs)}


def poisson_dataset(n_train: int, n_test: int, n: int = 32, seed: int = 0, corners=(0, 1, 2, 3, 4), modes: int = 10,
                    length: float = 1.0, corner_frac: float = 0.25, test_corners=None,
                    cache_dir=None) -> tuple[dict, dict]:
    """Train and test sets (keys `<name>_train`, `<name>_test`), generated once per parameters and cached.
    `test_corners` (None: `corners`): the held-out domains may differ (the paper trains on 4 corners)."""
    test_corners = corners if test_corners is None else test_corners
    ok = all(c and set(c) <= {0, 1, 2, 3, 4} for c in (corners, test_corners))
    if n < 4 or n_train < 1 or n_test < 1 or not ok:
        raise OptrunError("poisson data: expected n >= 4, n_train, n_test >= 1 and corners within 0..4")
    params = {"n_train": n_train, "n_test": n_test, "n": n, "seed": seed, "corners": sorted(set(corners)),
              "test_corners": sorted(set(test_corners)), "modes": modes, "length": length, "corner_frac": corner_frac}

    def make():
        g = torch.Generator().manual_seed(seed)
        out = {}
        for split, count, cs in (("train", n_train, params["corners"]), ("test", n_test, params["test_corners"])):
            out |= {f"{k}_{split}": v for k, v in make_instances(count, n, g, cs, modes, length, corner_frac).items()}
        return out

    return cached("poisson2d_masked", params, make, cache_dir=cache_dir)
