"""DDIM, DDIM + Langevin predictor-corrector, and DDIM + Levenberg-Marquardt-Langevin (LML) corrector.

One engine step is one score evaluation (NFE) and the move that uses it, so every method is run at a
fixed NFE budget. DDIM (eta = 0) spends all of it on predictor steps over `nfe` noise levels. The two
predictor-corrector (PC) methods spend half on DDIM predictor steps over `nfe / 2` levels and half on
one corrector step at the start of each level (Song et al.'s PC layout; the corrector at the first,
pure-noise level is spent like the others).

Corrector at level abar, sigma^2 = 1 - abar, score s = -eps / sigma, step eta = step_scale * sigma^2:

    Langevin   x <- x + eta s + sqrt(2 eta) z
    LML        x <- x + eta M s + sqrt(2 eta) M^(1/2) z,   M = (I + u u^T / lambda)^(-1), u = eps

M is the damped inverse of the rank-one Hessian approximation H ~ s s^T (the Fisher identity
E[s s^T] = -E[grad^2 log p]) written in the noise parametrization, lambda I + u u^T with u = eps =
-sigma s, normalized so that M -> I as lambda -> inf (plain Langevin). Sherman-Morrison gives it in
O(d) per sample: M v = v - u (u.v) / (lambda + |u|^2), and M^(1/2) v = v - (1 - sqrt(lambda / (lambda +
|u|^2))) u_hat (u_hat.v). Unlike the released code's default (kappa = 0, where the corrected direction
is rescaled back to eps itself), M here changes both the drift and the noise.
"""
from __future__ import annotations

import math
import time

import torch

from runner.errors import OptrunError
from runner.trainers.solver import Algorithm

CORRECTORS = ("none", "langevin", "lml")


def sm_apply(u: torch.Tensor, v: torch.Tensor, lam: float) -> torch.Tensor:
    """(I + u u^T / lam)^(-1) v per row (rows: samples, flattened), by Sherman-Morrison."""
    u2, v2 = u.flatten(1), v.flatten(1)
    coef = (u2 * v2).sum(1, keepdim=True) / (lam + (u2 * u2).sum(1, keepdim=True))
    return (v2 - coef * u2).view_as(v)


def sm_sqrt_apply(u: torch.Tensor, v: torch.Tensor, lam: float) -> torch.Tensor:
    """(I + u u^T / lam)^(-1/2) v per row: M's eigenvalue along u is lam / (lam + |u|^2), 1 elsewhere."""
    return lml_precondition(u, v, v, lam)[1]


