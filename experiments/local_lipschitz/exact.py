"""The exact local Lipschitz constant of a small ReLU network on a box, by a mixed-integer LP (HiGHS).

LipMIP's formulation (Jordan & Dimakis, 2020), which the paper uses as the exact baseline, solved by
`scipy.optimize.milp` instead of Gurobi: per output j, maximize ||g||_1 over the box, where the forward
graph is encoded with one binary a per unstable neuron (a = 1 allows z >= 0, a = 0 allows z <= 0, so
both values are allowed at z = 0: the Clarke generalized Jacobian), the backward graph u = a * v with
big-M constraints from sound bounds of v, and |g_i| with one more binary per input. Every big-M comes
from a sound bound (the forward CROWN bounds, the backward bounds of `bounds.py`), so the optimum is
exact. Outputs are solved in decreasing order of an upper bound and skipped once that bound cannot
beat the best value found (sound pruning, the same answer).
"""
from __future__ import annotations

import numpy as np
import torch
from scipy.optimize import Bounds, LinearConstraint, milp


class _Model:
    def __init__(self):
        self.lb, self.ub, self.integer, self.rows, self.lo, self.hi = [], [], [], [], [], []

    def var(self, n, lb, ub, integer=False) -> np.ndarray:
        start = len(self.lb)
        self.lb += list(np.broadcast_to(lb, n))
        self.ub += list(np.broadcast_to(ub, n))
        self.integer += [int(integer)] * n
        return np.arange(start, start + n)

    def add(self, coefs: dict, lo: float, hi: float) -> None:
        """One row: lo <= sum_v c_v x_v <= hi; coefs maps variable index -> coefficient."""
        self.rows.append(coefs)
        self.lo.append(lo)
        self.hi.append(hi)

    def solve(self, objective: dict, time_limit: float):
        n = len(self.lb)
        A = np.zeros((len(self.rows), n))
        for r, coefs in enumerate(self.rows):
            for v, c in coefs.items():
                A[r, v] += c
        c = np.zeros(n)
        for v, w in objective.items():
            c[v] -= w  # maximize
        res = milp(c, constraints=LinearConstraint(A, self.lo, self.hi), integrality=np.array(self.integer),
                   bounds=Bounds(np.array(self.lb, float), np.array(self.ub, float)),
                   options={"time_limit": time_limit, "mip_rel_gap": 1e-9})
        return res


def _lin(idx: np.ndarray, W: np.ndarray, row: int) -> dict:
    return {int(v): float(w) for v, w in zip(idx, W[row]) if w != 0.0}


def exact_output(layers, fw, vl, vu, x0, eps, j: int, time_limit: float = 60.0) -> tuple[float, bool]:
    """max_x ||grad f_j(x)||_1 over the box; (value, proven optimal)."""
    Ws = [W.detach().double().cpu().numpy() for W, _ in layers]
    bs = [b.detach().double().cpu().numpy() for _, b in layers]
    x0 = x0.detach().double().cpu().numpy()
    eps = torch.as_tensor(eps).detach().double().cpu().numpy()
    K = len(layers) - 1
    m = _Model()
    prev = m.var(len(x0), x0 - eps, x0 + eps)
    a_vars, u_vars = [], []
    for i in range(K):
        zl, zu = fw.l[i].double().cpu().numpy(), fw.u[i].double().cpu().numpy()
        n = len(zl)
        z = m.var(n, zl, zu)
        h = m.var(n, 0.0, np.maximum(zu, 0.0))
        a = m.var(n, (zl >= 0).astype(float), (zu > 0).astype(float), integer=True)
        for r in range(n):  # z = W h_prev + b
            m.add({**_lin(prev, Ws[i], r), int(z[r]): -1.0}, -bs[i][r], -bs[i][r])
            if zu[r] <= 0:
                m.add({int(h[r]): 1.0}, 0.0, 0.0)
            elif zl[r] >= 0:
                m.add({int(h[r]): 1.0, int(z[r]): -1.0}, 0.0, 0.0)
            else:
                m.add({int(h[r]): 1.0, int(z[r]): -1.0}, 0.0, np.inf)  # h >= z
                m.add({int(h[r]): 1.0, int(a[r]): -zu[r]}, -np.inf, 0.0)  # h <= zu a
                m.add({int(h[r]): 1.0, int(z[r]): -1.0, int(a[r]): -zl[r]}, -np.inf, -zl[r])  # h <= z - zl (1 - a)
        a_vars.append(a)
        prev = h
    for i in range(K):
        vlo, vhi = vl[i + 1][j].double().cpu().numpy(), vu[i + 1][j].double().cpu().numpy()
        u_vars.append(m.var(len(vlo), np.minimum(vlo, 0.0), np.maximum(vhi, 0.0)))
    for i in range(K - 1, -1, -1):  # u_i = a_i * v_i, v_i = W_{i+1}^T u_{i+1} (or W_L[j] at the top)
        vlo, vhi = vl[i + 1][j].double().cpu().numpy(), vu[i + 1][j].double().cpu().numpy()
        for r in range(len(vlo)):
            if i == K - 1:
                v, c = {}, float(Ws[K][j, r])
            else:
                v, c = _lin(u_vars[i + 1], Ws[i + 1].T, r), 0.0
            neg = {k: -w for k, w in v.items()}
            uu, aa = int(u_vars[i][r]), int(a_vars[i][r])
            m.add({uu: 1.0, **neg, aa: -vlo[r]}, -np.inf, c - vlo[r])  # u <= v - vl (1 - a)
            m.add({uu: 1.0, **neg, aa: -vhi[r]}, c - vhi[r], np.inf)  # u >= v - vu (1 - a)
            m.add({uu: 1.0, aa: -vhi[r]}, -np.inf, 0.0)  # u <= vu a
            m.add({uu: 1.0, aa: -vlo[r]}, 0.0, np.inf)  # u >= vl a
    gl, gu = vl[0][j].double().cpu().numpy(), vu[0][j].double().cpu().numpy()
    R = np.maximum(np.abs(gl), np.abs(gu))
    t = m.var(len(gl), 0.0, R)
    s = m.var(len(gl), 0.0, 1.0, integer=True)
    for r in range(len(gl)):
        g = _lin(u_vars[0], Ws[0].T, r)  # g = W_1^T u_1
        m.add({int(t[r]): 1.0, **{k: -w for k, w in g.items()}, int(s[r]): 2 * R[r]}, -np.inf, 2 * R[r])
        m.add({int(t[r]): 1.0, **g, int(s[r]): -2 * R[r]}, -np.inf, 0.0)
    res = m.solve({int(v): 1.0 for v in t}, time_limit)
    if res.x is None:
        return float("nan"), False
    return float(-res.fun), bool(res.status == 0)


def exact(layers, fw, vl, vu, x0, eps, upper, time_limit: float = 60.0) -> tuple[float, bool, int]:
    """max over outputs, pruned by `upper` (a sound bound per output); (value, all optimal, MILPs solved)."""
    best, optimal, solved = 0.0, True, 0
    for j in np.argsort(-np.asarray(upper)):
        if upper[j] <= best:
            break
        value, ok = exact_output(layers, fw, vl, vu, x0, eps, int(j), time_limit)
        best, optimal, solved = max(best, value), optimal and ok, solved + 1
    return best, optimal, solved
