"""holo_ep: the fixed-point network (runner/models/equilibrium.py) and holomorphic EP with Jacobian
homeostasis (experiments/holo_ep/estimator.py), against torch.func on tiny nets."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch.func import jacfwd, jvp

from experiments.holo_ep.estimator import HoloEP, dense_jacobian, jacobian_vector, relax, split
from runner.estimators.base import Backprop, Problem, cosine, flat
from runner.models.equilibrium import EquilibriumMLP, sigmoid


def _net(angle=90.0, hidden=(6, 5), seed=0, T1=200):
    torch.manual_seed(seed)
    return EquilibriumMLP((4,), 3, hidden=list(hidden), angle=angle, T1=T1)


def _batch(n=5, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 4, generator=g), torch.randint(0, 3, (n,), generator=g)


def test_initial_angle_follows_the_papers_rotation():
    assert _net(0.0).feedback_angle() == pytest.approx(0.0, abs=1e-3)
    m = _net(0.0)
    for i, lin in enumerate(m.fb):
        assert torch.allclose(lin.weight, m.ff[i + 1].weight.T)
    wide = EquilibriumMLP((64,), 10, hidden=[400, 400], angle=90.0)
    assert 80 < wide.feedback_angle() < 100  # independent R: nearly orthogonal in high dimension


def test_forward_is_the_free_fixed_point_readout_and_functional():
    m, (x, _) = _net(), _batch()
    p = m.params()
    with torch.no_grad():
        u = m.relax(p, x, m.T1)
        assert float(m.residual(p, u, x).max()) < -5
        out = m(x)
        assert torch.allclose(out, m.logits(p, sigmoid(u[-1])))
        doubled = {n: 1.1 * v for n, v in p.items()}
        assert torch.allclose(Problem(m, F.cross_entropy).forward(doubled, x),
                              m.logits(doubled, sigmoid(m.relax(doubled, x, m.T1)[-1])))


def test_complex_nudges_run_in_complex64_and_conjugate():
    m, (x, y) = _net(), _batch()
    p = m.params()
    with torch.no_grad():
        u1 = m.relax(p, x, m.T1)
        b = torch.full((x.shape[0], 1), 0.3 * complex(math.cos(1.0), math.sin(1.0)), dtype=torch.complex64)
        ua = m.relax(p, x, 40, y, b, u1)
        ub = m.relax(p, x, 40, y, b.conj(), u1)
    assert all(v.dtype == torch.complex64 for v in ua)
    assert all(torch.allclose(a, c.conj(), atol=1e-5) for a, c in zip(ua, ub))


def _exact_delta(m, p, x, y, u1, T=300):
    """ds*/dβ at β = 0 by forward mode through the nudged relaxation (torch.func.jvp in β)."""
    def s_of(beta):
        u = m.relax(p, x, T, y, beta, u1)
        return torch.cat([sigmoid(v) for v in u], 1)
    return jvp(s_of, (torch.zeros(x.shape[0], 1),), (torch.ones(x.shape[0], 1),))[1]


def test_cauchy_estimate_matches_the_exact_derivative_for_N_at_least_2():
    """The Cauchy estimate's bias is O(|β|^N): shrinking |β| 5x shrinks it ~5^N x, and with N >= 4 and
    |β| = 0.1 it is below 1e-5 of the exact ds*/dβ (N = 1, the forward difference, stays at O(β))."""
    m, (x, y) = _net(), _batch()
    p = {n: v.detach() for n, v in m.params().items()}
    with torch.no_grad():
        u1 = m.relax(p, x, m.T1)
    exact = _exact_delta(m, p, x, y, u1)

    def err(N, beta):
        with torch.no_grad():
            d = HoloEP(N=N, beta=beta, T2=300).neuron_error(m, p, x, y, u1)
        return float((d - exact).norm() / exact.norm())
    for N in (1, 2, 3, 4):
        assert 5 ** N / 2 < err(N, 0.5) / err(N, 0.1) < 5 ** N * 2
    assert err(1, 0.1) > 1e-3
    assert err(4, 0.1) < 1e-5 and err(6, 0.1) < 1e-5


def test_symmetric_net_gives_the_gradient_of_the_fixed_point_loss():
    """With tied weights δ is the implicit (recurrent-backprop) adjoint, so the hEP direction is the
    gradient of the loss at the fixed point, i.e. backprop through a converged free phase."""
    m, (x, y) = _net(0.0, T1=300), _batch()
    pr = Problem(m, F.cross_entropy)
    est = HoloEP(N=4, beta=0.05, T2=300)
    est.setup(pr, None)
    g = est.estimate(pr, (x, y), None, torch.Generator().manual_seed(0)).grads
    bp = Backprop().estimate(pr, (x, y), None, None).grads
    assert float(cosine(flat(g), flat(bp))) > 0.999
    assert float((flat(g) - flat(bp)).norm() / flat(bp).norm()) < 1e-2


def test_homeostasis_estimate_matches_the_dense_antisymmetric_norm_and_its_gradient():
    m, (x, _) = _net(), _batch(3)
    p = m.params()
    with torch.no_grad():
        s1 = torch.cat([sigmoid(v) for v in m.relax(p, x, m.T1)], 1)
    dim = s1.shape[1]

    def dense(p):
        def field(v, xi):
            return torch.cat(m.phi(p, split(m, v[None]), xi[None]), 1)[0] - v
        tot = 0.0
        for v, xi in zip(s1, x):
            J = jacfwd(field)(v, xi)
            tot = tot + 0.5 * ((J - J.T) ** 2).sum() / dim
        return tot / len(x)
    eps = torch.randn(4000, *s1.shape, generator=torch.Generator().manual_seed(0))
    est = HoloEP().homeo_loss(m, p, x, s1, eps)
    exact = dense(p)
    assert float(est.detach()) == pytest.approx(float(exact.detach()), rel=0.05)
    names = [n for n in p if n.startswith("fb.") or (n.startswith("ff.") and n != "ff.0.weight" and n.endswith("weight"))]
    ge = torch.autograd.grad(est, [p[n] for n in names])
    gx = torch.autograd.grad(exact, [p[n] for n in names])
    assert float(cosine(torch.cat([g.flatten() for g in ge]), torch.cat([g.flatten() for g in gx]))) > 0.98


def test_estimate_is_pure_and_reports_cost_and_metrics():
    m, (x, y) = _net(), _batch()
    pr = Problem(m, F.cross_entropy)
    est = HoloEP(N=4, beta=0.5, T2=15, homeostasis=1.0, n_eps=2)
    est.setup(pr, None)
    before = {n: v.clone() for n, v in m.state_dict().items()}
    a = est.estimate(pr, (x, y), None, torch.Generator().manual_seed(3))
    b = est.estimate(pr, (x, y), None, torch.Generator().manual_seed(3))
    assert all(torch.equal(a.grads[n], b.grads[n]) for n in a.grads)
    assert all(torch.equal(v, m.state_dict()[n]) for n, v in before.items())
    assert a.counts == {"forward_passes": 200 + 3 * 15 + 2 * 2, "backward_passes": 2, "function_evals": 1}
    assert set(a.metrics) == set(est.columns())
    assert 0 < a.metrics["sym_ratio"] < 1 and a.metrics["homeo_loss"] > 0
    assert math.isfinite(a.metrics["cos_delta"])


def test_fast_paths_are_bit_identical_to_the_model_and_torch_func():
    """The estimator's hoisted `relax`, its `jacobian_vector` (J e, with its parameter gradient) and
    `dense_jacobian` give exactly the bits of `model.relax`, `torch.func.jvp` and `vmap(jacfwd)`."""
    m, (x, y) = _net(hidden=(6, 5, 4)), _batch()
    p = m.params()
    with torch.no_grad():
        u1 = m.relax(p, x, 30)
        assert all(torch.equal(a, b) for a, b in zip(relax(m, p, x, 30), u1))
        b = torch.full((x.shape[0], 1), 0.5j, dtype=torch.complex64)
        assert all(torch.equal(a, c) for a, c in zip(relax(m, p, x, 7, y, b, u1), m.relax(p, x, 7, y, b, u1)))
    s1 = torch.cat([sigmoid(v) for v in u1], 1)
    e = torch.randn(s1.shape, generator=torch.Generator().manual_seed(0))

    def field(v):
        return torch.cat(m.phi(p, split(m, v), x), 1) - v
    ref, fast = jvp(field, (s1,), (e,))[1], jacobian_vector(m, p, e)
    assert torch.equal(ref, fast)
    names = [n for n in p if n.endswith("weight")]
    ga = torch.autograd.grad((ref ** 2).sum(), [p[n] for n in names], allow_unused=True)
    gb = torch.autograd.grad((fast ** 2).sum(), [p[n] for n in names], allow_unused=True)
    assert all((a is None and b is None) or torch.equal(a, b) for a, b in zip(ga, gb))
    with torch.no_grad():
        J, _ = HoloEP().dense_jacobians(m, p, x, u1)
        J0 = jacfwd(lambda v: torch.cat(m.phi(p, split(m, v[None]), x[:1]), 1)[0] - v)(s1[0])
    assert torch.equal(J[0], J0) and torch.equal(dense_jacobian(m, p), J0) and J.stride() == (J0.numel(), 1, J0.shape[0])
