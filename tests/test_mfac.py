"""M-FAC inverse-Fisher products against a dense inverse, the optimizer, OBS pruning and the claims."""
import copy

import pytest
import torch

from experiments.mfac import claims as mfac_claims
from runner.dispatch import build, execute
from runner.models.mlp import MLP
from runner.models.resnet import ResNet
from runner.optim.mfac import MFAC, DynamicMFAC, StaticMFAC, coefficients
from runner.prune import prunable, prune, sparsity_of
from runner.report.runs import load_runs

D, M, DAMP = 1000, 32, 1e-3


@pytest.fixture(autouse=True)
def _keep_threads():
    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)


def _dense_inverse(G: torch.Tensor, damp: float = DAMP) -> torch.Tensor:
    return torch.linalg.inv(damp * torch.eye(G.shape[1], dtype=G.dtype) + G.T @ G / G.shape[0])


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


@pytest.mark.parametrize("method", ["recursion", "cholesky"])
def test_static_ihvp_and_diagonal_match_the_dense_inverse(method):
    gen = torch.Generator().manual_seed(0)
    G = torch.randn(M, D, generator=gen, dtype=torch.float64)
    X = torch.randn(D, 3, generator=gen, dtype=torch.float64)
    inv, dense = StaticMFAC(G, DAMP, method), _dense_inverse(G)
    assert _rel(inv.ihvp(X[:, 0]), dense @ X[:, 0]) <= 1e-6
    assert _rel(inv.ihvp(X), dense @ X) <= 1e-6
    assert _rel(inv.diag(), dense.diagonal()) <= 1e-6
    assert float(inv.entry(17)) == pytest.approx(float(dense[17, 17]), rel=1e-6)


def test_recursion_and_cholesky_give_the_same_coefficients():
    G = torch.randn(12, 50, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    (a1, d1), (a2, d2) = (coefficients(G @ G.T, 0.1, 12, m) for m in ("recursion", "cholesky"))
    assert torch.allclose(a1, a2, atol=1e-10) and torch.allclose(d1, d2)
    assert torch.equal(a1, a1.tril())


def test_dynamic_window_keeps_the_last_m_gradients():
    gen = torch.Generator().manual_seed(2)
    grads = torch.randn(M + 11, D, generator=gen, dtype=torch.float64)
    x = torch.randn(D, generator=gen, dtype=torch.float64)
    window = DynamicMFAC(M, D, DAMP, dtype=torch.float64)
    for g in grads[:5]:
        window.insert(g)
    # a partly filled window: the empty slots are zero gradients, the normaliser stays m
    padded = torch.cat([grads[:5], torch.zeros(M - 5, D, dtype=torch.float64)])
    assert _rel(window.ihvp(x), _dense_inverse(padded) @ x) <= 1e-6
    for g in grads[5:]:
        window.insert(g)
    assert _rel(window.ihvp(x), _dense_inverse(grads[-M:]) @ x) <= 1e-6


def test_optimizer_step_uses_the_current_gradient_in_the_window():
    w = torch.nn.Parameter(torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64))
    opt = MFAC([w], lr=0.1, m=4, damp=0.01)
    w.grad = torch.tensor([0.3, 0.1, -0.2], dtype=torch.float64)
    g = w.grad.clone()
    opt.step()
    expected = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64) - 0.1 * g / (0.01 + g @ g / 4)
    assert torch.allclose(w.detach(), expected)
    assert float(opt.stats["cos_dir_grad"]) == pytest.approx(1.0)
    sd = copy.deepcopy(opt.state_dict())
    opt2 = MFAC([torch.nn.Parameter(w.detach().clone())], lr=0.1, m=4, damp=0.01)
    opt2.load_state_dict(sd)
    assert torch.equal(opt2.window.G, opt.window.G) and opt2.window.ptr == 1


