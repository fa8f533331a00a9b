"""Curvature estimators against the exact Hessian (torch.func.hessian) on small trained models."""
import math

import pytest
import torch
from torch import nn

from runner.curvature.estimators import hutchpp, lanczos, lanczos_deflated, trace_frobenius
from runner.curvature.hvp import HessianOperator, dense_hessian, probe_mode
from runner.data import load
from runner.hooks.sharpness import Sharpness
from runner.models.cnn import CNN
from runner.trainers.supervised import loss_fn

CE = lambda out, y: loss_fn("ce", out, y)  # noqa: E731


pytestmark = pytest.mark.usefixtures("one_thread")


def _mlp():  # 1,810 parameters, smooth (tanh): finite differences apply
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 24), nn.Tanh(), nn.Linear(24, 10))


def _cnn():  # 322 parameters, ReLU: a few eigenvalues dominate the trace
    return CNN((1, 8, 8), 10, channels=[2, 4], hidden=8)


def _trained(make, dtype=torch.float64, n=200, steps=150, lr=0.5):
    """A model trained for a while (near a minimum, where the Hessian is what the papers measure)."""
    torch.manual_seed(0)
    d = load("digits", seed=0)
    x, y = d.x_train[:n].to(dtype), d.y_train[:n]
    model = make().to(dtype)
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    for _ in range(steps):
        opt.zero_grad()
        CE(model(x), y).backward()
        opt.step()
    opt.zero_grad(set_to_none=True)
    return model, x, y


@pytest.fixture(scope="module", params=["mlp", "cnn"])
def problem(request):
    model, x, y = _trained(_mlp, n=200) if request.param == "mlp" else _trained(_cnn, n=64)
    with probe_mode(model):
        H = dense_hessian(model, CE, x, y)
    ev = torch.linalg.eigvalsh(H)
    return request.param, model, x, y, H, ev


@pytest.mark.parametrize("mode", ["graph", "jvp"])
def test_hvp_matches_dense_hessian_and_finite_differences(problem, mode):
    _, model, x, y, H, _ = problem
    with probe_mode(model):
        op = HessianOperator(model, CE, x, y, hvp=mode)
        g = torch.Generator().manual_seed(0)
        v = torch.randn(3, op.dim, generator=g, dtype=torch.float64)
        hv = op(v)
        assert torch.allclose(hv, v @ H, rtol=1e-8, atol=1e-10)
        assert torch.allclose(op(v[0]), hv[0], rtol=1e-10, atol=1e-12)
        assert op.n_matvec == 4
        chunked = HessianOperator(model, CE, x, y, hvp=mode, chunk_size=70, vector_batch=2)
        assert torch.allclose(chunked(v), hv, rtol=1e-8, atol=1e-10)
        g = torch.autograd.grad(CE(model(x), y), list(model.parameters()))
        assert torch.allclose(chunked.gradient(), torch.cat([t.reshape(-1) for t in g]), rtol=1e-10, atol=1e-12)
        assert torch.allclose(op.gradient(), chunked.gradient(), rtol=1e-10, atol=1e-12)
        if problem[0] == "cnn":
            return  # ReLU: the gradient jumps at kinks, finite differences do not apply
        # central differences of the gradient along v
        theta = torch.cat([p.reshape(-1) for p in op.params.values()]).detach()
        grad_at = lambda t: torch.func.grad(lambda f: op.loss(op.unflatten(f), x, y))(t)  # noqa: E731
        eps = 1e-5
        fd = (grad_at(theta + eps * v[0]) - grad_at(theta - eps * v[0])) / (2 * eps)
        assert (fd - hv[0]).norm() / hv[0].norm() < 1e-6


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_lanczos_top_eigenvalues_within_tolerance(problem, dtype):
    _, model, x, y, H, ev = problem
    model = model if dtype == torch.float64 else _cast(model, dtype)
    with probe_mode(model):
        op = HessianOperator(model, CE, x.to(dtype), y)
        g = torch.Generator().manual_seed(1)
        res = lanczos(op, torch.randn(op.dim, generator=g, dtype=dtype), k=3, tol=1e-3)
    assert res.converged
    top = ev.flip(0)[:3]
    rel = ((res.values - top).abs() / top.abs()).max().item()
    assert rel <= 1e-3, (res.values, top)
    # the Ritz vector is an eigenvector: small residual against the dense matrix
    u = res.vectors[0].double()
    assert (H @ u - res.values[0] * u).norm() <= 2e-3 * top[0] + (1e-3 if dtype == torch.float32 else 0)


def _cast(model, dtype):
    import copy

    return copy.deepcopy(model).to(dtype)


