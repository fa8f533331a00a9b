"""ReSTE: the binary layers' forward values, the surrogate derivatives against their formulas and against
autograd of f_o (away from the clipped regions), o = 1 == STE, binarizing the MLP and the ResNet (first
and last layers full precision), the estimator (pure, the o schedule, the indicators as the official
code computes them), a short run through the engine, and the paper-scale composition on CIFAR-10 files
written here."""
from __future__ import annotations

import math
import pickle

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from experiments.reste.estimator import FastSurrogate, SurrogateGradient, o_schedule
from experiments.reste.schedule import warmup_cosine
from runner.dispatch import build, execute
from runner.errors import OptrunError
from runner.estimators.base import Problem
from runner.models.binary import (
    BinaryConv2d,
    BinaryLinear,
    Surrogate,
    binarize,
    binary_layers,
    binary_mlp,
    binary_resnet,
    f_o,
    sign,
    using,
)
from runner.models.mlp import MLP
from runner.models.resnet import ResNet

pytestmark = pytest.mark.usefixtures("one_thread")
EXP = ["experiment=reste", "device=cpu"]


def _reste_formula(x: float, o: float, t: float = 1.5, interval: float = 0.1) -> float:
    a = abs(x)
    if a > t:
        return 0.0
    if a <= interval:
        return interval ** (1 / o) / interval
    return (1 / o) * a ** ((1 - o) / o)


def test_binary_layers_forward_scaled_signs():
    g = torch.Generator().manual_seed(0)
    lin = BinaryLinear(5, 3)
    x = torch.randn(4, 5, generator=g)
    w = lin.weight
    want = F.linear(torch.sign(x), torch.sign(w) * w.abs().mean(), lin.bias)
    assert torch.allclose(lin(x), want)
    lin.binarize_input = False  # 1W/32A
    assert torch.allclose(lin(x), F.linear(x, torch.sign(w) * w.abs().mean(), lin.bias))
    conv = BinaryConv2d(2, 3, 3, padding=1, bias=False)
    xi = torch.randn(2, 2, 5, 5, generator=g)
    cw = conv.weight
    assert torch.allclose(conv(xi), F.conv2d(torch.sign(xi), torch.sign(cw) * cw.abs().mean(), padding=1))
    assert set(lin(x).flatten().tolist()) != set()  # finite output
    values = torch.sign(conv.weight).unique().tolist()
    assert set(values) <= {-1.0, 1.0}


def test_reste_derivative_is_the_formula():
    xs = [-2.0, -1.5, -1.2, -0.5, -0.1, -0.05, 0.0, 0.03, 0.1, 0.1001, 0.7, 1.5, 1.6]
    for o in (1.0, 1.5, 3.0, 5.0):
        got = Surrogate("reste", o).grad(torch.tensor(xs, dtype=torch.float64)).tolist()
        assert got == pytest.approx([_reste_formula(x, o) for x in xs], rel=1e-12)
    ste = Surrogate("ste", clip=1.0).grad(torch.tensor(xs)).tolist()
    assert ste == [0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0]


def test_reste_derivative_is_autograd_of_f_o_away_from_the_clipped_regions():
    g = torch.Generator().manual_seed(1)
    mag = 0.1 + 1.4 * torch.rand(200, generator=g, dtype=torch.float64).clamp(1e-3, 1 - 1e-3)  # (0.1, 1.5)
    x = (mag * torch.where(torch.rand(200, generator=g) < 0.5, -1.0, 1.0).double()).requires_grad_()
    for o in (1.0, 2.0, 3.0, 5.0):
        (auto,) = torch.autograd.grad(f_o(x, o).sum(), x)
        assert torch.allclose(Surrogate("reste", o).grad(x.detach()), auto, rtol=1e-10, atol=0)
        # and sign() with this surrogate back-propagates exactly it, times the upstream gradient
        up = torch.randn(200, generator=g, dtype=torch.float64)
        (through,) = torch.autograd.grad((sign(x, Surrogate("reste", o)) * up).sum(), x)
        assert torch.allclose(through, auto * up, rtol=1e-10, atol=0)
        assert torch.equal(sign(x, Surrogate("reste", o)).detach(), torch.sign(x.detach()))


def test_o_equal_one_is_ste():
    x = torch.linspace(-3, 3, 601, dtype=torch.float64)
    assert torch.equal(Surrogate("reste", 1.0, t=1.0).grad(x), Surrogate("ste", clip=1.0).grad(x))
    assert torch.equal(Surrogate("reste", 1.0).grad(x), Surrogate("ste", clip=1.5).grad(x))  # the code's t = 1.5
    assert torch.equal(f_o(x, 1.0), x)


