"""sgd_stability: the sharpness hook in training, its models and data, claims and figures."""
import math
from pathlib import Path

import pandas as pd
import pytest
import torch

from experiments.sgd_stability import claims as C
from experiments.sgd_stability.plots import plot_report
from runner.data import load
from runner.dispatch import build, execute
from runner.engine import Engine
from runner.errors import OptrunError
from runner.hooks.sharpness import Sharpness, sgd_noise_weight
from runner.models.diagonal import DiagonalLinear
from runner.models.two_layer_relu import TwoLayerReLU
from runner.results import MetricsWriter
from runner.trainers.base import TrainState
from runner.trainers.supervised import SupervisedTrainer, loss_fn

DLN = ["experiment=sgd_stability", "device=cpu", "trainer.steps=60", "schedule.total_iters=20",
       "hooks.sharpness.every=20", "hooks.evaluate.every=20"]


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _train(cfg, tmp_path, name):
    state, trainer, hooks = build(cfg)
    Engine(trainer, hooks, MetricsWriter(tmp_path / f"{name}.csv"), progress=False).run(state)
    return state, pd.read_csv(tmp_path / f"{name}.csv")


@pytest.mark.parametrize("overrides", [
    ["trainer.steps=30", "model=cnn", "model.batch_norm=true", "model.channels=[4,8]", "trainer.batch_size=32"],
    DLN + ["trainer.steps=30"],  # the experiment also configures hooks.evaluate: left unselected, it is ignored
])
def test_sharpness_hook_does_not_change_training(make_cfg, tmp_path, overrides):
    """Same parameters and BatchNorm statistics with and without the hook (every 10 steps)."""
    with_hook, df = _train(make_cfg(*overrides, "hooks=[sharpness]", "hooks.sharpness.every=10",
                                    "hooks.sharpness.probes=4", "hooks.sharpness.deflate=4",
                                    "hooks.sharpness.probe_samples=128"), tmp_path, "a")
    without, _ = _train(make_cfg(*overrides, "hooks=[]"), tmp_path, "b")
    a, b = with_hook.model.state_dict(), without.model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert df["sharpness/lambda_max"].notna().sum() == 4  # steps 0, 10, 20, 30
    assert all(p.grad is None or torch.isfinite(p.grad).all() for p in with_hook.model.parameters())


def test_hook_logs_thresholds_from_the_optimizer(make_cfg, tmp_path):
    state, df = _train(make_cfg(*DLN), tmp_path, "m")
    rows = df.dropna(subset=["sharpness/lambda_max"]).rename(columns=lambda c: c.removeprefix("sharpness/"))
    assert rows.step.tolist() == [0, 20, 40, 60]
    assert {f"sharpness/{c}" for c in ("trace", "trace_se", "frobenius", "frobenius_se", "lanczos_hvps",
                                       "curvature_hvps", "gd_ratio", "trace_ratio", "sgd_ratio",
                                       "two_over_lr")} <= set(df.columns)
    lr = 0.02
    assert rows.lr.iloc[-1] == pytest.approx(lr) and rows.lr.iloc[0] == pytest.approx(lr * 0.01)  # warm-up
    assert (rows.two_over_lr * rows.lr).tolist() == pytest.approx([2.0] * 4)
    assert rows.gd_ratio.tolist() == pytest.approx((rows.lr * rows.lambda_max / 2).tolist())
    assert rows.sgd_ratio.tolist() == pytest.approx(rows.trace_ratio.tolist())  # batch size 1
    assert (rows.curvature_hvps == 60).all()
    assert {f"evaluate/{c}" for c in ("train_loss", "test_loss", "param_norm", "beta_l1",
                                      "effective_scale")} <= set(df.columns)


def test_sgd_noise_weight_and_full_batch():
    assert sgd_noise_weight(40, 1) == 1.0 and sgd_noise_weight(40, None) == 0.0 and sgd_noise_weight(40, 40) == 0.0
    assert sgd_noise_weight(101, 10) == pytest.approx(91 / 1000)


