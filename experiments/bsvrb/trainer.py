"""BSVRBv1, BSVRBv2 and the RSVRB baseline on the multi-block HO problem (`problems.py`).

Per iteration a method samples I of the m blocks and, per sampled block, B training and B validation
samples (disjoint slices of fresh permutations, as the official code's epoch shuffles), then
(arXiv 2305.18730, Alg. 1 and 2; the official `Hyperparameter_Optimization/HO/main.py`):

- BSVRBv1: MSVR estimates, on the same samples at the current and the previous point,
  s_i <- (1-alpha) s_i + (alpha+gamma) grad_w g_i(now) - gamma grad_w g_i(before) of the LL gradient, and
  H_i likewise of the LL Hessian (then `project`); the hypergradient estimate
  G = mean over sampled i of -(d^2 g_i/dp dw) H_i^{-1} grad_w f_i; STORM on p,
  z <- (1-beta)(z - G(before)) + G(now), p <- p - eta z; every block w_i <- w_i - tau s_i.
- BSVRBv2 (no Hessian inverse): v_i tracks H_i^{-1} grad f_i by an MSVR estimate u_i of H_i v_i - grad f_i,
  G uses v_i in place of H_i^{-1} grad f_i; only sampled blocks move, by tau times (1 + the iterations
  they were skipped), and v_i is projected onto ||v_i|| <= v_bound.
- RSVRB (baseline, Guo et al. 2021 as in the official code): STORM estimates scaled by m/I of grad_w g_i,
  grad_w f_i, d^2 g_i/dp dw (an n x d matrix per block) and H_i for the sampled blocks, (1-beta)-decayed
  for the others; G over a second, independent draw of I blocks; every block moves.

eta is the upper component's learning rate and tau the lower one's (plain SGD, the trainer writes the
direction into .grad). One engine step runs `iters_per_step` iterations; the logs carry `iteration`,
`loss` = the UL validation loss (1/m sum_i f_i(w_i), the official `f_eval`), `test_loss`, `g`, `g_noreg`,
`z_norm`, `auc_noisy` (AUC of -p for the flipped training labels: low weight = flagged) and the
cumulative oracle counts (one call = one block's quantity on its B samples at one point).
"""
from __future__ import annotations

import math

import torch

from experiments.bsvrb.problems import MultiBlockHO, auc, libsvm, synthetic
from runner.errors import OptrunError
from runner.trainers.base import TrainState
from runner.trainers.bilevel import BilevelTrainer

METHODS = ("bsvrb_v1", "bsvrb_v2", "rsvrb")
PROJECTIONS = ("norm", "eig")


