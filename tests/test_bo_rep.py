"""BO-REP (experiments/bo_rep): the oracles and the hypergradient against exact references, the
methods on a tiny noiseless toy, oracle counts, divergence as data, the paper-scale composition, and
the hyper-cleaning loaders on tiny IDX files written here."""
from __future__ import annotations

import gzip
import math

import numpy as np
import pytest
import torch
from torch.func import grad

from experiments.bo_rep.claims import oracle_count_error
from experiments.bo_rep.data import cleaning_split, load_images, read_idx
from experiments.bo_rep.problems import HyperCleaning, Problem, QuarticToy
from runner.curvature.implicit import hypergradient

pytestmark = pytest.mark.usefixtures("one_thread")


def _toy(dim=4, noise=0.0, seed=0):
    return QuarticToy(dim, noise, torch.Generator().manual_seed(seed), "cpu", torch.float64)


def test_toy_closed_form_oracles_match_torch_func():
    p, g = _toy(), torch.Generator().manual_seed(1)
    x, y, v = (torch.randn(4, generator=g, dtype=torch.float64) for _ in range(3))
    for name, args in (("grad_f", (x, y, None)), ("grad_g", (x, y, None)), ("hvp", (x, y, v, None)),
                       ("cross", (x, y, v, None))):
        got, want = getattr(p, name)(*args), getattr(Problem, name)(p, *args)
        for a, b in zip(got if isinstance(got, tuple) else (got,), want if isinstance(want, tuple) else (want,)):
            torch.testing.assert_close(a, b)


def test_toy_grad_phi_is_the_exact_hypergradient():
    p, x = _toy(), torch.linspace(-2, 2, 4, dtype=torch.float64)
    exact, _ = hypergradient(p.f, p.g, x, p.y_star(x), solver="exact")
    torch.testing.assert_close(p.grad_phi(x), exact)
    torch.testing.assert_close(p.grad_phi(x), grad(p.phi)(x))


def _trainer(method="bo_rep", **kw):
    from experiments.bo_rep.trainer import BoRepToy
    from runner.trainers.base import TrainState
    from runner.trainers.bilevel import Vector

    kw = {"dim": 4, "noise": 0.0, "steps": 400, "lr": 0.1, **kw}
    tr = BoRepToy(method=method, **kw)
    mods = {"upper": Vector(kw["dim"]).double(), "lower": Vector(kw["dim"]).double()}
    opts = {k: torch.optim.SGD(m.parameters(), lr=1.0) for k, m in mods.items()}
    state = TrainState(modules=mods, optimizers=opts, seed=0,
                       generators={"data": torch.Generator().manual_seed(0)})
    tr.phases(state)
    return tr, state


def _run(tr, state, steps):
    rows = []
    for _ in range(steps):
        rows.append({k: float(v) for k, v in tr.step(state).items()})
        state.step += 1
    return rows


@pytest.mark.parametrize("method", ["bo_rep", "soba", "ma_soba"])
def test_methods_converge_on_a_tiny_noiseless_toy(method):
    """Without noise and with a stable step every method reaches the minimiser of Phi (convex here:
    the reference is scipy's L-BFGS on the closed form); at the end y, z and the hypergradient estimate
    match their exact values y*(x), z*(x), grad Phi(x)."""
    from scipy.optimize import minimize

    tr, state = _trainer(method, lr=0.03, decay_at=[0.9], steps=4000)
    rows = _run(tr, state, 4000)
    x, y = state.modules["upper"].value.detach(), state.modules["lower"].value.detach()
    p = tr.problem
    ref = minimize(lambda v: float(p.phi(torch.from_numpy(v))), np.full(4, 5.0), method="L-BFGS-B",
                   jac=lambda v: p.grad_phi(torch.from_numpy(v)).numpy(), options={"gtol": 1e-10}).x
    assert rows[-1]["grad_phi_norm"] < 0.05 and float((x - torch.from_numpy(ref)).norm()) < 0.05
    torch.testing.assert_close(y, p.y_star(x), atol=1e-2, rtol=0)
    torch.testing.assert_close(tr.z, (p.y_star(x) - p.c) / 2, atol=5e-2, rtol=0)
    assert abs(rows[-1]["hypergrad_est_norm"] - rows[-1]["grad_phi_norm"]) < 0.05


