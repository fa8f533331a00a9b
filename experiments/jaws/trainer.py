"""One-step neural operators for Burgers trained with MSE, a uniform Jacobian penalty, JAWS, or unrolled.

The model (an FNO with two output channels) maps u_t to a mean u_hat = u_t + out_0 (residual form) and a
log-variance s = log sigma^2 = clamp(out_1, logvar_min, logvar_max). Per batch of windows (u_t, u_{t+1..t+H}):

- data term, summed over the H unrolled steps u^(k) = u_hat(u^(k-1)), u^(0) = u_t (gradients through the
  whole unroll: trajectory optimisation, whose activation memory grows with H):
  `loss=mse`: mean (u^(k) - u_{t+k})^2; `loss=nll` (heteroscedastic Gaussian):
  mean [ (u^(k) - u_{t+k})^2 / (2 sigma^2) + s / 2 ];
- Jacobian penalty on the first step (the one-step map at data states), v ~ N(0, I) drawn from the stream
  `trainer.jacobian`, r_i = (J v)_i^2 by one forward-mode JVP (torch.func.jvp), J = d u_hat / d u_t:
  `jacobian=uniform`: lam * mean_i r_i (global contraction prior, Hoffman-style);
  `jacobian=adaptive` (JAWS): lam * mean_i w_i r_i with w_i = sg(1 / (2 sigma_i^2)) (`weights=precision`: the
  MAP prior (J v)_i ~ N(0, sigma_i^2 / lam), the likelihood's own precision) or sg(mean_x sigma^2 / sigma_i^2)
  (`weights=normalized`, the task note's reading), so the contraction prior is relaxed where the predicted
  uncertainty is high (fronts) and strong where it is low.

JAWS is `loss=nll jacobian=adaptive` (the paper frames it as MAP: the heteroscedastic likelihood plus a
Jacobian prior whose precision follows the local uncertainty). The weight formula is our reconstruction from
the abstract (the method section and the official code could not be read, see the card).

Each step logs `loss`, `data_loss`, `mse` (one-step, first step), `jac_penalty`, `jac_gain` (||J v|| / ||v||),
`sigma_mean`, `sigma_grad_corr` (Pearson correlation of sigma with |D u_{t+1}| over the batch) for nll arms,
`step_ms` (wall time of the step) and `activation_mb` (bytes saved for backward in one step, by
saved_tensors_hooks: a device-independent measure of the memory unrolling costs; on CUDA `peak_mb` too).
At the end it logs the array `sigma_map`: sigma(x) and |D u| along the first test trajectory at `sigma_at`.
"""
from __future__ import annotations

import time

import torch
from torch.func import jvp

from runner.data.sources import TensorSource
from runner.errors import OptrunError
from runner.trainers.base import ModelObjective, Phase, TrainState, ensure_train_mode

LOSSES, JACOBIANS, WEIGHTS = ("mse", "nll"), ("none", "uniform", "adaptive"), ("precision", "normalized")


class SavedBytes:
    """Counts the bytes autograd saves for backward inside the `with` block (activation memory)."""

    def __enter__(self):
        self.bytes = 0

        def pack(t):
            self.bytes += t.numel() * t.element_size()
            return t
        self.ctx = torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t)
        self.ctx.__enter__()
        return self

    def __exit__(self, *exc):
        self.ctx.__exit__(*exc)