def test_log_spaced_schedule_and_bad_options(make_cfg, tmp_path):
    h = Sharpness(every=0, log_points=5, at_start=False)
    st = TrainState(model=torch.nn.Linear(2, 1))
    st.total_steps = 1000
    h.setup(st)
    assert sorted(h.log_steps) == [1, 6, 32, 178, 1000]
    assert h.due(178) and not h.due(177)
    with pytest.raises(OptrunError, match="hooks.sharpness.estimator"):
        Sharpness(estimator="hutch")
    with pytest.raises(OptrunError, match="hooks.sharpness.tol"):
        Sharpness(tol=2)
    cfg = make_cfg("experiment=sgd_stability", "hooks.sharpness.hvp=nope")
    with pytest.raises(OptrunError, match="hooks.sharpness.hvp: expected one of graph, jvp"):
        execute(cfg, tmp_path / "bad")


def test_setups_compose(make_cfg):
    for setup, target in (("dln", "diagonal"), ("relu", "two_layer"), ("eos", "mlp")):
        cfg = make_cfg("experiment=sgd_stability", f"sgd_stability={setup}")
        assert cfg.setup == setup and target in cfg.model._target_ and cfg.trainer.loss == "mse"
        assert "loss" not in cfg.hooks.sharpness  # the hook measures the trainer's objective (MSE)
    eos = make_cfg("experiment=sgd_stability", "sgd_stability=eos")
    assert eos.schedule is None or "LinearLR" not in str(eos.schedule.get("_target_"))
    paper = make_cfg("experiment=sgd_stability", "scale=paper")
    assert paper.setup == "dln" and paper.device == "cuda" and paper.scale == "paper"


def _first_of_sweep(overrides):
    """One run of an arm's multirun: every sweep `key=a,b,c` at its first value."""
    return [o if "," not in o.partition("=")[2] or o.partition("=")[2].startswith("[") else o.split(",")[0]
            for o in overrides]


def test_paper_studies_compose_each_setup(make_cfg):
    """The per-setup paper settings are the paper studies' overrides: the paper's DLN (f = <a*b, x>,
    a, b ~ N(0, 1), d=1000, n=300, clipped constant lr), EoS on Cohen et al.'s first 5000 CIFAR-10 images."""
    from runner import experiments

    plan = {(study, arm): ovr for study, arm, ovr in experiments.arm_runs("sgd_stability", "paper")}
    assert set(plan) == {("dln", "sgd"), ("dln", "gd"), ("relu", "sgd"), ("relu", "gd"), ("eos", "gd")}
    dln = make_cfg(*_first_of_sweep(plan["dln", "gd"]))
    assert dln.setup == "dln" and dln.dataset.dim == 1000 and dln.dataset.n_train == 300 and dln.dataset.active == 3
    assert (dln.model.parametrization, dln.model.init, dln.model.init_scale) == ("product", "normal", 1.0)
    assert not dln.schedule and dln.trainer.clip_grad_norm == 50  # constant lr, clipped (no warm-up)
    assert dln.trainer.steps == 80000 and dln.trainer.batch_size is None and dln.device == "cuda"
    assert (dln.study, dln.arm) == ("dln", "gd") and dln.optimizer.lr == 0.004
    relu = make_cfg(*_first_of_sweep(plan["relu", "sgd"]))
    assert relu.setup == "relu" and relu.model.width == 1000 and relu.trainer.batch_size == 1
    eos = make_cfg(*_first_of_sweep(plan["eos", "gd"]))
    assert eos.setup == "eos" and eos.dataset.name == "cifar10" and "test_fraction" not in eos.dataset
    assert eos.dataset._target_ == "experiments.sgd_stability.data.cifar10_first" and eos.dataset.n_train == 5000
    assert list(eos.model.hidden) == [200, 200] and eos.model.activation == "tanh"
    assert eos.hooks.sharpness.probe_samples == 5000 and eos.trainer.batch_size is None


