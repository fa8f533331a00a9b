"""CBO, consensus hopping, gradient descent and annealed Langevin dynamics, each as `runs`
independent runs vectorized into one optrun run (Riedl et al., "Gradient is All You Need?").

CBO is cbx's `CBO` (one `step()` per engine step, all runs as cbx's M axis). Consensus hopping,
x_i <- v_alpha + sigma xi_i, is the same cbx dynamic with lambda = dt = 1 and additive ('constant')
noise. GD and Langevin follow the authors' scripts: x <- x - lr dt grad f(x) + (sigma / log(k+1))
sqrt(dt) xi with central finite-difference gradients (sigma = 0 is plain GD).

Every method reports the same per-step metrics about its "point" per run (the consensus point, or
the iterate): f at the point, distance to the minimizer, the fraction of runs within
`problem.success_radius`, the particle spread and the cumulative number of f evaluations; every
`snapshot_every` steps also the array metric `positions`, the first two coordinates of each run's
point, shape (runs, 2) (for the paper's scatter; `runner.arrays.run_array(metrics, "positions")`).
"""
from __future__ import annotations

import numpy as np
import torch

from runner import seeding
from runner.errors import OptrunError
from runner.trainers.solver import Algorithm


class RunsOfPoints(Algorithm):
    """Shared bookkeeping: initial points, per-step metrics, snapshots, state."""

    spread: float = float("nan")

    def __init__(self, name: str, runs: int, iters: int, init_std: float, snapshot_every: int):
        if runs < 1 or iters < 1:
            raise OptrunError(f"algorithm: expected runs >= 1 and iters >= 1, got {runs}, {iters}")
        self.name, self.runs, self.iters, self.init_std = name, int(runs), int(iters), float(init_std)
        self.snapshot_every = int(snapshot_every)
        self.k = 0

    def initial_points(self, problem, state, n_particles: int | None = None) -> np.ndarray:
        """start + init_std * N(0, I), drawn from the run's init stream; shape (runs, [N,] d)."""
        shape = (self.runs, n_particles, problem.d) if n_particles else (self.runs, problem.d)
        z = torch.randn(*shape, generator=state.generators["init"], dtype=torch.float64,
                        device=state.generators["init"].device).cpu().numpy()
        return problem.start + self.init_std * z

    @staticmethod
    def noise_rng(state) -> np.random.Generator:
        return np.random.default_rng(seeding.stream_seed(state.seed, "solver"))

    def report(self, problem, points: np.ndarray, f_evals: float) -> dict:
        fx = problem.f(points)
        dist = np.linalg.norm(points - problem.x_star, axis=-1)
        out = {"loss": float(fx.mean()), "f_point_median": float(np.median(fx)),
               "dist_mean": float(dist.mean()), "dist_median": float(np.median(dist)),
               "success_rate": float((dist < problem.success_radius).mean() * 100.0),
               "spread": self.spread, "f_evals": float(f_evals)}
        if self.snapshot_every and (self.k % self.snapshot_every == 0 or self.k == self.iters):
            second = min(1, problem.d - 1)
            out["positions"] = points[:, [0, second]]  # a copy: the array store keeps it until its flush
        return out