def lml_precondition(u: torch.Tensor, s: torch.Tensor, z: torch.Tensor, lam: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(M s, M^(1/2) z) for M = (I + u u^T / lam)^(-1), sharing |u|^2 (what the LML corrector adds)."""
    u2, s2, z2 = u.flatten(1), s.flatten(1), z.flatten(1)
    q = (u2 * u2).sum(1, keepdim=True)
    ms = s2 - ((u2 * s2).sum(1, keepdim=True) / (lam + q)) * u2
    shrink = (1.0 - torch.sqrt(lam / (lam + q))) / q.clamp_min(1e-300)  # along u_hat = u / |u|
    mz = z2 - (shrink * (u2 * z2).sum(1, keepdim=True)) * u2
    return ms.view_as(s), mz.view_as(z)


class Sampler(Algorithm):
    """A DDIM sampler with an optional corrector; `nfe` score evaluations, one per engine step."""

    def __init__(self, name: str = "ddim", nfe: int = 10, corrector: str = "none", step_scale: float = 0.1,
                 lam: float = 1.0):
        if corrector not in CORRECTORS:
            raise OptrunError(f"algorithm.corrector: expected one of {', '.join(CORRECTORS)}, got {corrector!r}")
        if nfe < 1 or (corrector != "none" and (nfe < 2 or nfe % 2)):
            raise OptrunError(f"algorithm.nfe: expected >= 1 (an even number >= 2 with a corrector), got {nfe}")
        if not (step_scale > 0 and lam > 0):
            raise OptrunError(f"algorithm: expected step_scale > 0 and lam > 0, got {step_scale}, {lam}")
        self.name, self.nfe, self.corrector = name, int(nfe), corrector
        self.step_scale, self.lam = float(step_scale), float(lam)
        self.iters = self.nfe
        self.x, self.i, self.times = None, 0, {"step": 0.0, "corrector": 0.0, "precond": 0.0}

    def plan(self, alpha_bar: torch.Tensor) -> list[tuple[str, int, float]]:
        """(op, timestep, abar after the op) per NFE: 'pred' moves to the next level (abar = 1 after the
        last: the clean sample), 'corr' stays at its level."""
        levels = self.nfe if self.corrector == "none" else self.nfe // 2
        T = len(alpha_bar)
        taus = torch.linspace(T - 1, 0, levels, dtype=torch.float64).round().long().tolist() if levels > 1 else [T - 1]
        ops = []
        for k, t in enumerate(taus):
            nxt = float(alpha_bar[taus[k + 1]]) if k + 1 < levels else 1.0
            if self.corrector != "none":
                ops.append(("corr", t, float(alpha_bar[t])))
            ops.append(("pred", t, nxt))
        return ops

    def setup(self, problem, state) -> None:
        gen = state.generators["init"]
        self.x = torch.randn(problem.shape, generator=gen, dtype=torch.float64).to(state.device)
        self.i, self.times = 0, {"step": 0.0, "corrector": 0.0, "precond": 0.0}
        self.ops = self.plan(problem.alpha_bar)

    def columns(self, problem) -> list[str]:
        """Corrector-only metrics and the last row's (the problem's final distances, the overhead)."""
        return ["eta", "ms_ratio", *problem.final_columns, "overhead"]

    def step(self, problem, state) -> dict:
        op, t, level = self.ops[self.i]
        ab = float(problem.alpha_bar[t])
        noise = None
        if op == "corr":  # drawn before the clock starts: the same stream for both correctors
            noise = torch.randn(self.x.shape, generator=state.generators["solver"], dtype=self.x.dtype).to(self.x.device)
        start = time.perf_counter()
        eps = problem.eps(self.x, t)
        out: dict = {}
        if op == "pred":
            x0 = (self.x - math.sqrt(1 - ab) * eps) / math.sqrt(ab)
            self.x = math.sqrt(level) * x0 + math.sqrt(1 - level) * eps
        else:
            sigma2 = 1.0 - ab
            score, eta = -eps / math.sqrt(sigma2), self.step_scale * sigma2
            if self.corrector == "lml":
                t0 = time.perf_counter()
                drift, kick = lml_precondition(eps, score, noise, self.lam)
                self.times["precond"] += time.perf_counter() - t0
            else:
                drift, kick = score, noise
            self.x = self.x + eta * drift + math.sqrt(2 * eta) * kick
            out["eta"] = eta
        elapsed = time.perf_counter() - start  # metrics below are not part of the sampler's cost
        if op == "corr" and self.corrector == "lml":
            out["ms_ratio"] = float((drift.flatten(1).norm(dim=1) / score.flatten(1).norm(dim=1)).mean())
        self.times["step"] += elapsed
        if op == "corr":
            self.times["corrector"] += elapsed
        self.i += 1
        out.update({"nfe": float(problem.nfe), "abar": level, "corrector_step": float(op == "corr"),
                    "eps_norm": float(eps.flatten(1).norm(dim=1).mean()), "lam": self.lam,
                    "step_s": self.times["step"], "corrector_s": self.times["corrector"],
                    "precond_s": self.times["precond"], **problem.progress(self.x, level)})
        if self.i == len(self.ops):
            out.update(problem.final(self.x))
            rest = self.times["corrector"] - self.times["precond"]
            out["overhead"] = self.times["precond"] / rest if self.corrector == "lml" and rest > 0 else 0.0
            state.stop = True
        return out

    def state_dict(self) -> dict:
        return {"x": self.x, "i": self.i, "times": dict(self.times)}

    def load_state_dict(self, sd: dict) -> None:
        self.x, self.i, self.times = sd["x"], sd["i"], dict(sd["times"])
