"""PI-HC-MoE: the closed-form Jacobian and curvature of an expert's least squares against torch.func, the
closed-form implicit step against the generic one, the hard-constraint layer on a basis that contains the
exact answer of its own least squares, short runs of the three variants (checks and logged columns), and the
paper-scale composition."""
import pytest
import torch
from torch.func import hessian, jacfwd, vmap

from experiments.pinn_moe.trainer import expert_curvature, expert_jacobian, expert_residual
from runner.data import diffusion_sorption as ds
from runner.solvers.lm import implicit_step

pytestmark = pytest.mark.usefixtures("one_thread")
C = ds.Constants()
TINY = ["experiment=pinn_moe", "trainer.steps=3", "trainer.eval_every=2", "trainer.nx=16", "trainer.nt=6",
        "trainer.n_train=4", "trainer.n_test=2", "trainer.points=20", "trainer.batch=2", "trainer.refine=1",
        "components.net.module.width=4", "components.net.module.modes=3"]


def _terms(B=3, P=10, N=5, S=4, T=6, seed=0):
    g = torch.Generator().manual_seed(seed)

    def r(*s):
        return torch.randn(*s, generator=g, dtype=torch.float64)

    one, mix = torch.ones(B, dtype=torch.float64), torch.tensor([1.0, 0.0, 1.0], dtype=torch.float64)[:B]
    return [0.1 * r(B, P, N).abs(), r(B, P, N), r(B, P, N), r(B, S, N), r(B, S), r(B, T, N), r(B, T, N), one, mix]


def f(w, *t):
    return expert_residual(w, *t, scale=500.0, c=C)


def jf(w, *t):
    return expert_jacobian(w, *t, scale=500.0, c=C)


def cf(w, *t):
    return expert_curvature(w, *t, scale=500.0, c=C)


def test_closed_forms_match_torch_func():
    terms = _terms()
    w = torch.ones(3, 5, dtype=torch.float64) + 0.1 * torch.randn(3, 5, dtype=torch.float64)
    torch.testing.assert_close(jf(w, *terms), vmap(jacfwd(f))(w, *terms))
    J = jf(w, *terms)
    H = vmap(hessian(lambda w, *t: 0.5 * (f(w, *t) ** 2).sum()))(w, *terms)
    torch.testing.assert_close(J.transpose(1, 2) @ J + cf(w, *terms), H)


def test_closed_form_implicit_step_equals_the_generic_one():
    terms = _terms(seed=1)
    w = torch.ones(3, 5, dtype=torch.float64)
    leaves = [t.clone().requires_grad_(True) for t in terms[:3]]
    a = implicit_step(f, w, *leaves, *terms[3:])
    b = implicit_step(f, w, *leaves, *terms[3:], jac=jf, curvature=cf)
    torch.testing.assert_close(a, b)
    for x, y in zip(torch.autograd.grad(a.square().sum(), leaves), torch.autograd.grad(b.square().sum(), leaves)):
        torch.testing.assert_close(x, y)


@pytest.fixture
def built(make_cfg, tmp_path):
    from runner.dispatch import build

    def _make(*overrides):
        state, trainer, _ = build(make_cfg(*TINY, f"results_dir={tmp_path}", *overrides))
        trainer.phases(state)
        return state, trainer

    return _make


def test_a_basis_holding_an_exact_solution_is_fitted_exactly(built):
    """Field 0 = the steady line u* = 1 - a (x - x_0) with u*(x_last) = D u*_x: every row of every expert
    (PDE, IC = u*, both BCs) is zero at w = e_0, so LM from ones recovers u* in each slab, up to the ridge."""
    state, tr = built()
    x, _ = ds.grid(tr.nx, tr.nt)
    a = 1.0 / (x[-1] - x[0] - ds.Constants().D)
    line = 1 - a * (x - x[0])
    g = torch.Generator().manual_seed(0)
    b = torch.randn(1, tr.nt, tr.nx, tr.N, generator=g, dtype=torch.float64)
    b[..., 0] = line
    u, sol, mask = tr.constrain(b, line[None], state.stream("test"))
    assert u.shape == (1, tr.nt, tr.nx) and int(mask.sum()) == tr.K * tr.points_k
    assert int(sol.iters.max()) <= tr.lm_iters and tr.K == 4
    torch.testing.assert_close(u[0], line.expand(tr.nt, -1), atol=1e-4, rtol=0)


@pytest.mark.parametrize("variant", ["sc", "hc", "moe"])
def test_each_variant_runs_and_logs(make_cfg, tmp_path, variant):
    import pandas as pd

    from experiments.pinn_moe.claims import CLAIMS
    from runner.claims import evaluate_claims
    from runner.dispatch import execute

    extra = ["components.net.module.n_classes=1"] if variant == "sc" else []
    cfg = make_cfg(*TINY, f"results_dir={tmp_path}", f"trainer.variant={variant}", *extra, "study=ds",
                   f"arm={variant}")
    execute(cfg, tmp_path / variant)
    df = pd.read_csv(tmp_path / variant / "metrics.csv")
    assert df.loss.notna().all() and df.test_rel_l2.notna().sum() == 2 and df.data_seconds.notna().sum() == 1
    assert (tmp_path / variant / "arrays" / "map" / "pred").exists()
    if variant != "sc":
        from omegaconf import OmegaConf

        results = evaluate_claims(CLAIMS, df, OmegaConf.to_container(cfg, resolve=True))
        assert results and all(r["passed"] for r in results), results


def test_a_wrong_output_width_is_an_error(built):
    from runner.errors import OptrunError

    with pytest.raises(OptrunError, match="n_classes"):
        built("trainer.variant=sc")


def test_paper_scale_composition(make_cfg):
    cfg = make_cfg("experiment=pinn_moe", "scale=paper")
    t, net = cfg.trainer, cfg.components.net
    assert (t.nx, t.nt, t.basis, t.points, t.experts, t.steps, t.batch) == (1024, 101, 16, 20000, 4, 4000, 6)
    assert (net.module.n_classes, net.module.width, net.module.layers, net.optimizer.lr) == (16, 64, 5, 1e-3)