def test_every_claim_selects_runs_of_the_paper_scale():
    """Per-run claims name studies and arms the paper scale declares; the cross-run claims are made per
    Wu & Su study (dln, relu) present, and both are declared with an sgd and a gd arm."""
    from runner import experiments

    declared = {(study, arm) for study, arm, _ in experiments.arm_runs("sgd_stability", "paper")}
    for c in C.CLAIMS:
        assert "paper" in c.scales
        studies = (c.study,) if isinstance(c.study, str) else tuple(c.study)
        arms = None if c.arms is None else ((c.arms,) if isinstance(c.arms, str) else tuple(c.arms))
        assert any(s == st and (arms is None or a in arms) for st, a in declared for s in studies), c.name
    assert {(s, a) for s in C.NORMS for a in ("sgd", "gd")} <= declared


def _cifar_batches(folder, n_per_batch=6):
    """Tiny CIFAR-10 python batches: image i of the training set has every pixel equal to i."""
    import pickle

    import numpy as np

    folder.mkdir(parents=True)
    for b, name in enumerate([f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]):
        ids = np.arange(b * n_per_batch, (b + 1) * n_per_batch)
        data = np.repeat(ids[:, None], 3 * 32 * 32, axis=1).astype(np.uint8)
        with open(folder / name, "wb") as fh:
            pickle.dump({"data": data, "labels": list(ids % 10)}, fh)


def test_cohen_subset_is_the_first_images_standardised_per_feature(tmp_path):
    from experiments.sgd_stability.data import cifar10_first

    _cifar_batches(tmp_path / "cifar-10-batches-py")
    d = cifar10_first(n_train=8, data_dir=str(tmp_path))
    assert d.x_train.shape == (8, 3, 32, 32) and d.x_test.shape == (6, 3, 32, 32)
    assert d.y_train.tolist() == [i % 10 for i in range(8)]  # the first 8 of the stored order
    # standardised with the statistics of all 30 training images: image i maps to (i - 14.5) / sd(0..29)
    sd = torch.arange(30.0).std(unbiased=False)
    assert torch.allclose(d.x_train[:, 0, 0, 0], (torch.arange(8.0) - 14.5) / sd, atol=1e-4)
    assert torch.allclose(d.x_test[:, 1, 2, 3], (torch.arange(30.0, 36.0) - 14.5) / sd, atol=1e-4)
    assert torch.equal(cifar10_first(n_train=8, data_dir=str(tmp_path)).x_train, d.x_train)  # not seeded
    with pytest.raises(OptrunError, match="dataset.n_train"):
        cifar10_first(n_train=31, data_dir=str(tmp_path))
    assert len(cifar10_first(n_train=5000, stand_in=True).x_train) == 512  # stand-in: as many as it has


def test_product_parametrisation_with_normal_init(make_cfg):
    torch.manual_seed(0)
    m = DiagonalLinear((5,), 1, init_scale=2.0, parametrization="product", init="normal")
    assert torch.equal(m.beta, m.u * m.v) and float(m.u.detach().std()) > 0.5
    x = torch.randn(3, 5)
    assert torch.allclose(m(x), x @ (m.u * m.v).T)
    with pytest.raises(OptrunError, match="model.parametrization"):
        DiagonalLinear((5,), parametrization="uv")
    with pytest.raises(OptrunError, match="model.init"):
        DiagonalLinear((5,), init="uniform")