def test_bo_rep_takes_normalized_steps_and_refines_y_first():
    tr, state = _trainer("bo_rep", lr=0.3)
    rows = _run(tr, state, 1)
    y0 = state.modules["lower"].value.detach()
    ys = tr.problem.y_star(torch.full((4,), 5.0, dtype=torch.float64))
    assert float((y0 - ys).norm()) < 0.05 * float(ys.norm())  # Epoch-SGD at t = 0 from y = 0 (averaging biases it a little)
    rows += _run(tr, state, 5)
    assert all(math.isclose(r["step_norm"], 0.3, rel_tol=1e-9) for r in rows)
    assert rows[0]["grad_g_calls"] == 10 + 20 + 40 + 80  # Epoch-SGD, 4 epochs from 10 steps
    assert [r["grad_g_calls"] - rows[0]["grad_g_calls"] for r in rows] == [0, 0, 3, 3, 6, 6]  # N = 3 every I = 2


def test_oracle_counts_and_the_claims_check():
    import pandas as pd

    for method in ("bo_rep", "soba", "ma_soba"):
        tr, state = _trainer(method, noise=0.1)
        rows = _run(tr, state, 7)
        df = pd.DataFrame([{**r, "step": i + 1} for i, r in enumerate(rows)])
        cfg = {"trainer": {"method": method, "refine_epochs": 4, "refine_steps": 10, "period": 2, "lower_steps": 3}}
        assert oracle_count_error(df, cfg) == 0
        last = rows[-1]
        assert last["hvp_calls"] == last["jvp_calls"] == last["grad_f_calls"] == 7 and last["hessian_calls"] == 0
        # noise: one draw per oracle vector (grad_f gives two)
        assert last["samples_calls"] == last["grad_g_calls"] + 2 * 7 + 7 + 7
        assert last["oracle_calls"] == last["grad_f_calls"] + last["grad_g_calls"] + 14


def test_divergence_is_recorded_and_the_sweep_goes_on(make_cfg, tmp_path):
    from runner.dispatch import execute

    out = {}
    for method in ("soba", "bo_rep"):
        cfg = make_cfg("experiment=bo_rep", "study=toy", f"arm={method}", f"trainer.method={method}", "trainer.lr=1",
                       "trainer.steps=50", "seed=100")
        out[method] = execute(cfg, tmp_path / "bo_rep" / method)
    assert out["soba"]["status"] == "diverged" and 1 <= out["soba"]["diverged_at"] <= 5
    assert out["bo_rep"]["status"] == "completed"


def test_paper_scale_composes_the_official_setup(make_cfg):
    cfg = make_cfg("experiment=bo_rep", "scale=paper")
    tr = cfg.trainer
    assert tr._target_.endswith("BoRepCleaning") and tr.method == "bo_rep"
    assert (tr.lr, tr.lower_lr, tr.nu, tr.beta, tr.period, tr.lower_steps) == (0.05, 0.05, 0.01, 0.9, 2, 10)
    assert (tr.batch_size, tr.noise_rate, tr.steps) == (512, 0.3, math.ceil(25 * tr.n_train / 512))
    assert cfg.components.upper.module.dim == tr.n_train and cfg.components.lower.module.dim == 10 * 785
    smoke = make_cfg("experiment=bo_rep")
    assert (smoke.trainer.dim, smoke.trainer.noise, smoke.trainer.x0, smoke.trainer.steps) == (10, 0.1, 5.0, 2000)
    assert list(smoke.trainer.decay_at) == [0.5, 0.75] and smoke.trainer.decay == 0.1


def _write_idx(path, arr: np.ndarray, gz: bool):
    head = bytes([0, 0, 8, arr.ndim]) + b"".join(int(s).to_bytes(4, "big") for s in arr.shape)
    raw = head + arr.astype(np.uint8).tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    if gz:
        with gzip.open(str(path) + ".gz", "wb") as f:
            f.write(raw)
    else:
        path.write_bytes(raw)


def _tiny_mnist(root, n=60, n_test=20):
    rng = np.random.default_rng(0)
    d = root / "MNIST" / "raw"
    imgs, labels = rng.integers(0, 256, (n, 28, 28)), np.arange(n) % 10
    _write_idx(d / "train-images-idx3-ubyte", imgs, gz=True)
    _write_idx(d / "train-labels-idx1-ubyte", labels, gz=False)
    _write_idx(d / "t10k-images-idx3-ubyte", rng.integers(0, 256, (n_test, 28, 28)), gz=False)
    _write_idx(d / "t10k-labels-idx1-ubyte", np.arange(n_test) % 10, gz=True)
    return imgs, labels


