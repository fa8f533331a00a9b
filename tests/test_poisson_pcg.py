"""The masked Poisson data (runner/data/poisson.py) and the batched Jacobi-PCG (runner/solvers/pcg.py),
against dense and sparse direct solves, manufactured solutions and the stencil's second-order accuracy."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from runner.data.poisson import (
    apply_laplacian,
    corner_mask,
    diagonal,
    direct_solve,
    fourier_source,
    grid,
    laplacian_matrix,
    make_instances,
    poisson_dataset,
)
from runner.errors import OptrunError
from runner.solvers.pcg import pcg


def _masks(n: int) -> torch.Tensor:
    return torch.stack([corner_mask(n, r) for r in ([], [0], [1, 2], [0, 1, 3], [0, 1, 2, 3])])[:, None]


def test_the_masked_convolution_is_the_sparse_matrix():
    g = torch.Generator().manual_seed(0)
    for mask in _masks(9):
        u = torch.randn(1, 1, 9, 9, generator=g, dtype=torch.float64)
        A = laplacian_matrix(mask[0])
        want = np.zeros((9, 9))
        want[mask[0].numpy()] = A @ u[0, 0].numpy()[mask[0].numpy()]
        got = apply_laplacian(u, mask[None])[0, 0].numpy()
        np.testing.assert_allclose(got, want, atol=1e-13)
        assert (A != A.T).nnz == 0  # symmetric
        assert np.allclose(A.diagonal(), 4.0)


def test_corner_masks_cut_the_listed_corners():
    m = corner_mask(8, [0, 3])
    assert not m[:2, :2].any() and not m[-2:, -2:].any() and m[:2, -2:].all() and m[-2:, :2].all()
    assert int(m.sum()) == 64 - 8
    assert corner_mask(8, []).all()


def test_the_stencil_is_second_order_on_a_smooth_function():
    """-Laplace(sin(pi x) sin(pi y)) = 2 pi^2 sin sin: truncation error and solution error both O(h^2)."""
    trunc, sol = [], []
    for n in (15, 31, 63):
        x, y, h = grid(n)
        u = (torch.sin(math.pi * x) * torch.sin(math.pi * y))[None, None]
        mask = torch.ones_like(u, dtype=torch.bool)
        f = 2 * math.pi ** 2 * u
        trunc.append(float((apply_laplacian(u, mask) / h ** 2 - f).abs().max()))
        sol.append(float((direct_solve(mask[0, 0], h * h * f[0, 0]) - u[0, 0]).abs().max()))
    for errs in (trunc, sol):
        rates = [math.log2(a / b) for a, b in zip(errs, errs[1:])]
        assert all(1.9 < r < 2.1 for r in rates), (errs, rates)


def test_manufactured_solutions_are_recovered_on_masked_domains():
    """Pick u (zero outside the domain), b = A u; the direct solve and PCG both give u back."""
    g = torch.Generator().manual_seed(1)
    masks = _masks(12)
    u = torch.randn(len(masks), 1, 12, 12, generator=g, dtype=torch.float64) * masks
    b = apply_laplacian(u, masks)
    for i in range(len(masks)):
        assert torch.allclose(direct_solve(masks[i, 0], b[i, 0]), u[i, 0], atol=1e-10)
    out = pcg(lambda v: apply_laplacian(v, masks), b, None, diagonal(masks), 1000, 1e-12, per_sample=True)
    assert out.converged.all() and torch.allclose(out.x, u, atol=1e-9)


@pytest.mark.parametrize("per_sample", [False, True])
def test_pcg_matches_a_dense_solve(per_sample):
    g = torch.Generator().manual_seed(2)
    masks = _masks(7)
    b = torch.randn(len(masks), 1, 7, 7, generator=g, dtype=torch.float64) * masks
    out = pcg(lambda v: apply_laplacian(v, masks), b, None, diagonal(masks), 500, 1e-12, per_sample=per_sample)
    for i in range(len(masks)):
        m = masks[i, 0].numpy()
        A = torch.from_numpy(laplacian_matrix(m).toarray())
        want = torch.linalg.solve(A, b[i, 0][masks[i, 0]])
        assert torch.allclose(out.x[i, 0][masks[i, 0]], want, atol=1e-9)
        assert (out.x[i, 0][~masks[i, 0]] == 0).all()  # never moves off the domain
    assert out.residual.max() <= 1e-12
    if per_sample:  # CG's finite termination: at most as many steps as unknowns
        assert out.iterations.shape == (len(masks),)
        assert all(int(k) <= int(masks[i].sum()) for i, k in enumerate(out.iterations))


def test_pcg_counts_iterations_and_starts_from_x0():
    masks = _masks(10)
    g = torch.Generator().manual_seed(3)
    u = torch.randn(len(masks), 1, 10, 10, generator=g, dtype=torch.float64) * masks
    b = apply_laplacian(u, masks)
    A = lambda v: apply_laplacian(v, masks)  # noqa: E731
    exact = pcg(A, b, u, diagonal(masks), 100, 1e-8, per_sample=True)
    assert (exact.iterations == 0).all()                 # already solved: no step
    near = pcg(A, b, u + 1e-4 * masks, diagonal(masks), 1000, 1e-8, per_sample=True)
    cold = pcg(A, b, None, diagonal(masks), 1000, 1e-8, per_sample=True)
    assert (near.iterations < cold.iterations).all() and near.converged.all() and cold.converged.all()
    k5 = pcg(A, b, None, diagonal(masks), 5)              # global mode: exactly K steps, a 0-d count
    assert int(k5.iterations) == 5 and k5.iterations.dim() == 0
    one = pcg(lambda v: apply_laplacian(v, masks[:1]), b[:1], None, diagonal(masks[:1]), 7)
    per = pcg(lambda v: apply_laplacian(v, masks[:1]), b[:1], None, diagonal(masks[:1]), 7, per_sample=True)
    assert torch.allclose(one.x, per.x, atol=1e-14)       # one system: both batchings agree


def test_pcg_is_no_grad_unless_asked():
    masks = _masks(6)[:2]
    b = torch.ones(2, 1, 6, 6, dtype=torch.float64) * masks
    x0 = torch.zeros_like(b, requires_grad=True)
    A = lambda v: apply_laplacian(v, masks)  # noqa: E731
    assert not pcg(A, b, x0, diagonal(masks), 3).x.requires_grad
    x = pcg(A, b, x0 + 0.01 * masks, diagonal(masks), 3, grad=True).x
    x.sum().backward()
    assert x0.grad is not None and torch.isfinite(x0.grad).all()


def test_fourier_sources_are_max_normalised_on_the_domain():
    g = torch.Generator().manual_seed(4)
    mask = corner_mask(16, [1, 2])
    f = fourier_source(16, mask, g, modes=10, length=math.pi)
    assert abs(float(f.abs().max()) - 1.0) < 1e-6 and (f[~mask] == 0).all()


def test_instances_satisfy_their_systems_and_are_seeded(tmp_path):
    d = make_instances(6, 12, torch.Generator().manual_seed(5), corners=(0, 2, 4))
    h = grid(12)[2]
    res = apply_laplacian(d["u"], d["mask"]) - h * h * d["f"] * d["mask"]
    assert float(res.abs().max()) < 1e-12
    cut = (~d["mask"]).flatten(1).sum(1) // 9  # corner squares of side round(0.25 * 12) = 3
    assert torch.equal(cut, d["corners"]) and set(d["corners"].tolist()) <= {0, 2, 4}
    a, info_a = poisson_dataset(4, 2, 12, seed=7, cache_dir=tmp_path)
    b, info_b = poisson_dataset(4, 2, 12, seed=7, cache_dir=tmp_path)
    assert not info_a["hit"] and info_b["hit"] and info_a["seconds"] > 0
    assert all(torch.equal(a[k], b[k]) for k in a)
    c, _ = poisson_dataset(4, 2, 12, seed=8, cache_dir="off")
    assert not torch.equal(a["f_train"], c["f_train"])
    t, _ = poisson_dataset(3, 5, 12, seed=7, corners=(4,), test_corners=(0, 1), cache_dir="off")
    assert (t["corners_train"] == 4).all() and set(t["corners_test"].tolist()) <= {0, 1}
    with pytest.raises(OptrunError):
        poisson_dataset(4, 2, 12, corners=(5,), cache_dir="off")
