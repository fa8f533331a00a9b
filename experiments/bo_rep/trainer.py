"""BO-REP (Hao, Gong, Liu, ICLR 2024) and its baselines SOBA and MA-SOBA, as one bilevel trainer.

Every method keeps the lower-level variable y, a linear-system variable z (tracking the solution of
(d2g/dy2) z = grad_y f) and, for the momentum methods, a momentum m; one iteration t is

    lower level   BO-REP: at t = 0 the initialization refinement (Epoch-SGD, the paper's Alg. 3),
                          then only when t mod I == 0: N SGD steps on g (periodic updates);
                  SOBA, MA-SOBA: one SGD step on g every iteration (single loop)
    z             z <- z - nu ((d2g/dy2) z - grad_y f)          (one HVP)
    hypergradient h = grad_x f - (d2g/dx dy) z                  (one cross product)
    upper level   BO-REP:  m <- beta m + (1 - beta) h,  x <- x - eta_t m / ||m||   (normalized momentum)
                  MA-SOBA: m <- beta m + (1 - beta) h,  x <- x - eta_t m
                  SOBA:    x <- x - eta_t h

with every derivative a stochastic oracle of the problem (`problems.py`), counted in `self.oracles`
(grad_f, grad_g, hvp, jvp = cross products, samples = stochastic draws); their sum over grad_f, grad_g,
hvp and jvp is logged as `oracle_calls`, the x-axis of the figures (the paper counts "a stochastic
gradient or Hessian-vector product oracle" per call). eta_t = `lr` times `decay` per milestone passed (`decay_at`, fractions of the run); the
lower-level step `lower_lr` and nu stay fixed. The paper projects y and z onto balls in its analysis
(Alg. 1-3); like the official code we do not. Epoch-SGD: `refine_epochs` epochs, the k-th of
`refine_steps * 2^k` SGD steps with step `lower_lr / 2^k`, each starting from the previous epoch's
average iterate; the output is the last epoch's average.

The updates are applied by hand to the component tensors (`components.upper`, `components.lower`,
whose optimizers are plain SGD with lr 1 and unused), so the trainer's own state (z, m) and the
oracle counts resume through `extra_state`.
"""
from __future__ import annotations

import torch

from experiments.bo_rep.data import N_CLASSES, cleaning_split
from experiments.bo_rep.problems import HyperCleaning, QuarticToy
from runner.errors import OptrunError
from runner.seeding import generator
from runner.trainers.base import TrainState
from runner.trainers.bilevel import BilevelTrainer

METHODS = ("bo_rep", "soba", "ma_soba")