def test_trace_and_frobenius_within_5_percent_with_covering_standard_errors(problem):
    """Default estimator (Lanczos basis of 20 + 40 deflated probes) over 8 seeds: every estimate
    within 5 %, and |error| <= 2 SE in most seeds."""
    _, model, x, y, H, ev = problem
    tr, fro = float(H.trace()), float(H.norm())
    hook = Sharpness(every=1)
    covered_tr = covered_fro = 0
    for seed in range(8):
        hook.generator = torch.Generator().manual_seed(seed)
        hook.v_prev = None
        m = hook.measure(model, x, y, CE)
        assert abs(m["trace"] - tr) / tr < 0.05, (m["trace"], tr)
        assert abs(m["frobenius"] - fro) / fro < 0.05, (m["frobenius"], fro)
        assert abs(m["lambda_max"] - float(ev[-1])) / float(ev[-1]) <= 1e-3
        assert m["curvature_hvps"] == 20 + 40
        covered_tr += abs(m["trace"] - tr) <= 2 * m["trace_se"]
        covered_fro += abs(m["frobenius"] - fro) <= 2 * m["frobenius_se"]
    assert covered_tr >= 6 and covered_fro >= 6, (covered_tr, covered_fro)


def test_hutchpp_and_hutchinson_are_consistent(problem):
    """Unbiased with honest standard errors: |error| < 4 SE always, <= 2 SE in most of 6 seeds."""
    _, model, x, y, H, _ = problem
    tr, fro = float(H.trace()), float(H.norm())
    with probe_mode(model):
        op = HessianOperator(model, CE, x, y)
        zs = {"hutchpp": [], "hutchinson": []}
        for seed in range(6):
            g = torch.Generator().manual_seed(seed)
            a = hutchpp(op, op.dim, 60, g, dtype=torch.float64)
            b = trace_frobenius(op, op.dim, 40, g, dtype=torch.float64)
            assert a.n_matvec == 60 and b.n_matvec == 40
            for name, e in (("hutchpp", a), ("hutchinson", b)):
                zs[name].append(abs(e.trace - tr) / e.trace_se)
                assert abs(e.frobenius - fro) <= 4 * e.frobenius_se
    for name, z in zs.items():
        assert max(z) < 4 and sum(v <= 2 for v in z) >= 4, (name, z)


def test_deflation_with_full_basis_is_exact():
    torch.manual_seed(0)
    a = torch.randn(30, 30, dtype=torch.float64)
    H = a @ a.T / 30 - 0.2 * torch.eye(30, dtype=torch.float64)
    op = lambda v: v @ H  # noqa: E731
    res = lanczos(op, torch.randn(30, dtype=torch.float64), min_iter=30, max_iter=30)
    est = lanczos_deflated(op, res, probes=2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    assert math.isclose(est.trace, float(H.trace()), rel_tol=1e-9)
    assert math.isclose(est.frobenius, float(H.norm()), rel_tol=1e-9)
    assert math.isclose(float(res.values[0]), float(torch.linalg.eigvalsh(H)[-1]), rel_tol=1e-10)
    assert math.isclose(res.bottom, float(torch.linalg.eigvalsh(H)[0]), rel_tol=1e-8)


def test_warm_start_needs_fewer_products():
    model, x, y = _trained(_mlp, steps=100)
    hook = Sharpness(every=1, estimator="none")
    hook.generator = torch.Generator().manual_seed(0)
    cold = hook.measure(model, x, y, CE)["lanczos_hvps"]
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    for _ in range(3):  # a few more training steps: the top eigenvector moves a little
        opt.zero_grad()
        CE(model(x), y).backward()
        opt.step()
    warm = hook.measure(model, x, y, CE)["lanczos_hvps"]
    assert warm <= 8 and warm < cold, (warm, cold)


def test_probe_mode_has_no_side_effects():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Dropout(0.5), nn.Linear(8, 3)).double()
    x, y = torch.randn(40, 5, dtype=torch.float64), torch.randint(0, 3, (40,))
    model.train()
    CE(model(x), y).backward()
    grads = [p.grad.clone() for p in model.parameters()]
    buffers = {k: b.clone() for k, b in model.named_buffers()}
    model[3].eval()  # a mixed state that must come back as it was
    for bn in ("eval", "batch"):
        with probe_mode(model, batchnorm=bn):
            op = HessianOperator(model, CE, x, y)
            v = torch.randn(2, op.dim, dtype=torch.float64)
            first = op(v)
            assert torch.equal(first, HessianOperator(model, CE, x, y)(v))  # dropout off: deterministic
        assert [m.training for m in model.modules()] == [True, True, True, True, False, True]
        assert model[1].track_running_stats
    assert all(torch.equal(p.grad, g) for p, g in zip(model.parameters(), grads))
    assert all(torch.equal(b, buffers[k]) for k, b in model.named_buffers())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu():
    model, x, y = _trained(_mlp, dtype=torch.float32, steps=50)
    hook = Sharpness(every=1)
    hook.generator = torch.Generator().manual_seed(0)
    cpu = hook.measure(model, x, y, CE)
    hook_gpu = Sharpness(every=1)
    hook_gpu.generator = torch.Generator(device="cuda").manual_seed(0)
    gpu = hook_gpu.measure(_cast(model, torch.float32).cuda(), x.cuda(), y.cuda(), CE)
    assert abs(gpu["lambda_max"] - cpu["lambda_max"]) / cpu["lambda_max"] < 1e-3
    assert abs(gpu["trace"] - cpu["trace"]) / cpu["trace"] < 0.1