def test_obs_single_weight_matches_the_dense_formula():
    torch.manual_seed(0)
    model = MLP((6,), 3, hidden=[])
    x, y = torch.randn(64, 6), torch.randint(3, (64,))
    gen = torch.Generator().manual_seed(5)
    before = model.net[1].weight.detach().clone().reshape(-1)
    target = copy.deepcopy(model)
    prune(target, "mfac", 1 / 18, x, y, gen, m=10, damp=0.1, rounds=1)
    # dense reference with the same gradients
    from runner.prune import flat_gradients

    G = flat_gradients(model, prunable(model), x, y, 10, 1, torch.Generator().manual_seed(5)).double()
    lam = 0.1 * float(G.pow(2).mean(0).mean())
    Finv = _dense_inverse(G, lam)
    w = before.double()
    q = int((w.pow(2) / (2 * Finv.diagonal())).argmin())
    ref = w - (w[q] / Finv[q, q]) * Finv[:, q]
    ref[q] = 0.0
    assert torch.allclose(target.net[1].weight.detach().reshape(-1).double(), ref, atol=1e-5)
    assert torch.equal(target.net[1].bias, model.net[1].bias)


@pytest.mark.parametrize("method", ["magnitude", "fisher", "mfac"])
def test_pruning_reaches_the_sparsity_and_keeps_biases(method):
    torch.manual_seed(1)
    model = MLP((8,), 4, hidden=[16])
    x, y = torch.randn(100, 8), torch.randint(4, (100,))
    biases = [model.net[1].bias.detach().clone(), model.net[3].bias.detach().clone()]
    prune(model, method, 0.7, x, y, torch.Generator().manual_seed(0), m=20, rounds=3)
    assert sparsity_of(model) == pytest.approx(0.7, abs=1 / 192)
    assert torch.equal(model.net[1].bias, biases[0]) and torch.equal(model.net[3].bias, biases[1])


def test_resnet20_shapes():
    m = ResNet((3, 32, 32), 10)
    assert sum(p.numel() for p in m.parameters()) == 272474 and m(torch.zeros(2, 3, 32, 32)).shape == (2, 10)


def test_prune_hook_and_claims_end_to_end(make_cfg, tmp_path):
    short = ["experiment=mfac", "device=cpu", "trainer.steps=60", "hooks.test_eval.every=20", f"results_dir={tmp_path}"]
    execute(make_cfg(*short, "study=pruning", "arm=adam", "hooks=[test_eval,prune]", "hooks.prune.m=32",
                     "hooks.prune.rounds=2", "hooks.test_eval.every=20"), tmp_path / "prune")
    for arm, extra in (("adam", ["optimizer=adam"]), ("sgd", ["optimizer=sgd"]),
                       ("mfac", ["optimizer=mfac", "optimizer.lr=0.003"])):
        execute(make_cfg(*short, "study=optimizer", f"arm={arm}", *extra, "hooks=[test_eval,optimizer_stats]"),
                tmp_path / arm)
    runs, skipped = load_runs(tmp_path)
    assert len(runs) == 4 and not skipped
    pr = next(r for r in runs if r.study == "pruning")
    cols = set(pr.metrics.columns)
    assert {f"prune/prune_acc_{m}_{s}" for m in ("magnitude", "fisher", "mfac") for s in (50, 70, 80, 90)} <= cols
    assert mfac_claims.TEST_ACC in cols and f"{mfac_claims.PRUNE}prune_acc_dense" in cols
    assert {c["name"] for c in pr.summary["claims"]} == {"OBS-M-FAC vs magnitude @80%",
                                                         "OBS-M-FAC vs diag. Fisher @80%"}
    assert not any(r.summary["claims"] for r in runs if r.study == "optimizer")
    mf = next(r for r in runs if r.arm == "mfac")
    assert {"optimizer_stats/ihvp_ms", "optimizer_stats/cos_dir_grad"} <= set(mf.metrics.columns)
    rows = {r["name"]: r for r in mfac_claims.cross_run_claims(runs)}
    assert set(rows) == {"M-FAC optimizer vs tuned adam", "M-FAC optimizer vs tuned sgd"}
    assert all(r["n"] == 1 and r["kind"] == "headline" for r in rows.values())
    # at paper scale the SGD reference is the pruning study's SGD arm (the paper's SGD baseline)
    for r in runs:
        r.cfg["scale"] = "paper"
        if r.study == "pruning":
            r.cfg["arm"] = "sgd"
    rows = {r["name"]: r for r in mfac_claims.cross_run_claims(runs)}
    assert set(rows) == {"M-FAC optimizer vs tuned adam", "M-FAC optimizer vs tuned sgd",
                         "gradual M-FAC vs magnitude @87.5%"}  # the gradual study exists at paper scale only
    assert rows["M-FAC optimizer vs tuned sgd"]["n"] == 1 and rows["M-FAC optimizer vs tuned adam"]["n"] == 1
    assert rows["gradual M-FAC vs magnitude @87.5%"]["n"] == 0 and not rows["gradual M-FAC vs magnitude @87.5%"]["passed"]