def test_the_estimators_fast_surrogate_is_bit_identical():
    """FastSurrogate (the estimator's) against runner.models.binary.Surrogate, bit for bit: both
    regions' edges, 0, +-inf, float32 and float64, the schedule's fractional o."""
    g = torch.Generator().manual_seed(0)
    edges = [0.0, -0.0, 0.1, -0.1, 0.0999999, 0.1000001, 1.5, -1.5, 1.4999999, 1.5000001, 1.0, 1e-30, float("inf"),
             -float("inf")]
    for dtype in (torch.float32, torch.float64):
        x = torch.cat([torch.tensor(edges, dtype=dtype), 0.8 * torch.randn(5000, generator=g, dtype=dtype)])
        for kind, o in (("reste", 1.0), ("reste", 1.5), ("reste", 2.0), ("reste", 3.0), ("reste", 5.0),
                        ("reste", 2.371), ("ste", 1.0)):
            want, got = Surrogate(kind, o).grad(x), FastSurrogate(kind, o).grad(x)
            assert got.dtype == want.dtype and torch.equal(got, want)
            assert torch.equal(torch.signbit(got), torch.signbit(want))


def test_surrogate_rejects_bad_settings():
    with pytest.raises(OptrunError, match="unknown 'sigmoid'"):
        Surrogate("sigmoid")
    with pytest.raises(OptrunError, match="o >= 1"):
        Surrogate("reste", 0.5)


def test_binarize_keeps_first_and_last_layers_full_precision():
    torch.manual_seed(0)
    mlp = MLP((64,), 10, [32, 32, 32], activation="identity", layer_norm=True)
    before = {n: p.clone() for n, p in mlp.named_parameters()}
    binarize(mlp)
    kinds = [type(m) for m in mlp.net if isinstance(m, nn.Linear)]
    assert kinds == [nn.Linear, BinaryLinear, BinaryLinear, nn.Linear]
    assert all(torch.equal(p, before[n]) for n, p in mlp.named_parameters())  # same weights
    assert mlp(torch.randn(3, 64)).shape == (3, 10)
    net = ResNet((3, 8, 8), 10, blocks=1, width=4)
    binarize(net)
    names = [n for n, _ in binary_layers(net)]
    assert names == ["layers.0.conv1", "layers.0.conv2", "layers.1.conv1", "layers.1.conv2", "layers.1.shortcut.0",
                     "layers.2.conv1", "layers.2.conv2", "layers.2.shortcut.0"]
    assert type(net.stem[0]) is nn.Conv2d and type(net.head) is nn.Linear
    assert isinstance(net.stem[1], nn.ReLU) and isinstance(net.stem[2], nn.BatchNorm2d)  # BN last: signed inputs
    assert net(torch.randn(2, 3, 8, 8)).shape == (2, 10)
    with pytest.raises(OptrunError, match="at least 3"):
        binarize(MLP((4,), 2, [3]))


def test_factories_and_using_restores_the_surrogate():
    m = binary_mlp((64,), 10, hidden=[16, 16, 16])
    assert len(binary_layers(m)) == 2
    r = binary_resnet((3, 8, 8), 10, blocks=1, width=4, binarize_input=False)
    assert all(not layer.binarize_input for _, layer in binary_layers(r))
    s = Surrogate("reste", 3.0)
    with using(m, s):
        assert all(layer.surrogate is s for _, layer in binary_layers(m))
    assert all(layer.surrogate == Surrogate() for _, layer in binary_layers(m))


class _State:
    def __init__(self, step, total):
        self.step, self.total_steps = step, total


def _problem(seed=0):
    torch.manual_seed(seed)
    model = binary_mlp((6,), 3, hidden=[8, 8, 8])
    x, y = torch.randn(16, 6), torch.randint(0, 3, (16,))
    return Problem(model, F.cross_entropy), (x, y)


def test_o_schedule_is_the_papers():
    assert o_schedule(3.0, 0.0) == 1.0 and o_schedule(3.0, 1.0) == pytest.approx(3.0)
    assert o_schedule(3.0, 0.5) == pytest.approx(1 + 2 * (1 - math.cos(math.pi / 4)))
    est = SurrogateGradient("reste", o_end=5.0)
    assert est.o(_State(0, 100)) == 1.0 and est.o(_State(100, 100)) == pytest.approx(5.0)
    assert SurrogateGradient("reste", 5.0, schedule="fixed").o(_State(0, 100)) == 5.0
    assert SurrogateGradient("ste", 5.0).o(_State(50, 100)) == 1.0
    with pytest.raises(OptrunError, match="schedule"):
        SurrogateGradient("reste", schedule="linear")