class BoRep(BilevelTrainer):
    """The three methods of the module docstring on the problem a subclass builds in `make_problem`."""

    def __init__(self, steps: int = 2000, method: str = "bo_rep", lr: float = 0.1, lower_lr: float = 0.1,
                 nu: float = 0.1, beta: float = 0.9, period: int = 2, lower_steps: int = 3,
                 refine_epochs: int = 4, refine_steps: int = 10, decay: float = 0.1,
                 decay_at: list | tuple = (0.5, 0.75), eval_every: int = 1, diverge_above: float = 1e6):
        super().__init__(steps, diverge_above)
        if method not in METHODS:
            raise OptrunError(f"trainer.method: unknown '{method}' (expected one of: {', '.join(METHODS)})")
        if min(lr, lower_lr, nu) <= 0 or not 0 <= beta < 1:
            raise OptrunError("trainer: expected lr, lower_lr, nu > 0 and 0 <= beta < 1")
        if min(period, lower_steps, refine_steps, eval_every) < 1 or refine_epochs < 0:
            raise OptrunError("trainer: period, lower_steps, refine_steps, eval_every must be >= 1, refine_epochs >= 0")
        self.method, self.lr, self.lower_lr, self.nu, self.beta = method, lr, lower_lr, nu, beta
        self.period, self.lower_steps = period, lower_steps
        self.refine_epochs, self.refine_steps = refine_epochs, refine_steps
        self.decay, self.decay_at, self.eval_every = decay, tuple(decay_at), eval_every
        self.z = self.m = None

    # -- set-up
    def make_problem(self, state: TrainState, x: torch.Tensor, y: torch.Tensor):
        raise NotImplementedError

    def setup(self, state: TrainState, x: torch.Tensor, y: torch.Tensor) -> None:
        self.problem = self.make_problem(state, x, y)
        self.stream = state.stream("trainer.noise")
        self.z, self.m = torch.zeros_like(y.detach()), torch.zeros_like(x.detach())

    # -- counted stochastic oracles
    def _noisy(self, *vs: torch.Tensor):
        if not self.problem.noise:
            return vs
        self.oracles.add("samples", len(vs))
        return tuple(v + self.problem.noise * torch.randn(v.shape, generator=self.stream, device=self.stream.device).to(v)
                     for v in vs)

    def _batch(self, lower: bool):
        b = self.problem.sample(self.stream, lower)
        if b is not None:
            self.oracles.add("samples")
        return b

    def grad_g(self, x, y):
        self.oracles.add("grad_g")
        return self._noisy(self.problem.grad_g(x, y, self._batch(lower=True)))[0]

    def lower_sgd(self, x, y, steps: int, lr: float) -> torch.Tensor:
        for _ in range(steps):
            y = y - lr * self.grad_g(x, y)
        return y

    def refine(self, x, y) -> torch.Tensor:
        """Epoch-SGD (the paper's Alg. 3): epochs of doubling length and halving step, restarted at the
        previous epoch's average iterate."""
        lr, n = self.lower_lr, self.refine_steps
        for _ in range(self.refine_epochs):
            total = torch.zeros_like(y)
            for _ in range(n):
                y = y - lr * self.grad_g(x, y)
                total = total + y
            y, lr, n = total / n, lr / 2, n * 2
        return y

    def eta(self, t: int) -> float:
        return self.lr * self.decay ** sum(t >= f * self.steps for f in self.decay_at)

    # -- one iteration
    def step(self, state: TrainState) -> dict:
        upper, lower = state.modules["upper"].value, state.modules["lower"].value
        t = state.step
        with torch.no_grad():
            x, y = upper.detach().clone(), lower.detach().clone()
            if self.method != "bo_rep":
                y = self.lower_sgd(x, y, 1, self.lower_lr)
            elif t == 0:
                y = self.refine(x, y)
            elif t % self.period == 0:
                y = self.lower_sgd(x, y, self.lower_steps, self.lower_lr)
            batch = self._batch(lower=False)
            self.oracles.add("grad_f")
            fx, fy = self._noisy(*self.problem.grad_f(x, y, batch))
            self.oracles.add("hvp")
            hz = self._noisy(self.problem.hvp(x, y, self.z, batch))[0]
            self.z = self.z - self.nu * (hz - fy)
            self.oracles.add("jvp")
            h = fx - self._noisy(self.problem.cross(x, y, self.z, batch))[0]
            eta = self.eta(t)
            if self.method == "soba":
                direction = h
            else:
                self.m = self.beta * self.m + (1 - self.beta) * h
                direction = self.m / self.m.norm().clamp_min(1e-12) if self.method == "bo_rep" else self.m
            x_new = x - eta * direction
            upper.copy_(x_new)
            lower.copy_(y)
            out = {"lr": eta, "step_norm": (eta * direction).norm(), "hypergrad_est_norm": h.norm(),
                   "m_norm": self.m.norm(), "z_norm": self.z.norm()}
            if t % self.eval_every == 0 or t + 1 == self.steps:
                out.update(self.problem.metrics(x_new, y, self.z, state))
            if "loss" not in out:
                out["loss"] = self.problem.f(x_new, y, batch)
            out["loss"] = self.guarded(torch.as_tensor(out["loss"]), x_new, y, self.z)
            calls = self.oracles.metrics()
            out["oracle_calls"] = sum(calls[k] for k in ("grad_f_calls", "grad_g_calls", "hvp_calls", "jvp_calls"))
            return {**out, **calls}

    def extra_state(self) -> dict:
        return {"z": self.z, "m": self.m}

    def load_extra_state(self, sd: dict) -> None:
        self.z, self.m = sd.get("z", self.z), sd.get("m", self.m)


class BoRepToy(BoRep):
    """The quartic-UL toy (`problems.QuarticToy`), x0 = `x0` * 1, y0 = 0, oracle noise `noise`."""

    def __init__(self, dim: int = 10, noise: float = 0.1, x0: float = 5.0, **kw):
        super().__init__(**kw)
        self.dim, self.noise, self.x0 = dim, noise, x0

    def make_problem(self, state, x, y):
        if x.numel() != self.dim or y.numel() != self.dim:
            raise OptrunError(f"components: expected upper.module.dim = lower.module.dim = trainer.dim = {self.dim}")
        with torch.no_grad():  # the start; a resume overwrites it with the checkpoint
            x.fill_(self.x0)
            y.zero_()
        return QuarticToy(self.dim, self.noise, state.generators["data"], x.device, x.dtype)


class BoRepCleaning(BoRep):
    """Data hyper-cleaning (`problems.HyperCleaning`) on `data.cleaning_split`; lambda0 = 1 (the official
    code's start), w0 = 0. Test accuracy, validation loss and the weights' AUC every `eval_every` steps."""

    def __init__(self, data_dir: str = "data", dataset: str = "mnist", n_train: int = 20000, n_val: int = 5000,
                 n_test: int = 10000, noise_rate: float = 0.3, batch_size: int = 512, mu: float = 1e-3,
                 stand_in: bool = False, **kw):
        super().__init__(**kw)
        self.data_dir, self.dataset, self.stand_in = data_dir, dataset, stand_in
        self.n_train, self.n_val, self.n_test = n_train, n_val, n_test
        self.noise_rate, self.batch_size, self.mu = noise_rate, batch_size, mu

    def make_problem(self, state, x, y):
        data = cleaning_split(self.data_dir, self.dataset, self.n_train, self.n_val, self.n_test, self.noise_rate,
                              generator(state.seed, "trainer.data", "cpu"), self.stand_in)
        problem = HyperCleaning(data, N_CLASSES, self.batch_size, self.mu, x.device, x.dtype)
        if (x.numel(), y.numel()) != problem.dims:
            raise OptrunError(f"components: expected upper.module.dim = {problem.dims[0]} (n_train) and "
                              f"lower.module.dim = {problem.dims[1]} (10 x (features + 1)), got {x.numel()}, {y.numel()}")
        with torch.no_grad():
            x.fill_(1.0)
            y.zero_()
        return problem
