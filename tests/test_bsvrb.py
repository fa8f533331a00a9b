"""BSVRB: the closed-form derivatives against torch.func, one BSVRBv1 / BSVRBv2 iteration against the
exact implicit hypergradient on a tiny problem, oracle counts, divergence as data, the paper-scale
composition, and the libsvm loader on tiny files written here."""
import math

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from experiments.bsvrb.claims import iterations_to_target
from experiments.bsvrb.problems import MultiBlockHO, auc, libsvm, synthetic
from runner.curvature.implicit import cross_xy, grad_y, hvp_yy, hypergradient

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = ["trainer.n_train=30", "trainer.n_val=20", "trainer.n_test=10", "trainer.n_features=4", "trainer.blocks=3", "trainer.block_batch=3", "trainer.sample_batch=4",
        "components.upper.module.dim=30", "components.lower.module.dim=15", "device=cpu"]


def _problem(seed=0):
    data = synthetic(seed, 30, 20, 10, n_features=4, flip=0.2)
    return MultiBlockHO(data, torch.tensor([1.0, 2.5, 7.0], dtype=torch.float64), lam=1e-2)


def _point(P, seed=1):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(P.n, generator=g, dtype=torch.float64),
            0.3 * torch.randn(P.m, P.d, generator=g, dtype=torch.float64))


def _all(P):
    """Every block with the full training / validation set as its batch."""
    blocks = torch.arange(P.m)
    return blocks, torch.arange(P.n).expand(P.m, -1), torch.arange(len(P.data.y_val)).expand(P.m, -1)


