"""Physics-informed training of an FNO on diffusion–sorption with a soft constraint (SC), a global hard
constraint (HC) or a mixture of hard-constraint experts (MoE) (arXiv 2402.13412, Sec. 3–4; the official
`hard_constraint.py` and `spatial_temporal_router.py`).

The network f_theta maps the initial condition u0 (broadcast over t, plus coordinates) to fields on the
(nt, nx) grid: one field u (SC) or N basis fields b (HC, MoE). With a hard constraint, expert k owns the
x-slab Omega_k (K slabs; HC is K = 1) and solves, per sample, the nonlinear least squares

    omega_k = argmin_w  sum_{p in S_k} (T F(b w)(p))^2 + sum_{x in Omega_k} (b(0, x) w - u0(x))^2
                        + [k = 0] sum_t (b(t, x_0) w - 1)^2 + [k = K-1] sum_t (b w - D d_x b w)(t, x_last)^2
                        + (1e-4)^2 ||w||^2

with F(u) = u_t - D/R(u) u_xx by the grid's finite differences, S_k `points` random grid points of Omega_k
(t > 0) drawn each step, T = 500 s (time in units of the horizon, so PDE rows are O(1) beside the IC/BC
rows; the official code leaves them in seconds and divides the IC rows by u0), omega from ones. LM
(runner/solvers/lm.py: <= `lm_iters` steps, float64, no_grad), then one differentiable Newton step gives
the implicit-function-theorem gradient to b. The prediction is u = sum_k 1_{Omega_k} b omega_k, and every
variant trains on the same label-free loss of u over the whole grid: mean (T F(u))^2 + mean IC^2 + mean BC^2.

Logged per step: `loss`, `pde_loss`, `ic_loss`, `bc_loss`, `lm_iters` (mean over experts and samples),
`lm_cost` (mean 1/2 ||r||^2 after LM), `t_forward` / `t_lm` / `t_backward` (seconds; backward includes the
implicit step and the optimizer), `points` (residual points per sample); every `eval_every` steps and at the
end on the held-out set: `test_rel_l2` (mean ||u - u_ref|| / ||u_ref|| against the BDF reference, which
training never sees) and `test_residual` (mean (T F(u))^2 at the grid points the experts did not sample),
and the maps of test sample 0 (arrays `map/pred`, `map/ref`) at the end. `data_seconds` in the first row.
"""
from __future__ import annotations

import time

import torch
import torch.nn.functional as F

from runner.data import diffusion_sorption as ds
from runner.errors import OptrunError
from runner.solvers import lm
from runner.trainers.base import Phase, StepTrainer, TrainState

VARIANTS = ("sc", "hc", "moe")
RIDGE = 1e-4  # the official objective's ridge rows


def _mv(M, w):
    """M w for one problem ((P, N), (N,)) or a batch ((B, P, N), (B, N))."""
    return (M @ w[..., None])[..., 0]


def expert_residual(w, bp, bt, bxx, bic, u0, bl, br, wl, wr, scale: float, c: ds.Constants):
    """The residual vector of one expert (or a batch of them): the rows of the least squares above."""
    pde = scale * ds.pde_residual(_mv(bp, w), _mv(bt, w), _mv(bxx, w), c)
    left, right = wl[..., None] * (_mv(bl, w) - 1.0), wr[..., None] * _mv(br, w)
    return torch.cat([pde, _mv(bic, w) - u0, left, right, RIDGE * w], dim=-1)


def expert_jacobian(w, bp, bt, bxx, bic, u0, bl, br, wl, wr, scale: float, c: ds.Constants):
    """d residual / d w of a batch, in closed form: d(-D a / R(u)) = -D bxx / R + D a R'(u) / R^2 bp."""
    u, a = _mv(bp, w), _mv(bxx, w)
    R = ds.retardation(u, c)
    dR = torch.where(u > 0, c.sorption * c.n_f * (c.n_f - 1) * (u.clamp_min(0) + c.eps) ** (c.n_f - 2),
                     torch.zeros_like(u))
    pde = scale * (bt - (c.D / R)[..., None] * bxx + (c.D * a * dR / R ** 2)[..., None] * bp)
    eye = RIDGE * torch.eye(w.shape[-1], dtype=w.dtype, device=w.device).expand(*w.shape[:-1], -1, -1)
    return torch.cat([pde, bic, wl[..., None, None] * bl, wr[..., None, None] * br, eye], dim=-2)


