"""Bounds on the l_inf local Lipschitz constant of a ReLU network on a box (Shi et al., NeurIPS 2022).

The network is a list of dense layers (W_k, b_k): z_1 = W_1 x + b_1, h_k = relu(z_k), z_{k+1} = W_{k+1} h_k
+ b_{k+1}, f = W_L h_{L-1} + b_L (convolutions are expanded to dense matrices beforehand). The target is

    L = max_j max_{x in B_inf(x0, eps)} || row j of the Clarke Jacobian ||_1,

the l_inf -> l_inf operator norm of the Jacobian. Its chain rule is the *backward graph* of the paper:
v_K = W_L^T e_j, u_k = d_k * v_k with d_k = relu'(z_k) in [0, 1] (the Clarke gradient), v_{k-1} = W_k^T u_k,
g = v_0, and the objective ||g||_1. Everything here bounds that graph given the forward graph's
pre-activation bounds:

- `naive`: the product of the layers' l_inf operator norms (a global bound);
- `interval`: interval arithmetic through the backward graph with d in its interval (RecurJac-like);
- `linear`: the paper's method, linear bound propagation on the backward graph: |g_i| is bounded by its
  chord, each product d * v by a McCormick plane pair mixed by an optimizable alpha, and relu'(z) by the
  lines d <= 1 + s z and d >= s z (s optimizable in [0, -1/l] and [0, 1/u]); z is bounded linearly in x
  by CROWN, so the terms from every layer meet in one linear function of x, concretized over the box
  once. With s = 0 the relaxation of relu' is the interval [0, 1] of RecurJac. Slopes are optimized by
  Adam (20 steps, lr 0.5, decay 0.98, the authors' defaults); any slope value gives a sound bound.

A *split* (branch and bound) fixes the sign of some pre-activations: their bounds are clamped to the
half-line, which is sound on the subdomain even though concretization runs over the whole box.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class Forward:
    """Pre-activation bounds of every hidden layer: concrete (l, u) and linear in x (CROWN)."""
    l: list  # noqa: E741
    u: list
    A_lo: list  # z_k >= A_lo x + c_lo on the box
    c_lo: list
    A_up: list  # z_k <= A_up x + c_up on the box
    c_up: list

    @property
    def unstable(self) -> int:
        return int(sum(((lk < 0) & (uk > 0)).sum() for lk, uk in zip(self.l, self.u)))


def naive(layers) -> float:
    return float(torch.prod(torch.stack([W.abs().sum(1).max() for W, _ in layers])))


def _relu_lines(zl, zu):
    """CROWN's relaxation of relu on [zl, zu]: upper line (su, tu), lower line slope sl (through 0)."""
    unstable = (zl < 0) & (zu > 0)
    su = torch.where(zu <= 0, 0.0, torch.where(zl >= 0, 1.0, zu / (zu - zl).clamp_min(1e-12)))
    tu = torch.where(unstable, -zl * su, 0.0)
    sl = torch.where(zu <= 0, 0.0, torch.where(zl >= 0, 1.0, (zu >= -zl).to(zl.dtype)))
    return su, tu, sl


def _concretize(A, c, x0, eps, upper: bool):
    """max (upper) or min of A x + c over the box |x - x0| <= eps (eps a scalar or per coordinate)."""
    spread = A.abs() @ torch.as_tensor(eps, dtype=A.dtype).expand(x0.shape)
    return A @ x0 + (spread if upper else -spread) + c


def forward_bounds(layers, x0, eps, split=None) -> Forward:
    """CROWN bounds of z_1..z_K, layer by layer; `split[k]` (+1 active, -1 inactive, 0 free) clamps."""
    K = len(layers) - 1
    fw = Forward([], [], [], [], [], [])
    for k in range(K):
        W, b = layers[k]
        A, c = {}, {}
        for upper in (True, False):
            Ak, ck = W.clone(), b.clone()
            for m in range(k, 0, -1):  # Ak is the coefficient on h_{m-1} = relu(z_{m-1}); go back to z_{m-1}
                su, tu, sl = _relu_lines(fw.l[m - 1], fw.u[m - 1])
                pos, neg = Ak.clamp_min(0), Ak.clamp_max(0)
                if upper:
                    coef, ck = pos * su + neg * sl, ck + pos @ tu
                else:
                    coef, ck = pos * sl + neg * su, ck + neg @ tu
                Wm, bm = layers[m - 1]
                Ak, ck = coef @ Wm, ck + coef @ bm
            A[upper], c[upper] = Ak, ck
        lo, up = _concretize(A[False], c[False], x0, eps, False), _concretize(A[True], c[True], x0, eps, True)
        if split is not None:
            lo = torch.where(split[k] > 0, lo.clamp_min(0.0), lo)
            up = torch.where(split[k] < 0, up.clamp_max(0.0), up)
        fw.l.append(lo), fw.u.append(up), fw.A_lo.append(A[False]), fw.c_lo.append(c[False])
        fw.A_up.append(A[True]), fw.c_up.append(c[True])
    return fw


