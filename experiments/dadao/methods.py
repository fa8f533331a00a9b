"""DADAO and the baselines it is compared with (MSDA, ADOM+ with and without multi-consensus, Continuized).

Equations and constants follow the authors' code (`AdelNabli/DADAO`, optimizers.py / run_optimizers.py),
re-derived here in numpy; see this folder's README.md for what was read where.

Asynchronous methods (DADAO, Continuized) are event-driven simulations: Poisson clocks fire gradient
events (rate 1 per node) and gossip events (total rate lambda_mix, a uniform random edge of the graph in
force at that time). Between its events a node follows a linear ODE, integrated exactly: node i's state
is only brought forward when it takes part in an event (or when we log), by exp(M (t - t_i)), the matrix
exponential of the ODE's constant matrix computed from one eigendecomposition (`Flow`). One optrun step is
a window of `dt` units of continuous time (all events in it, then a log row). Synchronous methods (MSDA,
ADOM+) do one round per step (n gradients, and their gossip matrix's edges), one unit of time.

Every step logs: continuous time `t`, cumulative gradients `grads` and activated edges `edges`, the
paper's metric `dist` = (1/n) sum ||x_i - x*||^2 (with all nodes brought to time t), `dist_rel` = dist /
||x*||^2 (the zero start's distance; also `loss`) and the consensus error `consensus_rel`.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from scipy.linalg import expm

from runner import seeding
from runner.errors import OptrunError
from runner.trainers.solver import Algorithm


class Flow:
    """exp(M dt) for a constant matrix M, batched over dt (scipy's expm, Pade with scaling and squaring).
    An eigendecomposition would be faster but DADAO's matrix is near-defective for some mu/L (two zero
    eigenvalues coupled through y~), so we keep the robust one; tests compare it with a fine ODE solve."""

    def __init__(self, M: np.ndarray):
        self.M = np.asarray(M, dtype=float)

    def __call__(self, dt) -> np.ndarray:
        dt = np.asarray(dt, dtype=float)
        return expm(self.M * dt[..., None, None])


class Base(Algorithm):
    """Counters, the log row and state (de)serialization shared by all methods."""

    keys: tuple = ()

    def __init__(self, name: str, iters: int):
        if iters < 1:
            raise OptrunError(f"algorithm: expected a positive step budget, got {iters}")
        self.name, self.iters = name, int(iters)
        self.t, self.grads, self.edges = 0.0, 0, 0

    def rng(self, state) -> np.random.Generator:
        return np.random.default_rng(seeding.stream_seed(state.seed, "solver"))

    def row(self, problem, X: np.ndarray) -> dict:
        m = problem.distance(X)
        return {"loss": m["dist_rel"], **m, "t": self.t, "grads": float(self.grads), "edges": float(self.edges)}

    def state_dict(self) -> dict:
        out = {k: getattr(self, k) for k in ("t", "grads", "edges", *self.keys)}
        out["rng"] = self.gen.bit_generator.state if hasattr(self, "gen") else None
        return out

    def load_state_dict(self, sd: dict) -> None:
        for k, v in sd.items():
            if k != "rng":
                setattr(self, k, v.copy() if isinstance(v, np.ndarray) else v)
        if sd.get("rng") is not None:
            self.gen.bit_generator.state = sd["rng"]


class EventDriven(Base):
    """Poisson event windows: `t_max` units of time in steps of `dt`."""

    def __init__(self, name: str, t_max: float, dt: float):
        if not (t_max > 0 and dt > 0):
            raise OptrunError(f"algorithm: expected t_max > 0 and dt > 0, got {t_max}, {dt}")
        super().__init__(name, math.ceil(t_max / dt))
        self.t_max, self.dt = float(t_max), float(dt)

    def window(self, rate_grad: float, rate_mix: float) -> tuple[np.ndarray, np.ndarray]:
        """Event times in (t, t + dt] of two independent Poisson processes, merged: (times, is_gradient)."""
        k = self.gen.poisson((rate_grad + rate_mix) * self.dt)
        times = np.sort(self.t + self.dt * self.gen.random(k))
        return times, self.gen.random(k) < rate_grad / (rate_grad + rate_mix)


class DADAO(EventDriven):
    """Node state (x, x~, y, y~, z, z~) in R^{6 x d}; the authors' constants with nu = mu / 2."""

    keys = ("S", "t_last")

    def __init__(self, name: str = "dadao", t_max: float = 300.0, dt: float = 1.0, lambda_grad: float = 1.0,
                 lambda_mix: float | None = None):
        super().__init__(name, t_max, dt)
        self.lambda_grad, self.lambda_mix_cfg = float(lambda_grad), lambda_mix

    def setup(self, problem, state) -> None:
        n, d, mu, L = problem.n, problem.d, problem.mu, problem.L
        self.gen = self.rng(state)
        self.lambda_mix = float(self.lambda_mix_cfg or math.sqrt(2 * problem.chi1 * problem.chi2))
        nu = self.nu = mu / 2
        eta = eta_t = alpha_t = math.sqrt(nu / L) / 8
        alpha, theta = math.sqrt(nu / L) / 4, math.sqrt(L / nu) / 2
        M = np.zeros((6, 6))
        M[0, 0], M[0, 1], M[1, 0], M[1, 1] = -eta, eta, eta_t, -eta_t        # x, x~ mix
        M[2, 2], M[2, 3] = -alpha, alpha                                     # y -> y~
        M[3, 1], M[3, 2], M[3, 4] = -theta * nu, -theta, -theta              # y~ driven by nu x~ + y + z
        M[4, 4], M[4, 5], M[5, 4], M[5, 5] = -alpha, alpha, alpha_t, -alpha_t  # z, z~ mix
        self.flow = Flow(M)
        chi1_star = problem.chi1 / self.lambda_mix  # chi1 of the rate-weighted Laplacian
        self.beta, self.beta_t = 0.5, 2 * chi1_star * math.sqrt(L / nu)
        self.gamma, self.gamma_t = 1 / (4 * L), 1 / (4 * math.sqrt(L * nu))
        self.delta = math.sqrt(nu / L) / 4 + 1.0  # delta + delta~ (delta~ = 1)
        self.S = np.zeros((n, 6, d))  # start at x = 0 (the authors draw x ~ N(0, I); see README)
        self.t_last = np.zeros(n)

    def _graph(self, problem, t: float) -> dict:
        return problem.spec[int(t * problem.chi1) % len(problem.spec)]  # time-varying: switch every 1/chi1

    def step(self, problem, state) -> dict:
        times, is_grad = self.window(problem.n * self.lambda_grad, self.lambda_mix)
        S, t_last, flow = self.S, self.t_last, self.flow
        for t, g in zip(times, is_grad):
            if g:
                i = int(self.gen.integers(problem.n))
                s = flow(t - t_last[i]) @ S[i]
                G = problem.H[i] @ s[0] - problem.b[i] - self.nu * s[0] - s[3]
                s[0] -= self.gamma * G
                s[1] -= self.gamma_t * G
                s[3] += self.delta * G
                S[i], t_last[i] = s, t
                self.grads += 1
            else:
                edges = self._graph(problem, t)["edges"]
                i, j = edges[self.gen.integers(len(edges))]
                si, sj = flow(t - t_last[i]) @ S[i], flow(t - t_last[j]) @ S[j]
                delta = si[2] + si[4] - sj[2] - sj[4]
                si[4] -= self.beta * delta
                sj[4] += self.beta * delta
                si[5] -= self.beta_t * delta
                sj[5] += self.beta_t * delta
                S[i], S[j], t_last[i], t_last[j] = si, sj, t, t
                self.edges += 1
        self.t += self.dt
        X = (flow(self.t - t_last) @ S)[:, 0]  # every node brought to time t (the state is not changed)
        return self.row(problem, X)