def expert_curvature(w, bp, bt, bxx, bic, u0, bl, br, wl, wr, scale: float, c: ds.Constants):
    """sum_p r_p d2 r_p / dw2 of a batch (only the PDE rows are nonlinear):
    d2 r_p = s D [R'/R^2 (bxx bp^T + bp bxx^T) + a (R''/R^2 - 2 R'^2/R^3) bp bp^T]."""
    u, a = _mv(bp, w), _mv(bxx, w)
    R = ds.retardation(u, c)
    pos, base = u > 0, u.clamp_min(0) + c.eps
    k = c.sorption * c.n_f * (c.n_f - 1)
    dR = torch.where(pos, k * base ** (c.n_f - 2), torch.zeros_like(u))
    d2R = torch.where(pos, k * (c.n_f - 2) * base ** (c.n_f - 3), torch.zeros_like(u))
    r = scale * (_mv(bt, w) - c.D * a / R)
    cross = bxx.transpose(-1, -2) @ ((r * dR / R ** 2)[..., None] * bp)
    diag = bp.transpose(-1, -2) @ ((r * a * (d2R / R ** 2 - 2 * dR ** 2 / R ** 3))[..., None] * bp)
    return scale * c.D * (cross + cross.transpose(-1, -2) + diag)


class PIHardConstraint(StepTrainer):
    def __init__(self, variant: str = "moe", steps: int = 300, experts: int = 4, points: int = 256, basis: int = 8,
                 batch: int = 4, n_train: int = 64, n_test: int = 16, nx: int = 64, nt: int = 26, refine: int = 2,
                 data_seed: int = 0, pad: int = 4, lm_iters: int = 10, lm_damping: float = 1e-3,
                 hessian: str = "gn", icbc: str = "global", eval_every: int = 25, eval_batch: int = 16,
                 stand_in: bool = False, diverge_above: float = 1e8):
        if variant not in VARIANTS:
            raise OptrunError(f"trainer.variant: unknown '{variant}' (expected one of: {', '.join(VARIANTS)})")
        self.variant, self.steps, self.batch = variant, steps, batch
        self.K = 1 if variant == "hc" else experts
        if nx % self.K:
            raise OptrunError(f"trainer: nx={nx} must split into {self.K} equal expert slabs")
        self.points, self.N, self.n_train, self.n_test = points, basis, n_train, n_test
        self.nx, self.nt, self.refine, self.data_seed, self.pad = nx, nt, refine, data_seed, pad
        self.lm_iters, self.lm_damping, self.hessian, self.eval_every = lm_iters, lm_damping, hessian, eval_every
        if icbc not in ("global", "local"):
            raise OptrunError(f"trainer.icbc: unknown '{icbc}' (expected global or local)")
        self.icbc, self.eval_batch, self.stand_in = icbc, eval_batch, stand_in
        self.diverge_above = diverge_above
        self.c = ds.Constants()
        self.scale = ds.T_END
        if stand_in:  # tests of the paper-scale setup on a CPU: its network and solver on a 128 x 26 grid
            self.nx, self.nt = min(nx, 128), min(nt, 26)
        self.dx, self.dt = 1.0 / self.nx, ds.T_END / (self.nt - 1)

    # -- setup
    def columns(self, state: TrainState) -> list[str]:
        return ["pde_loss", "ic_loss", "bc_loss", "lm_iters", "lm_cost", "t_forward", "t_lm", "t_backward", "points",
                "test_rel_l2", "test_residual", "data_seconds"]

    def phases(self, state: TrainState) -> list[Phase]:
        net = state.modules["net"]
        out = net.project[-1].out_channels
        want = 1 if self.variant == "sc" else self.N
        if out != want:
            raise OptrunError(f"components.net.module.n_classes={out}: variant {self.variant} needs {want}")
        if self.stand_in:  # random references, two test ICs, no BDF
            g = torch.Generator().manual_seed(self.data_seed)
            data = {"u0_train": ds.initial_conditions(self.n_train, self.nx, g),
                    "u0_test": ds.initial_conditions(2, self.nx, g), "u_test": torch.rand(2, self.nt, self.nx, generator=g)}
            info = {"seconds": 0.0}
        else:
            data, info = ds.dataset(self.n_train, self.n_test, self.nx, self.nt, self.data_seed, self.refine)
        dev = state.device
        self.u0_train, self.u0_test = data["u0_train"].to(dev), data["u0_test"].to(dev)
        self.u_test = data["u_test"].to(dev)
        self.data_seconds = info["seconds"]
        self.batches, self.sampler = state.stream("trainer.batch"), state.stream("trainer.points")
        self.slab = self.nx // self.K
        self.points_k = min(self.points, (self.nt - 1) * self.slab)
        return [Phase(steps=self.steps)]

    # -- the model and the constraint layer
    def fields(self, net, u0: torch.Tensor) -> torch.Tensor:
        """(B, nx) -> (B, nt, nx, C) float64: the network on the IC broadcast over t, zero-padded by `pad`."""
        x = u0.float()[:, None, None, :].expand(-1, 1, self.nt, -1)
        x = F.pad(x, (0, self.pad, 0, self.pad))
        y = net(x)[..., :self.nt, :self.nx]
        return y.permute(0, 2, 3, 1).double()

    def _terms(self, b: torch.Tensor, u0: torch.Tensor, gen: torch.Generator):
        """Per (sample, expert) least-squares inputs, flattened to a batch of B*K problems; also the mask of
        sampled points (B, nt, nx)."""
        B, K, S, P, N = b.shape[0], self.K, self.slab, self.points_k, self.N
        bt = ds.d_dt(b.movedim(-1, 1), self.dt).movedim(1, -1)
        bx = ds.d_dx(b.movedim(-1, 1), self.dx)
        bxx = ds.d_dx(bx, self.dx).movedim(1, -1)
        bx = bx.movedim(1, -1)

        def slabs(f):  # (B, nt, nx, N) at t > 0 -> (B, K, (nt-1)*S, N)
            return f[:, 1:].reshape(B, self.nt - 1, K, S, N).transpose(1, 2).reshape(B, K, -1, N)

        idx = torch.rand(B, K, (self.nt - 1) * S, generator=gen, device=gen.device).argsort(-1)[..., :P].to(b.device)
        take = lambda f: torch.gather(slabs(f), 2, idx[..., None].expand(-1, -1, -1, N))  # noqa: E731
        bl = b[:, 1:, 0][:, None].expand(-1, K, -1, -1)
        br = (b[:, 1:, -1] - self.c.D * bx[:, 1:, -1])[:, None].expand(-1, K, -1, -1)
        wl = torch.ones(K, dtype=b.dtype, device=b.device)
        wr = torch.ones_like(wl)
        if self.icbc == "global":  # every expert fits the whole IC and both BCs (the official router)
            bic, u0k = b[:, 0][:, None].expand(-1, K, -1, -1), u0.double()[:, None].expand(-1, K, -1)
        else:  # its own slab of the IC, and a BC only where its slab touches the boundary
            bic, u0k = b[:, 0].reshape(B, K, S, N), u0.double().reshape(B, K, S)
            wl[1:], wr[:-1] = 0.0, 0.0
        flat = lambda f: f.reshape(B * K, *f.shape[2:])  # noqa: E731
        terms = [flat(take(b)), flat(take(bt)), flat(take(bxx)), flat(bic), flat(u0k), flat(bl), flat(br),
                 wl.repeat(B), wr.repeat(B)]
        mask = torch.zeros(B, K, (self.nt - 1) * S, dtype=torch.bool, device=b.device)
        mask.scatter_(2, idx, True)
        mask = mask.reshape(B, K, self.nt - 1, S).transpose(1, 2).reshape(B, self.nt - 1, self.nx)
        return terms, mask

    def _fn(self, w, *terms):
        return expert_residual(w, *terms, scale=self.scale, c=self.c)

    def _jac(self, w, *terms):
        return expert_jacobian(w, *terms, scale=self.scale, c=self.c)

    def _curvature(self, w, *terms):
        return expert_curvature(w, *terms, scale=self.scale, c=self.c)

    def constrain(self, b: torch.Tensor, u0: torch.Tensor, gen: torch.Generator, timer: dict | None = None):
        """Basis fields (B, nt, nx, N) -> u (B, nt, nx), with LM statistics and the sampled-point mask."""
        B = b.shape[0]
        terms, mask = self._terms(b, u0, gen)
        t0 = time.perf_counter()
        w0 = torch.ones(B * self.K, self.N, dtype=torch.float64, device=b.device)
        sol = lm.solve(self._fn, w0, *terms, max_iters=self.lm_iters, damping=self.lm_damping,
                       jac=self._jac)
        t1 = time.perf_counter()
        w = lm.implicit_step(self._fn, sol.omega, *terms, hessian=self.hessian, jac=self._jac,
                                  curvature=self._curvature) if b.requires_grad else sol.omega
        if timer is not None:
            timer["lm"], timer["implicit"] = t1 - t0, time.perf_counter() - t1
        w = w.reshape(B, self.K, 1, self.N)
        bk = b.reshape(B, self.nt, self.K, self.slab, self.N).transpose(1, 2)   # (B, K, nt, S, N)
        u = (bk @ w.transpose(-1, -2)[:, :, None])[..., 0]                      # (B, K, nt, S)
        u = u.transpose(1, 2).reshape(B, self.nt, self.nx)
        return u, sol, mask

    def predict(self, net, u0, gen, timer=None):
        b = self.fields(net, u0)
        if timer is not None:
            timer["forward"] = time.perf_counter() - timer["start"]
        if self.variant == "sc":
            return b[..., 0], None, torch.zeros(b.shape[0], self.nt - 1, self.nx, dtype=torch.bool, device=b.device)
        return self.constrain(b, u0, gen, timer)

    def losses(self, u: torch.Tensor, u0: torch.Tensor) -> dict:
        u_t, u_x = ds.d_dt(u, self.dt), ds.d_dx(u, self.dx)
        pde = self.scale * ds.pde_residual(u, u_t, ds.d_dx(u_x, self.dx), self.c)[:, 1:]
        left, right = ds.boundary_residuals(u, u_x, self.c)
        return {"pde_field": pde, "pde_loss": (pde ** 2).mean(), "ic_loss": ((u[:, 0] - u0.double()) ** 2).mean(),
                "bc_loss": (left ** 2).mean() + (right ** 2).mean()}

    # -- a step
    def step(self, state: TrainState) -> dict:
        net, opt = state.modules["net"], state.optimizers["net"]
        net.train()
        idx = torch.randint(0, self.n_train, (self.batch,), generator=self.batches, device=self.batches.device)
        u0 = self.u0_train[idx.to(self.u0_train.device)]
        timer = {"start": time.perf_counter(), "lm": 0.0}
        u, sol, _ = self.predict(net, u0, self.sampler, timer)
        t_back = time.perf_counter()
        parts = self.losses(u, u0)
        loss = parts["pde_loss"] + parts["ic_loss"] + parts["bc_loss"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if state.schedulers.get("net") is not None:
            state.schedulers["net"].step()
        out = {"loss": self.guarded(loss.detach().float(), u.detach()), "t_forward": timer["forward"],
               "t_lm": timer["lm"], "t_backward": time.perf_counter() - t_back + timer.get("implicit", 0.0),
               **{k: v.detach() for k, v in parts.items() if k != "pde_field"},
               "points": float(self.K * self.points_k if sol is not None else (self.nt - 1) * self.nx)}
        if sol is not None:
            out["lm_iters"] = sol.iters.double().mean()
            out["lm_cost"] = sol.cost.mean()
        if state.step == 0:
            out["data_seconds"] = self.data_seconds
        last = state.step + 1 == self.steps
        if (state.step + 1) % self.eval_every == 0 or last:
            out.update(self.evaluate(state, net, maps=last))
        return out

    @torch.no_grad()
    def evaluate(self, state: TrainState, net, maps: bool = False) -> dict:
        """Held-out relL2 against the reference, and the residual at the points the experts did not sample
        (in chunks of `eval_batch` initial conditions; the same point draws at every evaluation)."""
        net.eval()
        gen = torch.Generator(device=self.sampler.device).manual_seed(12345 + int(state.seed))
        errs, sq, count, first = [], 0.0, 0, None
        for i in range(0, len(self.u0_test), self.eval_batch):
            u0, ref = self.u0_test[i:i + self.eval_batch], self.u_test[i:i + self.eval_batch].double()
            u, _, mask = self.predict(net, u0, gen)
            errs.append((u - ref).flatten(1).norm(dim=1) / ref.flatten(1).norm(dim=1))
            pde = self.losses(u, u0)["pde_field"][~mask]
            sq, count = sq + float((pde ** 2).sum()), count + pde.numel()
            first = (u[0], ref[0]) if first is None else first
        net.train()
        out = {"test_rel_l2": torch.cat(errs).mean(), "test_residual": sq / max(count, 1)}
        if maps:
            out["map/pred"], out["map/ref"] = first[0].float(), first[1].float()
        return out
