"""Periodic 1-D viscous Burgers, u_t + (u^2/2)_x = nu u_xx on [0, 1), by a pseudo-spectral ETDRK4 solver.

Why in code: the learned-rollout papers (JAWS, ...) train one-step operators on Burgers trajectories; a
spectral solver makes them in seconds from a seed, and `runner.data.cache.cached` keeps them on disk so a
sweep of arms pays once. The scheme (Cox & Matthews 2002; Kassam & Trefethen 2005):

- Fourier space, u_hat(k) with k = 2 pi m; linear part L = -nu k^2 (exact), nonlinear part
  N(u_hat) = -(i k / 2) FFT(u^2) with the 2/3 rule (modes |m| > N/3 of the product zeroed);
- ETDRK4: the phi-function coefficients (Q, f1, f2, f3) by a contour integral over M points on a circle
  around each h L (no cancellation for small |h L|); one coefficient set per trajectory (each its own nu);
- the k = 0 mode has L = 0 and N = 0, so the mean of u (the mass) is kept to round-off.

Trajectories are solved on a fine grid (`fine` points, float64) and sampled at every (fine/n)-th point, so
shocks narrower than the training grid stay resolved in the solver. Initial conditions: `modes` random
Fourier modes sin/cos(2 pi m x) with m = 1..modes, coefficients ~ N(0, 1/m), scaled so max|u0| = amplitude
x U(0.5, 1). `BurgersData` holds train / test / ood sets as (B, T+1, 1, n) and the viscosities.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch

from runner.data.cache import cached
from runner.errors import OptrunError


def wavenumbers(n: int, dtype=torch.float64) -> torch.Tensor:
    """k = 2 pi m for the rfft modes m = 0..n/2 of n points on [0, 1)."""
    return 2 * math.pi * torch.arange(n // 2 + 1, dtype=dtype)


def etdrk4_coefficients(lin: torch.Tensor, h: float, contour: int = 64) -> tuple[torch.Tensor, ...]:
    """(E, E2, Q, f1, f2, f3) for the diagonal linear part `lin` (any shape) and step h, by the mean of each
    phi-function expression over `contour` points on the unit circle around h*lin (real part: lin is real)."""
    hl = (h * lin).to(torch.complex128)
    r = torch.exp(1j * math.pi * (torch.arange(1, contour + 1, dtype=torch.float64) - 0.5) / contour)
    lr = hl[..., None] + r
    e = torch.exp(lr)
    q = h * ((torch.exp(lr / 2) - 1) / lr).mean(-1).real
    f1 = h * ((-4 - lr + e * (4 - 3 * lr + lr ** 2)) / lr ** 3).mean(-1).real
    f2 = h * ((2 + lr + e * (lr - 2)) / lr ** 3).mean(-1).real
    f3 = h * ((-4 - 3 * lr - lr ** 2 + e * (4 - lr)) / lr ** 3).mean(-1).real
    return torch.exp(h * lin), torch.exp(h * lin / 2), q, f1, f2, f3


def _nonlinear(v: torch.Tensor, k: torch.Tensor, keep: torch.Tensor, n: int) -> torch.Tensor:
    """-(i k / 2) FFT(u^2), dealiased by the 2/3 rule (`keep` masks the retained modes)."""
    u = torch.fft.irfft(v * keep, n=n)
    return -0.5j * k * torch.fft.rfft(u * u) * keep


def solve(u0: torch.Tensor, nu: torch.Tensor | float, dt: float, steps: int, cfl: float = 0.8,
          contour: int = 64) -> torch.Tensor:
    """Trajectories of Burgers from u0 (B, n) with viscosities nu (B,) or a float: (B, steps+1, n) at times
    0, dt, ..., steps*dt. The inner ETDRK4 step is dt / s with s the smallest integer giving
    max|u0| * h <= cfl * dx (the maximum principle bounds |u| by max|u0|)."""
    u0 = u0.to(torch.float64)
    b, n = u0.shape
    nu = torch.as_tensor(nu, dtype=torch.float64).expand(b).reshape(b, 1)
    umax = float(u0.abs().max()) if u0.numel() else 0.0
    sub = max(1, math.ceil(dt * umax / (cfl / n))) if umax > 0 else 1
    h = dt / sub
    k = wavenumbers(n)
    keep = (torch.arange(n // 2 + 1) <= n // 3).to(torch.float64)
    E, E2, Q, f1, f2, f3 = etdrk4_coefficients(-nu * k ** 2, h, contour)
    v = torch.fft.rfft(u0)
    out = [u0]
    for _ in range(steps):
        for _ in range(sub):
            nv = _nonlinear(v, k, keep, n)
            a = E2 * v + Q * nv
            na = _nonlinear(a, k, keep, n)
            bb = E2 * v + Q * na
            nb = _nonlinear(bb, k, keep, n)
            c = E2 * a + Q * (2 * nb - nv)
            nc = _nonlinear(c, k, keep, n)
            v = E * v + nv * f1 + 2 * (na + nb) * f2 + nc * f3
        out.append(torch.fft.irfft(v, n=n))
    return torch.stack(out, dim=1)


def random_initial(count: int, n: int, amplitude: float, modes: int, generator: torch.Generator) -> torch.Tensor:
    """`count` fields on n points: random sin/cos modes m = 1..modes (coefficients N(0, 1/m)), zero mean,
    scaled to max|u0| = amplitude * U(0.5, 1)."""
    x = torch.arange(n, dtype=torch.float64) / n
    m = torch.arange(1, modes + 1, dtype=torch.float64)
    a = torch.randn(count, modes, 2, generator=generator, dtype=torch.float64) / m[None, :, None]
    phase = 2 * math.pi * m[:, None] * x[None, :]
    u = a[..., 0] @ torch.sin(phase) + a[..., 1] @ torch.cos(phase)
    scale = amplitude * (0.5 + 0.5 * torch.rand(count, 1, generator=generator, dtype=torch.float64))
    return u * scale / u.abs().amax(dim=1, keepdim=True)


@dataclass
class BurgersData:
    """Trajectories (B, T+1, 1, n) per set and their viscosities (B,). `n_classes` is the output channels a
    model of it should have (2: a mean and a log-variance head; the data do not depend on it)."""

    train: torch.Tensor
    test: torch.Tensor
    ood: torch.Tensor
    nu_train: torch.Tensor
    nu_test: torch.Tensor
    nu_ood: torch.Tensor
    n_classes: int = 2
    dt: float = 0.005
    seconds: float = 0.0
    name: str = "burgers"

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.train.shape[2:])

    def sets(self) -> dict[str, torch.Tensor]:
        return {"test": self.test, "ood": self.ood}

    def windows(self, horizon: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Every (u_t, u_{t+1..t+H}) pair of the training trajectories: (M, 1, n) and (M, H, 1, n)."""
        b, t1 = self.train.shape[:2]
        if not 1 <= horizon < t1:
            raise OptrunError(f"horizon {horizon}: expected 1 <= H < {t1} (the training trajectories' steps)")
        starts = torch.arange(t1 - horizon)
        idx = starts[:, None] + torch.arange(1, horizon + 1)[None, :]
        x = self.train[:, starts].reshape(-1, *self.train.shape[2:])
        y = self.train[:, idx].reshape(-1, horizon, *self.train.shape[2:])
        return x, y

    def to(self, device) -> "BurgersData":
        fields = ("train", "test", "ood", "nu_train", "nu_test", "nu_ood")
        return replace(self, **{f: getattr(self, f).to(device) for f in fields})