class Continuized(EventDriven):
    """Even et al.'s continuized accelerated gossip on the dual (the authors' transcription, linear
    regression only): one edge event at total rate 1 costs two dual gradients; dual variables (y, z) mix
    by a 2 x 2 linear ODE between events. The primal read-out is grad f_i*(z_i)."""

    keys = ("Y", "Z", "t_last")

    def __init__(self, name: str = "continuized", t_max: float = 20000.0, dt: float = 20.0):
        super().__init__(name, t_max, dt)

    def setup(self, problem, state) -> None:
        if len(problem.spec) > 1:
            raise OptrunError("continuized: fixed graphs only (as the authors' implementation)")
        self.gen = self.rng(state)
        spec, mu, L = problem.spec[0], problem.mu, problem.L
        mu_gossip, r_over_p = 1.0 / spec["chi1"], 2.0 * spec["chi2"]
        eta = math.sqrt(mu_gossip / r_over_p) * math.sqrt(mu / L)
        self.flow = Flow(np.array([[-eta, eta], [eta, -eta]]))
        self.gamma = mu / (2 * r_over_p)
        self.gamma_t = math.sqrt(L * mu / (2 * mu_gossip * r_over_p))
        self.Y, self.Z = np.zeros((problem.n, problem.d)), np.zeros((problem.n, problem.d))
        self.t_last = np.zeros(problem.n)

    def step(self, problem, state) -> dict:
        times, _ = self.window(0.0, 1.0)
        edges, res = problem.spec[0]["edges"], problem.spec[0]["resistance"]
        for t in times:
            e = int(self.gen.integers(len(edges)))
            ij = edges[e]
            yz = self.flow(t - self.t_last[ij]) @ np.stack([self.Y[ij], self.Z[ij]], 1)  # (2 nodes, 2, d)
            g = problem.dual_grad(yz[:, 0], ij)
            G = g[0] - g[1]
            yz[0, 0] -= self.gamma * res[e] * G
            yz[1, 0] += self.gamma * res[e] * G
            yz[0, 1] -= self.gamma_t * G
            yz[1, 1] += self.gamma_t * G
            self.Y[ij], self.Z[ij], self.t_last[ij] = yz[:, 0], yz[:, 1], t
            self.grads += 2
            self.edges += 1
        self.t += self.dt
        Z = (self.flow(self.t - self.t_last) @ np.stack([self.Y, self.Z], 1))[:, 1]
        return self.row(problem, problem.dual_grad(Z))


