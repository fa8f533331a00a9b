"""The radius hook and controller: ρ_a against direct computations, the binary exact radius against
the nearest complex zero, the applied update (Adam, momentum SGD), the controller's guarantee, and
read-only probing."""
import copy
import math

import numpy as np
import pytest
import torch

from runner.dispatch import build
from runner.engine import Engine
from runner.hooks.radius import Radius
from runner.hooks.step_sweep import onset
from runner.metrics.radius import binary_radius, logit_jvp, radius, unit_direction
from runner.models.mlp import MLP
from runner.optim.spike import SpikeFactor
from runner.results import MetricsWriter

SPIKE = ["experiment=ghosts_softmax", "device=cpu", "trainer.steps=12", "schedule.start=4"]


def _linear(n_classes, seed=0):
    torch.manual_seed(seed)
    model = MLP((1, 8, 8), n_classes, hidden=[])
    x = torch.randn(40, 1, 8, 8, dtype=torch.float64)
    return model.double(), x


def _random_direction(model, seed=1):
    g = torch.Generator().manual_seed(seed)
    raw = {n: torch.randn(p.shape, generator=g, dtype=p.dtype) for n, p in model.named_parameters()}
    return unit_direction(raw)[0]


def test_rho_a_of_a_linear_softmax_model_matches_the_logits_along_the_line():
    model, x = _linear(10)
    params = {n: p.detach() for n, p in model.named_parameters()}
    v = _random_direction(model)
    z, a = logit_jvp(model, params, v, x)
    t = 0.37  # logits of a linear model move exactly linearly along the line
    with torch.no_grad():
        z_t = torch.func.functional_call(model, {n: params[n] + t * v[n] for n in params}, (x,))
    slopes = (z_t - z) / t
    torch.testing.assert_close(a, slopes, rtol=1e-9, atol=1e-9)
    spread = slopes.max(1).values - slopes.min(1).values
    delta, rho = radius(a)
    assert float(delta) == pytest.approx(float(spread.max()), rel=1e-12)
    assert float(rho) == pytest.approx(math.pi / float(spread.max()), rel=1e-12)
    assert float(radius(a, temperature=2.0)[1]) == pytest.approx(2 * float(rho), rel=1e-12)
    # no zero of the partition function sum_k exp(z_k + t a_k) lies inside the disk of radius rho_a
    phis = np.linspace(0, 2 * np.pi, 721)
    for radius_frac in (0.25, 0.6, 0.999):
        ts = radius_frac * float(rho) * np.exp(1j * phis)
        zz, aa = z.numpy()[:, None, :], a.numpy()[:, None, :]
        terms = np.exp(zz - zz.max(-1, keepdims=True) + ts[None, :, None] * aa)
        assert (np.abs(terms.sum(-1)) / np.abs(terms).sum(-1)).min() > 1e-3


class _Tied(torch.nn.Module):
    """Encoder and decoder share one weight (a tied parameter has two owners)."""

    def __init__(self):
        super().__init__()
        self.enc, self.dec = torch.nn.Linear(64, 64), torch.nn.Linear(64, 64)
        self.dec.weight = self.enc.weight  # the same Parameter, reached from both modules

    def forward(self, x):
        return self.dec(torch.tanh(self.enc(x.flatten(1))))


