"""Diffusion–sorption in 1-D (PDEBench's setup, used by arXiv 2402.13412), its finite differences for
physics-informed losses, and a scipy BDF reference for evaluation only.

    R(u) du/dt = D d2u/dx2,  x in [0, 1], t in [0, 500 s],
    R(u) = 1 + (1 - phi)/phi * rho_s * k_f * n_f * u^(n_f - 1)    (Freundlich sorption)
    u(t, 0) = 1,   u(t, 1) = D du/dx(t, 1),   u(0, x) = u0(x)

with D = 5e-4, phi = 0.29, rho_s = 2880, k_f = 3.5e-4, n_f = 0.874 (the official code's `compute_pde_residual`;
u^(n_f-1) is taken at max(u, 0) + 1e-6, as there). R(u) du/dt is d/dt [u + (1-phi)/phi rho_s k_f u^n_f]:
sorbed mass moves with the dissolved one.

Grid: `nx` cell centres x_i = (i + 1/2)/nx (as PDEBench's finite-volume data) and `nt` times t_j = 500 j/(nt-1).
Initial conditions: i.i.d. U(0, 0.2) per cell (our reading of PDEBench's generator; the paper-scale run can
read PDEBench's own from files instead).

Reference (`reference`): the method of lines on `refine * nx` cells (two-point fluxes; the Dirichlet and
Robin faces eliminated exactly), integrated by `solve_ivp(method="BDF")` with a tridiagonal Jacobian pattern,
then averaged back onto the coarse cells. `dataset` caches it with runner/data/cache.py. Tested
(tests/test_diffusion_sorption.py): grid refinement converges, the linear limit n_f = 1 equals the
dense matrix exponential of the semi-discrete system, and the boundary conditions hold.

Finite differences (`d_dt`, `d_dx`): central inside, one-sided at the ends, along the time (-2) or space (-1)
axis of (..., nt, nx) tensors, as the official code's `fdm_first_order_derivative`; d2u/dx2 is d_dx twice.
They are linear, so they apply unchanged to basis fields with a trailing channel axis moved first.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch

from runner.data.cache import cached

T_END = 500.0


@dataclass(frozen=True)
class Constants:
    D: float = 5e-4
    porosity: float = 0.29
    rho_s: float = 2880.0
    k_f: float = 3.5e-4
    n_f: float = 0.874
    eps: float = 1e-6

    @property
    def sorption(self) -> float:
        """(1 - phi)/phi * rho_s * k_f: the Freundlich isotherm's prefactor."""
        return (1 - self.porosity) / self.porosity * self.rho_s * self.k_f


def retardation(u, c: Constants = Constants()):
    """R(u) for a tensor or an array; u <= 0 uses eps^(n_f-1) (the official code's guard)."""
    if isinstance(u, torch.Tensor):
        safe = torch.where(u > 0, u, torch.zeros_like(u))
        power = torch.where(u > 0, (safe + c.eps) ** (c.n_f - 1), torch.full_like(u, c.eps ** (c.n_f - 1)))
    else:
        power = np.where(u > 0, (np.maximum(u, 0) + c.eps) ** (c.n_f - 1), c.eps ** (c.n_f - 1))
    return 1 + c.sorption * c.n_f * power


