"""Continuous-time flows that model gradient descent with step size h (Rosca et al., TMLR 2023 /
Rosca's thesis, arXiv 2310.14036), and small landscapes to compare them with the GD iterates.

- NGF, the negative gradient flow:          theta' = -grad E
- the first-order modified flow (IGR):      theta' = -grad (E + h/4 |grad E|^2) = -(g + h/2 H g)
- the principal flow (PF):                  theta' = sum_i log(1 - h l_i) / (h l_i) (g . u_i) u_i
  with (l_i, u_i) the eigenpairs of the Hessian. For h l_i > 1 the logarithm is complex (the flow
  oscillates); for h l_i > 2 its real part is positive (the flow, like GD, diverges). On a quadratic
  the PF after time h equals one GD step exactly: exp(log(1 - h l)) = 1 - h l.

States are complex128 so the PF can be integrated through h l > 1; the GD iterate is real. Every
landscape gives `grad(theta)` and `hessian(theta)`; they accept complex points when the energy is a
polynomial (holomorphic extension), which is all the PF needs.
"""
from __future__ import annotations

import torch

from runner.errors import OptrunError


class Quadratic:
    """E = 1/2 theta^T A theta with A = Q diag(eigenvalues) Q^T (Q a seeded rotation, or the identity
    with `rotate=False`: the axis-aligned quadratic of the official PF notebooks)."""

    constant_hessian = True

    def __init__(self, eigenvalues: list[float], seed: int = 0, rotate: bool = True):
        lam = torch.tensor(list(eigenvalues), dtype=torch.float64)
        g = torch.Generator().manual_seed(seed)
        q, _ = torch.linalg.qr(torch.randn(len(lam), len(lam), generator=g, dtype=torch.float64))
        if not rotate:
            q = torch.eye(len(lam), dtype=torch.float64)
        self.a = q @ torch.diag(lam) @ q.T
        self.dim = len(lam)

    def energy(self, theta: torch.Tensor) -> torch.Tensor:
        return 0.5 * theta @ (self.a.to(theta.dtype) @ theta)

    def grad(self, theta: torch.Tensor) -> torch.Tensor:
        return self.a.to(theta.dtype) @ theta

    def hessian(self, theta: torch.Tensor) -> torch.Tensor:
        return self.a


class Rosenbrock:
    """A scaled 2-D Rosenbrock valley E = (a - x)^2 / 2 + b (y - x^2)^2 / 2: non-convex, curvature
    that changes along the path (a small non-convex toy)."""

    constant_hessian = False

    def __init__(self, a: float = 1.0, b: float = 10.0, seed: int = 0):
        self.a, self.b, self.dim = a, b, 2

    def energy(self, theta: torch.Tensor) -> torch.Tensor:
        x, y = theta[0], theta[1]
        return 0.5 * (self.a - x) ** 2 + 0.5 * self.b * (y - x**2) ** 2

    def grad(self, theta: torch.Tensor) -> torch.Tensor:
        x, y = theta[0], theta[1]
        r = y - x**2
        return torch.stack([-(self.a - x) - 2 * self.b * x * r, self.b * r])

    def hessian(self, theta: torch.Tensor) -> torch.Tensor:
        x, y = theta[0].real, theta[1].real  # the PF uses the real Hessian (toys are run with h l < 1)
        return torch.stack([torch.stack([1 + self.b * (6 * x**2 - 2 * y), -2 * self.b * x]),
                            torch.stack([-2 * self.b * x, torch.as_tensor(self.b, dtype=x.dtype)])])


LANDSCAPES = {"quadratic": Quadratic, "rosenbrock": Rosenbrock}


def make_landscape(name: str, **kwargs):
    if name not in LANDSCAPES:
        raise OptrunError(f"trainer.landscape.name: unknown '{name}' (expected one of: {', '.join(LANDSCAPES)})")
    return LANDSCAPES[name](**kwargs)


def pf_coefficients(lam: torch.Tensor, h: float) -> torch.Tensor:
    """log(1 - h l) / (h l) with its limit -1 at l = 0, complex where h l > 1."""
    hl = (h * lam).to(torch.complex128)
    small = hl.abs() < 1e-12
    safe = torch.where(small, torch.ones_like(hl), hl)
    return torch.where(small, -torch.ones_like(hl), torch.log(1 - safe) / safe)


class LinearField:
    """theta' = M theta (every flow on a quadratic): RK4 can use its exact per-step propagator."""

    def __init__(self, matrix: torch.Tensor):
        self.matrix = matrix.to(torch.complex128)

    def __call__(self, theta: torch.Tensor) -> torch.Tensor:
        return self.matrix @ theta


def principal_flow(landscape, h: float):
    if landscape.constant_hessian:
        lam, u = torch.linalg.eigh(landscape.hessian(None).to(torch.float64))
        u = u.to(torch.complex128)
        return LinearField(u @ torch.diag(pf_coefficients(lam, h)) @ u.T @ landscape.a.to(torch.complex128))

    def field(theta: torch.Tensor) -> torch.Tensor:
        lam, u = torch.linalg.eigh(landscape.hessian(theta).to(torch.float64))
        u = u.to(torch.complex128)
        g = landscape.grad(theta)
        return u @ (pf_coefficients(lam, h) * (u.T @ g))
    return field


def gradient_flow(landscape, h: float = 0.0):
    if landscape.constant_hessian:
        return LinearField(-landscape.a)
    return lambda theta: -landscape.grad(theta)


def modified_flow(landscape, h: float):
    """-(g + h/2 H g): the first-order correction of the drift (implicit gradient regularisation)."""
    if landscape.constant_hessian:
        return LinearField(-(landscape.a + 0.5 * h * landscape.a @ landscape.a))

    def field(theta: torch.Tensor) -> torch.Tensor:
        g = landscape.grad(theta)
        return -(g + 0.5 * h * landscape.hessian(theta).to(g.dtype) @ g)
    return field


FLOWS = {"pf": principal_flow, "ngf": gradient_flow, "mf": modified_flow}


def rk4(field, theta: torch.Tensor, duration: float, substeps: int) -> torch.Tensor:
    """Classical Runge-Kutta over `duration` in `substeps` equal steps. On a linear field one RK4
    step is exactly the degree-4 Taylor polynomial of exp(M dt), so its power is applied at once."""
    dt = duration / substeps
    matrix = getattr(field, "matrix", None)
    if matrix is not None:
        a = matrix * dt
        eye = torch.eye(len(a), dtype=a.dtype)
        step = eye + a @ (eye + a @ (eye + a @ (eye + a / 4) / 3) / 2)
        return torch.linalg.matrix_power(step, substeps) @ theta.to(a.dtype)
    for _ in range(substeps):
        k1 = field(theta)
        k2 = field(theta + 0.5 * dt * k1)
        k3 = field(theta + 0.5 * dt * k2)
        k4 = field(theta + dt * k3)
        theta = theta + dt / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
    return theta


def relative_error(flow_theta: torch.Tensor, gd_theta: torch.Tensor) -> float:
    """|theta_flow - theta_GD| / |theta_GD| (the flow state may carry an imaginary part)."""
    return float((flow_theta - gd_theta.to(flow_theta.dtype)).abs().norm() / gd_theta.norm().clamp_min(1e-300))


def max_curvature(landscape, theta: torch.Tensor) -> float:
    return float(torch.linalg.eigvalsh(landscape.hessian(theta).to(torch.float64)).max())

