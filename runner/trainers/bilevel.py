"""A two-level problem on the one engine: an upper-level variable x and a lower-level variable y,
each a named component (`components.upper`, `components.lower`) with its own optimizer.

The toy is a quadratic bilevel problem whose answer is known in closed form:

    lower   g(x, y) = 1/2 y^T A y - y^T B x          (A symmetric positive definite)
            y*(x)  = A^{-1} B x
    upper   f(x, y) = 1/2 ||y - c||^2 + lam/2 ||x||^2
            Phi(x) = f(x, y*(x)),  grad Phi = lam x + B^T A^{-1} (y* - c)

A step runs `inner_steps` updates of the lower optimizer on g (gradients with optional Gaussian
noise of scale `noise`, from the trainer's own stream), then the hypergradient by implicit
differentiation at the current y: z solves A z = grad_y f (A = the Hessian of g in y, formed with
`torch.func.hessian`), grad_x = lam x - (d^2 g / dx dy)^T z, and one step of the upper optimizer.
Logged: `loss` = Phi(x) (exact), `f`, `g`, `y_gap` = ||y - y*(x)||, `hypergrad_norm`, and
`phi_gap` = Phi(x) - min Phi (the minimiser solves (lam I + B^T A^{-2} B) x = B^T A^{-1} c).

It exists to show (and test) what a bilevel paper needs from the engine: two modules, two
optimizers, a stream of its own, checkpoint and resume of all of them.
"""
from __future__ import annotations

import torch
from torch.func import hessian, jacrev

from runner.errors import OptrunError
from runner.trainers.base import Phase, TrainState


class Vector(torch.nn.Module):
    """A variable as a module: one parameter vector (zeros, or N(0, scale^2) from the init stream)."""

    def __init__(self, dim: int, scale: float = 0.0):
        super().__init__()
        self.value = torch.nn.Parameter(torch.randn(dim) * scale if scale else torch.zeros(dim))


class BilevelQuadratic:
    def __init__(self, steps: int = 200, inner_steps: int = 5, dim_x: int = 5, dim_y: int = 10, lam: float = 0.1,
                 noise: float = 0.0, conditioning: float = 10.0):
        if steps <= 0 or inner_steps <= 0 or dim_x <= 0 or dim_y <= 0:
            raise OptrunError("trainer: steps, inner_steps, dim_x and dim_y must be positive integers")
        if lam <= 0 or noise < 0 or conditioning < 1:
            raise OptrunError("trainer: expected lam > 0, noise >= 0 and conditioning >= 1")
        self.steps, self.inner_steps, self.dim_x, self.dim_y = steps, inner_steps, dim_x, dim_y
        self.lam, self.noise, self.conditioning = lam, noise, conditioning

    def phases(self, state: TrainState) -> list[Phase]:
        for name in ("upper", "lower"):
            if name not in state.optimizers:
                raise OptrunError(f"components.{name}: the bilevel trainer needs an optimizer for '{name}'")
        x, y = state.modules["upper"].value, state.modules["lower"].value
        if x.numel() != self.dim_x or y.numel() != self.dim_y:
            raise OptrunError(f"components: expected upper.module.dim={self.dim_x} and lower.module.dim={self.dim_y} "
                              f"(got {x.numel()} and {y.numel()})")
        g = state.generators["data"]
        opts = dict(generator=g, device=g.device, dtype=torch.float64)
        q, _ = torch.linalg.qr(torch.randn(self.dim_y, self.dim_y, **opts))
        eig = torch.logspace(0, torch.log10(torch.tensor(self.conditioning)).item(), self.dim_y, dtype=torch.float64,
                             device=g.device)
        dev = x.device
        self.A = ((q * eig) @ q.T).to(dev, x.dtype)
        self.B = (torch.randn(self.dim_y, self.dim_x, **opts) / self.dim_x ** 0.5).to(dev, x.dtype)
        self.c = torch.randn(self.dim_y, **opts).to(dev, x.dtype)
        a_inv_b = torch.linalg.solve(self.A, self.B)
        x_star = torch.linalg.solve(self.lam * torch.eye(self.dim_x, device=dev, dtype=x.dtype) + a_inv_b.T @ a_inv_b,
                                    a_inv_b.T @ self.c)
        self.phi_min = float(self.phi(x_star))
        self.noise_stream = state.stream("trainer.noise")
        return [Phase(steps=self.steps, name="bilevel")]

    def begin_phase(self, state: TrainState, phase: Phase) -> None:
        pass

    # -- the problem
    def g(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return 0.5 * y @ self.A @ y - y @ self.B @ x

    def f(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return 0.5 * (y - self.c).pow(2).sum() + 0.5 * self.lam * x.pow(2).sum()

    def y_star(self, x: torch.Tensor) -> torch.Tensor:
        return torch.linalg.solve(self.A, self.B @ x)

    def phi(self, x: torch.Tensor) -> torch.Tensor:
        return self.f(x, self.y_star(x))

    def hypergradient(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Implicit differentiation at (x, y): grad_x f - (d^2g/dx dy)^T (d^2g/dy^2)^{-1} grad_y f."""
        fx, fy = jacrev(self.f, argnums=(0, 1))(x, y)
        gyy = hessian(self.g, argnums=1)(x, y)
        gxy = jacrev(jacrev(self.g, argnums=1), argnums=0)(x, y)  # (dim_y, dim_x): d/dx of grad_y g
        z = torch.linalg.solve(gyy, fy)
        return fx - gxy.T @ z

    def step(self, state: TrainState) -> dict:
        upper, lower = state.modules["upper"].value, state.modules["lower"].value
        opt_u, opt_l = state.optimizers["upper"], state.optimizers["lower"]
        x = upper.detach()
        for _ in range(self.inner_steps):
            opt_l.zero_grad(set_to_none=True)
            grad = torch.func.grad(self.g, argnums=1)(x, lower.detach())
            if self.noise:
                grad = grad + self.noise * torch.randn(grad.shape, generator=self.noise_stream,
                                                       device=self.noise_stream.device).to(grad)
            lower.grad = grad
            opt_l.step()
            if "lower" in state.schedulers:
                state.schedulers["lower"].step()
        y = lower.detach()
        hg = self.hypergradient(x, y)
        opt_u.zero_grad(set_to_none=True)
        upper.grad = hg
        opt_u.step()
        if "upper" in state.schedulers:
            state.schedulers["upper"].step()
        with torch.no_grad():
            x_new = upper.detach()
            phi = self.phi(x_new)
            return {"loss": phi, "phi_gap": phi - self.phi_min, "f": self.f(x_new, y), "g": self.g(x_new, y),
                    "y_gap": (y - self.y_star(x)).norm(), "hypergrad_norm": hg.norm()}

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, sd: dict) -> None:
        pass
