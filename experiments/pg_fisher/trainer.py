"""Stochastic policy gradients for Fisher-non-degenerate policies (Fatkhullin, Barakat, Kireeva, He,
ICML 2023): vanilla PG, N-PG-IGT, HARPG and N-HARPG on one rollout trainer (`method`).

Notation: theta_t the policy's parameters at iteration t = 0, 1, ..., g(tau, theta) the GPOMDP
estimate of grad J from trajectories tau ~ pi_theta (`gpomdp_surrogate`), gamma_t the step size and
eta_t the momentum weight. Per iteration:

- `pg` (vanilla):  theta_{t+1} = theta_t + gamma_t g(tau_t, theta_t).
- `n_pg_igt` (Alg. 1, N-PG-IGT): the look-ahead point
      theta~_t = theta_t + ((1 - eta_t) / eta_t) (theta_t - theta_{t-1}),
  tau_t ~ pi_{theta~_t},  d_t = (1 - eta_t) d_{t-1} + eta_t g(tau_t, theta~_t),
  theta_{t+1} = theta_t + gamma_t d_t / |d_t|.  (Implicit gradient transport: the gradient at the
  extrapolated point corrects the momentum's staleness without second-order information.)
- `harpg` / `n_harpg` (Alg. 2, (N)-HARPG): q ~ U[0, 1] from the trainer's stream,
      theta^_t = q theta_t + (1 - q) theta_{t-1},  tau^_t ~ pi_{theta^_t},  v_t = B(tau^_t, theta^_t)(theta_t - theta_{t-1}),
  with B the policy-Hessian estimator of Shen et al. (2019), B(tau, theta) = grad Phi grad log p(tau)^T + hess Phi,
  d_t = (1 - eta_t)(d_{t-1} + v_t) + eta_t g(tau_t, theta_t),  tau_t ~ pi_{theta_t};
  theta_{t+1} = theta_t + gamma_t d_t / |d_t| (N-HARPG) or theta_t + gamma_t d_t (HARPG).
  E_q[B(theta^)] (theta_t - theta_{t-1}) = grad J(theta_t) - grad J(theta_{t-1}), so v_t transports
  d_{t-1} to theta_t (a STORM-type recursion without importance sampling).

Here Phi(theta; tau) = sum_t log pi(a_t | s_t) sum_{t' >= t} gamma^{t'} r_{t'} is the GPOMDP surrogate of
one trajectory (grad Phi = its GPOMDP gradient, the weights do not depend on theta) and
log p(tau | theta) = sum_t log pi(a_t | s_t). `hessian_vector_estimate` forms B v averaged over the
trajectories with one Hessian-vector product: the scalar

    S(theta) = (1/E) sum_e [ grad Phi_e(theta) . v + Phi_e(theta) c_e ],   c_e = grad log p_e(theta) . v held fixed,

has grad S = (1/E) sum_e [ hess Phi_e v + grad Phi_e (grad log p_e . v) ] = mean_e B_e v. The c_e are
directional derivatives of the per-trajectory log-likelihoods, taken by the double-backward trick (no
second derivative of the objective). Each trajectory's Phi is paired with its own log p (the official
code multiplies batch means, which is the same only for one trajectory).

Step sizes (`schedule`): `decay` is the official code's, x_t = x_0 (2 / (t + 2))^power with the powers
of the paper's theorems as the code writes them (vanilla PG gamma 2/3; N-PG-IGT gamma 1, eta 4/5;
N-HARPG gamma 1, eta 1; HARPG gamma 1/2, eta 1); `constant` holds gamma_0, eta_0 (the issue's prototype).
Every momentum method starts from d_0 = g_0 (the official code's first buffer).

The policy is component `policy`; this trainer computes theta_{t+1} and lands on it with the
component's optimizer (SGD at lr 1), so theta_{t-1}, d_{t-1} and t are its own state (checkpointed).
"""
from __future__ import annotations

import math

import torch

from runner.errors import OptrunError
from runner.trainers.base import TrainState
from runner.trainers.rollout import RolloutTrainer, discounted_rewards_to_go, flat_grad, gpomdp_surrogate

METHODS = ("pg", "n_pg_igt", "harpg", "n_harpg")
# (gamma power, eta power) of the `decay` schedule, per method (official code's optimizers)
POWERS = {"pg": (2 / 3, 0.0), "n_pg_igt": (1.0, 0.8), "harpg": (0.5, 1.0), "n_harpg": (1.0, 1.0)}


def schedule(x0: float, t: int, power: float, kind: str) -> float:
    """x_t = x_0 (2 / (t + 2))^power (`decay`, t = 0, 1, ...) or x_0 (`constant`)."""
    return float(x0) if kind == "constant" else float(x0) * (2.0 / (t + 2)) ** power