class BSVRB(BilevelTrainer):
    def __init__(self, method: str = "bsvrb_v1", steps: int = 500, iters_per_step: int = 10, blocks: int = 20,
                 block_batch: int = 5, sample_batch: int = 8, lam: float = 1e-5, alpha: float = 0.9,
                 gamma: float = 1.0, beta: float = 0.9, h_bound: float = 10.0, project: str = "norm",
                 v_bound: float = 10.0, temp_range: tuple = (1.0, 11.0), dataset: str = "synthetic",
                 data_dir: str = "data", stand_in: bool = False, n_train: int = 2000, n_val: int = 500,
                 n_test: int = 500, n_features: int = 20, flip: float = 0.1, dtype: str = "float64",
                 diverge_above: float = 1e6):
        super().__init__(steps, diverge_above)
        if method not in METHODS:
            raise OptrunError(f"trainer.method: unknown '{method}' (expected one of: {', '.join(METHODS)})")
        if project not in PROJECTIONS:
            raise OptrunError(f"trainer.project: unknown '{project}' (expected one of: {', '.join(PROJECTIONS)})")
        if not 1 <= block_batch <= blocks or sample_batch < 1 or iters_per_step < 1:
            raise OptrunError("trainer: expected 1 <= block_batch <= blocks, sample_batch >= 1, iters_per_step >= 1")
        self.method, self.k, self.m, self.I, self.B = method, iters_per_step, blocks, block_batch, sample_batch
        self.lam, self.alpha, self.gamma, self.beta = lam, alpha, gamma, beta
        self.h_bound, self.project, self.v_bound, self.temp_range = h_bound, project, v_bound, tuple(temp_range)
        self.dataset, self.data_dir, self.stand_in = dataset, data_dir, stand_in
        self.sizes, self.n_features, self.flip = (n_train, n_val, n_test), n_features, flip
        self.dtype = getattr(torch, dtype)
        self.iteration, self.est = 0, {}

    # -- the problem
    def setup(self, state: TrainState, x: torch.Tensor, y: torch.Tensor) -> None:
        g = state.generators["data"]
        seed = int(torch.randint(0, 2**31 - 1, (1,), generator=g, device=g.device))
        if self.dataset == "synthetic":
            data = synthetic(seed, *self.sizes, n_features=self.n_features, flip=self.flip)
        else:
            data = libsvm(self.dataset, self.data_dir, self.stand_in, seed)
        lo, hi = self.temp_range
        temps = lo + (hi - lo) * torch.rand(self.m, generator=g, device=g.device, dtype=torch.float64)
        self.problem = MultiBlockHO(data.to(x.device, self.dtype), temps.to(x.device, self.dtype), self.lam)
        n, d = self.problem.n, self.problem.d
        if x.numel() != n or y.numel() != self.m * d:
            raise OptrunError(f"components: expected upper.module.dim={n} (training samples) and lower.module.dim="
                              f"{self.m * d} (blocks x (features + 1)); got {x.numel()} and {y.numel()}")
        if self.I * self.B > min(n, len(data.y_val)):
            raise OptrunError(f"trainer: block_batch * sample_batch = {self.I * self.B} exceeds the data")
        with torch.no_grad():
            x.data = x.data.to(self.dtype)
            y.data = y.data.to(self.dtype)
        self.sampler = state.stream("trainer.sampling")
        self.prev = None  # (p, W) of the previous iteration; None: the first iteration, previous = current

    def _draw(self, n: int, k: int) -> torch.Tensor:
        return torch.randperm(n, generator=self.sampler, device=self.sampler.device)[:k].to(self.problem.temps.device)

    def _sample(self):
        blocks = self._draw(self.m, self.I)
        tr = self._draw(self.problem.n, self.I * self.B).reshape(self.I, self.B)
        val = self._draw(len(self.problem.data.y_val), self.I * self.B).reshape(self.I, self.B)
        self.oracles.add("samples", 2 * self.I * self.B)
        return blocks, tr, val

    def _state(self, name: str, shape, fill=0.0) -> torch.Tensor:
        if name not in self.est:
            self.est[name] = torch.full(shape, fill, dtype=self.dtype, device=self.problem.temps.device)
        return self.est[name]

    def _identity(self, name: str) -> torch.Tensor:
        """A per-block d x d estimate that starts at the identity (the official code starts at random)."""
        d = self.problem.d
        if name not in self.est:
            eye = torch.eye(d, dtype=self.dtype, device=self.problem.temps.device)
            self.est[name] = eye.expand(self.m, d, d).clone()
        return self.est[name]

    def _project(self, H: torch.Tensor) -> torch.Tensor:
        """`norm` (the official code): a matrix of Frobenius norm below h_bound is scaled up to it;
        `eig`: symmetric, eigenvalues clipped below at 1 / h_bound (a bound on ||H^{-1}||)."""
        if self.project == "norm":
            nrm = torch.linalg.matrix_norm(H)[:, None, None]
            return torch.where(nrm < self.h_bound, H * (self.h_bound / nrm), H)
        ev, Q = torch.linalg.eigh(0.5 * (H + H.transpose(1, 2)))
        return (Q * ev.clamp_min(1.0 / self.h_bound)[:, None, :]) @ Q.transpose(1, 2)

    # -- one iteration of each method
    def _iterate(self, state: TrainState) -> torch.Tensor:
        """Returns the direction for p (the STORM estimate z); writes the w step into the lower grad."""
        P = self.problem
        p = state.modules["upper"].value.detach()
        W = state.modules["lower"].value.detach().view(self.m, P.d)
        p0, W0 = self.prev if self.prev is not None else (p, W)
        blocks, tr, val = self._sample()
        step = getattr(self, f"_{self.method}")(p, W, p0, W0, blocks, tr, val)
        self.prev = (p.clone(), W.clone())
        return step

    def _msvr(self, name: str, blocks, new, old, shape):
        """The MSVR update of the sampled blocks' rows of estimate `name`."""
        est = self._state(name, shape)
        est[blocks] = (1 - self.alpha) * est[blocks] + (self.alpha + self.gamma) * new - self.gamma * old
        return est

    def _storm_p(self, g_new: torch.Tensor, g_old: torch.Tensor) -> torch.Tensor:
        """z <- (1-beta)(z - G(before)) + G(now); on the first iteration z = G(now)."""
        z = self._state("z", (self.problem.n,))
        if self.iteration == 0:
            return z.copy_(g_new)
        return z.sub_(g_old).mul_(1 - self.beta).add_(g_new)

    def _bsvrb_v1(self, p, W, p0, W0, blocks, tr, val):
        P, o, (m, d) = self.problem, self.oracles, (self.m, self.problem.d)
        Wb, W0b = W[blocks], W0[blocks]
        at, at0 = P.point(p, Wb, blocks, tr), P.point(p0, W0b, blocks, tr)  # shared by the g oracles below
        s = self._msvr("s", blocks, P.grad_g(p, Wb, blocks, tr, at), P.grad_g(p0, W0b, blocks, tr, at0), (m, d))
        H_old = self._identity("H").clone()
        H = self._msvr("H", blocks, P.hess_g(p, Wb, blocks, tr, at), P.hess_g(p0, W0b, blocks, tr, at0), (m, d, d))
        H[blocks] = self._project(H[blocks])
        o.add("grad_g", 2 * self.I), o.add("hessian", 2 * self.I), o.add("grad_f", 2 * self.I), o.add("jvp", 2 * self.I)
        z_new = torch.linalg.solve(H[blocks], P.grad_f(Wb, blocks, val)[..., None])[..., 0]
        z_old = torch.linalg.solve(H_old[blocks], P.grad_f(W0b, blocks, val)[..., None])[..., 0]
        g_new = -P.cross(p, Wb, blocks, tr, z_new, at) / self.I
        g_old = -P.cross(p0, W0b, blocks, tr, z_old, at0) / self.I
        self.lower_step = s.clone()
        return self._storm_p(g_new, g_old)

    def _bsvrb_v2(self, p, W, p0, W0, blocks, tr, val):
        P, o, (m, d) = self.problem, self.oracles, (self.m, self.problem.d)
        Wb, W0b = W[blocks], W0[blocks]
        at, at0 = P.point(p, Wb, blocks, tr), P.point(p0, W0b, blocks, tr)  # shared by the g oracles below
        s = self._msvr("s", blocks, P.grad_g(p, Wb, blocks, tr, at), P.grad_g(p0, W0b, blocks, tr, at0), (m, d))
        v = self._state("v", (m, d))
        v_old = self.est.get("v_prev", v).clone()
        u_new = P.hvp_g(p, Wb, blocks, tr, v[blocks], at) - P.grad_f(Wb, blocks, val)
        u_old = P.hvp_g(p0, W0b, blocks, tr, v_old[blocks], at0) - P.grad_f(W0b, blocks, val)
        u = self._msvr("u", blocks, u_new, u_old, (m, d))
        o.add("grad_g", 2 * self.I), o.add("hvp", 2 * self.I), o.add("grad_f", 2 * self.I), o.add("jvp", 2 * self.I)
        g_new = -P.cross(p, Wb, blocks, tr, v[blocks], at) / self.I
        g_old = -P.cross(p0, W0b, blocks, tr, v_old[blocks], at0) / self.I
        age = self._state("age", (m,))
        scale = torch.zeros(m, dtype=self.dtype, device=age.device)
        scale[blocks] = age[blocks] + 1           # 1 + the iterations block i was skipped
        age.add_(1)
        age[blocks] = 0
        self.est["v_prev"] = v.clone()
        v_next = v - self._lower_lr * scale[:, None] * u
        nrm = v_next.norm(dim=1, keepdim=True)
        v.copy_(torch.where(nrm > self.v_bound, v_next * (self.v_bound / nrm), v_next))
        self.lower_step = scale[:, None] * s
        return self._storm_p(g_new, g_old)

    def _rsvrb(self, p, W, p0, W0, blocks, tr, val):
        P, o, (m, d, n) = self.problem, self.oracles, (self.m, self.problem.d, self.problem.n)
        r, b = m / self.I, self.beta
        s, v = self._state("s", (m, d)), self._state("v", (m, d))
        V, H = self._state("V", (m, n, d)), self._identity("H")
        other = self._draw(m, self.I)  # the blocks of G, drawn independently of `blocks`
        V_prev, H_prev, v_prev = V[other], H[other], v[other]  # copies already (advanced indexing): no clone

        def storm(est, new, old, rows=None):
            """(1-b)(est - r old) + r new on the sampled blocks, (1-b) est elsewhere, as (1-b) est everywhere
            plus r (new - (1-b) old) on the sampled blocks (only on their sampled rows for V: it is big)."""
            est.mul_(1 - b)
            if rows is None:
                est[blocks] += r * (new - (1 - b) * old)
            else:
                est[blocks[:, None], rows] += r * (new - (1 - b) * old)
        Wb, W0b = W[blocks], W0[blocks]
        at, at0 = P.point(p, Wb, blocks, tr), P.point(p0, W0b, blocks, tr)  # shared by the g oracles below
        storm(s, P.grad_g(p, Wb, blocks, tr, at), P.grad_g(p0, W0b, blocks, tr, at0))
        storm(v, P.grad_f(Wb, blocks, val), P.grad_f(W0b, blocks, val))
        storm(V, P.cross_rows(p, Wb, blocks, tr, at), P.cross_rows(p0, W0b, blocks, tr, at0), rows=tr)
        storm(H, P.hess_g(p, Wb, blocks, tr, at), P.hess_g(p0, W0b, blocks, tr, at0))
        H[blocks] = self._project(H[blocks])
        o.add("grad_g", 2 * self.I), o.add("grad_f", 2 * self.I), o.add("jvp", 2 * self.I)
        o.add("hessian", 2 * self.I)
        g_new = -(V[other] @ torch.linalg.solve(H[other], v[other][..., None]))[..., 0].sum(0) / self.I
        g_old = -(V_prev @ torch.linalg.solve(H_prev, v_prev[..., None]))[..., 0].sum(0) / self.I
        self.lower_step = s.clone()
        return self._storm_p(g_new, g_old)

    # -- the engine's step
    def step(self, state: TrainState) -> dict:
        up, low = state.modules["upper"].value, state.modules["lower"].value
        opt_u, opt_l = state.optimizers["upper"], state.optimizers["lower"]
        self._lower_lr = opt_l.param_groups[0]["lr"]
        for _ in range(self.k):
            direction = self._iterate(state)
            up.grad, low.grad = direction.clone(), self.lower_step.reshape(-1).clone()  # replaces the old grads
            opt_u.step(), opt_l.step()
            self.iteration += 1
            if not (torch.isfinite(up).all() and torch.isfinite(low).all()):
                break
        for name in ("upper", "lower"):
            if name in state.schedulers:
                state.schedulers[name].step()
        return self.metrics(up.detach(), low.detach())

    def metrics(self, p: torch.Tensor, w: torch.Tensor) -> dict:
        P = self.problem
        with torch.no_grad():
            W = w.view(self.m, P.d)
            val = P.f_full(W)
            out = {"loss": self.guarded(val, p, w), "iteration": self.iteration,
                   "test_loss": P.f_full(W, P.data.x_te, P.data.y_te), "g": P.g_full(p, W),
                   "g_noreg": P.g_full(p, W, reg=False), "z_norm": self.est["z"].norm() if "z" in self.est else 0.0,
                   "weight_mean": torch.sigmoid(p).mean()}
            if P.data.noisy.any():
                out["auc_noisy"] = auc(-p, P.data.noisy) if torch.isfinite(p).all() else math.nan
        return {**out, **self.oracles.metrics()}

    def extra_state(self) -> dict:
        return {"est": self.est, "prev": self.prev, "iteration": self.iteration}

    def load_extra_state(self, sd: dict) -> None:
        self.est, self.prev, self.iteration = sd.get("est", {}), sd.get("prev"), sd.get("iteration", 0)
