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


@pytest.mark.parametrize("h,steps", [(0.9, 200), (1.0, 200), (1.05, 5)])
def test_the_official_notebook_quadratic_pf_is_gd(h, steps):
    # E = x^T diag(1, 0.01) x (Hessian diag(2, 0.02)), axis-aligned, start (-0.35, -0.2), as the paper scale runs it
    t = FlowCheckTrainer(steps=steps, h=h, eigenvalues=[2.0, 0.02], start=[-0.35, -0.2], substeps=2000, rotate=False)
    state = SimpleNamespace(seed=0, stop=False)
    t.phases(state)
    assert torch.equal(t.landscape.a, torch.diag(torch.tensor([2.0, 0.02], dtype=torch.float64)))
    rows = [t.step(state) for _ in range(steps)]
    assert max(r["err_pf"] for r in rows) < 1e-8 and max(r["err_ngf"] for r in rows) > 0.1
    assert rows[0]["h_lambda_max"] == pytest.approx(2 * h)


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


def _flat_problem(seed=0):
    """A tiny MLP with cross-entropy, as a function of one flat parameter vector (for a dense Hessian)."""
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(4, 5), torch.nn.Tanh(), torch.nn.Linear(5, 3)).double()
    x, y = torch.randn(30, 4, dtype=torch.float64), torch.randint(0, 3, (30,))
    shapes = [p.shape for p in model.parameters()]

    def loss_of(flat):
        params, i = [], 0
        for shape in shapes:
            n = math.prod(shape)
            params.append(flat[i:i + n].view(shape))
            i += n
        names = [k for k, _ in model.named_parameters()]
        return torch.nn.functional.cross_entropy(functional_call(model, dict(zip(names, params)), (x,)), y)
    return model, x, y, loss_of


@pytest.mark.parametrize("p", [0.25, 0.5, 1.0])
def test_dal_q_and_step_against_a_dense_hessian(p):
    model, x, y, loss_of = _flat_problem()
    flat = torch.cat([q.detach().reshape(-1) for q in model.parameters()])
    w = flat.clone().requires_grad_()
    g = torch.autograd.grad(loss_of(w), w)[0]
    hess = torch.autograd.functional.hessian(loss_of, flat)
    q = float((hess @ g).norm() / g.norm())
    eta = min(2 * q ** -p, 5.0)
    opt = DriftAdjustedSGD(model.parameters(), p=p, max_lr=5.0)

    def closure(backward=True):
        loss = torch.nn.functional.cross_entropy(model(x), y)
        if backward:
            opt.zero_grad()
            loss.backward()
        return loss
    closure()
    opt.step(closure)
    assert float(opt.stats["hg_ratio"]) == pytest.approx(q, rel=1e-8)
    assert float(opt.stats["eff_lr"]) == pytest.approx(eta, rel=1e-8)
    after = torch.cat([t.detach().reshape(-1) for t in model.parameters()])
    assert torch.allclose(after, flat - eta * g, atol=1e-12)


def test_share_of_loss_increasing_steps_and_the_regime_statistics():
    import pandas as pd

    from experiments.discretisation_drift.claims import at_cap, increase_fraction, q_above_one

    # the loss logged at step t is the loss before update t: updates 2 and 4 (of 5) raised it
    df = pd.DataFrame({"step": range(6), "loss": [4.0, 3.0, 3.5, 2.0, 2.5, 2.5]})
    assert increase_fraction(df) == pytest.approx(2 / 5)  # a tie is not an increase
    df = pd.DataFrame({"optimizer_stats/hg_ratio": [0.5, 1.5, 2.0, float("nan"), 3.0],
                       "optimizer_stats/eff_lr": [5.0, 1.2, 1.0, float("nan"), 0.9]})
    assert q_above_one(df) == pytest.approx(3 / 4) and at_cap(df) == pytest.approx(1 / 4)


def test_short_runs_log_what_the_claims_read(make_cfg, tmp_path):
    s = execute(make_cfg("experiment=discretisation_drift", "study=dal_p", "arm=dal", "optimizer=dal",
                         "optimizer.p=0.5", "trainer.loss=ce", "trainer.steps=20", "device=cpu",
                         "hooks=[test_eval,optimizer_stats]", "hooks.test_eval.every=10",
                         "hooks.optimizer_stats.every=1"), tmp_path / "dal")
    import pandas as pd

    df = pd.read_csv(tmp_path / "dal" / "metrics.csv")
    assert {"optimizer_stats/eff_lr", "optimizer_stats/hg_ratio", "optimizer_stats/grad_norm",
            "optimizer_stats/hg_norm", "test_eval/test_acc", "train_acc"} <= set(df.columns)
    steps = df.dropna(subset=["optimizer_stats/hg_ratio"])
    assert len(steps) == 20 and s["status"] == "completed"  # q and eta every step
    eta = (2 * steps["optimizer_stats/hg_ratio"] ** -0.5).clip(upper=5.0)
    assert ((steps["optimizer_stats/eff_lr"] - eta).abs() < 1e-4 * eta).all()
    assert {c["name"][:3] for c in s["claims"]} == {"D2c"}
    s = execute(make_cfg("experiment=discretisation_drift", "study=eos", "arm=fixed_lr", "optimizer.lr=2",
                         "trainer.steps=30", "device=cpu", "hooks=[test_eval,sharpness]", "hooks.sharpness.every=10",
                         "hooks.sharpness.estimator=none"), tmp_path / "gd")
    df = pd.read_csv(tmp_path / "gd" / "metrics.csv")
    assert {"sharpness/lambda_max", "sharpness/gd_ratio", "test_eval/test_acc"} <= set(df.columns)
    s = execute(make_cfg("experiment=discretisation_drift", "study=flows", "arm=quadratic", "trainer=flow_check",
                         "hooks=[]", "trainer.h=2.2", "trainer.steps=10", "device=cpu"), tmp_path / "f")
    claims = {c["name"][:3]: c for c in s["claims"]}
    assert set(claims) == {"D1a", "D1b"} and claims["D1a"]["passed"] and claims["D1b"]["passed"]
    assert {c["kind"] for c in claims.values()} == {"check"}


