"""Synthetic teachers, the two-layer / conv / single-index models and the complexity probe."""
import math

import numpy as np
import pytest
import torch

from runner.data import load
from runner.data.synthetic import hermite, hermite_coefficients
from runner.errors import OptrunError
from runner.hooks.complexity import Complexity, angle_clusters
from runner.models.single_index import SingleIndex
from runner.models.two_layer import LinearConv, TwoLayer


def test_linear_teacher_is_whitened_with_the_stated_spectrum():
    d = load("linear_teacher", seed=3, d_in=10, d_out=8, singular_values=[5, 3, 2, 1], n_train=40)
    x = d.x_train.double()
    assert torch.allclose(x.T @ x / 40, torch.eye(10, dtype=torch.float64), atol=1e-5)
    w = d.teacher["weight"]
    assert torch.allclose(torch.linalg.svdvals(w)[:4], torch.tensor([5.0, 3, 2, 1]), atol=1e-5)
    assert torch.allclose(d.y_train, d.x_train @ w.T, atol=1e-5) and d.n_classes == 8
    assert torch.equal(load("linear_teacher", seed=3).y_test, load("linear_teacher", seed=3).y_test)
    with pytest.raises(OptrunError, match="singular_values"):
        load("linear_teacher", d_in=3, d_out=3, singular_values=[4, 3, 2, 1])


def test_kink_teacher_bends_where_it_says():
    d = load("kink_teacher", positions=[0.5, -0.5], slopes=[4.0, 2.0], orientations=[1, -1], n_train=5)
    assert d.x_train[:, 0].tolist() == pytest.approx([-1, -0.5, 0, 0.5, 1])
    assert d.y_train[:, 0].tolist() == pytest.approx([1.0, 0, 0, 0, 2.0])  # 2*relu(-(x+0.5)), 4*relu(x-0.5)
    with pytest.raises(OptrunError, match="inside"):
        load("kink_teacher", positions=[1.5], slopes=[1.0], orientations=[1])


def test_conv_teacher_is_a_rank_k_patch_matrix_and_the_model_matches_explicit_convolution():
    d = load("conv_teacher", seed=1, length=12, kernel_size=3, strengths=[3, 1])
    m = d.teacher["weight"]
    assert m.shape == (4, 3) and torch.allclose(torch.linalg.svdvals(m)[:2], torch.tensor([3.0, 1.0]), atol=1e-5)
    assert torch.allclose(d.y_train[:, 0], d.x_train[:, 0] @ m.reshape(-1), atol=1e-5)
    net = LinearConv((1, 12), 1, channels=5, kernel_size=3)
    x = torch.randn(7, 1, 12)
    conv = torch.nn.functional.conv1d(x, net.kernels[:, None, :], stride=3)  # (N, H, P): the textbook layer
    assert torch.allclose(net(x)[:, 0], (conv * net.readout[None]).sum((1, 2)), atol=1e-5)


def test_two_layer_teacher_and_hermite_single_index():
    d = load("two_layer_teacher", seed=0, d_in=6, hidden=4, activation="tanh", output_activation="tanh", n_train=20)
    w1, w2 = d.teacher["w1"], d.teacher["w2"]
    assert float(w1.abs().max()) <= 1 / math.sqrt(6) and float(w2.abs().max()) <= 1 / math.sqrt(4)
    assert torch.allclose(d.y_train, torch.tanh(torch.tanh(d.x_train @ w1.T) @ w2.T), atol=1e-6)
    for k in range(6):  # against numpy's probabilists' Hermite series
        ref = np.polynomial.hermite_e.HermiteE.basis(k).convert(kind=np.polynomial.Polynomial).coef[::-1]
        assert np.allclose(hermite_coefficients(k), ref / math.sqrt(math.factorial(k)))
    s = load("single_index", seed=2, dim=5, k=3, n_train=50)
    assert torch.allclose(s.teacher["direction"].norm(), torch.tensor(1.0))
    assert torch.allclose(s.y_train[:, 0], hermite(s.x_train @ s.teacher["direction"], 3), atol=1e-5)
    model = SingleIndex((5,), 1, k=3)
    assert torch.allclose(model.theta.norm(), torch.tensor(1.0))
    with torch.no_grad():
        model.theta.copy_(s.teacher["direction"])
    assert torch.allclose(model(s.x_train), s.y_train, atol=1e-5)