class CBO(RunsOfPoints):
    """Consensus-based optimization through cbx (isotropic noise by default, as in the paper)."""

    def __init__(self, name: str = "cbo", runs: int = 50, iters: int = 250, particles: int = 200,
                 alpha: float = 100.0, lamda: float = 1.0, sigma: float = 1.6, dt: float = 0.01,
                 noise: str = "isotropic", init_std: float = 0.5, snapshot_every: int = 10):
        super().__init__(name, runs, iters, init_std, snapshot_every)
        self.particles, self.alpha, self.lamda, self.sigma, self.dt, self.noise = \
            int(particles), float(alpha), float(lamda), float(sigma), float(dt), noise
        self.dyn = None

    def setup(self, problem, state) -> None:
        from cbx.dynamics import CBO as CbxCBO

        x0 = self.initial_points(problem, state, self.particles)
        self.dyn = CbxCBO(problem.f, f_dim="3D", x=x0, dt=self.dt, alpha=self.alpha, lamda=self.lamda,
                          sigma=self.sigma, noise=self.noise, check_f_dims=False, verbosity=0,
                          seed=seeding.stream_seed(state.seed, "solver"))
        self.k = 0

    def step(self, problem, state) -> dict:
        self.dyn.step()  # consensus of the current particles, then the particle update
        self.k += 1
        x = self.dyn.x
        self.spread = float(np.sqrt(((x - x.mean(1, keepdims=True)) ** 2).sum(-1).mean(1)).mean())
        return self.report(problem, self.dyn.consensus[:, 0, :], self.dyn.num_f_eval.mean())

    def state_dict(self) -> dict:
        return {"k": self.k, "x": self.dyn.x.copy(), "f_evals": self.dyn.num_f_eval.copy(),
                "rng": self.dyn.sampler.__self__.bit_generator.state}

    def load_state_dict(self, sd: dict) -> None:
        self.k, self.dyn.x, self.dyn.num_f_eval = sd["k"], sd["x"].copy(), sd["f_evals"].copy()
        self.dyn.sampler.__self__.bit_generator.state = sd["rng"]


class ConsensusHopping(CBO):
    """x_i <- v_alpha + sigma xi_i: cbx's CBO step with lambda = dt = 1 and additive noise."""

    def __init__(self, name: str = "consensus_hopping", runs: int = 50, iters: int = 250, particles: int = 200,
                 alpha: float = 100.0, sigma: float = 0.7, init_std: float | None = None, snapshot_every: int = 10):
        super().__init__(name, runs, iters, particles, alpha, lamda=1.0, sigma=sigma, dt=1.0, noise="constant",
                         init_std=sigma if init_std is None else init_std, snapshot_every=snapshot_every)


def central_gradient(f, x: np.ndarray, h: float) -> np.ndarray:
    """Central differences in every coordinate, all in one batched call of f (2 d evaluations)."""
    d = x.shape[-1]
    e = h * np.eye(d)
    probes = np.concatenate([x[None] + e[:, None, :], x[None] - e[:, None, :]])  # (2d, runs, d)
    fx = f(probes)
    return ((fx[:d] - fx[d:]) / (2 * h)).T


class Langevin(RunsOfPoints):
    """Annealed Langevin dynamics, sigma_k = sigma / log(k + 1); sigma = 0 is gradient descent."""

    def __init__(self, name: str = "langevin", runs: int = 50, iters: int = 10000, lr: float = 1.0,
                 dt: float = 1e-3, sigma: float = 10.0, fd_step: float = 1e-5, init_std: float = 0.0,
                 snapshot_every: int = 400):
        super().__init__(name, runs, iters, init_std, snapshot_every)
        self.lr, self.dt, self.sigma, self.fd_step = float(lr), float(dt), float(sigma), float(fd_step)
        self.x = self.rng = None

    def setup(self, problem, state) -> None:
        self.x = self.initial_points(problem, state)
        self.rng = self.noise_rng(state)
        self.k = 0

    def step(self, problem, state) -> dict:
        self.k += 1
        grad = central_gradient(problem.f, self.x, self.fd_step)
        self.x = self.x - self.lr * self.dt * grad
        if self.sigma:
            scale = self.sigma / np.log(self.k + 1) * np.sqrt(self.dt)
            self.x = self.x + scale * self.rng.standard_normal(self.x.shape)
        return self.report(problem, self.x, 2 * problem.d * self.k)

    def state_dict(self) -> dict:
        return {"k": self.k, "x": self.x.copy(), "rng": self.rng.bit_generator.state}

    def load_state_dict(self, sd: dict) -> None:
        self.k, self.x = sd["k"], sd["x"].copy()
        self.rng.bit_generator.state = sd["rng"]