def lookahead(theta: torch.Tensor, theta_prev: torch.Tensor, eta: float) -> torch.Tensor:
    """N-PG-IGT's extrapolated point theta_t + ((1 - eta) / eta)(theta_t - theta_{t-1})."""
    return theta + (1.0 - eta) / eta * (theta - theta_prev)


def per_trajectory(policy, batch: dict, gamma: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(Phi_e, log p_e), each (E,), with their graphs at the policy's current parameters."""
    mask = batch["mask"]
    logp = policy.log_prob(batch["observations"], batch["actions"]) * mask
    weights = discounted_rewards_to_go(batch["rewards"], mask, gamma).detach()
    return (logp * weights).sum(-1), logp.sum(-1)


def hessian_vector_estimate(policy, params: list[torch.Tensor], batch: dict, gamma: float,
                            v: torch.Tensor) -> torch.Tensor:
    """mean_e [grad Phi_e grad log p_e^T + hess Phi_e] v at the policy's current parameters (module
    docstring): one Hessian-vector product of the batch's GPOMDP surrogate plus the score term."""
    phi, logp = per_trajectory(policy, batch, gamma)
    u = torch.zeros_like(logp, requires_grad=True)  # c = J_logp v by double backward: d/du (J^T u) . v
    jt_u = flat_grad((logp * u).sum(), params, create_graph=True)
    (c,) = torch.autograd.grad(jt_u @ v, u)
    grad_phi = flat_grad(phi.mean(), params, create_graph=True)
    return flat_grad(grad_phi @ v + (phi * c.detach()).mean(), params)


def direction(method: str, d_prev: torch.Tensor | None, g: torch.Tensor, eta: float,
              hv: torch.Tensor | None = None) -> torch.Tensor:
    """The estimator d_t from d_{t-1}, the new gradient g and (HARPG) the Hessian correction hv."""
    if method == "pg":
        return g
    if d_prev is None:
        return g.clone()
    if method == "n_pg_igt":
        return (1 - eta) * d_prev + eta * g
    return (1 - eta) * (d_prev + hv) + eta * g


def update(method: str, theta: torch.Tensor, d: torch.Tensor, gamma: float) -> torch.Tensor:
    """theta_{t+1}: a normalized step for N-PG-IGT and N-HARPG, a plain one for PG and HARPG."""
    if method in ("n_pg_igt", "n_harpg"):
        return theta + gamma * d / d.norm().clamp_min(1e-12)
    return theta + gamma * d


class PGFisher(RolloutTrainer):
    """The four methods on an environment source (module docstring). `episodes` trajectories per gradient
    estimate (or, with `batch_steps`, whole episodes in chunks of `episodes` until that many environment
    steps: the paper's garage batch), `hessian_episodes` per Hessian estimate (HARPG), discount `gamma`,
    `horizon` the episode cap. Logged: `return` (mean undiscounted return of the gradient batch: for
    N-PG-IGT at the look-ahead point), `entropy`, `grad_norm` |g|, `d_norm` |d_t|, `step_gamma`,
    `step_eta`, the counts (`trajectories`, `env_steps`, `hvp_calls`)."""

    counted = ("trajectories", "env_steps", "hvp_calls")

    def __init__(self, steps: int = 150, source: dict | None = None, method: str = "n_pg_igt", episodes: int = 5,
                 batch_steps: int | None = None, hessian_episodes: int = 1, gamma: float = 0.99,
                 horizon: int | None = None, schedule: str = "constant", gamma0: float = 0.05, eta0: float = 0.2,
                 gamma_power: float | None = None, eta_power: float | None = None, diverge_above: float = 1e6):
        super().__init__(steps, source, diverge_above)
        if method not in METHODS:
            raise OptrunError(f"trainer.method: expected one of {', '.join(METHODS)}, got {method!r}")
        if schedule not in ("constant", "decay"):
            raise OptrunError(f"trainer.schedule: expected constant or decay, got {schedule!r}")
        for key, val in (("episodes", episodes), ("hessian_episodes", hessian_episodes)):
            if not isinstance(val, int) or val <= 0:
                raise OptrunError(f"trainer.{key}: expected a positive integer, got {val!r}")
        if batch_steps is not None and (not isinstance(batch_steps, int) or batch_steps <= 0):
            raise OptrunError(f"trainer.batch_steps: expected a positive integer or null, got {batch_steps!r}")
        if not 0 < gamma <= 1:
            raise OptrunError(f"trainer.gamma: expected 0 < gamma <= 1, got {gamma}")
        if not gamma0 > 0 or not 0 < eta0 <= 1:
            raise OptrunError(f"trainer.gamma0, trainer.eta0: expected gamma0 > 0 and 0 < eta0 <= 1, got {gamma0}, {eta0}")
        self.method, self.episodes, self.batch_steps, self.hessian_episodes = method, episodes, batch_steps, hessian_episodes
        self.gamma, self.horizon, self.schedule, self.gamma0, self.eta0 = gamma, horizon, schedule, gamma0, eta0
        gp, ep = POWERS[method]
        self.gamma_power = gp if gamma_power is None else gamma_power
        self.eta_power = ep if eta_power is None else eta_power
        self.t, self.theta_prev, self.d = 0, None, None

    def setup(self, state: TrainState) -> None:
        if self.source is None or not hasattr(self.source, "batch_rollouts"):
            raise OptrunError("trainer.source: PGFisher needs an environment source (runner.data.sources.EnvSource)")

    # -- rollouts at given parameters
    def _set(self, params: list[torch.Tensor], flat: torch.Tensor) -> None:
        """Copy `flat` into the parameters (in place: vector_to_parameters would make them views of
        `flat`, and the optimizer's step would then overwrite the trainer's theta_{t-1})."""
        with torch.no_grad():
            for p, chunk in zip(params, flat.split([p.numel() for p in params])):
                p.copy_(chunk.view_as(p))

    def collect(self, policy, n: int, batch_steps: int | None = None) -> dict:
        """`n` whole episodes (or chunks of `n` until `batch_steps` environment steps), counted."""
        chunks, steps = [], 0
        while not chunks or (batch_steps is not None and steps < batch_steps):
            b = self.source.batch_rollouts(policy.sample, n, self.horizon)
            chunks.append(b)
            steps += int(b["lengths"].sum())
            self.count("trajectories", n)
            self.count("env_steps", int(b["lengths"].sum()))
        return chunks[0] if len(chunks) == 1 else {k: torch.cat([c[k] for c in chunks]) for k in chunks[0]}

    def gradient(self, policy, params: list[torch.Tensor], batch: dict) -> torch.Tensor:
        logp = policy.log_prob(batch["observations"], batch["actions"])
        return flat_grad(gpomdp_surrogate(logp, batch["rewards"], batch["mask"], self.gamma), params)

    # -- one iteration
    def step(self, state: TrainState) -> dict:
        policy, opt = state.modules["policy"], state.optimizers["policy"]
        params = self.policy_params(state)
        theta = torch.nn.utils.parameters_to_vector(params).detach().clone()
        prev = theta if self.theta_prev is None else self.theta_prev
        gamma_t = schedule(self.gamma0, self.t, self.gamma_power, self.schedule)
        eta_t = min(1.0, schedule(self.eta0, self.t, self.eta_power, self.schedule))
        at = lookahead(theta, prev, eta_t) if self.method == "n_pg_igt" else theta
        self._set(params, at)
        batch = self.collect(policy, self.episodes, self.batch_steps)
        g = self.gradient(policy, params, batch)
        hv = None
        if self.method in ("harpg", "n_harpg") and self.d is not None:
            q = float(torch.rand((), generator=state.stream("trainer.hessian"), device="cpu"))
            self._set(params, q * theta + (1 - q) * prev)
            hbatch = self.collect(policy, self.hessian_episodes)
            hv = hessian_vector_estimate(policy, params, hbatch, self.gamma, theta - prev)
            self.count("hvp_calls")
        d = direction(self.method, self.d, g, eta_t, hv)
        new = update(self.method, theta, d, gamma_t)
        self._set(params, theta)
        opt.zero_grad(set_to_none=True)
        for p, delta in zip(params, (theta - new).split([p.numel() for p in params])):
            p.grad = delta.view_as(p).clone()  # SGD at lr 1 lands on theta_{t+1}
        opt.step()
        self.theta_prev, self.d, self.t = theta, d.detach(), self.t + 1
        with torch.no_grad():
            mask = batch["mask"]
            entropy = (policy.entropy(batch["observations"]) * mask).sum() / mask.sum()
        ret = batch["returns"].mean()
        return {"loss": self.guarded(-ret, new, d), "return": ret, "episode_length": batch["lengths"].float().mean(),
                "entropy": entropy, "grad_norm": g.norm(), "d_norm": d.norm(), "step_gamma": gamma_t,
                "step_eta": eta_t if self.method != "pg" else math.nan, **self.count_metrics()}

    def extra_state(self) -> dict:
        return {"t": self.t, "theta_prev": self.theta_prev, "d": self.d}

    def load_extra_state(self, sd: dict) -> None:
        self.t, self.theta_prev, self.d = sd.get("t", 0), sd.get("theta_prev"), sd.get("d")
