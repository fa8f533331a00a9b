"""One step = one box: every bound of the local Lipschitz constant on that box, with its time.

The row holds, for box B_inf(x0, eps) of the problem's trained network (l_inf -> l_inf, max over outputs):
`lower` (sampling: the largest ||row of J(x)||_1 over `samples` uniform points and x0, a lower bound),
`exact` (the MILP of `exact.py`, tiny models only), `ours` (linear bound propagation with optimized
slopes, `bounds.linear`), `ours_init` (the same before slope optimization), `interval` (RecurJac-like),
`naive` (product of norms), optionally `ours_bab` (branch and bound, `bab.py`), the unstable-neuron count,
`t_<method>` seconds, and `order_ok` = 1 when lower <= exact <= ours <= interval <= naive (relative
tolerance 1e-6 for solver round-off). `loss` is `ours`.
"""
from __future__ import annotations

import math
import time

import torch

from experiments.local_lipschitz import bounds
from experiments.local_lipschitz.bab import branch_and_bound
from experiments.local_lipschitz.exact import exact
from runner.trainers.solver import Algorithm

TOL = 1e-6


def jacobian_rows_l1(layers, x: torch.Tensor, chunk: int = 256) -> torch.Tensor:
    """max_j ||row j of J(x)||_1 at each point (S, d) -> (S,), through the activation pattern."""
    if len(x) > chunk:
        return torch.cat([jacobian_rows_l1(layers, x[i:i + chunk], chunk) for i in range(0, len(x), chunk)])
    h, masks = x, []
    for W, b in layers[:-1]:
        z = h @ W.T + b
        masks.append((z > 0).to(x.dtype))
        h = torch.relu(z)
    v = layers[-1][0].expand(len(x), *layers[-1][0].shape)  # (S, J, n_K)
    for (W, _), m in zip(reversed(layers[:-1]), reversed(masks)):
        v = (v * m[:, None, :]) @ W
    return v.abs().sum(-1).max(-1).values


def ordered(*values: float) -> bool:
    finite = [v for v in values if math.isfinite(v)]
    return all(a <= b * (1 + TOL) + TOL for a, b in zip(finite, finite[1:]))


class PerBox(Algorithm):
    def __init__(self, name: str = "bounds", steps: int = 20, lr: float = 0.5, decay: float = 0.98,
                 refine: bool = True, samples: int = 5000, exact: bool = True, milp_time_limit: float = 60.0,
                 bab_timeout: float = 0.0, bab_max_domains: int = 1000):
        self.name, self.steps, self.lr, self.decay, self.refine = name, int(steps), float(lr), float(decay), refine
        self.samples, self.exact, self.milp_time_limit = int(samples), exact, float(milp_time_limit)
        self.bab_timeout, self.bab_max_domains = float(bab_timeout), int(bab_max_domains)
        self.k = 0

    def setup(self, problem, state) -> None:
        self.k = 0

    def columns(self, problem) -> list[str]:
        return ["exact", "exact_optimal", "milps", "t_exact", "ours_bab", "bab_domains", "t_bab"]

    def step(self, problem, state) -> dict:
        layers = problem.layers
        x0, eps = problem.x0[self.k % len(problem.x0)], problem.radii[self.k % len(problem.x0)]
        self.k += 1
        out = {}
        t = time.perf_counter()
        out["naive"] = bounds.naive(layers)
        out["t_naive"] = time.perf_counter() - t

        t = time.perf_counter()
        fw = bounds.forward_bounds(layers, x0, eps)  # CROWN pre-activation bounds, shared by interval and ours
        t_forward = time.perf_counter() - t
        t = time.perf_counter()
        out["interval"] = float(bounds.interval(layers, fw).max())
        out["t_interval"] = t_forward + time.perf_counter() - t

        t = time.perf_counter()
        ours, first = bounds.linear(layers, fw, x0, eps, self.steps, self.lr, self.decay, self.refine)
        out["ours"], out["ours_init"] = float(ours.max()), float(first.max())
        out["t_ours"] = t_forward + time.perf_counter() - t
        out["unstable"] = float(fw.unstable)

        t = time.perf_counter()
        u = torch.rand(self.samples, x0.numel(), generator=state.generators["solver"], dtype=torch.float64,
                       device=state.generators["solver"].device).cpu()
        pts = torch.cat([x0[None], x0 + eps * (2 * u - 1)])
        out["lower"] = float(jacobian_rows_l1(layers, pts).max())
        out["t_lower"] = time.perf_counter() - t

        out["exact"] = float("nan")
        if self.exact and problem.exact_ok:
            t = time.perf_counter()
            vl, vu = bounds.refine_backward(layers, fw, x0, eps)
            value, optimal, solved = exact(layers, fw, vl, vu, x0, eps, ours.numpy(), self.milp_time_limit)
            out.update(exact=value, exact_optimal=float(optimal), milps=float(solved), t_exact=time.perf_counter() - t)
        if self.bab_timeout > 0:
            t = time.perf_counter()
            value, domains = branch_and_bound(layers, x0, eps, self.bab_timeout, self.bab_max_domains,
                                              self.steps, self.lr, self.decay, self.refine)
            out.update(ours_bab=value, bab_domains=float(domains), t_bab=time.perf_counter() - t)
        out["order_ok"] = float(ordered(out["lower"], out["exact"], out.get("ours_bab", math.nan), out["ours"],
                                        out["interval"], out["naive"]))
        out["sound_ok"] = float(ordered(out["lower"], out["exact"], min(out["ours"], out.get("ours_bab", math.inf))))
        out["loss"] = out["ours"]
        return out

    def state_dict(self) -> dict:
        return {"k": self.k}

    def load_state_dict(self, sd: dict) -> None:
        self.k = sd["k"]