def _first_point(overrides):
    """The first point of an arm's sweep: 'k=a,b' -> 'k=a' (lists in brackets are left alone)."""
    return [o.split("=", 1)[0] + "=" + o.split("=", 1)[1].split(",")[0] if "," in o and "[" not in o else o
            for o in overrides]


def test_paper_scale_composes_the_flow_runs_and_dal_p_on_cifar10(make_cfg):
    from runner.experiments import arm_runs

    arms = {(study, arm): _first_point(ovr) for study, arm, ovr in arm_runs("discretisation_drift", "paper")}
    assert set(arms) == {("flows", "quadratic"), ("flows", "quadratic_divergence"), ("dal_p", "dal")}
    flow = make_cfg(*arms[("flows", "quadratic")])
    # the official PF notebooks: E = x^T diag(1, 0.01) x (Hessian diag(2, 0.02)), axis-aligned, start (-0.35, -0.2)
    assert (list(flow.trainer.eigenvalues), flow.trainer.rotate, list(flow.trainer.start)) == ([2, 0.02], False,
                                                                                               [-0.35, -0.2])
    assert "hooks" not in flow or not flow.hooks
    assert make_cfg(*arms[("flows", "quadratic_divergence")]).trainer.h == 1.05
    dal = make_cfg(*arms[("dal_p", "dal")])
    assert (dal.dataset.name, list(dal.model.hidden), dal.trainer.steps, dal.trainer.loss) == ("cifar10", [200, 200],
                                                                                               5000, "ce")
    assert dal.optimizer._target_.endswith("DriftAdjustedSGD") and dal.optimizer.max_lr == 5.0
    assert set(dal.hooks) == {"test_eval", "optimizer_stats"} and dal.hooks.optimizer_stats.every == 1
    smoke = {(st, a): _first_point(o) for st, a, o in arm_runs("discretisation_drift", "smoke")}
    sm = make_cfg(*smoke[("dal_p", "dal")])
    assert (sm.dataset.name, list(sm.model.hidden), sm.trainer.steps, sm.trainer.loss) == ("digits", [256, 256], 200,
                                                                                           "ce")
    eos = make_cfg(*smoke[("eos", "fixed_lr")])
    assert (eos.dataset.name, list(eos.model.hidden), eos.trainer.steps, eos.trainer.loss) == ("digits", [128], 1000,
                                                                                               "mse")


def test_dal_p_orderings_are_per_seed_and_strict():
    from types import SimpleNamespace

    import pandas as pd

    from experiments.discretisation_drift.claims import cross_run_claims
    from runner.claims import in_study

    def run(p, losses, acc, seed=0):
        c = {"study": "dal_p", "arm": "dal", "seed": seed, "optimizer": {"p": p, "max_lr": 5.0}}
        m = pd.DataFrame({"step": range(len(losses)), "loss": losses, "test_eval/test_acc": acc})
        return SimpleNamespace(cfg=c, metrics=m, status={"status": "completed"},
                               is_in=lambda study=None, arms=None: in_study(c, study, arms))

    bumpy, some, smooth = [5, 4, 4.5, 3, 3.5, 2], [5, 4, 4.5, 3, 2.5, 2], [5, 4, 3.5, 3, 2.5, 2]
    good = [run(0.25, bumpy, 96.0), run(0.5, some, 95.0), run(1, smooth, 94.0)]
    rows = {r["name"][:3]: r for r in cross_run_claims(good)}
    assert [(k, r["kind"], r["n"], r["passed"]) for k, r in rows.items()] == [("D2a", "headline", 1, True),
                                                                             ("D2b", "headline", 1, True)]
    assert rows["D2a"]["measured"] == pytest.approx(0.2) and rows["D2b"]["measured"] == pytest.approx(1.0)
    tie = good + [run(0.25, bumpy, 95.0, seed=1), run(0.5, bumpy, 95.0, seed=1), run(1, smooth, 94.0, seed=1)]
    rows = {r["name"][:3]: r for r in cross_run_claims(tie)}  # seed 1: equal shares and accuracies fail
    assert (rows["D2a"]["n"], rows["D2a"]["n_passed"], rows["D2a"]["passed"]) == (2, 1, False)
    assert (rows["D2b"]["n_passed"], rows["D2b"]["passed"]) == (1, False)