def test_paper_scale_composes_resnet20_on_cifar10(make_cfg):
    cfg = make_cfg("experiment=mfac", "scale=paper")
    assert cfg.model._target_ == "runner.models.resnet.ResNet" and "hidden" not in cfg.model
    assert cfg.dataset.name == "cifar10" and cfg.trainer.epochs == 100 and cfg.trainer.batch_size == 128
    assert cfg.optimizer._target_ == "torch.optim.SGD" and cfg.optimizer.lr == 0.1 and cfg.optimizer.momentum == 0.9
    mf = make_cfg("experiment=mfac", "scale=paper", "optimizer=mfac", "optimizer.lr=0.001", "optimizer.m=1024",
                  "optimizer.damp=1e-5")
    assert (mf.optimizer.m, mf.optimizer.damp, mf.optimizer.lr) == (1024, 1e-5, 0.001)
    from runner import experiments

    plan = {(s, a): o for s, a, o in experiments.arm_runs("mfac", "paper")}
    assert set(plan) == {("pruning", "sgd"), ("optimizer", "adam"), ("optimizer", "mfac"), ("gradual", "mfac"),
                         ("gradual", "magnitude")}
    adam = make_cfg(*[o.split(",")[0] if o.startswith(("seed=", "optimizer.lr=")) else o for o in plan["optimizer", "adam"]])
    assert adam.optimizer._target_ == "torch.optim.Adam" and adam.optimizer.lr == 0.0003 and adam.model.blocks == 3
    assert "optimizer.lr=0.0003,0.001,0.003" in plan["optimizer", "adam"]
    # every claim's runs exist at paper scale: the pruning claims' study, and each cross-run reference arm
    assert all(c.study in {s for s, _ in plan} and "paper" in c.scales for c in mfac_claims.CLAIMS)
    assert {mfac_claims.MFAC_ARM, *mfac_claims.REFERENCES["paper"].values()} <= set(plan)
    smoke = make_cfg("experiment=mfac")
    assert smoke.model.hidden == [64] and smoke.dataset.name == "digits" and smoke.optimizer.lr == 0.003


def test_prune_hook_leaves_the_model_alone(make_cfg):
    state, trainer, hooks = build(make_cfg("experiment=mfac", "device=cpu", "hooks=[prune]", "hooks.prune.m=16",
                                           "hooks.prune.rounds=1", "hooks.prune.sparsities=[0.5]"))
    trainer.phases(state)
    hook = hooks[0]
    hook.setup(state)
    before = [p.detach().clone() for p in state.model.parameters()]
    out = hook(state)
    assert all(torch.equal(a, b) for a, b in zip(before, state.model.parameters()))
    assert 0 <= out["prune_acc_mfac_50"] <= 100 and out["prune_acc_dense"] > 0


def test_prune_with_a_mask_keeps_pruned_weights_and_reaches_the_target():
    """Gradual pruning: weights pruned earlier stay zero and out of the candidates (no compensation
    moves them), the rounds go from the current density to the target, damping can be absolute."""
    torch.manual_seed(2)
    model = MLP((8,), 4, hidden=[16])
    x, y = torch.randn(100, 8), torch.randint(4, (100,))
    info = prune(model, "mfac", 0.5, x, y, torch.Generator().manual_seed(0), m=20, rounds=2, alive=None)
    first = info["alive"].clone()
    assert sparsity_of(model) == pytest.approx(0.5, abs=1 / 192)
    info = prune(model, "mfac", 0.75, x, y, torch.Generator().manual_seed(1), m=20, rounds=4, alive=first,
                 damp=1e-5, damp_absolute=True)
    assert info["damp"] == 1e-5 and sparsity_of(model) == pytest.approx(0.75, abs=1 / 192)
    w = torch.cat([model.net[1].weight.reshape(-1), model.net[3].weight.reshape(-1)])
    assert not (w[~first] != 0).any() and bool((info["alive"] <= first).all())  # nothing pruned comes back
    assert torch.equal(info["alive"], w != 0)


