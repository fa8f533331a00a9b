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
    assert set(rows) == {"M-FAC optimizer vs tuned sgd"} and rows["M-FAC optimizer vs tuned sgd"]["n"] == 1


def test_paper_scale_composes_resnet20_on_cifar10(make_cfg):
    cfg = make_cfg("experiment=mfac", "scale=paper")
    assert cfg.model._target_ == "runner.models.resnet.ResNet" and "hidden" not in cfg.model
    assert cfg.dataset.name == "cifar10" and cfg.trainer.epochs == 100 and cfg.trainer.batch_size == 128
    assert cfg.optimizer._target_ == "torch.optim.SGD" and cfg.optimizer.lr == 0.1 and cfg.optimizer.momentum == 0.9
    mf = make_cfg("experiment=mfac", "scale=paper", "optimizer=mfac", "optimizer.lr=0.001", "optimizer.m=1024",
                  "optimizer.damp=1e-5")
    assert (mf.optimizer.m, mf.optimizer.damp, mf.optimizer.lr) == (1024, 1e-5, 0.001)
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