def test_two_layer_init_scale_and_probes():
    torch.manual_seed(0)
    big, small = TwoLayer((200,), 50, hidden=300), TwoLayer((200,), 50, hidden=300, init_scale=1e-4)
    assert float(big.fc1.weight.detach().std()) == pytest.approx(1 / math.sqrt(200), rel=0.05)
    assert float(small.fc1.weight.detach().std()) == pytest.approx(1e-4 / math.sqrt(200), rel=0.05)
    uni = TwoLayer((16,), 1, hidden=8, init="uniform", init_scale=2.0)
    assert float(uni.fc1.weight.detach().abs().max()) <= 2 / 4
    x = torch.randn(4, 200)
    assert torch.allclose(big(x), x @ big.end_to_end().T, atol=1e-4)
    relu = TwoLayer((1,), 1, hidden=3, activation="relu", bias=True)
    with torch.no_grad():
        relu.fc1.weight.copy_(torch.tensor([[2.0], [-1.0], [1.0]]))
        relu.fc1.bias.copy_(torch.tensor([1.0, 0.5, 0.0]))
        relu.fc2.weight.copy_(torch.tensor([[1.0, 2.0, 0.0]]))
    assert relu.kink_positions().tolist() == pytest.approx([-0.5, 0.5, 0.0])
    assert relu.unit_norms().tolist() == pytest.approx([math.sqrt(5), 2 * math.sqrt(1.25), 0.0])


def test_angle_clusters_wrap_around_the_circle():
    a = torch.tensor([3.13, -3.13, 0.0, 0.01, 1.0], dtype=torch.float64)
    groups = sorted(sorted(a[g].tolist()) for g in angle_clusters(a, 0.05))
    assert groups == [[-3.13, 3.13], [0.0, 0.01], [1.0]]
    assert len(angle_clusters(torch.tensor([0.1, 0.12]), 0.05)) == 1 and angle_clusters(torch.tensor([]), 0.1) == []


class _State:
    def __init__(self, model, data):
        self.model, self.data = model, data


def test_complexity_probe_counts_rank_modes_and_rays():
    d = load("linear_teacher", seed=0, d_in=6, d_out=6, singular_values=[3, 1], n_train=20)
    model = TwoLayer((6,), 6, hidden=6, init_scale=1e-6)
    u, v = d.teacher["u"], d.teacher["v"]
    with torch.no_grad():  # W2 W1 = 3 u1 v1^T + 0.4 u2 v2^T: mode 1 learned, mode 2 at 40 %
        model.fc1.weight.copy_(torch.cat([v.T, torch.zeros(4, 6)]))
        model.fc2.weight.copy_(torch.cat([u * torch.tensor([3.0, 0.4]), torch.zeros(6, 4)], 1))
    hook = Complexity(rank_threshold=0.5)
    hook.setup(_State(model, d))
    out = hook(_State(model, d))
    assert out["rank"] == 1 and out["mode1"] == pytest.approx(1.0, abs=1e-5) and out["mode2"] == pytest.approx(0.4)
    assert out["sv1"] == pytest.approx(3.0, abs=1e-5)
    k = load("kink_teacher")
    relu = TwoLayer((1,), 1, hidden=4, activation="relu", bias=True)
    with torch.no_grad():  # two units on one ray (kink 0.5), one bending left at 0.5, one tiny unit
        relu.fc1.weight.copy_(torch.tensor([[1.0], [2.0], [-1.0], [1.0]]))
        relu.fc1.bias.copy_(torch.tensor([-0.5, -1.0, 0.5, 0.0]))
        relu.fc2.weight.copy_(torch.tensor([[1.0, 1.0, 1.0, 1e-6]]))
    hook = Complexity(unit_threshold=0.05)
    hook.setup(_State(relu, k))
    out = hook(_State(relu, k))
    assert out["kinks"] == 2 and out["active_units"] == 3