def test_closed_form_derivatives_match_torch_func():
    P = _problem()
    p, W = _point(P)
    blocks, tr, val = _all(P)
    w = W.reshape(-1)
    v = torch.randn(P.m, P.d, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    torch.testing.assert_close(P.grad_g(p, W, blocks, tr).reshape(-1), grad_y(P.flat_g, p, w))
    torch.testing.assert_close(P.hvp_g(p, W, blocks, tr, v).reshape(-1), hvp_yy(P.flat_g, p, w, v.reshape(-1)))
    hv = torch.einsum("ide,ie->id", P.hess_g(p, W, blocks, tr), v)
    torch.testing.assert_close(hv, P.hvp_g(p, W, blocks, tr, v))
    torch.testing.assert_close(P.cross(p, W, blocks, tr, v), cross_xy(P.flat_g, p, w, v.reshape(-1)))
    # f_full is the mean over blocks, the per-block grad_f the block's own mean: a factor m apart
    torch.testing.assert_close(P.grad_f(W, blocks, val).reshape(-1) / P.m, grad_y(P.flat_f, p, w))


@pytest.fixture
def tiny(make_cfg, tmp_path):
    from runner.dispatch import build

    def _make(*overrides):
        cfg = make_cfg("experiment=bsvrb", *TINY, f"results_dir={tmp_path}", *overrides)
        state, trainer, hooks = build(cfg)
        trainer.phases(state)
        return state, trainer
    return _make


@pytest.mark.parametrize("method", ["bsvrb_v1", "bsvrb_v2", "rsvrb"])
def test_one_exact_iteration_is_the_implicit_hypergradient(tiny, method):
    """alpha = 1, gamma = 0, beta = 1 and full batches of every block (I = m): the estimates are the
    exact quantities at the current point, so BSVRBv1's and RSVRB's z is the implicit hypergradient
    (dense solve); for BSVRBv2, with v set to H^{-1} grad f, the same."""
    state, tr_ = tiny(f"trainer.method={method}", "trainer.alpha=1", "trainer.gamma=0", "trainer.beta=1",
                      "trainer.project=eig", "trainer.h_bound=1e12", "trainer.lam=0.01")
    P = tr_.problem
    p, W = _point(P)
    state.modules["upper"].value.data.copy_(p)
    state.modules["lower"].value.data.copy_(W.reshape(-1))
    blocks, tr, val = _all(P)
    ref, z = hypergradient(P.flat_f, P.flat_g, p, W.reshape(-1), solver="exact")
    if method == "bsvrb_v2":
        tr_.est["v"] = (P.m * z).reshape(P.m, P.d).clone()  # v_i = H_i^{-1} grad f_i (per-block f: factor m)
        tr_._lower_lr = 0.0
    step = getattr(tr_, f"_{method}")(p, W, p, W, blocks, tr, val)
    torch.testing.assert_close(step, ref)
    torch.testing.assert_close(tr_.lower_step.reshape(-1), grad_y(P.flat_g, p, W.reshape(-1)))


@pytest.mark.parametrize("method", ["bsvrb_v1", "bsvrb_v2", "rsvrb"])
def test_oracle_counts_and_iterations(tiny, method):
    state, tr = tiny(f"trainer.method={method}", "trainer.block_batch=2", "trainer.sample_batch=4",
                     "trainer.iters_per_step=3")
    for _ in range(2):
        out = tr.step(state)
    it = 6
    assert out["iteration"] == it and out["samples_calls"] == 2 * 2 * 4 * it
    assert out["grad_g_calls"] == out["grad_f_calls"] == out["jvp_calls"] == 2 * 2 * it
    assert out["hessian_calls"] == (0 if method == "bsvrb_v2" else 2 * 2 * it)
    assert out["hvp_calls"] == (2 * 2 * it if method == "bsvrb_v2" else 0)
    assert math.isfinite(float(out["loss"])) and 0 <= out["auc_noisy"] <= 1


def test_v2_moves_only_sampled_blocks_scaled_by_their_age(tiny):
    state, tr = tiny("trainer.method=bsvrb_v2", "trainer.block_batch=1", "trainer.iters_per_step=1")
    seen = []
    for _ in range(4):
        before = state.modules["lower"].value.detach().clone().view(3, -1)
        tr.step(state)
        moved = (state.modules["lower"].value.detach().view(3, -1) != before).any(1)
        seen.append(int(moved.sum()))
    assert seen == [1, 1, 1, 1]
    assert tr.est["age"].max() >= 1


def test_divergence_is_recorded(make_cfg, tmp_path):
    from runner.dispatch import build
    from runner.engine import Engine
    from runner.results import MetricsWriter

    cfg = make_cfg("experiment=bsvrb", *TINY, f"results_dir={tmp_path}", "components.lower.optimizer.lr=1e9",
                   "trainer.steps=5")
    state, trainer, hooks = build(cfg)
    outcome = Engine(trainer, hooks, MetricsWriter(tmp_path / "metrics.csv"), progress=False).run(state)
    assert outcome.status == "diverged" and outcome.step <= 5


def test_paper_scale_composition(make_cfg):
    cfg = make_cfg("experiment=bsvrb", "scale=paper")
    t = cfg.trainer
    assert (t.blocks, t.block_batch, t.sample_batch, t.dataset, t.flip) == (100, 10, 32, "a8a", 0.0)
    assert t.steps * t.iters_per_step == 200 * (18156 // (10 * 32))
    assert cfg.components.upper.module.dim == 18156 and cfg.components.lower.module.dim == 100 * 124
    assert (cfg.components.upper.optimizer.lr, cfg.components.lower.optimizer.lr) == (1e-3, 0.5)
    assert OmegaConf.select(cfg, "trainer.lam") == 1e-5


def test_libsvm_loader_reads_tiny_files(tmp_path):
    from sklearn.datasets import dump_svmlight_file

    rng = np.random.default_rng(0)
    x, y = (rng.random((12, 5)) < 0.4).astype(float), np.where(rng.random(12) < 0.5, 1, -1)
    dump_svmlight_file(x[:9], y[:9], str(tmp_path / "a8a"), zero_based=False)
    dump_svmlight_file(x[9:], y[9:], str(tmp_path / "a8a.t"), zero_based=False)
    d = libsvm("a8a", str(tmp_path), sizes=(6, 3, 5))
    assert d.x_tr.shape == (6, 6) and d.x_val.shape == (3, 6) and d.x_te.shape == (3, 6)
    torch.testing.assert_close(d.x_tr[:, 1:], torch.tensor(x[:6]))
    torch.testing.assert_close(d.x_val[:, 1:], torch.tensor(x[6:9]))
    assert (d.x_tr[:, 0] == 1).all() and set(d.y_te.tolist()) <= {-1.0, 1.0} and not d.noisy.any()
    with pytest.raises(Exception, match="no w8a"):
        libsvm("w8a", str(tmp_path))


def test_auc_and_iterations_to_target():
    score, pos = torch.tensor([0.9, 0.8, 0.1, 0.4]), torch.tensor([True, False, False, True])
    assert auc(score, pos) == pytest.approx(0.75)
    import pandas as pd
    df = pd.DataFrame({"iteration": [10, 20, 30], "loss": [1.0, 0.5, 0.4]})
    assert iterations_to_target(df, 0.5) == 20 and iterations_to_target(df, 0.1) == math.inf


@pytest.mark.parametrize("method", ["bsvrb_v1", "bsvrb_v2", "rsvrb"])
def test_resume_is_bit_identical(tiny, method):
    """2 + 2 steps through a copy of the modules, streams and the trainer's state equal 4 straight steps."""
    import copy

    over = (f"trainer.method={method}", "trainer.block_batch=2", "trainer.iters_per_step=3")
    state, tr = tiny(*over)
    straight = [tr.step(state)["loss"] for _ in range(4)]
    state, tr = tiny(*over)
    for _ in range(2):
        tr.step(state)
    ck = (copy.deepcopy({k: m.state_dict() for k, m in state.modules.items()}),
          {k: g.get_state() for k, g in state.generators.items()}, copy.deepcopy(tr.state_dict()))
    state2, tr2 = tiny(*over)
    for k, m in state2.modules.items():
        m.load_state_dict(ck[0][k])
    for k, g in state2.generators.items():
        g.set_state(ck[1][k])
    tr2.load_state_dict(ck[2])
    resumed = [tr2.step(state2)["loss"] for _ in range(2)]
    assert [float(v) for v in resumed] == [float(v) for v in straight[2:]]