def test_models_and_data():
    d = load("sparse_regression", seed=3, dim=20, n_train=8, n_test=16, active=2)
    assert d.x_train.shape == (8, 20) and d.y_train.shape == (8, 1) and d.n_classes == 1
    assert torch.allclose(d.y_test[:, 0], d.x_test[:, :2].sum(1), atol=1e-5)
    assert torch.equal(load("sparse_regression", seed=3, dim=20, n_train=8, n_test=16, active=2).x_train, d.x_train)
    with pytest.raises(OptrunError, match="dataset.active"):
        load("sparse_regression", dim=5, active=6)
    t = load("relu_teacher", seed=0, dim=4, n_train=10, n_test=5, neurons=2)
    assert t.y_train.shape == (10, 1)
    m = DiagonalLinear((20,), 1, init_scale=0.5)
    assert torch.equal(m(d.x_train), torch.zeros(8, 1)) and m.norms()["effective_scale"] == pytest.approx(0.5)
    with torch.no_grad():
        m.u[0, 0] = 1.0
    assert m.norms()["beta_l1"] == pytest.approx(0.75)
    r = TwoLayerReLU((4,), 1, width=3)
    with torch.no_grad():
        r.hidden.weight.fill_(1.0), r.hidden.bias.fill_(0.0), r.out.weight.fill_(-2.0)
    assert r.norms()["path_norm"] == pytest.approx(3 * 2 * 2.0)
    # MSE on class labels regresses on one-hot targets
    out = torch.zeros(2, 3)
    assert float(loss_fn("mse", out, torch.tensor([0, 2]))) == pytest.approx(2 / 6)


def _eos_frame(ratios, losses):
    steps = list(range(0, 20 * len(ratios), 20))
    return pd.DataFrame({"step": steps, "sharpness/lambda_max": [r * 2.0 for r in ratios],
                         "sharpness/two_over_lr": 2.0, "loss": losses})


def test_eos_measures():
    df = _eos_frame([0.5, 0.8, 0.95, 1.1, 1.0, 1.05], [5, 4, 3, 3.5, 2, 2.5])
    assert C.eos_crossing(df) == 40
    assert C.eos_mean_after(df) == pytest.approx((1.1 + 1.0 + 1.05) / 3)
    assert C.loss_rise_fraction(df) == pytest.approx(2 / 3)
    assert C.eos_outside_fraction(df) == 0
    assert C.eos_outside_fraction(_eos_frame([0.5, 0.95, 1.3, 0.8, 1.0], [5, 4, 3, 2, 1])) == pytest.approx(2 / 3)
    assert math.isnan(C.eos_crossing(_eos_frame([0.5, 0.6], [2, 1])))
    assert math.isnan(C.eos_outside_fraction(_eos_frame([0.5, 0.6], [2, 1])))
    # the prototype's tolerances: train MSE <= 1e-6, mean ratio in [0.95, 1.10], crossing by step 1500
    assert (C.CONVERGED, C.EOS_BAND, C.EOS_RANGE, C.EOS_BY_STEP) == (1e-6, (0.95, 1.10), (0.85, 1.25), 1500)
    e2 = next(c for c in C.CLAIMS if c.name.startswith("E2 "))
    assert e2.check(1.08) and not e2.check(1.12) and not e2.check(0.93)


def _run(setup, lr, batch, trace, test, norm, seed=0, status="completed"):
    from runner.report.runs import Run

    key = C.NORMS[setup]
    metrics = pd.DataFrame({"step": [100], "sharpness/trace": [trace], "sharpness/trace_se": [0.1],
                            "sharpness/trace_ratio": [lr * trace / 2], "evaluate/test_loss": [test],
                            f"evaluate/{key}": [norm]})
    cfg = {"setup": setup, "study": setup, "arm": "gd" if batch is None else "sgd", "trainer": {"batch_size": batch},
           "optimizer": {"lr": lr}, "seed": seed, "scale": "smoke"}
    return Run(path=Path(f"/r/{setup}-{lr}-{batch}-{seed}"), cfg=cfg, status={"status": status}, summary={},
               metrics=metrics)