def test_estimate_is_pure_and_is_backprop_through_the_surrogate():
    problem, batch = _problem()
    model = problem.module
    params = {n: p.clone() for n, p in model.named_parameters()}
    est = SurrogateGradient("reste", o_end=3.0)
    state = _State(50, 100)
    out = est.estimate(problem, batch, state, torch.Generator())
    again = est.estimate(problem, batch, state, torch.Generator())
    assert all(torch.equal(out.grads[n], again.grads[n]) for n in out.grads)
    assert all(torch.equal(p, params[n]) for n, p in model.named_parameters())
    assert all(layer.surrogate == Surrogate() for _, layer in binary_layers(model))  # restored
    with using(model, Surrogate("reste", est.o(state))):
        model.zero_grad()
        F.cross_entropy(model(batch[0]), batch[1]).backward()
    assert all(torch.allclose(out.grads[n], p.grad) for n, p in model.named_parameters())
    assert out.counts == {"forward_passes": 1, "backward_passes": 1, "function_evals": 1}
    assert out.metrics["o"] == pytest.approx(o_schedule(3.0, 0.5))
    ste = SurrogateGradient("ste").estimate(problem, batch, state, torch.Generator())
    assert not all(torch.equal(ste.grads[n], out.grads[n]) for n in out.grads)


def test_indicators_are_the_official_codes():
    problem, batch = _problem(1)
    est = SurrogateGradient("reste", o_end=3.0)
    out = est.estimate(problem, batch, _State(0, 10), torch.Generator())
    err = var = 0.0
    for name, layer in binary_layers(problem.module):
        w = layer.weight.detach().reshape(-1)
        err += float((torch.sign(w) * w.abs() ** (1 / 3) - torch.sign(w)).norm())
        var += float(out.grads[f"{name}.weight"].abs().reshape(-1).var())
    # computed when the metrics writer resolves them, from copies taken at the step
    with torch.no_grad():
        for p in problem.params.values():
            p.add_(1.0)
    assert float(out.metrics["estimating_error"]) == pytest.approx(err)
    assert float(out.metrics["gradient_variance"]) == pytest.approx(var)
    assert 0 <= float(out.metrics["frac_beyond_t"]) <= 1


def test_warmup_cosine_schedule():
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
    sched = warmup_cosine(opt, warmup_steps=5, total_steps=25)
    lrs = []
    for _ in range(26):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[:5] == pytest.approx([0.02, 0.04, 0.06, 0.08, 0.1])
    assert lrs[15] == pytest.approx(0.05) and lrs[25] == pytest.approx(0.0, abs=1e-12)


def test_a_short_run_logs_o_and_the_indicators(make_cfg, tmp_path):
    summary = execute(make_cfg(*EXP, "trainer.steps=20", "schedule.warmup_steps=5", "hooks.test_eval.every=10",
                               "log_every=1", "model.hidden=[16,16,16]"), tmp_path / "run")
    assert summary["status"] == "completed"
    df = pd.read_csv(tmp_path / "run" / "metrics.csv")
    cols = ["estimator/o", "estimator/estimating_error", "estimator/gradient_variance", "estimator/frac_beyond_t"]
    assert set(cols) <= set(df.columns) and df["estimator/o"].dropna().is_monotonic_increasing
    assert df["forward_passes"].dropna().iloc[-1] == 20


def _cifar_batches(folder, n=4):
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8), "labels": list(range(n))}
        (folder / name).write_bytes(pickle.dumps(batch))


def test_paper_scale_is_resnet20_1w1a_on_cifar10_files(make_cfg, tmp_path):
    _cifar_batches(tmp_path / "cifar-10-batches-py")
    for arm in ("estimator=ste", "estimator=reste"):
        cfg = make_cfg(*EXP, "scale=paper", arm, f"dataset.data_dir={tmp_path}", "trainer.batch_size=8")
        assert cfg.model._target_ == "runner.models.binary.binary_resnet" and cfg.model.blocks == 3
        o = cfg.optimizer
        assert (o.lr, o.momentum, o.weight_decay) == (0.1, 0.9, 1e-4)
        assert (cfg.trainer.steps, cfg.schedule.warmup_steps, cfg.schedule.total_steps) == (196000, 980, 196000)
        state, trainer, _ = build(cfg)
        assert len(state.data.y_train) == 20 and state.data.input_shape == (3, 32, 32)
        assert len(binary_layers(state.model)) == 18 + 2  # 9 blocks x 2 convs + 2 projection shortcuts
        trainer.phases(state)
        metrics = trainer.step(state)
        assert math.isfinite(float(metrics["loss"]))
    assert make_cfg(*EXP, "scale=paper").trainer.batch_size == 256