class JawsTrainer(ModelObjective):
    def __init__(self, steps: int = 600, batch_size: int = 32, loss: str = "mse", jacobian: str = "none",
                 lam: float = 1e-3, horizon: int = 1, logvar_min: float = -16.0, logvar_max: float = 4.0,
                 clip_grad_norm: float | None = 1.0, sigma_at: int = 100, measure_every: int = 50,
                 weights: str = "precision"):
        if loss not in LOSSES or jacobian not in JACOBIANS:
            raise OptrunError(f"trainer: loss in {LOSSES}, jacobian in {JACOBIANS}; got {loss}, {jacobian}")
        if jacobian == "adaptive" and loss != "nll":
            raise OptrunError("trainer.jacobian=adaptive weights by the predicted sigma: it needs trainer.loss=nll")
        if weights not in WEIGHTS:
            raise OptrunError(f"trainer.weights: expected one of {WEIGHTS}, got {weights}")
        if steps <= 0 or batch_size <= 0 or horizon < 1 or lam < 0:
            raise OptrunError("trainer: expected steps > 0, batch_size > 0, horizon >= 1, lam >= 0")
        self.steps, self.batch_size, self.loss, self.jacobian = steps, batch_size, loss, jacobian
        self.lam, self.horizon, self.clip, self.weights = lam, horizon, clip_grad_norm, weights
        self.logvar_range, self.sigma_at, self.measure_every = (logvar_min, logvar_max), sigma_at, measure_every
        self.activation_mb = float("nan")

    # -- the model as a stepper
    def predict(self, u: torch.Tensor, model=None) -> tuple[torch.Tensor, torch.Tensor]:
        out = (model or self._module)(u)
        return u + out[:, :1], out[:, 1:2].clamp(*self.logvar_range)

    def advance(self, state: TrainState, u: torch.Tensor) -> torch.Tensor:
        """The rollout protocol (runner.hooks.rollout_eval): the mean prediction, no graph."""
        with torch.no_grad():
            return self.predict(u, state.model)[0]

    def rollout_data(self, state: TrainState) -> dict[str, torch.Tensor]:
        return state.data.sets()

    def criterion(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """One-step MSE of the mean channel (out: the model's raw output on inputs whose targets are y)."""
        return (out[:, :1] - y).pow(2).mean()

    # -- the engine protocol
    def phases(self, state: TrainState) -> list[Phase]:
        if state.model is None or getattr(state.data, "windows", None) is None:
            raise OptrunError("trainer=jaws: needs a model and a trajectory data set (dataset=burgers)")
        x, y = state.data.windows(self.horizon)
        self.src = TensorSource((x, y), self.batch_size)
        self.src.setup(state.generators["batch"], x.device)
        self.gen = state.stream("trainer.jacobian")
        return [Phase(steps=self.steps)]

    def begin_phase(self, state: TrainState, phase: Phase) -> None:
        pass

    def columns(self, state: TrainState) -> list[str]:
        cols = ["loss", "data_loss", "mse", "step_ms", "activation_mb", "data_seconds"]
        if torch.device(state.device).type == "cuda":
            cols.append("peak_mb")
        if self.jacobian != "none":
            cols += ["jac_penalty", "jac_gain"]
        if self.loss == "nll":
            cols += ["sigma_mean", "sigma_grad_corr"]
        return cols

    def _data_term(self, mean, logvar, y):
        if self.loss == "mse":
            return (mean - y).pow(2).mean()
        return 0.5 * ((mean - y).pow(2) * torch.exp(-logvar) + logvar).mean()

    def _loss(self, state: TrainState, x, y):
        if self.jacobian != "none":
            v = torch.randn(x.shape, generator=self.gen, device=self.gen.device).to(x.device, x.dtype)

            mean, jv, logvar = jvp(self.predict, (x,), (v,), has_aux=True)
        else:
            (mean, logvar), jv, v = self.predict(x), None, None
        first_mean, first_logvar = mean, logvar
        data = self._data_term(mean, logvar, y[:, 0])
        u = mean
        for k in range(1, self.horizon):
            u, s = self.predict(u)
            data = data + self._data_term(u, s, y[:, k])
        data = data / self.horizon
        out = {"data_loss": data.detach(), "mse": (first_mean - y[:, 0]).pow(2).mean().detach()}
        loss = data
        if jv is not None:
            adaptive = self.jacobian == "adaptive"
            pen = self.lam * jacobian_penalty(jv, first_logvar if adaptive else None, self.weights)
            loss = loss + pen
            out["jac_penalty"] = pen.detach()
            out["jac_gain"] = (jv.flatten(1).norm(dim=1) / v.flatten(1).norm(dim=1)).mean().detach()
        if self.loss == "nll":
            sigma = torch.exp(0.5 * first_logvar.detach())
            steep = (y[:, 0].roll(-1, dims=-1) - y[:, 0]).abs()
            out["sigma_mean"] = sigma.mean()
            out["sigma_grad_corr"] = _corr(sigma.flatten(), steep.flatten())
        return loss, out

    def step(self, state: TrainState) -> dict:
        x, y = self.src.next()
        ensure_train_mode(state.model)
        t0 = time.perf_counter()
        measure = state.step % self.measure_every == 0
        if measure:
            with SavedBytes() as saved:
                loss, out = self._loss(state, x, y)
            self.activation_mb = saved.bytes / 2**20
        else:
            loss, out = self._loss(state, x, y)
        state.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.clip is not None:
            torch.nn.utils.clip_grad_norm_(state.model.parameters(), self.clip)
        state.optimizer.step()
        if state.scheduler is not None:
            state.scheduler.step()
        if state.device.type == "cuda":
            torch.cuda.synchronize()
            out["peak_mb"] = torch.cuda.max_memory_allocated() / 2**20
        out.update(loss=loss.detach(), step_ms=1e3 * (time.perf_counter() - t0), activation_mb=self.activation_mb,
                   data_seconds=float(getattr(state.data, "seconds", 0.0)))
        if state.step + 1 == state.total_steps and self.loss == "nll":
            out["sigma_map"] = self._sigma_map(state)
        return out

    def _sigma_map(self, state: TrainState) -> torch.Tensor:
        """(3, n): the true u, sigma(x) predicted from it, and |D u_next| on the first test trajectory."""
        traj = state.data.test[0]
        t = min(self.sigma_at, traj.shape[0] - 2)
        with torch.no_grad():
            _, logvar = self.predict(traj[t:t + 1], state.model)
        nxt = traj[t + 1, 0]
        return torch.stack([traj[t, 0], torch.exp(0.5 * logvar[0, 0]), (nxt.roll(-1) - nxt).abs()])

    def state_dict(self) -> dict:
        return {"src": self.src.state_dict(), "gen": self.gen.get_state(), "activation_mb": self.activation_mb}

    def load_state_dict(self, sd: dict) -> None:
        self.src.load_state_dict(sd["src"])
        self.gen.set_state(sd["gen"].cpu())
        self.activation_mb = sd["activation_mb"]


def jacobian_penalty(jv: torch.Tensor, logvar: torch.Tensor | None = None, weights: str = "precision") -> torch.Tensor:
    """mean_i w_i (J v)_i^2 over (B, C, n). w = 1 (uniform) or, given the log-variance, the JAWS weights:
    `precision`: w_i = sg(1 / (2 sigma_i^2)), the MAP prior on (J v)_i with variance sigma_i^2 / lam, on the same
    scale as the heteroscedastic likelihood (with sigma constant it is the uniform penalty of the MSE objective
    up to the likelihood's own 1/(2 sigma^2)); `normalized`: w_i = sg(mean_x sigma^2 / sigma_i^2) per sample and
    channel (harmonic mean 1: the task note's reading, on the MSE's scale)."""
    r = jv.pow(2)
    if logvar is not None:
        var = torch.exp(logvar).detach()
        r = r * (var.mean(dim=-1, keepdim=True) / var if weights == "normalized" else 0.5 / var)
    return r.mean()


def _corr(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    a, b = a - a.mean(), b - b.mean()
    return (a * b).sum() / (a.norm() * b.norm()).clamp_min(1e-30)