def test_cross_run_claims():
    runs = [_run("dln", 0.01, 1, 150, 1.2, 6.8), _run("dln", 0.04, 1, 37, 0.01, 4.2),
            _run("dln", 0.01, None, 160, 1.26, 6.9), _run("dln", 0.04, None, 160, 1.26, 6.9),
            _run("dln", 0.08, 1, 0, 0, 0, status="diverged")]
    rows = {r["name"].split(":")[0]: r for r in C.cross_run_claims(runs)}
    assert set(rows) == {"X1a dln", "X1b dln", "X2 dln", "X3 dln", "X4 dln", "X5 dln"}
    assert all(r["passed"] for r in rows.values())
    assert {n for n, r in rows.items() if r["kind"] == "headline"} == {"X1a dln", "X2 dln", "X4 dln"}
    ad_hoc = _run("dln", 0.04, 1, 37, 0.01, 4.2)
    ad_hoc.cfg = {k: v for k, v in ad_hoc.cfg.items() if k not in ("study", "arm")}
    assert C.cross_run_claims([_run("dln", 0.01, 1, 150, 1.2, 6.8), ad_hoc]) == []  # runs outside a study: left out
    assert rows["X4 dln"]["measured"] == pytest.approx(0.01 / 1.26)
    # DLN: SGD's test MSE must be under 1 % of GD's (the prototype's P3); ReLU: below GD's (no number known)
    worse = [_run("dln", 0.04, 1, 37, 0.14, 4.2) if i == 1 else r for i, r in enumerate(runs)]
    x4 = {r["name"][:6]: r for r in C.cross_run_claims(worse)}["X4 dln"]
    assert not x4["passed"] and "< 0.01" in x4["criterion"]
    relu = [_run("relu", lr, b, 40, t, 1, seed=0) for lr, b, t in ((0.01, 1, 1), (0.02, 1, 0.5), (0.02, None, 0.6))]
    x4 = {r["name"][:7]: r for r in C.cross_run_claims(relu)}["X4 relu"]
    assert x4["passed"] and "< 1 " in x4["criterion"]
    assert rows["X5 dln"]["measured"] == pytest.approx(0.04 * 160 / 2)
    rising = C.cross_run_claims([_run("relu", 0.01, 1, 40, 1, 1), _run("relu", 0.02, 1, 45, 1, 1)])
    assert not {r["name"][:3]: r for r in rising}["X1b"]["passed"]


def test_end_to_end_run_and_report(make_cfg, tmp_path):
    summary = execute(make_cfg(*DLN, "sgd_stability=dln", "study=dln", "arm=sgd"), tmp_path / "sgd_stability" / "a")
    assert summary["status"] == "completed"
    assert {c["name"] for c in summary["claims"]} == {"S0 SGD interpolates", "S1 SGD: eta*tr(H)/2 <= 1"}
    assert {c["kind"] for c in summary["claims"]} == {"supporting", "headline"}
    assert (tmp_path / "sgd_stability" / "a" / "curvature.png").exists()
    gd = execute(make_cfg(*DLN, "trainer.batch_size=null", "study=dln", "arm=gd"), tmp_path / "sgd_stability" / "b")
    assert {c["name"]: c["kind"] for c in gd["claims"]} == {"G0 GD interpolates": "supporting",
                                                             "G1 GD: eta*lambda_max/2 <= 1": "check"}
    from runner.report.runs import load_runs

    runs, _ = load_runs(tmp_path / "sgd_stability")
    figs = plot_report(runs, tmp_path)
    assert [f.name for f in figs] == ["sgd_stability.png"]


def test_state_dict_resumes_the_same_measurements():
    d = load("sparse_regression", seed=0, dim=12, n_train=30, n_test=4, active=2)

    def state():
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Linear(12, 6), torch.nn.Tanh(), torch.nn.Linear(6, 1))
        s = TrainState(data=d, seed=5, model=model, trainer=SupervisedTrainer(steps=10, loss="mse"))
        s.trainer.bind(s)
        s.total_steps = 10
        return s

    def hook():
        return Sharpness(probe_samples=20, probes=6, deflate=5)

    s1, h1 = state(), hook()
    h1.setup(s1)
    first = [h1(s1) for _ in range(3)]
    s2, h2 = state(), hook()
    h2.setup(s2)
    h2(s2)
    sd = h2.state_dict()
    s3, h3 = state(), hook()
    h3.setup(s3)
    h3.load_state_dict(sd)
    assert h3(s3) == first[1] and h3(s3) == first[2]
