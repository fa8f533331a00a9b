"""CBO experiment: the landscape, cbx's consensus against the formula, finite differences, and a
short end-to-end sweep with the cross-run claims."""
import numpy as np
import pytest

from experiments.cbo.landscapes import GrandCanyon, Rastrigin
from experiments.cbo.methods import CBO, ConsensusHopping, Langevin, central_gradient

pytestmark = pytest.mark.usefixtures("one_thread")


def test_canyon_global_minimum_is_the_origin():
    p = GrandCanyon()
    g = np.linspace(-2.5, 8.5, 441)
    X, Y = np.meshgrid(g, g)
    F = p.f(np.stack([X, Y], -1))
    assert F.shape == X.shape and p.f(np.zeros(2)) == 0.0 and F.min() >= 0.0
    i, j = np.unravel_index(F.argmin(), F.shape)
    assert abs(X[i, j]) < 0.05 and abs(Y[i, j]) < 0.05
    assert p.f(np.array([8.0, 8.0])) > 100  # the start is high up the bowl


def test_consensus_of_cbx_is_the_weighted_mean_with_f_minus_fmin(solver_state):
    p, st = GrandCanyon(), solver_state()
    alg = CBO(runs=3, particles=50, sigma=0.0, lamda=1.0, dt=1.0, init_std=2.0)
    alg.setup(p, st)
    x = alg.dyn.x.copy()
    alg.step(p, st)  # lambda dt = 1 and no noise: every particle jumps onto the consensus point
    E = p.f(x)
    w = np.exp(-100.0 * (E - E.min(1, keepdims=True)))
    v = (x * w[..., None]).sum(1) / w.sum(1)[:, None]
    np.testing.assert_allclose(alg.dyn.consensus[:, 0, :], v, rtol=1e-10)
    np.testing.assert_allclose(alg.dyn.x, np.broadcast_to(v[:, None, :], x.shape), rtol=1e-10)


def test_consensus_hopping_samples_around_the_consensus_point(solver_state):
    p, st = GrandCanyon(), solver_state()
    alg = ConsensusHopping(runs=4, particles=4000, sigma=0.7)
    alg.setup(p, st)
    alg.step(p, st)
    spread = alg.dyn.x - alg.dyn.consensus  # x_i = v_alpha + sigma xi_i
    np.testing.assert_allclose(spread.mean(1), 0.0, atol=0.05)
    np.testing.assert_allclose(spread.std(1), 0.7, rtol=0.05)


def test_central_differences_match_the_analytic_gradient():
    p = Rastrigin(d=5)
    x = np.random.default_rng(0).normal(size=(7, 5))
    exact = 2 * x + 20 * np.pi * np.sin(2 * np.pi * x)
    np.testing.assert_allclose(central_gradient(p.f, x, 1e-5), exact, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("make", [lambda: Langevin(runs=3, iters=20), lambda: CBO(runs=3, particles=30, iters=20)])
def test_state_round_trip_reproduces_the_trajectory(make, solver_state):
    p, st = GrandCanyon(), solver_state(4)
    a = make()
    a.setup(p, st)
    for _ in range(5):
        a.step(p, st)
    saved = a.state_dict()
    after = [a.step(p, st)["dist_mean"] for _ in range(5)]
    a.load_state_dict(saved)
    assert [a.step(p, st)["dist_mean"] for _ in range(5)] == after


def test_short_sweep_logs_snapshots_and_evaluates_claims(make_cfg, tmp_path):
    from experiments.cbo.claims import cross_run_claims
    from runner.arrays import run_array
    from runner.dispatch import execute
    from runner.report.runs import load_runs

    short = {"cbo": ["algorithm.iters=40"], "langevin": ["algorithm.iters=300"], "gd": ["algorithm.iters=300"],
             "consensus_hopping": ["algorithm.iters=40"]}
    for name, extra in short.items():
        cfg = make_cfg("experiment=cbo", "study=canyon", f"arm={name}", f"algorithm={name}", "algorithm.runs=6", *extra)
        summary = execute(cfg, tmp_path / "cbo" / name)
        assert summary["status"] == "completed" and 0 <= summary["metrics"]["success_rate"] <= 100
    runs, _ = load_runs(tmp_path)
    cbo = next(r for r in runs if r.cfg["algorithm"]["name"] == "cbo")
    assert {"f_evals", "spread", "dist_median"} <= set(cbo.metrics.columns)
    assert not any(c.startswith("run") for c in cbo.metrics.columns)  # positions are an array metric
    steps, points = run_array(cbo.metrics, "positions")
    assert steps.tolist() == [10, 20, 30, 40] and points.shape == (4, 6, 2)  # every snapshot_every=10 steps
    assert cbo.metrics.f_evals.iloc[-1] == 40 * 200
    assert [c["name"][:2] for c in cbo.summary["claims"]] == ["C1"]
    rows = cross_run_claims(runs)
    assert [r["n"] for r in rows] == [1, 1] and [r["name"][:2] for r in rows] == ["X1", "X2"]
    assert (tmp_path / "cbo" / "cbo" / "landscape.png").exists()


def test_paper_scale_is_the_2d_setup_with_a_rastrigin_extra(make_cfg):
    """scale=paper composes the paper's 2-D canyon (50 runs per method); the studies hold the extra."""
    from runner import experiments

    cfg = make_cfg("experiment=cbo", "scale=paper")
    assert cfg.scale == "paper" and cfg.algorithm.runs == 50 and cfg.problem.ripple == 8.0
    studies = experiments.studies("cbo", "paper")
    assert set(studies) == {"canyon", "rastrigin"} and set(studies["canyon"]["arms"]) == {
        "cbo", "consensus_hopping", "gd", "langevin"}
    arms = {(s, a): o for s, a, o in experiments.arm_runs("cbo", "paper")}
    cfg = make_cfg(*arms[("rastrigin", "cbo")])
    assert (cfg.problem.d, cfg.algorithm.noise, cfg.algorithm.particles, cfg.arm) == (10, "anisotropic", 500, "cbo")


def test_langevin_between_is_a_strict_ordering():
    """X1 passes only when GD < Langevin < CBO: a tie with GD (or with CBO) is not "between"."""
    from experiments.cbo.claims import _between

    assert _between(0.0, 38.0, 100.0) == 38.0
    assert _between(0.0, 0.0, 100.0) == 0.0 and _between(0.0, 100.0, 100.0) == 0.0
    assert _between(10.0, 5.0, 100.0) < 0