def grid(nx: int, nt: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Cell centres in [0, 1] and times in [0, 500 s], float64."""
    x = (torch.arange(nx, dtype=torch.float64) + 0.5) / nx
    return x, torch.linspace(0.0, T_END, nt, dtype=torch.float64)


def initial_conditions(n: int, nx: int, generator: torch.Generator) -> torch.Tensor:
    return 0.2 * torch.rand(n, nx, generator=generator, dtype=torch.float64)


# -- finite differences for the physics-informed losses
def _diff(u: torch.Tensor, h: float, dim: int) -> torch.Tensor:
    n = u.shape[dim]
    inner = (u.narrow(dim, 2, n - 2) - u.narrow(dim, 0, n - 2)) / (2 * h)
    lo = (u.narrow(dim, 1, 1) - u.narrow(dim, 0, 1)) / h
    hi = (u.narrow(dim, n - 1, 1) - u.narrow(dim, n - 2, 1)) / h
    return torch.cat([lo, inner, hi], dim=dim)


def d_dt(u: torch.Tensor, dt: float) -> torch.Tensor:
    return _diff(u, dt, -2)


def d_dx(u: torch.Tensor, dx: float) -> torch.Tensor:
    return _diff(u, dx, -1)


def pde_residual(u, u_t, u_xx, c: Constants = Constants()):
    """u_t - D / R(u) u_xx, pointwise."""
    return u_t - c.D / retardation(u, c) * u_xx


def boundary_residuals(u, u_x, c: Constants = Constants()):
    """(u(t, x_0) - 1, u(t, x_last) - D u_x(t, x_last)) at t > 0, on the first and last cell centres."""
    return u[..., 1:, 0] - 1.0, u[..., 1:, -1] - c.D * u_x[..., 1:, -1]


# -- the reference solution
def _rhs(dx: float, c: Constants):
    """du/dt of the finite-volume semi-discretisation (cell averages)."""
    robin = 1.0 / (1.0 - dx / (2 * c.D))  # face value u_b = u_last * robin solves u_b = D (u_b - u_last)/(dx/2)

    def f(_t, u):
        flux = np.empty(len(u) + 1)  # D du/dx at the faces
        flux[1:-1] = c.D * np.diff(u) / dx
        flux[0] = c.D * (u[0] - 1.0) / (dx / 2)
        flux[-1] = robin * u[-1]  # = D du/dx at x = 1 by the Robin condition
        return np.diff(flux) / dx / retardation(u, c)

    return f


def solve_reference(u0: np.ndarray, nt: int, c: Constants = Constants(), rtol: float = 1e-7,
                    atol: float = 1e-9) -> np.ndarray:
    """(nt, len(u0)) cell averages at the grid's times, by BDF on the method of lines."""
    from scipy.integrate import solve_ivp
    from scipy.sparse import diags

    n = len(u0)
    pattern = diags([1.0, 1.0, 1.0], [-1, 0, 1], shape=(n, n))
    times = np.linspace(0.0, T_END, nt)
    sol = solve_ivp(_rhs(1.0 / n, c), (0.0, T_END), np.asarray(u0, dtype=np.float64), method="BDF",
                    t_eval=times, rtol=rtol, atol=atol, jac_sparsity=pattern)
    if not sol.success:
        raise RuntimeError(f"diffusion-sorption reference: {sol.message}")
    return sol.y.T


def reference(u0: torch.Tensor, nt: int, refine: int = 1, c: Constants = Constants()) -> torch.Tensor:
    """(n, nt, nx) references of (n, nx) initial conditions, solved on refine * nx cells and averaged back."""
    out = []
    for row in u0.double().numpy():
        fine = solve_reference(np.repeat(row, refine), nt, c)
        out.append(fine.reshape(nt, len(row), refine).mean(-1))
    return torch.from_numpy(np.stack(out))


def dataset(n_train: int, n_test: int, nx: int, nt: int, seed: int = 0, refine: int = 1,
            c: Constants = Constants(), cache_dir=None) -> tuple[dict, dict]:
    """Training initial conditions (no labels: training is physics-informed) and test initial conditions
    with their BDF references, cached per parameters. Returns (tensors, info with `seconds`)."""
    params = {"n_train": n_train, "n_test": n_test, "nx": nx, "nt": nt, "seed": seed, "refine": refine,
              "constants": asdict(c)}

    def make():
        g = torch.Generator().manual_seed(seed)
        train, test = initial_conditions(n_train, nx, g), initial_conditions(n_test, nx, g)
        return {"u0_train": train, "u0_test": test, "u_test": reference(test, nt, refine, c)}

    return cached("diffusion_sorption", params, make, cache_dir=cache_dir)