def _generate(seed: int, n: int, fine: int, dt: float, sets: dict, modes: int, nu_range, cfl: float) -> dict:
    """Draw every set's initial conditions and viscosities in order, then solve the sets of equal length in one
    batch (the Python overhead of a step does not grow with the batch)."""
    g = torch.Generator().manual_seed(int(seed))
    drawn = {}
    for name, (count, steps, amplitude) in sets.items():
        u0 = random_initial(count, fine, amplitude, modes, g)
        nu = nu_range[0] + (nu_range[1] - nu_range[0]) * torch.rand(count, generator=g, dtype=torch.float64)
        drawn[name] = (u0, nu, steps)
    out = {}
    for steps in sorted({s for _, _, s in drawn.values()}):
        names = [k for k, v in drawn.items() if v[2] == steps]
        traj = solve(torch.cat([drawn[k][0] for k in names]), torch.cat([drawn[k][1] for k in names]), dt, steps, cfl)
        for name, part in zip(names, traj[:, :, ::fine // n].split([len(drawn[k][1]) for k in names]), strict=True):
            out[name], out[f"nu_{name}"] = part.unsqueeze(2).float().contiguous(), drawn[name][1].float()
    return out


def burgers(seed: int = 0, n: int = 128, fine: int = 512, dt: float = 0.005, modes: int = 3,
            nu: tuple = (0.005, 0.01), amplitude: float = 1.0, ood_amplitude: float = 2.0,
            train: tuple = (200, 50), test: tuple = (32, 300), ood: tuple = (32, 300), cfl: float = 0.8,
            out_channels: int = 2, data_seed: int | None = None, cache_dir: str | None = None,
            stand_in: bool = False) -> BurgersData:
    """The data set of a run: `train`/`test`/`ood` = (trajectories, steps) at snapshot interval dt, the ood
    set with initial amplitude `ood_amplitude`. Seeded by `data_seed` (default: the run's seed); cached.
    `stand_in=True` (tests of paper-scale configs): random smooth fields on the grid, at most 4 trajectories
    of at most 60 steps a set (rollouts of a stand-in are probes of the code, not of the physics), no solver."""
    if fine % n or fine < n:
        raise OptrunError(f"dataset.fine: expected a multiple of n={n}, got {fine}")
    if not 0 < nu[0] <= nu[1]:
        raise OptrunError(f"dataset.nu: expected 0 < low <= high, got {nu}")
    sets = {"train": (int(train[0]), int(train[1]), amplitude), "test": (int(test[0]), int(test[1]), amplitude),
            "ood": (int(ood[0]), int(ood[1]), ood_amplitude)}
    params = {"seed": int(seed if data_seed is None else data_seed), "n": n, "fine": fine, "dt": dt, "sets": sets,
              "modes": modes, "nu_range": list(nu), "cfl": cfl}
    if stand_in:
        g = torch.Generator().manual_seed(int(seed))
        tensors = {}
        for name, (count, steps, amp) in sets.items():
            count, steps = min(count, 4), min(steps, 60)
            tensors[name] = random_initial(count * (steps + 1), n, amp, modes, g).float().reshape(count, steps + 1, 1, n)
            tensors[f"nu_{name}"] = torch.full((count,), float(nu[0]))
        return BurgersData(**tensors, n_classes=out_channels, dt=dt)
    tensors, info = cached("burgers1d", params, lambda: _generate(**params), cache_dir=cache_dir)
    return BurgersData(**tensors, n_classes=out_channels, dt=dt, seconds=info["seconds"])
