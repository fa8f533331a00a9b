"""Discretisation drift: the flows against exact GD on quadratics, DAL's step size and HVPs, and the
power-iteration sharpness probe, each against a dense reference."""
import math
from types import SimpleNamespace

import pytest
import torch
from torch.func import functional_call, grad, jvp

from experiments.discretisation_drift.flows import Quadratic, pf_coefficients, principal_flow, rk4
from experiments.discretisation_drift.trainer import FlowCheckTrainer
from runner.dispatch import execute
from runner.optim.dal import DriftAdjustedSGD


def _flow_run(h, steps=12, **kw):
    t = FlowCheckTrainer(steps=steps, h=h, eigenvalues=[1.0, 0.1], substeps=400, **kw)
    state = SimpleNamespace(seed=0, stop=False)
    t.phases(state)
    return [t.step(state) for _ in range(steps)]


@pytest.mark.parametrize("h", [0.5, 1.5, 2.2])
def test_principal_flow_is_gd_on_a_quadratic_and_ngf_is_not(h):
    rows = _flow_run(h)
    assert max(r["err_pf"] for r in rows) < 1e-8
    if h > 1:
        assert rows[-1]["err_ngf"] > 0.1
    assert rows[-1]["h_lambda_max"] == pytest.approx(h)


class _CurvedQuadratic(Quadratic):
    constant_hessian = False  # force the generic (per-point eigendecomposition) PF field


def test_generic_pf_field_matches_the_closed_form_propagator():
    q, h = _CurvedQuadratic([1.0, 0.1], seed=3), 1.5
    theta = torch.tensor([0.3, -0.8], dtype=torch.complex128)
    flowed = rk4(principal_flow(q, h), theta, h, 400)
    gd = theta - h * (q.a.to(theta.dtype) @ theta)
    assert float((flowed - gd).abs().max()) < 1e-8
    c = pf_coefficients(torch.tensor([0.0, 0.5, 1.5]), 1.0)
    assert c[0] == -1 and c[1].imag == 0 and c[1].real == pytest.approx(math.log(0.5) / 0.5)
    assert abs(c[2].imag) == pytest.approx(math.pi / 1.5)  # log(-0.5) = log 0.5 +- i pi, divided by h l


def _mlp_problem(seed=0):
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(5, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3))
    x, y = torch.randn(40, 5), torch.randn(40, 3)
    return model, x, y


def _closure(model, x, y, opt):
    def closure(backward=True):
        loss = ((model(x) - y) ** 2).mean()
        if backward:
            opt.zero_grad()
            loss.backward()
        return loss
    return closure


def _reference_hvp(model, x, y, v):
    params = {k: p.detach() for k, p in model.named_parameters()}
    f = lambda p: ((functional_call(model, p, (x,)) - y) ** 2).mean()  # noqa: E731
    return jvp(grad(f), (params,), (v,))[1]


@pytest.mark.parametrize("hvp,tol", [("exact", 1e-5), ("fd", 2e-2)])
def test_dal_step_size_and_update_against_a_dense_reference(hvp, tol):
    model, x, y = _mlp_problem()
    before = {k: p.detach().clone() for k, p in model.named_parameters()}
    params = {k: p.detach() for k, p in model.named_parameters()}
    g = grad(lambda p: ((functional_call(model, p, (x,)) - y) ** 2).mean())(params)
    hg = _reference_hvp(model, x, y, g)
    norm = lambda d: math.sqrt(sum(float((t * t).sum()) for t in d.values()))  # noqa: E731
    eta = min(2 * (norm(g) / norm(hg)) ** 0.5, 5.0)
    opt = DriftAdjustedSGD(model.parameters(), p=0.5, max_lr=5.0, hvp=hvp)
    closure = _closure(model, x, y, opt)
    closure()
    opt.step(closure)
    m = opt.stats
    assert float(m["hg_norm"]) == pytest.approx(norm(hg), rel=tol)
    assert float(m["eff_lr"]) == pytest.approx(eta, rel=tol)
    for k, p in model.named_parameters():
        assert torch.allclose(p.detach(), before[k] - float(m["eff_lr"]) * g[k], atol=1e-5)
    assert opt.param_groups[0]["lr"] == pytest.approx(float(m["eff_lr"]))
    capped = DriftAdjustedSGD(model.parameters(), p=1.0, max_lr=1e-3)
    closure = _closure(model, x, y, capped)
    closure()
    capped.step(closure)
    assert float(capped.stats["eff_lr"]) == pytest.approx(1e-3)