def _d_interval(fw, k):
    return (fw.l[k] >= 0).to(fw.l[k].dtype), (fw.u[k] > 0).to(fw.u[k].dtype)


def _mul_interval(al, au, bl, bu):
    p = torch.stack([al * bl, al * bu, au * bl, au * bu])
    return p.min(0).values, p.max(0).values


def interval_backward(layers, fw):
    """Interval bounds of v_K..v_0 for every output j: lists vl[k], vu[k] of shape (J, n_k), k = 0..K."""
    K = len(layers) - 1
    vK = layers[K][0]  # (J, n_K): row j is W_L^T e_j
    vl, vu = [None] * (K + 1), [None] * (K + 1)
    vl[K], vu[K] = vK.clone(), vK.clone()
    for k in range(K, 0, -1):
        dl, du = _d_interval(fw, k - 1)
        ul, uu = _mul_interval(dl, du, vl[k], vu[k])
        W = layers[k - 1][0]  # v_{k-1} = W_k^T u_k
        mid, rad = (ul + uu) / 2, (uu - ul) / 2
        vl[k - 1], vu[k - 1] = mid @ W - rad @ W.abs(), mid @ W + rad @ W.abs()
    return vl, vu


def interval(layers, fw) -> torch.Tensor:
    """Per output j: sum_i max(|gl_i|, |gu_i|) with g's interval bounds."""
    vl, vu = interval_backward(layers, fw)
    return torch.maximum(vl[0].abs(), vu[0].abs()).sum(-1)


@dataclass
class Slopes:
    """Optimizable relaxation parameters, each in [0, 1]: the McCormick mixing alpha per product d * v,
    and the slopes of relu''s upper and lower lines as fractions theta of their largest valid value."""
    alpha: list
    theta_up: list
    theta_lo: list

    @classmethod
    def initial(cls, vl, vu):
        """alpha = vu / (vu - vl) cancels the d-term: g d is then bounded by the chord of relu(v) (upper)
        or of min(0, v) (lower), the relaxation with d in [0, 1] (RecurJac's); theta = 0 (no coupling)."""
        alpha = [(vu[k] / (vu[k] - vl[k]).clamp_min(1e-12)).clamp(0.0, 1.0) for k in range(1, len(vl))]
        return cls(alpha, [torch.zeros_like(a) for a in alpha], [torch.zeros_like(a) for a in alpha])

    def params(self):
        return [*self.alpha, *self.theta_up, *self.theta_lo]

    def clamp_(self):
        with torch.no_grad():
            for p in self.params():
                p.clamp_(0.0, 1.0)