@pytest.mark.parametrize("make", ["mlp", "cnn", "transformer", "tied"])
def test_forward_mode_slopes_match_torch_func_jvp_and_leave_the_model_as_it_was(make):
    """logit_jvp (dual tensors, parameters swapped in place) = torch.func.jvp(functional_call), for
    every model kind the radius hook meets, tied weights included; the module is unchanged after,
    also when the forward raises."""
    from runner.models.cnn import CNN
    from runner.models.transformer import TinyTransformer

    torch.manual_seed(0)
    model = {"mlp": lambda: MLP((1, 8, 8), 10, hidden=[32]), "cnn": lambda: CNN((1, 8, 8), 10),
             "transformer": lambda: TinyTransformer((1, 8, 8), 10), "tied": _Tied}[make]().double()
    x = torch.randn(16, 1, 8, 8, dtype=torch.float64)
    before = {n: p for n, p in model.named_parameters()}
    params = {n: p.detach().clone() for n, p in model.named_parameters()}
    v = _random_direction(model)
    z, a = logit_jvp(model, params, v, x)
    z_ref, a_ref = torch.func.jvp(lambda p: torch.func.functional_call(model, p, (x,)), (params,), (v,))
    torch.testing.assert_close(z, z_ref, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(a, a_ref, rtol=1e-10, atol=1e-12)
    assert a.abs().max() > 0
    assert all(p is before[n] for n, p in model.named_parameters()) and model.training
    with pytest.raises(RuntimeError):
        logit_jvp(model, params, v, torch.randn(4, 3, dtype=torch.float64))  # wrong input shape
    assert all(p is before[n] and isinstance(p, torch.nn.Parameter) for n, p in model.named_parameters())


def test_binary_radius_is_the_distance_to_the_nearest_complex_zero():
    model, x = _linear(2, seed=3)
    params = {n: p.detach() for n, p in model.named_parameters()}
    v = _random_direction(model, seed=4)
    z, a = logit_jvp(model, params, v, x)
    rho_star = float(binary_radius(z, a))
    # direct: zeros of exp(z1 + t a1) + exp(z2 + t a2) solve (z1 - z2) + t (a1 - a2) = i pi (2m + 1)
    delta, slope = (z[:, 0] - z[:, 1]).numpy(), (a[:, 0] - a[:, 1]).numpy()
    zeros = np.stack([(1j * np.pi * (2 * m + 1) - delta) / slope for m in (-2, -1, 0, 1)])
    i = np.abs(zeros).min(0).argmin()
    t_star = zeros[:, i][np.abs(zeros[:, i]).argmin()]
    assert abs(t_star) == pytest.approx(rho_star, rel=1e-12)
    zi, ai = z[i].numpy(), a[i].numpy()
    assert abs(np.exp(zi + t_star * ai).sum()) < 1e-9 * np.abs(np.exp(zi + t_star * ai)).sum()
    # the multiclass bound pi/Delta_a is a lower bound of the exact radius
    assert float(radius(a)[1]) <= rho_star + 1e-12
    # temperature T: margins and slopes are divided by T
    direct_t = np.min(np.sqrt((delta / 3) ** 2 + np.pi ** 2) / np.abs(slope / 3))
    assert float(binary_radius(z, a, temperature=3.0)) == pytest.approx(direct_t, rel=1e-12)


def _hook_steps(make_cfg, overrides, steps, on_step=None):
    """Drive the trainer and the radius hook by hand; return [(theta_old, theta_new, out, state)] per
    step (`on_step(old, new, out, state)` sees the state right after each step)."""
    state, trainer, hooks = build(make_cfg(*SPIKE, *overrides))
    hook = next(h for h in hooks if isinstance(h, Radius))
    trainer.phases(state)
    hook.setup(state)
    records = []
    for _ in range(steps):
        hook.before_step(state)
        old = {n: p.detach().clone() for n, p in state.model.named_parameters()}
        trainer.step(state)
        state.step += 1
        out = {k: float(v) for k, v in hook(state).items()}
        records.append((old, {n: p.detach().clone() for n, p in state.model.named_parameters()}, out, state))
        if on_step is not None:
            on_step(*records[-1])
    return records


def _norm(d):
    return math.sqrt(sum(float((t.double() ** 2).sum()) for t in d.values()))


def test_tau_is_the_applied_adam_step(make_cfg):
    def check(old, new, out, state):
        beta1, beta2 = state.optimizer.param_groups[0]["betas"]
        lr, eps = out["lr"], state.optimizer.param_groups[0]["eps"]
        expected = {}
        for n, p in state.model.named_parameters():
            st = state.optimizer.state[p]
            t = float(st["step"])
            m_hat, v_hat = st["exp_avg"] / (1 - beta1 ** t), st["exp_avg_sq"] / (1 - beta2 ** t)
            expected[n] = lr * m_hat / (v_hat.sqrt() + eps)
        assert out["tau"] == pytest.approx(_norm(expected), rel=1e-4)
        assert out["r"] == pytest.approx(out["tau"] / out["rho_a"], rel=1e-9)

    _hook_steps(make_cfg, [], 3, check)


def test_tau_includes_the_momentum_buffer(make_cfg):
    def check(old, new, out, state):
        buf = {n: state.optimizer.state[p]["momentum_buffer"] * 0.05 for n, p in state.model.named_parameters()}
        assert out["tau"] == pytest.approx(_norm(buf), rel=1e-4)

    _hook_steps(make_cfg, ["optimizer=sgd", "optimizer.lr=0.05", "optimizer.momentum=0.9", "schedule.factor=1"], 3,
                check)


def test_controller_never_lets_r_exceed_one(make_cfg):
    """Under a x1000 LR spike the proposed r is far above 1; the applied step, measured from the
    parameters and with rho_a recomputed independently by finite differences at theta_old, is not."""
    recs = _hook_steps(make_cfg, ["hooks.radius.controller=true", "optimizer.lr=0.01"], 10)
    assert max(out["r_raw"] for *_, out, _ in recs) > 10  # the spike proposes steps far outside the radius
    x = recs[0][3].data.x_train.double()
    model = copy.deepcopy(recs[0][3].model).double()
    for old, new, out, _ in recs:
        step = {n: (new[n] - old[n]).double() for n in old}
        tau = _norm(step)
        assert out["r"] <= 1 + 1e-6 and tau / out["rho_a"] <= 1 + 1e-5
        v = {n: s / tau for n, s in step.items()}
        eps = 1e-6
        with torch.no_grad():
            f = lambda d: torch.func.functional_call(model, {n: old[n].double() + d * v[n] for n in old}, (x,))  # noqa: E731
            slopes = (f(eps) - f(-eps)) / (2 * eps)
        rho_direct = math.pi / float((slopes.max(1).values - slopes.min(1).values).max())
        assert out["rho_a"] == pytest.approx(rho_direct, rel=1e-3)
        assert tau / rho_direct <= 1 + 1e-3
    assert any(out["scale"] < 1 for *_, out, _ in recs)


def test_rho_set_controller_fixes_r(make_cfg):
    recs = _hook_steps(make_cfg, ["hooks.radius.controller=true", "hooks.radius.mode=set",
                                  "hooks.radius.target_r=0.5"], 4)
    for old, new, out, _ in recs:
        assert out["r"] == pytest.approx(0.5, rel=1e-5)
        assert _norm({n: new[n] - old[n] for n in old}) == pytest.approx(0.5 * out["rho_a"], rel=1e-4)


def test_probe_on_the_current_batch(make_cfg):
    recs = _hook_steps(make_cfg, ["hooks.radius.probe=batch"], 2)
    assert all(math.isfinite(out["rho_a"]) and out["rho_a"] > 0 for *_, out, _ in recs)


def _final_params(cfg, tmp_path, name, keep_hooks=True):
    state, trainer, hooks = build(cfg)
    Engine(trainer, hooks if keep_hooks else [], MetricsWriter(tmp_path / f"{name}.csv"), progress=False).run(state)
    return [p.detach().clone() for p in state.model.parameters()]


def test_read_only_probes_do_not_change_training(make_cfg, tmp_path):
    cfg = make_cfg(*SPIKE, "hooks=[radius,test_eval,step_sweep]", "hooks.step_sweep.n_r=4",
                   "hooks.step_sweep.n_random=2", "hooks.step_sweep.directions=[descent,random,ascent]",
                   "hooks.step_sweep.every=5")
    with_hooks = _final_params(cfg, tmp_path, "a")
    without = _final_params(cfg, tmp_path, "b", keep_hooks=False)
    assert all(torch.equal(a, b) for a, b in zip(with_hooks, without))


def test_spike_schedule_multipliers():
    held, single = SpikeFactor(50, 1000.0, None), SpikeFactor(50, 1e4, 1)
    assert [held(k) for k in (0, 49, 50, 51, 199)] == [1, 1, 1000, 1000, 1000]
    assert [single(k) for k in (49, 50, 51)] == [1, 1e4, 1]


def test_onset_interpolates_on_log_axes():
    r = np.array([0.5, 1.0, 2.0, 4.0])
    assert math.isnan(onset(r, np.array([1.0, 1.0, 1.05, 1.08]), 1.1))
    assert onset(r, np.array([1.2, 1.3, 1.4, 1.5]), 1.1) == 0.5
    assert onset(r, np.array([1.0, 1.0, 1.21, 2.0]), 1.1) == pytest.approx(math.sqrt(2.0), rel=1e-9)
