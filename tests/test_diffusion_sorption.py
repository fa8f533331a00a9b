"""runner/data/diffusion_sorption.py: the BDF reference converges under grid refinement (second order), equals
the dense matrix exponential of the semi-discrete system in the linear limit n_f = 1, holds its boundary
conditions, and the finite differences are exact on quadratics; the data set is cached."""
import dataclasses

import numpy as np
import pytest
import torch
from scipy.linalg import expm

from runner.data import diffusion_sorption as ds

pytestmark = pytest.mark.usefixtures("one_thread")


def test_grid_refinement_converges_at_second_order():
    u0 = torch.full((1, 16), 0.1, dtype=torch.float64)
    fine = ds.reference(u0, 6, refine=32)[0]
    errors = [float((ds.reference(u0, 6, refine=r)[0] - fine).abs().max()) for r in (1, 2, 4)]
    assert errors[0] > errors[1] > errors[2]
    orders = np.log2(np.array(errors[:-1]) / np.array(errors[1:]))
    assert (orders > 1.8).all(), orders


def test_linear_limit_equals_the_matrix_exponential():
    """n_f = 1: R is constant and du/dt = A u + c; u(t) = u_ss + expm(A t)(u0 - u_ss), u_ss = -A^{-1} c."""
    c = dataclasses.replace(ds.Constants(), n_f=1.0)
    n, nt = 24, 6
    f = ds._rhs(1.0 / n, c)
    const = f(0.0, np.zeros(n))
    A = np.stack([f(0.0, e) - const for e in np.eye(n)], axis=1)
    u_ss = -np.linalg.solve(A, const)
    u0 = ds.initial_conditions(1, n, torch.Generator().manual_seed(3))[0].numpy()
    times = np.linspace(0, ds.T_END, nt)
    exact = np.stack([u_ss + expm(A * t) @ (u0 - u_ss) for t in times])
    bdf = ds.solve_reference(u0, nt, c, rtol=1e-9, atol=1e-11)
    np.testing.assert_allclose(bdf, exact, atol=1e-6)
    assert np.ptp(ds.retardation(np.array([1e-3, 0.5, 1.0]), c)) == 0  # constant R: linear indeed


def test_boundary_conditions_hold_on_a_fine_grid():
    """On 256 cells, u extrapolated to x = 0 is 1 and u(1) = D u_x(1) (to O(dx)) at t >= 100 s; 0 <= u <= 1."""
    n, D = 256, ds.Constants().D
    u = ds.reference(ds.initial_conditions(1, 32, torch.Generator().manual_seed(0)), 11, refine=n // 32)[0][2:]
    left = 1.5 * u[:, 0] - 0.5 * u[:, 1]
    right = 1.5 * u[:, -1] - 0.5 * u[:, -2]
    slope = (u[:, -1] - u[:, -2]) * n
    assert float((left - 1).abs().max()) < 2e-3
    assert float((right - D * slope).abs().max()) < 2e-3
    assert float(u.min()) > -1e-3 and float(u.max()) <= 1 + 1e-6


def test_finite_differences_and_residuals():
    x, t = ds.grid(16, 6)
    u = (x[None, :] ** 2 + 3 * x[None, :]) * (1 + t[:, None] / 100)
    u_x = ds.d_dx(u, 1 / 16)
    torch.testing.assert_close(u_x[:, 1:-1], ((2 * x + 3)[None, :] * (1 + t[:, None] / 100))[:, 1:-1])
    torch.testing.assert_close(ds.d_dt(u, 100.0), (x ** 2 + 3 * x)[None, :].expand(6, -1) / 100)
    u_xx = ds.d_dx(u_x, 1 / 16)
    torch.testing.assert_close(u_xx[:, 2:-2], 2 * (1 + t[:, None] / 100).expand(-1, 12))
    R = ds.retardation(torch.tensor([1.0, 0.0], dtype=torch.float64))
    assert abs(float(R[0]) - (1 + ds.Constants().sorption * 0.874 * (1 + 1e-6) ** -0.126)) < 1e-9
    left, right = ds.boundary_residuals(torch.ones(6, 16), torch.zeros(6, 16))
    assert left.abs().max() == 0 and right.shape == (5,)


def test_dataset_is_cached(tmp_path):
    a, info = ds.dataset(3, 2, 8, 4, seed=1, cache_dir=tmp_path)
    b, again = ds.dataset(3, 2, 8, 4, seed=1, cache_dir=tmp_path)
    assert not info["hit"] and again["hit"] and info["seconds"] > 0
    assert a["u_test"].shape == (2, 4, 8) and a["u0_train"].shape == (3, 8)
    torch.testing.assert_close(a["u_test"], b["u_test"])
    torch.testing.assert_close(a["u_test"][:, 0], a["u0_test"])
