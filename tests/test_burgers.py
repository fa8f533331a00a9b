"""The spectral Burgers solver against exact answers: Cole-Hopf, mass conservation, the heat-equation limit,
and the cached data set's shapes and windows."""
from __future__ import annotations

import math

import pytest
import torch

from runner.data.burgers import burgers, etdrk4_coefficients, random_initial, solve, wavenumbers
from runner.errors import OptrunError


def cole_hopf(x: torch.Tensor, t: float, nu: float, a: float = 2.0, b: float = 1.0) -> torch.Tensor:
    """u = -2 nu phi_x / phi with phi = a + b exp(-4 pi^2 nu t) cos(2 pi x), a heat solution (a > b > 0)."""
    e = b * math.exp(-4 * math.pi ** 2 * nu * t)
    return 4 * math.pi * nu * e * torch.sin(2 * math.pi * x) / (a + e * torch.cos(2 * math.pi * x))


def test_cole_hopf_exact_solution():
    n, nu = 256, 0.02
    x = torch.arange(n, dtype=torch.float64) / n
    traj = solve(cole_hopf(x, 0.0, nu)[None], nu, dt=0.05, steps=10)
    for i in (1, 5, 10):
        assert (traj[0, i] - cole_hopf(x, 0.05 * i, nu)).abs().max() < 1e-8  # amplitude ~0.1


def test_steep_cole_hopf_against_exact():
    """b/a close to 1: a steep front, still resolved on 512 points to 1e-6 of its amplitude."""
    n, nu, a, b = 512, 0.01, 1.05, 1.0
    x = torch.arange(n, dtype=torch.float64) / n
    traj = solve(cole_hopf(x, 0.0, nu, a, b)[None], nu, dt=0.02, steps=5)
    exact = cole_hopf(x, 0.1, nu, a, b)
    assert (traj[0, -1] - exact).abs().max() < 1e-6 * exact.abs().max()


def test_mass_is_conserved_to_round_off():
    g = torch.Generator().manual_seed(0)
    u0 = random_initial(8, 256, 1.5, 3, g) + torch.linspace(-0.3, 0.3, 8, dtype=torch.float64)[:, None]
    traj = solve(u0, torch.full((8,), 0.005, dtype=torch.float64), dt=0.01, steps=40)
    drift = (traj.mean(-1) - u0.mean(-1, keepdim=True)).abs().max()
    assert drift < 1e-13


def test_tiny_amplitude_is_the_heat_semigroup():
    g = torch.Generator().manual_seed(1)
    n, nu, t, eps = 128, 0.01, 0.5, 1e-7
    u0 = eps * random_initial(4, n, 1.0, 5, g)
    traj = solve(u0, nu, dt=t, steps=1)
    heat = torch.fft.irfft(torch.fft.rfft(u0) * torch.exp(-nu * wavenumbers(n) ** 2 * t), n=n)
    rel = (traj[:, -1] - heat).norm() / heat.norm()
    assert rel < 1e-5


def test_contour_coefficients_match_closed_forms():
    """Away from hL = 0 the phi-function expressions are well conditioned: compare with them directly."""
    h, lin = 0.1, torch.tensor([-50.0, -5.0, -1.0], dtype=torch.float64)
    E, E2, Q, f1, f2, f3 = etdrk4_coefficients(lin, h)
    z = h * lin
    assert torch.allclose(E, torch.exp(z)) and torch.allclose(E2, torch.exp(z / 2))
    assert torch.allclose(Q, h * (torch.exp(z / 2) - 1) / z, rtol=1e-10)
    assert torch.allclose(f1, h * (-4 - z + torch.exp(z) * (4 - 3 * z + z ** 2)) / z ** 3, rtol=1e-8)
    assert torch.allclose(f2, h * (2 + z + torch.exp(z) * (z - 2)) / z ** 3, rtol=1e-8)
    assert torch.allclose(f3, h * (-4 - 3 * z - z ** 2 + torch.exp(z) * (4 - z)) / z ** 3, rtol=1e-8)


def test_data_set_shapes_windows_and_cache(tmp_path):
    kw = dict(n=32, fine=64, train=(6, 5), test=(3, 7), ood=(2, 7), cache_dir=str(tmp_path))
    d = burgers(seed=3, **kw)
    assert d.train.shape == (6, 6, 1, 32) and d.test.shape == (3, 8, 1, 32) and d.ood.shape == (2, 8, 1, 32)
    assert d.input_shape == (1, 32) and d.n_classes == 2 and d.seconds > 0
    assert d.ood[:, 0].abs().amax() > d.test[:, 0].abs().amax()   # amplitude 2 vs 1
    assert ((d.nu_train >= 0.005) & (d.nu_train <= 0.01)).all()
    x, y = d.windows(2)
    assert x.shape == (6 * 4, 1, 32) and y.shape == (6 * 4, 2, 1, 32)
    assert torch.equal(x[1], d.train[0, 1]) and torch.equal(y[1, 1], d.train[0, 3])
    again = burgers(seed=3, **kw)           # a cache hit: the same tensors, no generation time
    assert again.seconds == 0.0 and torch.equal(again.test, d.test)
    other = burgers(seed=4, **kw)
    assert not torch.equal(other.test, d.test)
    with pytest.raises(OptrunError):
        d.windows(6)
    with pytest.raises(OptrunError):
        burgers(n=32, fine=48, cache_dir="off")
    fake = burgers(seed=3, stand_in=True, **{**kw, "test": (9, 70)})   # paper-config tests: no solver
    assert fake.test.shape == (4, 61, 1, 32) and fake.seconds == 0.0