def test_gradual_pruning_hook_prunes_on_schedule_and_keeps_the_mask(make_cfg, tmp_path):
    from runner.report.runs import load_runs

    cfg = make_cfg("experiment=mfac", "device=cpu", "trainer.steps=60", "trainer.batch_size=63", "hooks=[test_eval]",
                   "hooks.test_eval.every=20", "study=gradual", "arm=mfac",
                   "+hooks.gradual_prune._target_=experiments.mfac.gradual.GradualPrune",
                   "+hooks.gradual_prune.start_epoch=1", "+hooks.gradual_prune.prune_every=1",
                   "+hooks.gradual_prune.sparsities=[0.5,0.8]", "+hooks.gradual_prune.epoch_lrs=[0.01,0.001]",
                   "+hooks.gradual_prune.m=16", "+hooks.gradual_prune.grad_batch=4", "+hooks.gradual_prune.rounds=2",
                   "+hooks.gradual_prune.method_mfac=recursion", f"results_dir={tmp_path}")
    state, trainer, hooks = build(cfg)
    hook = next(h for h in hooks if h.name == "gradual_prune")
    trainer.phases(state)
    hook.setup(state)
    assert hook.steps_per_epoch == 20 and hook.prune_at == {20: 0.5, 40: 0.8} and hook.lr_at == {20: 0.01, 40: 0.001}
    summary = execute(cfg, tmp_path / "mfac" / "gradual")
    assert summary["status"] == "completed"
    runs, _ = load_runs(tmp_path / "mfac")
    df = runs[0].metrics.set_index("step")
    assert df.loc[20, "gradual_prune/sparsity"] == pytest.approx(0.5, abs=0.01)
    assert df.loc[40, "gradual_prune/sparsity"] == pytest.approx(0.8, abs=0.01)
    assert df.loc[40, "gradual_prune/lr"] == 0.001 and df["gradual_prune/sparsity"].notna().sum() == 2
    runs[0].cfg["scale"] = "paper"
    rows = {r["name"]: r for r in mfac_claims.cross_run_claims(runs)}
    assert rows["gradual M-FAC vs magnitude @87.5%"]["n"] == 0  # no magnitude arm here: untested, not passed
    assert not rows["gradual M-FAC vs magnitude @87.5%"]["passed"]


def test_gradual_study_composes_the_official_schedule(make_cfg):
    from experiments.mfac.gradual import OFFICIAL_LRS
    from runner import experiments

    plan = {(s, a): o for s, a, o in experiments.arm_runs("mfac", "paper")}
    for arm in ("mfac", "magnitude"):
        cfg = make_cfg(*[o.split(",")[0] if o.startswith("seed=") else o for o in plan["gradual", arm]])
        g = cfg.hooks.gradual_prune
        assert g.method == arm and g.start_epoch == 100 and cfg.trainer.epochs == 110 and "prune" not in cfg.hooks
        assert cfg.optimizer.lr == 0.1 and cfg.optimizer.momentum == 0.9 and cfg.trainer.batch_size == 128
    from experiments.mfac.gradual import GradualPrune

    h = GradualPrune()
    assert (h.sparsities, h.prune_every, h.kw["m"], h.kw["grad_batch"], h.kw["rounds"], h.kw["damp"]) == (
        [0.5, 0.75, 0.875], 2, 64, 32, 16, 1e-5)
    assert OFFICIAL_LRS == (0.005, 0.0005, 0.005, 0.0005, 0.005, 0.005, 0.005, 0.0005, 0.0005, 0.00005)
