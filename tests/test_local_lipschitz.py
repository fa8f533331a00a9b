"""local_lipschitz: every bound against brute force on nets with 1-D and 2-D inputs (where the exact local
Lipschitz constant is the largest Jacobian row norm over a dense grid of activation patterns), soundness
for arbitrary slopes, branch and bound, the dense expansion of CNNs, real MNIST files, and a short run."""
import struct

import numpy as np
import pytest
import torch

from experiments.local_lipschitz import bounds
from experiments.local_lipschitz.bab import branch_and_bound
from experiments.local_lipschitz.exact import exact
from experiments.local_lipschitz.methods import jacobian_rows_l1
from experiments.local_lipschitz.problems import dense_layers, mlp, mnist_cnn_4layer

pytestmark = pytest.mark.usefixtures("one_thread")


def random_net(sizes, seed):
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(b, a, generator=g, dtype=torch.float64) / a ** 0.5,
             0.3 * torch.randn(b, generator=g, dtype=torch.float64)) for a, b in zip(sizes[:-1], sizes[1:])]


def all_bounds(layers, x0, eps):
    fw = bounds.forward_bounds(layers, x0, eps)
    ours, first = bounds.linear(layers, fw, x0, eps)
    vl, vu = bounds.refine_backward(layers, fw, x0, eps)
    ex, optimal, _ = exact(layers, fw, vl, vu, x0, eps, ours.numpy())
    assert optimal
    return fw, ex, float(ours.max()), float(first.max()), float(bounds.interval(layers, fw).max()), bounds.naive(layers)


def grid_max(layers, x0, eps, n):
    axes = [torch.linspace(-1, 1, n, dtype=torch.float64)] * len(x0)
    pts = x0 + eps * torch.stack(torch.meshgrid(*axes, indexing="ij"), -1).reshape(-1, len(x0))
    return float(jacobian_rows_l1(layers, pts, chunk=4096).max())


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_exact_milp_equals_brute_force_in_one_dimension(seed):
    layers = random_net([1, 8, 8, 3], seed)
    x0, eps = torch.tensor([0.1], dtype=torch.float64), 1.0
    fw, ex, ours, first, itv, nv = all_bounds(layers, x0, eps)
    brute = grid_max(layers, x0, eps, 200001)  # regions of a 1-D ReLU net are intervals: a dense grid finds them all
    assert fw.unstable >= 2
    assert ex == pytest.approx(brute, rel=1e-6)
    assert brute <= ex * (1 + 1e-6) <= ours * (1 + 1e-6) and ours <= first + 1e-9 and ours <= itv * (1 + 1e-9) <= nv


@pytest.mark.parametrize("seed", [0, 1])
def test_every_bound_is_ordered_against_a_dense_grid_in_two_dimensions(seed):
    layers = random_net([2, 10, 10, 4], seed)
    x0, eps = torch.tensor([0.2, -0.1], dtype=torch.float64), 0.5
    fw, ex, ours, first, itv, nv = all_bounds(layers, x0, eps)
    brute = grid_max(layers, x0, eps, 401)
    assert fw.unstable >= 3
    assert brute <= ex * (1 + 1e-6) and ex <= brute * 1.02  # the grid may only miss thin regions
    assert ex <= ours * (1 + 1e-6) and ours <= itv * (1 + 1e-9) <= nv


def test_linear_bound_is_sound_for_any_slopes():
    """Every slope value gives a valid relaxation: random slopes never go below the exact value."""
    layers = random_net([4, 12, 12, 5], 3)
    x0, eps = torch.zeros(4, dtype=torch.float64), 0.4
    fw = bounds.forward_bounds(layers, x0, eps)
    vl, vu = bounds.refine_backward(layers, fw, x0, eps)
    ex, _, _ = exact(layers, fw, vl, vu, x0, eps, np.full(5, np.inf))
    gl, gu = vl[0], vu[0]
    width = (gu - gl).clamp_min(1e-12)
    a = torch.where(gl >= 0, 1.0, torch.where(gu <= 0, -1.0, (gu + gl) / width))
    b = torch.where((gl < 0) & (gu > 0), -2 * gu * gl / width, 0.0)
    mu = (a @ layers[0][0].T)[:, None, :]
    g = torch.Generator().manual_seed(0)
    for _ in range(20):
        s = bounds.Slopes.initial(vl, vu)
        s = bounds.Slopes(*([torch.rand(p.shape, generator=g, dtype=torch.float64) for p in group]
                            for group in (s.alpha, s.theta_up, s.theta_lo)))
        value = bounds.propagate(layers, fw, vl, vu, mu, 1, x0, eps, s)[:, 0] + b.sum(-1)
        assert float(value.max()) >= ex * (1 - 1e-6)