class MSDA(Base):
    """Scaman et al.'s multi-step dual accelerated method (their Algorithm 2): Nesterov steps on the dual
    with K = floor(1 / sqrt(gamma)) rounds of Chebyshev-accelerated gossip per gradient round, on
    W = Lap / |E| (gamma its eigengap). Fixed graphs only."""

    keys = ("X", "Yd")

    def __init__(self, name: str = "msda", rounds: int = 300):
        super().__init__(name, rounds)

    def setup(self, problem, state) -> None:
        if len(problem.spec) > 1:
            raise OptrunError("msda: fixed graphs only (as the authors' implementation)")
        W = problem.spec[0]["l_norm"]
        ev = np.linalg.eigvalsh(W)
        gap = ev[1] / ev[-1]
        c1 = (1 - math.sqrt(gap)) / (1 + math.sqrt(gap))
        self.c2, self.c3 = (1 + gap) / (1 - gap), 2 / ((1 + gap) * ev[-1])
        self.K = int(1 / math.sqrt(gap))
        ck = c1 ** self.K
        kappa = problem.L / problem.mu
        self.eta = problem.mu * (1 + c1 ** (2 * self.K)) / (1 + ck) ** 2
        self.momentum = ((1 + ck) * math.sqrt(kappa) - 1 + ck) / ((1 + ck) * math.sqrt(kappa) + 1 - ck)
        self.P = np.eye(problem.n) - self.c3 * W
        self.per_round = len(problem.spec[0]["edges"]) * self.K
        self.X, self.Yd = np.zeros((problem.n, problem.d)), np.zeros((problem.n, problem.d))

    def gossip(self, x: np.ndarray) -> np.ndarray:
        """Chebyshev acceleration: x - P_K(W) x / P_K(1) after K multiplications by W."""
        a_prev, a = 1.0, self.c2
        x_prev, xk = x, self.c2 * (self.P @ x)
        for _ in range(1, self.K):
            a_prev, a = a, 2 * self.c2 * a - a_prev
            x_prev, xk = xk, 2 * self.c2 * (self.P @ xk) - x_prev
        return x - xk / a

    def step(self, problem, state) -> dict:
        theta = problem.dual_grad(self.X)
        y_new = self.X - self.eta * self.gossip(theta)
        self.X, self.Yd = (1 + self.momentum) * y_new - self.momentum * self.Yd, y_new
        self.grads += problem.n
        self.edges += self.per_round
        self.t += 1.0
        return self.row(problem, problem.dual_grad(self.X))


