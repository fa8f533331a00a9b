"""LML diffusion experiment: exact scores, the Sherman-Morrison preconditioner against dense algebra,
DDIM on a single Gaussian, NFE accounting, an end-to-end smoke sweep and the paper-scale loader."""
import math

import pytest
import torch

from experiments.lml_diffusion.problems import RingMixture
from experiments.lml_diffusion.samplers import Sampler, lml_precondition, sm_apply, sm_sqrt_apply

pytestmark = pytest.mark.usefixtures("one_thread")


def _run(problem, alg, st):
    problem.setup(st)
    alg.setup(problem, st)
    out = {}
    while alg.i < len(alg.ops):
        out = alg.step(problem, st)
    return out


def test_sherman_morrison_matches_a_dense_solve_and_square_root():
    g = torch.Generator().manual_seed(0)
    u, v = torch.randn(5, 7, generator=g, dtype=torch.float64), torch.randn(5, 7, generator=g, dtype=torch.float64)
    for lam in (1e-3, 0.5, 40.0):
        for i in range(5):
            M = torch.linalg.inv(torch.eye(7, dtype=torch.float64) + torch.outer(u[i], u[i]) / lam)
            w, Q = torch.linalg.eigh(M)
            root = Q @ torch.diag(w.sqrt()) @ Q.T
            torch.testing.assert_close(sm_apply(u, v, lam)[i], M @ v[i])
            torch.testing.assert_close(sm_sqrt_apply(u, v, lam)[i], root @ v[i])
        ms, mz = lml_precondition(u, v, 2 * v, lam)
        torch.testing.assert_close(ms, sm_apply(u, v, lam))
        torch.testing.assert_close(mz, 2 * sm_sqrt_apply(u, v, lam))


def test_exact_eps_is_minus_sigma_times_the_autograd_score(solver_state):
    p = RingMixture(samples=16)
    p.setup(solver_state())
    x = torch.randn(16, 2, dtype=torch.float64, requires_grad=True)
    for t in (0, 300, 999):
        ab = float(p.alpha_bar[t])
        var = ab * p.mode_std ** 2 + 1 - ab
        logp = torch.logsumexp(-((x[:, None] - math.sqrt(ab) * p.mu) ** 2).sum(-1) / (2 * var), 1).sum()
        (score,) = torch.autograd.grad(logp, x)
        torch.testing.assert_close(p.eps(x.detach(), t), -math.sqrt(1 - ab) * score)
    assert p.nfe == 3


def test_ddim_with_exact_scores_lands_on_a_single_gaussian(solver_state):
    p = RingMixture(modes=1, radius=1.0, mode_std=0.5, samples=20000)
    out = _run(p, Sampler(nfe=50), solver_state())
    samples = out["samples"].double()
    torch.testing.assert_close(samples.mean(0), torch.tensor([1.0, 0.0], dtype=torch.float64), atol=0.05, rtol=0)
    torch.testing.assert_close(samples.std(0), torch.full((2,), 0.5, dtype=torch.float64), atol=0.03, rtol=0)
    assert out["swd"] < 3 * p.reference()["swd_floor"]


def test_lml_with_infinite_damping_is_langevin_and_nfe_is_the_step_count(solver_state):
    outs = {}
    for name, kw in {"langevin": {"corrector": "langevin"}, "lml": {"corrector": "lml", "lam": 1e15}}.items():
        p = RingMixture(samples=2000)
        alg = Sampler(nfe=10, step_scale=0.1, **kw)
        outs[name] = _run(p, alg, solver_state(3))
        assert p.nfe == 10 == alg.iters and [op for op, _, _ in alg.ops] == ["corr", "pred"] * 5
    assert outs["lml"]["swd"] == pytest.approx(outs["langevin"]["swd"], rel=1e-9)
    assert outs["langevin"]["overhead"] == 0.0 and outs["lml"]["overhead"] > 0.0


def test_state_round_trip_reproduces_the_samples(solver_state):
    p, st = RingMixture(samples=500), solver_state(1)
    a = Sampler(nfe=8, corrector="lml", lam=0.5)
    p.setup(st)
    a.setup(p, st)
    for _ in range(3):
        a.step(p, st)
    saved = {k: (v.clone() if torch.is_tensor(v) else v) for k, v in a.state_dict().items()}
    gen = st.generators["solver"].get_state()
    after = [a.step(p, st)["loss"] for _ in range(3)]
    a.load_state_dict(saved)
    st.generators["solver"].set_state(gen)
    assert [a.step(p, st)["loss"] for _ in range(3)] == after


def test_short_sweep_evaluates_the_claims(make_cfg, tmp_path):
    from experiments.lml_diffusion.claims import cross_run_claims
    from runner.dispatch import execute
    from runner.report.runs import load_runs

    for arm in ("ddim", "langevin_pc", "lml_pc"):
        cfg = make_cfg("experiment=lml_diffusion", "study=ring_nfe10", f"arm={arm}", f"algorithm={arm}",
                       "problem.samples=2000", "algorithm.nfe=10")
        summary = execute(cfg, tmp_path / "lml" / arm)
        assert summary["status"] == "completed" and summary["metrics"]["nfe"] == 10
    runs, _ = load_runs(tmp_path)
    lml = next(r for r in runs if r.arm == "lml_pc")
    assert {"swd", "mmd2", "swd_floor", "mode_tv", "log_p", "overhead"} <= set(lml.metrics.columns)
    assert [c["name"][:2] for c in lml.summary["claims"]] == ["C1"]
    rows = cross_run_claims(runs)
    assert [r["name"][:2] for r in rows] == ["X1", "X2", "X3"] and [r["n"] for r in rows] == [1, 0, 1]
    assert (tmp_path / "lml" / "lml_pc" / "sampler.png").exists()


def test_paper_scale_loads_a_torchscript_model_from_data_dir(make_cfg, tmp_path):
    """A tiny random epsilon-network, scripted into data_dir, drives the paper-scale sampler."""
    from runner.dispatch import execute

    class Tiny(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 3, 3, padding=1)

        def forward(self, x, t):
            return self.conv(x) + 0.0 * t.float().view(-1, 1, 1, 1)

    torch.jit.script(Tiny()).save(str(tmp_path / "ddpm_cifar10_eps.pt"))
    cfg = make_cfg("experiment=lml_diffusion", "scale=paper", "algorithm=lml_pc", "algorithm.nfe=4",
                   f"problem.data_dir={tmp_path}", "problem.samples=6", "problem.batch=4", "device=cpu")
    summary = execute(cfg, tmp_path / "run")
    assert summary["status"] == "completed" and summary["metrics"]["nfe"] == 4
    import pandas as pd

    last = pd.read_csv(tmp_path / "run" / "metrics.csv").iloc[-1]
    assert math.isnan(last.fid) and last.fid_available == 0.0  # no Inception weights in data_dir


def test_frechet_distance_of_a_set_with_itself_is_zero():
    import numpy as np

    from experiments.lml_diffusion.fid import frechet

    a = np.random.default_rng(0).normal(size=(200, 5))
    assert abs(frechet(a, a)) < 1e-6 and frechet(a, a + 1.0) == pytest.approx(5.0, rel=1e-6)