def test_branch_and_bound_closes_the_gap_soundly():
    layers = random_net([2, 10, 10, 4], 1)
    x0, eps = torch.tensor([0.2, -0.1], dtype=torch.float64), 0.5
    _, ex, ours, _, _, _ = all_bounds(layers, x0, eps)
    value, domains = branch_and_bound(layers, x0, eps, timeout=30, max_domains=400, steps=5)
    assert domains > 1 and ex * (1 - 1e-6) <= value <= ours * (1 + 1e-9)
    assert value < ours  # splitting helps on this net


def test_dense_layers_reproduce_the_network():
    torch.manual_seed(0)
    x = torch.rand(3, 1, 28, 28)
    for model, shape in [(mnist_cnn_4layer(), (1, 28, 28)), (mlp(16, [16, 16], 10), (16,))]:
        inp = x if len(shape) == 3 else torch.rand(3, 16)
        h = inp.flatten(1).double()
        layers = dense_layers(model, shape)
        for W, b in layers[:-1]:
            h = torch.relu(h @ W.T + b)
        out = h @ layers[-1][0].T + layers[-1][1]
        np.testing.assert_allclose(out.numpy(), model(inp).double().detach().numpy(), rtol=1e-4, atol=1e-5)


def _write_idx(path, arr, magic):
    with open(path, "wb") as f:
        f.write(struct.pack(">i", magic) + b"".join(struct.pack(">i", d) for d in arr.shape) + arr.tobytes())


def test_vision_problem_reads_mnist_files(tmp_path, solver_state):
    from experiments.local_lipschitz.problems import Vision

    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 64), ("t10k", 8)):
        _write_idx(raw / f"{prefix}-images-idx3-ubyte", rng.integers(0, 256, (n, 28, 28), dtype=np.uint8), 2051)
        _write_idx(raw / f"{prefix}-labels-idx1-ubyte", rng.integers(0, 10, n, dtype=np.uint8), 2049)
    p = Vision({"name": "mnist", "data_dir": str(tmp_path), "stand_in": False}, boxes=3, eps=0.1, epochs=1, batch=32)
    p.setup(solver_state())
    assert p.x0.shape == (3, 784) and len(p.layers) == 4 and p.layers[0][0].shape == (5000, 784)
    assert float((p.x0 - p.radii).min()) >= 0.0 and float((p.x0 + p.radii).max()) <= 1.0  # clipped to [0, 1]


def test_short_run_logs_every_bound_and_evaluates_claims(make_cfg, tmp_path):
    from runner.dispatch import execute

    cfg = make_cfg("experiment=local_lipschitz", "study=tiny", "arm=bab", "problem.boxes=3",
                   "problem.train_steps=200", "algorithm.bab_timeout=5")
    summary = execute(cfg, tmp_path / "run")
    assert summary["status"] == "completed"
    import pandas as pd

    df = pd.read_csv(tmp_path / "run" / "metrics.csv")
    assert len(df) == 3 and {"lower", "exact", "ours", "interval", "naive", "ours_bab", "t_ours"} <= set(df.columns)
    assert (df.order_ok == 1).all() and (df.sound_ok == 1).all()
    claims = {c["name"][:2]: c for c in summary["claims"]}
    assert claims["C5"]["kind"] == "check" and claims["C5"]["passed"]


def test_scales_and_studies(make_cfg):
    from runner import experiments

    cfg = make_cfg("experiment=local_lipschitz")
    assert cfg.problem.widths == [16, 16] and cfg.problem.eps == 0.05 and cfg.trainer.max_iters == 10
    assert cfg.algorithm.steps == 20 and cfg.algorithm.lr == 0.5 and cfg.algorithm.decay == 0.98
    cfg = make_cfg("experiment=local_lipschitz", "scale=paper")
    assert cfg.algorithm.bab_timeout == 60.0
    assert list(experiments.studies("local_lipschitz", "smoke")) == ["tiny"]