def propagate(layers, fw, vl, vu, mu, k0, x0, eps, slopes):
    """Upper bound of mu^T u_{k0} (mu: (J, R, n_{k0}), k0 in 1..K) over the box, for all (j, row).

    Walks u_{k0} -> v_{k0} -> u_{k0+1} -> ... -> v_K (a constant), relaxing each product d * v and
    moving the d-terms into x through z's CROWN lines; returns (J, R)."""
    K = len(layers) - 1
    Ax = torch.zeros(*mu.shape[:2], x0.numel(), dtype=mu.dtype)
    const = torch.zeros(mu.shape[:2], dtype=mu.dtype)
    for k in range(k0, K + 1):
        i = k - 1  # hidden layer index of d_k, z_k
        zl, zu = fw.l[i], fw.u[i]
        unstable = (zl < 0) & (zu > 0)
        d_fix = (zl >= 0).to(mu.dtype)
        a = slopes.alpha[i][:, None, :]  # (J, 1, n)
        lo, hi = vl[k][:, None, :], vu[k][:, None, :]
        pos = mu > 0
        # mu > 0: upper McCormick a (v + vl d - vl) + (1 - a) vu d; mu < 0: lower (1 - a)(v + vu d - vu) + a vl d
        cv = torch.where(pos, a, 1 - a)
        cd = a * lo + (1 - a) * hi
        c0 = torch.where(pos, -a * lo, -(1 - a) * hi)
        nu = torch.where(unstable, mu * cv, mu * d_fix)  # coefficient on v_k
        gamma = torch.where(unstable, mu * cd, 0.0)  # coefficient on d_k
        const = const + torch.where(unstable, mu * c0, 0.0).sum(-1)
        # gamma d <= gamma (1 + s_up z) (gamma > 0, s_up in [0, -1/l]); gamma d <= gamma s_lo z (gamma < 0, s_lo in [0, 1/u])
        s_up = slopes.theta_up[i][:, None, :] * (-1.0 / zl.clamp_max(-1e-12))
        s_lo = slopes.theta_lo[i][:, None, :] * (1.0 / zu.clamp_min(1e-12))
        gp, gn = gamma.clamp_min(0), gamma.clamp_max(0)
        wz_up, wz_lo = gp * s_up, gn * s_lo  # coefficients on z's upper / lower linear bound
        const = const + gp.sum(-1) + wz_up @ fw.c_up[i] + wz_lo @ fw.c_lo[i]
        Ax = Ax + wz_up @ fw.A_up[i] + wz_lo @ fw.A_lo[i]
        if k < K:
            mu = nu @ layers[k][0].T  # v_k = W_{k+1}^T u_{k+1}: coefficient on u_{k+1} is W_{k+1} nu
        else:
            const = const + (nu * vl[K][:, None, :]).sum(-1)  # v_K is a constant (vl = vu)
    return _concretize(Ax, const, x0, eps, True)


def refine_backward(layers, fw, x0, eps):
    """Interval bounds of v_k tightened by linear propagation (deepest first), like CROWN's
    intermediate bounds, with the initial slopes (not optimized)."""
    K = len(layers) - 1
    vl, vu = interval_backward(layers, fw)
    J = vl[K].shape[0]
    for k in range(K - 1, -1, -1):
        W = layers[k][0]  # v_k = W_{k+1}^T u_{k+1}; e_i^T v_k = (W_{k+1} e_i)^T u_{k+1}
        rows = W.T.expand(J, *W.T.shape)  # (J, n_k, n_{k+1})
        mu = torch.cat([rows, -rows], 1)
        b = propagate(layers, fw, vl, vu, mu, k + 1, x0, eps, Slopes.initial(vl, vu))
        n = W.shape[1]
        vu[k], vl[k] = torch.minimum(vu[k], b[:, :n]), torch.maximum(vl[k], -b[:, n:])
    return vl, vu


def linear(layers, fw, x0, eps, steps=20, lr=0.5, decay=0.98, refine=True):
    """The paper's bound per output j (J,), and the bound before slope optimization."""
    vl, vu = refine_backward(layers, fw, x0, eps) if refine else interval_backward(layers, fw)
    gl, gu = vl[0], vu[0]
    # |g| <= a g + b: +-g where the sign is fixed, else the chord through (gl, |gl|) and (gu, |gu|)
    width = (gu - gl).clamp_min(1e-12)
    a = torch.where(gl >= 0, 1.0, torch.where(gu <= 0, -1.0, (gu + gl) / width))
    b = torch.where((gl < 0) & (gu > 0), -2 * gu * gl / width, 0.0)
    mu = (a @ layers[0][0].T)[:, None, :]  # g = W_1^T u_1
    slopes = Slopes.initial(vl, vu)
    for p in slopes.params():
        p.requires_grad_(True)

    def bound():
        return propagate(layers, fw, vl, vu, mu, 1, x0, eps, slopes)[:, 0] + b.sum(-1)

    with torch.no_grad():
        first = bound()
    best = first.clone()
    if steps:
        opt = torch.optim.Adam(slopes.params(), lr=lr)
        sched = torch.optim.lr_scheduler.ExponentialLR(opt, decay)
        for _ in range(steps):
            opt.zero_grad()
            val = bound()
            val.sum().backward()
            opt.step()
            sched.step()
            slopes.clamp_()
            with torch.no_grad():
                best = torch.minimum(best, bound())
    return best.detach(), first