def test_short_runs_log_what_the_claims_read(make_cfg, tmp_path):
    s = execute(make_cfg("experiment=discretisation_drift", "optimizer=dal", "trainer.steps=30", "device=cpu",
                         "hooks.sharpness.every=10", "hooks.sharpness.estimator=none"), tmp_path / "dal")
    import pandas as pd

    df = pd.read_csv(tmp_path / "dal" / "metrics.csv")
    assert {"optimizer_stats/eff_lr", "optimizer_stats/grad_norm", "optimizer_stats/hg_norm", "sharpness/lambda_max",
            "sharpness/gd_ratio", "test_eval/test_acc", "train_acc"} <= set(df.columns)
    assert df["optimizer_stats/eff_lr"].dropna().le(5.0).all() and s["status"] == "completed"
    probed = df.dropna(subset=["sharpness/lr", "optimizer_stats/eff_lr"])  # DAL writes the step it took into its lr
    assert len(probed) and (probed["sharpness/lr"] == probed["optimizer_stats/eff_lr"]).all()
    s = execute(make_cfg("experiment=discretisation_drift", "study=flows", "arm=quadratic", "trainer=flow_check",
                         "hooks=[]", "trainer.h=2.2", "trainer.steps=10", "device=cpu"), tmp_path / "f")
    claims = {c["name"][:3]: c for c in s["claims"]}
    assert set(claims) == {"D1a", "D1b"} and claims["D1a"]["passed"] and claims["D1b"]["passed"]


def test_paper_scale_is_full_batch_gd_on_cifar10_and_the_claims_select_by_arm(make_cfg):
    from types import SimpleNamespace

    import pandas as pd

    from experiments.discretisation_drift.claims import cross_run_claims
    from runner.claims import in_study

    cfg = make_cfg("experiment=discretisation_drift", "scale=paper")
    assert (cfg.dataset.name, list(cfg.model.hidden), cfg.trainer.steps, cfg.trainer.loss) == (
        "cifar10", [200, 200], 5000, "mse")
    assert (cfg.hooks.sharpness.every, cfg.hooks.sharpness.probe_samples) == (50, 5000)
    smoke = make_cfg("experiment=discretisation_drift")
    assert (smoke.dataset.name, list(smoke.model.hidden), smoke.trainer.steps) == ("digits", [128], 1000)

    def run(arm, lr, losses, acc):
        c = {"study": "fixed_vs_dal", "arm": arm, "seed": 0, "optimizer": {"lr": lr, "p": 1}}
        m = pd.DataFrame({"step": range(len(losses)), "loss": losses, "test_eval/test_acc": acc,
                          "optimizer_stats/eff_lr": lr})
        return SimpleNamespace(cfg=c, metrics=m, status={"status": "completed"}, arm=arm,
                               is_in=lambda study=None, arms=None: in_study(c, study, arms))

    zigzag, smooth = [4, 3, 3.5, 2, 2.5, 1], [4, 3, 2.5, 2, 1.5, 1]
    rows = cross_run_claims([run("fixed_lr", 2.0, zigzag, 90.0), run("dal_p1", 2.0, smooth, 89.5),
                             run("dal_p05", 2.0, zigzag, 95.0)])
    assert [(r["name"][:3], r["kind"], r["n"], r["passed"]) for r in rows] == [
        ("D2a", "headline", 1, True), ("D2b", "headline", 1, True)]