def test_idx_loader_and_noisy_split_on_tiny_files(tmp_path):
    imgs, labels = _tiny_mnist(tmp_path)
    d = load_images(str(tmp_path), "mnist")
    assert d["train_x"].shape == (60, 784) and d["test_x"].shape == (20, 784)
    np.testing.assert_allclose(d["train_x"][3], imgs[3].reshape(-1) / 255.0, rtol=1e-6)
    assert (d["train_y"] == labels).all()
    assert read_idx(tmp_path / "MNIST" / "raw" / "t10k-images-idx3-ubyte").shape == (20, 28, 28)
    a, ly, noisy, av, lv, at, lt = cleaning_split(str(tmp_path), "mnist", 40, 10, 20, 0.5,
                                                  torch.Generator().manual_seed(0))
    assert a.shape == (40, 784) and av.shape == (10, 784) and at.shape == (20, 784)
    # train and validation are disjoint; flipped labels differ from the true ones, the others do not
    true_tr = torch.from_numpy(labels)[[int(np.where((d["train_x"] == r.numpy()).all(1))[0][0]) for r in a]]
    assert ((ly != true_tr) == noisy).all() and 0 < noisy.sum() < 40
    with pytest.raises(Exception, match="not found"):
        load_images(str(tmp_path / "nowhere"), "mnist")


def test_hyper_cleaning_hypergradient_is_exact_at_the_exact_z():
    """On a tiny cleaning problem (5 features, 3 classes): at the z of a dense solve the z-update is a
    fixed point and h = grad_x f - (d2g/dx dy) z is the exact hypergradient (torch.func.hessian)."""
    g = torch.Generator().manual_seed(0)
    data = (torch.randn(12, 5, generator=g), torch.randint(3, (12,), generator=g), torch.rand(12, generator=g) < 0.3,
            torch.randn(6, 5, generator=g), torch.randint(3, (6,), generator=g), torch.randn(4, 5, generator=g),
            torch.randint(3, (4,), generator=g))
    p = HyperCleaning(data, 3, 4, 1e-1, "cpu", torch.float64)
    lam, w = torch.randn(12, dtype=torch.float64), torch.randn(18, dtype=torch.float64)
    batch = (torch.arange(4), torch.arange(4))
    h_exact, z = hypergradient(lambda a, b: p.f(a, b, batch), lambda a, b: p.g(a, b, batch), lam, w, solver="exact")
    fx, fy = p.grad_f(lam, w, batch)
    torch.testing.assert_close(p.hvp(lam, w, z, batch) - fy, torch.zeros_like(fy), atol=1e-10, rtol=0)
    torch.testing.assert_close(fx - p.cross(lam, w, z, batch), h_exact)
    assert h_exact[4:].abs().max() == 0 and h_exact[:4].abs().min() > 0  # only the batch's weights move
    assert p.sample(g, lower=True).shape == (4,) and len(p.sample(g, lower=False)) == 2


def test_hyper_cleaning_runs_on_tiny_files(make_cfg, tmp_path):
    from runner.dispatch import execute

    _tiny_mnist(tmp_path)
    cfg = make_cfg("experiment=bo_rep", "scale=paper", "study=cleaning", "arm=bo_rep", f"trainer.data_dir={tmp_path}",
                   "trainer.n_train=40", "trainer.n_val=10", "trainer.n_test=20", "trainer.batch_size=8",
                   "trainer.steps=6", "trainer.eval_every=3", "components.upper.module.dim=40", "device=cpu")
    summary = execute(cfg, tmp_path / "run")
    assert summary["status"] == "completed"
    m = summary["metrics"]
    assert 0 <= m["test_acc"] <= 100 and 0 <= m["weight_auc"] <= 1 and m["hvp_calls"] == 6


@pytest.mark.parametrize("method", ["bo_rep", "ma_soba"])
def test_resume_is_bit_identical(method):
    """15 + 15 steps through a checkpoint of the modules, streams and the trainer's state (z, m, counts)
    equal 30 straight steps; the restore comes after `phases` (which sets x0), as in the engine."""
    import copy

    tr, state = _trainer(method, noise=0.1, steps=30)
    straight = _run(tr, state, 30)
    tr, state = _trainer(method, noise=0.1, steps=30)
    _run(tr, state, 15)
    ck = (copy.deepcopy({k: m.state_dict() for k, m in state.modules.items()}),
          {k: g.get_state() for k, g in state.generators.items()}, copy.deepcopy(tr.state_dict()))
    tr2, state2 = _trainer(method, noise=0.1, steps=30)
    for k, m in state2.modules.items():
        m.load_state_dict(ck[0][k])
    for k, g in state2.generators.items():
        g.set_state(ck[1][k])
    tr2.load_state_dict(ck[2])
    state2.step = 15
    resumed = _run(tr2, state2, 15)
    assert resumed[-1] == straight[-1]
