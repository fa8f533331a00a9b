"""Rule-flipped SGD (curl descent), spherical Langevin and the iterate-average probe, against dense
hand-written references."""
import math

import pytest
import torch

from runner import seeding
from runner.errors import OptrunError
from runner.hooks.iterate_average import IterateAverage
from runner.optim.langevin import SphericalLangevin
from runner.optim.rule_flip import RuleFlippedSGD


def _net_and_grads(seed=0):
    g = torch.Generator().manual_seed(seed)
    w1, w2 = torch.randn(4, 6, generator=g), torch.randn(1, 4, generator=g)
    g1, g2 = torch.randn(4, 6, generator=g), torch.randn(1, 4, generator=g)
    return w1, w2, g1, g2


def _step(opt_kwargs, seed=0):
    w1, w2, g1, g2 = _net_and_grads(seed)
    p1, p2 = torch.nn.Parameter(w1.clone()), torch.nn.Parameter(w2.clone())
    p1.grad, p2.grad = g1.clone(), g2.clone()
    opt = RuleFlippedSGD([p1, p2], **opt_kwargs)
    opt.step()
    return (w1, w2, g1, g2), (p1.detach(), p2.detach()), opt


def test_rule_flip_without_flips_is_sgd_and_cosine_is_one():
    (w1, w2, g1, g2), (p1, p2), opt = _step({"lr": 0.1, "rescale": False})
    assert torch.allclose(p1, w1 - 0.1 * g1) and torch.allclose(p2, w2 - 0.1 * g2)
    assert float(opt.stats["update_cosine"]) == pytest.approx(1.0, abs=1e-6)


def test_rule_flip_applies_the_column_sign_matrix_and_rescales_to_the_initial_norm():
    (w1, w2, g1, g2), (p1, p2), opt = _step({"lr": 0.1, "flipped": [2, 1], "rescale": False})
    d1, d2 = torch.diag(torch.tensor([-1.0, -1, 1, 1, 1, 1])), torch.diag(torch.tensor([-1.0, 1, 1, 1]))
    assert torch.allclose(p1, w1 - 0.1 * g1 @ d1) and torch.allclose(p2, w2 - 0.1 * g2 @ d2)
    cos = float(opt.stats["update_cosine"])
    expect = float(((g1 @ d1) * g1).sum() + ((g2 @ d2) * g2).sum()) / float(torch.cat([g1.flatten(), g2.flatten()]).norm()) ** 2
    assert cos == pytest.approx(expect, rel=1e-5) and cos < 1
    (w1, w2, _, _), (p1, p2), opt = _step({"lr": 0.1, "flipped_fraction": [0.5, 0.25], "rescale": True})
    assert torch.allclose(p1.norm(), w1.norm()) and torch.allclose(p2.norm(), w2.norm())
    assert float(opt.stats["weight_norm1"]) == pytest.approx(float(w1.norm()), rel=1e-6)
    assert opt.state[opt.param_groups[0]["params"][0]]["column_sign"].tolist() == [-1, -1, -1, 1, 1, 1]


def test_rule_flip_rejects_bad_settings():
    p = [torch.nn.Parameter(torch.zeros(2, 3))]
    with pytest.raises(OptrunError, match="flipped"):
        RuleFlippedSGD(p, flipped=[4])
    with pytest.raises(OptrunError, match="not both"):
        RuleFlippedSGD(p, flipped=[1], flipped_fraction=[0.5])


def test_spherical_langevin_step_matches_the_formula_and_is_reproducible():
    theta0 = torch.tensor([0.6, 0.8, 0.0])
    grad = torch.tensor([1.0, -2.0, 0.5])

    def one(seed):
        p = torch.nn.Parameter(theta0.clone())
        p.grad = grad.clone()
        opt = SphericalLangevin([p], lr=0.04, beta=3.0, seed=seed)
        opt.step()
        return p.detach(), opt

    a, opt = one(7)
    b, _ = one(7)
    assert torch.equal(a, b) and float(a.norm()) == pytest.approx(1.0, abs=1e-6)
    xi = torch.randn(3, generator=seeding.generator(7, "langevin"))  # the optimizer's own noise stream
    move = math.sqrt(0.04) * xi - 0.04 * 3.0 * grad
    ref = theta0 + move - theta0 * (theta0 @ move)
    assert torch.allclose(a, ref / ref.norm(), atol=1e-6)
    c, _ = one(8)
    assert not torch.equal(a, c)


def test_spherical_langevin_without_noise_follows_projected_gradient_flow():
    """With beta large and the noise negligible (dt * beta >> sqrt(dt)), the chain climbs (theta.e1)^2."""
    p = torch.nn.Parameter(torch.tensor([0.1, 1.0, 0.0]) / math.sqrt(1.01))
    opt = SphericalLangevin([p], lr=1e-3, beta=1e3, seed=0)
    for _ in range(200):
        opt.zero_grad()
        (-(p[0] ** 2)).backward()
        opt.step()
    assert float(p.detach()[0].abs()) > 0.99 and float(p.detach().norm()) == pytest.approx(1.0, abs=1e-6)


class _S:
    def __init__(self, model, data, step=0):
        self.model, self.data, self.step, self.phase_end = model, data, step, False


def test_iterate_average_matches_explicit_averages():
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 1, bias=False)
    star = torch.tensor([1.0, 0.0, 0.0])
    data = type("D", (), {"teacher": {"direction": star}})()
    hook = IterateAverage(report_every=5, burn_in=2)
    state = _S(model, data)
    hook.setup(state)
    thetas = []
    for step in range(1, 11):
        with torch.no_grad():
            model.weight.copy_(torch.randn(1, 3))
        state.step = step
        out = hook(state)
        if step >= 2:
            thetas.append(model.weight.detach().flatten().clone())
    th = torch.stack(thetas)
    mean, moment = th.mean(0), th.T @ th / len(th)
    assert out["overlap_avg"] == pytest.approx(float(mean[0].abs() / mean.norm()), rel=1e-5)
    assert out["theta_bar_norm"] == pytest.approx(float(mean.norm()), rel=1e-5)
    top = torch.linalg.eigh(moment)[1][:, -1]
    assert out["overlap_second"] == pytest.approx(float(top[0].abs()), rel=1e-5)
    theta = model.weight.detach().flatten()
    assert out["overlap_last"] == pytest.approx(float(theta[0].abs() / theta.norm()), rel=1e-5)
    state.step = 11
    assert hook(state) == {}
