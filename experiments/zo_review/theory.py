"""The expected cosine between a zeroth-order estimate and the true gradient, √(2/(π·dim)), with the
dimension each estimator really perturbs (the derivation is in the card, section "Theory").

Every estimator here is linear in its noise n ~ N(0, I) before the loss is read: it moves the weights
by J n (J = I for weight perturbation; for node perturbation J maps the noise on every linear layer's
outputs, sample by sample, to the weight matrices: n_b xᵀ_b per layer and sample), reads the slope
s = δ·n of the loss along the move (δ = the loss gradient with respect to the perturbed variables),
and returns ĝ = s J n. With g = J δ the true gradient,

    cos(ĝ, g) = sign(δ·n) (nᵀ M δ) / (√(nᵀ M n) |g|),   M = Jᵀ J,

and for many perturbed variables nᵀ M n ≈ tr M, E[sign(δ·n) nᵀMδ] = √(2/π) δᵀMδ / |δ|, so

    E cos ≈ √(2/π) · |g| / (|δ| √(tr M)) = √(2/(π·dim)),   dim = tr(JᵀJ) |δ|² / |J δ|².

J = I gives dim = P (the parameter count) for SPSA and forward gradients. Node perturbation with the
batch loss has N = nodes × batch perturbed variables, but dim = N only when the layers' inputs are
orthonormal across the batch (M = I); with real inputs it is tr M |δ|² / δᵀ M δ. Per-sample loss
changes (`per_example: true`) sum B independent single-sample estimates, whose cosine concentrates
instead: E cos ≈ |g| / √(E|ĝ|²) with E|ĝ|² = |g|² + Σ_b (|δ_b|² tr M_bb + δ_bᵀ M_bb δ_b), written here
as the dim with the same √(2/(π·dim)) (an equivalent dimension, not a count). Antithetic ES with K
pairs and centred ranks averages K directions with fixed shaped weights: E cos = √(K/P) E[|z| u] /
√(E u²), u the shaped weight of a pair (see `es_dim`).
"""
from __future__ import annotations

import math

import torch

from runner.estimators.zeroth_order import SPSA, AntitheticES, ForwardGradient, NodePerturbation


def mean_abs_chi(k: int) -> float:
    """E √(χ²_k) = √2 Γ((k+1)/2) / Γ(k/2): the norm of k standard normals."""
    return math.sqrt(2) * math.exp(math.lgamma((k + 1) / 2) - math.lgamma(k / 2))


def averaged_dim(p: int, k: int) -> float:
    """k raw directional slopes averaged, Σ (g·v_i) v_i: cos ≈ √(Σ z_i² / P), so dim = 2P / (π (E√χ²_k)²)."""
    return 2 * p / (math.pi * mean_abs_chi(k) ** 2)


def es_dim(p: int, pairs: int, rank_shaping: bool = True) -> float:
    """OpenAI-ES with `pairs` antithetic pairs. With centred ranks over the 2K values f ± σ|g| z_i, the
    pair's weight is rank(+) − rank(−) = sign(z_i) (2 r_i + 1), r_i the rank of |z_i| among the K: the
    weights are a fixed set, Σ w² is deterministic, and E[|z_i| r_i] = (K − 1) E[|z| F(|z|)] =
    (K − 1)/√π (F the half-normal CDF). So E cos = √(K/P) E|z|u / √(E u²) with u = (2r+1)/(2K)."""
    k = pairs
    if not rank_shaping:
        return averaged_dim(p, k)
    e_zu = (2 * (k - 1) / math.sqrt(math.pi) + math.sqrt(2 / math.pi)) / (2 * k)
    e_u2 = (4 * k * k - 1) / (12 * k * k)
    cos = math.sqrt(k / p) * e_zu / math.sqrt(e_u2)
    return 2 / (math.pi * cos ** 2)


def node_terms(problem, batch) -> dict:
    """Per-sample node gradients δ_b^l (of the batch-mean loss, so they carry 1/B) of every nn.Linear
    output, with each layer's inputs (a column of ones appended where the layer has a bias)."""
    x, y = batch
    layers = NodePerturbation.layers(problem)
    zeros, inputs = {}, {}

    def tap(name, module):
        def hook(mod, args, output):
            z = torch.zeros_like(output, requires_grad=True)
            zeros[name] = z
            inp = args[0].detach().reshape(-1, args[0].shape[-1])
            inputs[name] = torch.cat([inp, torch.ones(len(inp), 1, dtype=inp.dtype)], 1) if module.bias is not None else inp
            return output + z
        return hook

    handles = [m.register_forward_hook(tap(n, m)) for n, m in layers.items()]
    try:
        with torch.enable_grad():
            loss = problem.per_example(problem.forward(problem.params, x), y).mean()
            deltas = torch.autograd.grad(loss, [zeros[n] for n in layers])
    finally:
        for h in handles:
            h.remove()
    return {n: (d.reshape(-1, d.shape[-1]).detach(), inputs[n]) for n, d in zip(layers, deltas)}


def node_dims(problem, batch) -> tuple[float, float]:
    """(dim with the batch loss, equivalent dim with per-sample losses) of node perturbation."""
    terms = node_terms(problem, batch)
    d2 = trm = g2 = per_sample = 0.0
    sq_delta_b = sq_x_b = None
    for delta, inp in terms.values():  # delta: B x n_l, inp: B x (fan_in [+1])
        n_l, gram = delta.shape[1], inp @ inp.T
        d2 += float((delta ** 2).sum())
        trm += n_l * float(torch.trace(gram))
        g2 += float(((inp.T @ delta) ** 2).sum())  # |J δ|² = |g|² of this layer
        xb2, db2 = (inp ** 2).sum(1), (delta ** 2).sum(1)
        per_sample += float((xb2 * db2).sum())  # Σ_b δ_bᵀ M_bb δ_b
        sq_delta_b = db2 if sq_delta_b is None else sq_delta_b + db2
        sq_x_b = n_l * xb2 if sq_x_b is None else sq_x_b + n_l * xb2
    per_sample += float((sq_delta_b * sq_x_b).sum())  # Σ_b |δ_b|² tr M_bb
    batch_dim = trm * d2 / g2
    per_example_dim = 2 / math.pi * (g2 + per_sample) / g2
    return batch_dim, per_example_dim


def theory_dim(estimator, problem, batch) -> float:
    """The dimension in √(2/(π·dim)) for the core's zeroth-order estimators (NaN for others)."""
    p = problem.dim
    if isinstance(estimator, SPSA):
        return averaged_dim(p, estimator.directions) if estimator.directions > 1 else float(p)
    if isinstance(estimator, ForwardGradient):
        return averaged_dim(p, estimator.directions)
    if isinstance(estimator, AntitheticES):
        return es_dim(p, estimator.population // 2, estimator.rank_shaping)
    if isinstance(estimator, NodePerturbation):
        batch_dim, per_example_dim = node_dims(problem, batch)
        return per_example_dim if estimator.use_per_example and problem.per_example else batch_dim
    return float("nan")