class ADOMPlus(Base):
    """Kovalev et al.'s ADOM+ (the authors' transcription): one synchronous round per step on the gossip
    matrix W = Lap / lambda_max; with `multi_consensus` each round multiplies ceil(chi ln 2) matrices
    (I - W_k) (their eq. 18) and the method's chi becomes 2."""

    keys = ("X", "Y", "Z", "Mm", "Xf", "Yf", "Zf", "k_mix")

    def __init__(self, name: str = "adom", rounds: int = 300, multi_consensus: bool = False):
        super().__init__(name, rounds)
        self.multi_consensus = bool(multi_consensus)

    def setup(self, problem, state) -> None:
        n, d, mu, L = problem.n, problem.d, problem.mu, problem.L
        self.n_matrix = int(math.ceil(problem.chi_adom * math.log(2))) if self.multi_consensus else 1
        chi = 2.0 if self.n_matrix > 1 else problem.chi_adom
        self.tau1, self.tau2 = 1 / (math.sqrt(L / mu) + 0.5), math.sqrt(mu / L)
        self.sigma2 = self.tau2 / (16 * chi)
        self.sigma1 = 1 / (1 / self.sigma2 + 0.5)
        self.eta, self.alpha, self.beta, self.nu = 1 / (L * self.tau2), mu / 2, 1 / (2 * L), mu / 2
        self.gamma = self.nu / (14 * self.sigma2 * chi**2)
        self.theta, self.zeta = self.nu / (4 * self.sigma2), 0.5
        gen = state.generators["init"]
        self.X = np.zeros((n, d))
        self.Mm = torch.randn(n, d, generator=gen, dtype=torch.float64, device=gen.device).cpu().numpy()
        self.Y = torch.randn(n, d, generator=gen, dtype=torch.float64, device=gen.device).cpu().numpy()
        self.Z = np.zeros((n, d))
        self.Xf, self.Yf, self.Zf = self.X.copy(), self.Y.copy(), self.Z.copy()
        self.k_mix = 0

    def mixing(self, problem) -> tuple[np.ndarray, int]:
        """The round's mixing matrix prod_k (I - W_k) and its activated edges (on a fixed graph the same
        power every round, computed once: the barbell's chi makes it thousands of factors)."""
        if len(problem.spec) == 1:
            if getattr(self, "_fixed", None) is None:
                spec = problem.spec[0]
                self._fixed = (np.linalg.matrix_power(np.eye(problem.n) - spec["w_adom"], self.n_matrix),
                               self.n_matrix * len(spec["edges"]))
            self.k_mix += self.n_matrix
            return self._fixed
        W, edges = np.eye(problem.n), 0
        for _ in range(self.n_matrix):
            spec = problem.spec[self.k_mix % len(problem.spec)]
            W = W @ (np.eye(problem.n) - spec["w_adom"])
            edges += len(spec["edges"])
            self.k_mix += 1
        return W, edges

    def step(self, problem, state) -> dict:
        Wm, e = self.mixing(problem)
        lap = np.eye(problem.n) - Wm
        Xg = self.tau1 * self.X + (1 - self.tau1) * self.Xf
        g = problem.grad(Xg)
        Yg = self.sigma1 * self.Y + (1 - self.sigma1) * self.Yf
        Zg = self.sigma1 * self.Z + (1 - self.sigma1) * self.Zf
        ea = 1 + self.eta * self.alpha
        c1 = ea / ((1 + self.theta * self.beta) * ea + self.theta * self.eta)
        c2 = self.theta * self.beta + self.eta * self.theta / ea
        c3 = self.theta * (self.beta * self.nu + self.eta * (self.nu + self.alpha) / ea)
        Y = c1 * (self.Y + c2 * g - c3 * Xg - (self.theta / ea) * self.X - (self.theta / self.nu) * (Yg + Zg))
        X = (self.X + self.eta * self.alpha * Xg - self.eta * (g - self.nu * Xg - Y)) / ea
        msg = (self.gamma / self.nu) * (Yg + Zg) + self.Mm
        Z = self.Z + self.gamma * (1 / (17 * problem.L)) * (Zg - self.Z) - lap @ msg
        self.Mm = Wm @ msg
        self.Xf = Xg + self.tau2 * (X - self.X)
        self.Yf = Yg + self.sigma2 * (Y - self.Y)
        self.Zf = Zg - self.zeta * lap @ (Yg + Zg)
        self.X, self.Y, self.Z = X, Y, Z
        self.grads += problem.n
        self.edges += e
        self.t += 1.0
        return self.row(problem, self.X)
