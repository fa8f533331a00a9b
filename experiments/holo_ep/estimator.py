"""Holomorphic equilibrium propagation with Jacobian homeostasis (Laborieux & Zenke, ICLR 2024) as a
`GradientEstimator` on `runner.models.equilibrium.EquilibriumMLP`.

One estimate:
1. free phase: T1 steps from u = 0 to the fixed point u* (real);
2. nudged phases: T2 steps from u* with β_k = |β| e^{2πik/N}; the neuron error is the Cauchy
   integral of s = σ(u) around β = 0,  δ = (1/N) Σ_k (s*(β_k) − s*(0)) / β_k  ≈ ds*/dβ, whose bias is
   O(|β|^N) (N = 1: a forward difference, biased at O(β)). With real weights s*(β̄) = conj s*(β), so
   only k = 0..⌊N/2⌋ are run and the pairs k, N − k enter as 2 Re(·);
3. the weight direction (∂Φ/∂θ)ᵀ δ at u* (one VJP, batch mean) plus the readout's own gradient;
4. with `homeostasis` λ_h > 0, plus λ_h ∇_θ of the homeostatic loss
   E_ε[‖Jε‖² − εᵀJ²ε] / dim = ½‖J − Jᵀ‖²_F / dim, J = ∂F/∂s at s* (two JVPs per ε ~ N(0, I),
   `n_eps` draws per sample, differentiated by autograd through the JVPs).
For symmetric J (tied weights) δ is the recurrent-backprop adjoint and step 3 the gradient of the
loss at the fixed point; an asymmetric J leaves the bias the homeostatic loss shrinks.

Cost, counted in relaxation steps (one Φ evaluation on the batch = one forward pass, real or complex):
T1 + (⌊N/2⌋ + 1) T2, plus 2 n_eps JVPs with homeostasis; backward passes: one VJP (and one through
the JVPs with homeostasis). A complex step costs about 4 real ones in flops (not in the count).

Metrics (every `probe_every` steps, on the first `probe_samples` samples, not counted as cost, exact by dense Jacobians):
`homeo_loss` ½‖J − Jᵀ‖²_F / dim, `sym_ratio` ‖J_s‖ / (‖J_s‖ + ‖J_a‖), `cos_delta` the mean cosine
between δ and the backprop (implicit) neuron error (I − J_uᵀ)⁻¹ ∂ℓ/∂u (`cos_delta_hidden`: the
hidden layers alone), `residual` log10 ‖F(u*)‖, and
`angle` between the feed-forward and the transposed feedback weights.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch.func import jacfwd, vmap

from runner.errors import OptrunError
from runner.estimators.base import Estimate, GradientEstimator, Problem
from runner.models.equilibrium import EquilibriumMLP, sigmoid


def split(model: EquilibriumMLP, v: torch.Tensor) -> list[torch.Tensor]:
    return list(torch.split(v, model.sizes[1:], dim=-1))


def relax(model: EquilibriumMLP, p: dict, x: torch.Tensor, T: int, y: torch.Tensor | None = None, beta=0.0,
          u0: list[torch.Tensor] | None = None) -> list[torch.Tensor]:
    """`model.relax` (no autograd) with its loop invariants hoisted: the input drive x W_0ᵀ + b_0, the
    weights cast to the state's dtype, the one-hot targets. Each step runs the same operations on the same
    operands in the same order as `model.phi` and `model.nudge`, so the states are bit-identical. At smoke
    scale this halves the free phase and trims the nudged phases by ~15 % (what is left there is mostly the
    complex sigmoid, which has no faster bit-identical form)."""
    x = x.flatten(1)
    if torch.is_tensor(beta) and beta.is_complex() or isinstance(beta, complex):
        x = x.to(torch.complex64)
    dt, L = x.dtype, model.L
    WT = [p[f"ff.{i}.weight"].T.to(dt) for i in range(L)]
    b = [p[f"ff.{i}.bias"].to(dt) for i in range(L)]
    BT = [p[f"fb.{i}.weight"].T.to(dt) for i in range(L - 1)]
    drive = x @ WT[0] + b[0]
    nudged = (torch.is_tensor(beta) or beta != 0) and y is not None
    if nudged:  # model.nudge's constants: ∂ℓ/∂s_out = (softmax(s_out Rᵀ + c) − onehot(y)) R
        RT, R, c = p["readout.weight"].T.to(dt), p["readout.weight"].to(dt), p["readout.bias"].to(dt)
        onehot = F.one_hot(y, R.shape[0]).to(dt)
    u = [v.to(dt) for v in u0] if u0 is not None else model.zeros(x)
    for _ in range(T):
        s = [sigmoid(v) for v in u]
        new = []
        for i in range(L):
            h = drive if i == 0 else s[i - 1] @ WT[i] + b[i]
            if i < L - 1:
                h = h + s[i + 1] @ BT[i]
            new.append(h)
        if nudged:  # runner.models.equilibrium.softmax, then model.nudge
            z = s[-1] @ RT + c
            z = z - z.real.amax(-1, keepdim=True).to(dt)
            e = torch.exp(z)
            new[-1] = new[-1] + beta * ((e / e.sum(-1, keepdim=True) - onehot) @ R)
        u = new
    return u


def jacobian_vector(model: EquilibriumMLP, p: dict, e: torch.Tensor) -> torch.Tensor:
    """J e for J = ∂F/∂s (flat, per row). F(s) = Φ(s) − s is affine in s, so J e is Φ's linear part on e
    minus e: the tangent operations `torch.func.jvp(field, (s,), (e,))` runs, in the same order (same bits,
    same autograd graph for the parameters), without its primal pass and per-op dispatch."""
    es, L, out = split(model, e), model.L, []
    for i in range(L):
        h = None if i == 0 else es[i - 1] @ p[f"ff.{i}.weight"].T
        if i < L - 1:
            t = es[i + 1] @ p[f"fb.{i}.weight"].T
            h = t if h is None else h + t
        out.append(h)
    return torch.cat(out, 1) - e


def dense_jacobian(model: EquilibriumMLP, p: dict) -> torch.Tensor:
    """J = ∂F/∂s, the same for every s (Φ is affine): the blocks W_l below and B_l above the diagonal,
    minus I. Equal, entry for entry, to `jacfwd` of the field for finite weights (one-hot tangents: every
    product but one is an exact zero)."""
    dim, offs = sum(model.sizes[1:]), [0]
    for n in model.sizes[1:]:
        offs.append(offs[-1] + n)
    J = torch.zeros(dim, dim, dtype=p["ff.0.weight"].dtype)
    for i in range(1, model.L):
        J[offs[i]:offs[i + 1], offs[i - 1]:offs[i]] = p[f"ff.{i}.weight"]
        J[offs[i - 1]:offs[i], offs[i]:offs[i + 1]] = p[f"fb.{i - 1}.weight"]
    return J - torch.eye(dim)


class HoloEP(GradientEstimator):
    name = "holo_ep"

    def __init__(self, N: int = 4, beta: float = 0.5, T2: int = 20, homeostasis: float = 0.0, n_eps: int = 5,
                 probe_samples: int = 10, probe_every: int = 1):
        if int(N) != N or N < 1:
            raise OptrunError(f"trainer.estimator.N: expected a positive integer, got {N!r}")
        if beta <= 0 or T2 <= 0 or homeostasis < 0 or n_eps < 1:
            raise OptrunError("trainer.estimator: expected beta > 0, T2 > 0, homeostasis >= 0, n_eps >= 1")
        self.N, self.beta, self.T2, self.lam, self.n_eps = int(N), float(beta), int(T2), float(homeostasis), int(n_eps)
        self.probe_samples, self.probe_every = int(probe_samples), int(probe_every)

    def nudges(self) -> list[tuple[complex, float]]:
        """(β_k, weight) for k = 0..⌊N/2⌋: weight 2 for the k whose conjugate N − k is skipped."""
        out = []
        for k in range(self.N // 2 + 1):
            w = 1.0 if (k == 0 or 2 * k == self.N) else 2.0
            out.append((self.beta * complex(math.cos(2 * math.pi * k / self.N), math.sin(2 * math.pi * k / self.N)), w))
        return out

    def cost(self) -> dict[str, int]:
        fwd = (len(self.nudges()) * self.T2) + (2 * self.n_eps if self.lam > 0 else 0)
        return {"forward_passes": self._T1 + fwd if hasattr(self, "_T1") else fwd,
                "backward_passes": 1 + (self.lam > 0), "function_evals": 1}

    def setup(self, problem: Problem, state) -> None:
        if not isinstance(problem.module, EquilibriumMLP):
            raise OptrunError("estimator holo_ep: needs model=equilibrium (runner.models.equilibrium.EquilibriumMLP)")
        self._T1 = problem.module.T1

    columns_ = ["homeo_loss", "sym_ratio", "cos_delta", "cos_delta_hidden", "residual", "angle"]

    def columns(self) -> list[str]:
        return list(self.columns_)

    # ---- the pieces ----
    def neuron_error(self, model, p, x, y, u1) -> torch.Tensor:
        """δ ≈ ds*/dβ by the Cauchy integral (flat, real, per sample)."""
        s1 = torch.cat([sigmoid(v) for v in u1], 1)
        nud = self.nudges()
        real = all(b.imag == 0 for b, _ in nud)
        dtype = torch.float32 if real else torch.complex64
        betas = torch.cat([torch.full((x.shape[0], 1), b.real if real else b, dtype=dtype) for b, _ in nud])
        K = len(nud)
        u = relax(model, p, x.repeat(K, 1), self.T2, y.repeat(K), betas, [v.repeat(K, 1) for v in u1])
        s = torch.cat([sigmoid(v) for v in u], 1).view(K, x.shape[0], -1)
        d = sum(w * ((s[k] - s1) / betas.view(K, -1)[k, 0]).real for k, (_, w) in enumerate(nud))
        return d / self.N

    def homeo_loss(self, model, p, x, s1, eps) -> torch.Tensor:
        """E_ε[‖Jε‖² − εᵀJ²ε] / dim with J = ∂F/∂s at s1, two JVPs per ε (differentiable in p); the
        `n_eps` draws per sample are stacked along the batch. J does not depend on s1 (nor x): Φ is affine."""
        e = eps.flatten(0, 1)
        je = jacobian_vector(model, p, e)
        jje = jacobian_vector(model, p, je)
        return ((je ** 2).sum(1) - (e * jje).sum(1)).mean() / s1.shape[1]

    def dense_jacobians(self, model, p, x, u1):
        """J = ∂F/∂s (per sample) at the free fixed point, and s1 = σ(u1). With finite weights J is built
        from them (`dense_jacobian`; laid out as `vmap(jacfwd)` lays it out, so later reductions sum in the
        same order); otherwise by `vmap(jacfwd)`, whose NaN pattern (0 · inf) the metrics then keep."""
        s1 = torch.cat([sigmoid(v) for v in u1], 1)
        if all(bool(torch.isfinite(v).all()) for n, v in p.items() if n.startswith(("ff.", "fb."))):
            Jd = dense_jacobian(model, p)
            return Jd.mT.expand(s1.shape[0], -1, -1).contiguous().mT, s1

        def field1(v, xi):
            return torch.cat(model.phi(p, split(model, v[None]), xi[None]), 1)[0] - v
        J = vmap(jacfwd(field1))(s1, x)
        return J, s1

    def probe(self, model, p, x, y, u1, delta) -> dict:
        m = min(self.probe_samples, x.shape[0])
        with torch.no_grad():
            x, y, u1, delta = x[:m], y[:m], [v[:m] for v in u1], delta[:m]
            J, s1 = self.dense_jacobians(model, p, x, u1)
            Js, Ja = 0.5 * (J + J.mT), 0.5 * (J - J.mT)
            ns, na = Js.flatten(1).norm(dim=1), Ja.flatten(1).norm(dim=1)
            dim = J.shape[-1]
            # backprop's neuron error: λ = (I − J_uᵀ)⁻¹ ∂ℓ/∂u with J_u = (J + I) diag(σ'(u))
            sp = s1 * (1 - s1)
            Ju = (J + torch.eye(dim)) * sp[:, None, :]
            gs = torch.zeros_like(s1)
            gs[:, -model.sizes[-1]:] = model.nudge(p, s1[:, -model.sizes[-1]:], y)
            lam = torch.linalg.solve(torch.eye(dim) - Ju.mT, (sp * gs)[..., None])[..., 0]
            cos = F.cosine_similarity(delta, lam, dim=1)
            h = sum(model.sizes[1:-1])  # the hidden layers alone (the output layer's error dominates the norm)
            cos_h = F.cosine_similarity(delta[:, :h], lam[:, :h], dim=1)
            return {"homeo_loss": float((2 * na ** 2 / dim).mean()),  # ½‖J − Jᵀ‖² = 2‖J_a‖²
                    "sym_ratio": float((ns / (ns + na)).mean()), "cos_delta": float(cos.mean()),
                    "cos_delta_hidden": float(cos_h.mean()),
                    "residual": float(model.residual(p, u1, x).mean()), "angle": model.feedback_angle()}

    def estimate(self, problem: Problem, batch, state, generator: torch.Generator) -> Estimate:
        model: EquilibriumMLP = problem.module
        p = problem.params
        x, y = batch
        x = x.flatten(1)
        with torch.no_grad():
            pd = {n: v.detach() for n, v in p.items()}
            u1 = relax(model, pd, x, model.T1)
            delta = self.neuron_error(model, pd, x, y, u1)
        names = list(p)
        with torch.enable_grad():
            s1 = [sigmoid(v) for v in u1]
            new = torch.cat(model.phi(p, s1, x), 1)
            out = model.logits(p, s1[-1])
            loss = F.cross_entropy(out, y)
            obj = (new * delta).sum() / x.shape[0] + loss  # its gradient: (∂Φ/∂θ)ᵀ δ / B + the readout gradient
            if self.lam > 0:
                eps = torch.randn((self.n_eps, *delta.shape), generator=generator, device=delta.device)
                obj = obj + self.lam * self.homeo_loss(model, p, x, torch.cat(s1, 1), eps)
            grads = torch.autograd.grad(obj, [p[n] for n in names], allow_unused=True)
        grads = {n: (g if g is not None else torch.zeros_like(p[n])) for n, g in zip(names, grads)}
        step = getattr(state, "step", 0)
        metrics = self.probe(model, pd, x, y, u1, delta) if step % self.probe_every == 0 else {}
        return Estimate(loss.detach(), grads, self.cost(), output=out.detach(), metrics=metrics)
