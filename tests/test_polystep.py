"""PolyStep: the hard-LIF network (shapes, spike counts on a case computed by hand, an exactly zero
gradient), the estimator's step against its definition written out here (orthoplex costs, row-wise
softmax, barycentre), its purity, cost, absorption and resume, its optimizer check, descent on a smooth
toy, and short runs through the engine."""
from __future__ import annotations

import pytest
import torch

from experiments.polystep.estimator import PolyStep, StackedLIF, barycentric_move, random_rotations
from runner.errors import OptrunError
from runner.estimators import Problem
from runner.models.snn import LIFNet

pytestmark = pytest.mark.usefixtures("one_thread")


class _State:
    """What setup/after_step read: an optimizer and a stream per name."""

    def __init__(self, params, lr=1.0, momentum=0.0, opt=torch.optim.SGD):
        self.optimizer = opt(params, lr=lr, **({"momentum": momentum} if opt is torch.optim.SGD else {}))
        self.generators = {}

    def stream(self, name):
        return self.generators.setdefault(name, torch.Generator().manual_seed(len(name)))


def _tiny_net(reset="zero") -> LIFNet:
    net = LIFNet((1,), 1, hidden=[1], beta=0.5, threshold=1.0, timesteps=6, reset=reset)
    with torch.no_grad():
        net.layers[0].weight.fill_(0.6)
        net.layers[0].bias.zero_()
        net.layers[1].weight.fill_(1.0)
        net.layers[1].bias.zero_()
    return net


def test_lif_shapes_and_counts():
    net = LIFNet((8, 8), 10, hidden=[16, 12], timesteps=5)
    out = net(torch.rand(7, 8, 8))
    assert out.shape == (7, 10)
    assert torch.all(out == out.round()) and out.min() >= 0 and out.max() <= 5
    assert LIFNet((4,), 3, hidden=[5], timesteps=4, readout_scale=0.5)(torch.ones(2, 4)).mul(2).remainder(1).eq(0).all()


def test_lif_spike_counts_by_hand():
    """u = 0.5 u + 0.6: 0.6, 0.9, 1.05 (spike, reset to 0), 0.6, 0.9, 1.05 (spike): hidden spikes at
    t = 3 and 6; each drives the output (weight 1, membrane 0 before) to exactly the threshold: 2 spikes.
    With reset by subtraction: 1.05 -> 0.05, then 0.625, 0.9125, 1.056 (spike): also 2."""
    for reset in ("zero", "subtract"):
        assert _tiny_net(reset)(torch.ones(1, 1)).item() == 2.0
    net = _tiny_net()
    with torch.no_grad():
        net.layers[0].weight.fill_(0.4)  # 0.4, 0.6, 0.7, 0.75, 0.775, 0.7875: never reaches 1
    assert net(torch.ones(1, 1)).item() == 0.0


def test_backprop_through_the_hard_lif_is_exactly_zero():
    torch.manual_seed(0)
    net = LIFNet((8, 8), 10, hidden=[32], timesteps=8)
    x, y = torch.randn(64, 8, 8) * 3, torch.randint(0, 10, (64,))
    out = net(x)
    assert out.sum() > 0  # it spikes
    loss = torch.nn.functional.cross_entropy(out, y)
    grads = torch.autograd.grad(loss, list(net.parameters()))
    assert all(g is not None and torch.all(g == 0) for g in grads)


def test_lif_rejects_bad_settings():
    with pytest.raises(OptrunError, match="model.reset"):
        LIFNet((4,), 2, reset="soft")
    with pytest.raises(OptrunError, match="model.timesteps"):
        LIFNet((4,), 2, timesteps=0)


def _problem(seed=0):
    torch.manual_seed(seed)
    net = LIFNet((6,), 3, hidden=[5], timesteps=4, readout_scale=1.0)
    x, y = torch.randn(20, 6) * 2, torch.randint(0, 3, (20,))
    return Problem(net, torch.nn.functional.cross_entropy), (x, y)


def test_the_lif_fast_path_is_bit_identical_to_vmap_of_the_loss():
    """StackedLIF (how the estimator evaluates a LIFNet's probes) against vmap of problem.loss, bit for
    bit, for both resets and two hidden layers; a possible membrane overflow falls back (None)."""
    for reset, hidden in (("zero", [12]), ("subtract", [9, 7])):
        torch.manual_seed(0)
        net = LIFNet((3, 4), 5, hidden=hidden, timesteps=6, reset=reset, readout_scale=0.5)
        x, y = 4 * torch.rand(40, 3, 4), torch.randint(0, 5, (40,))
        problem = Problem(net, torch.nn.functional.cross_entropy)
        assert StackedLIF.applies(problem)
        stacked = {n: p.detach() + 0.5 * torch.randn(70, *p.shape) for n, p in problem.params.items()}
        want = torch.func.vmap(lambda params: problem.loss(params, (x, y))[0])(stacked)
        assert want.unique().numel() > 10  # the probes spike differently
        assert torch.equal(StackedLIF(problem)(stacked, (x, y)), want)
    stacked["layers.1.bias"][3, 0] = float("inf")
    assert StackedLIF(problem)(stacked, (x, y)) is None
    assert not StackedLIF.applies(Problem(torch.nn.Linear(3, 2), torch.nn.functional.mse_loss))


def test_random_rotations_are_rotations():
    r = random_rotations(5, 8, torch.Generator().manual_seed(0))
    assert torch.allclose(r @ r.transpose(1, 2), torch.eye(8).expand(5, 8, 8), atol=1e-5)
    assert torch.allclose(torch.linalg.det(r), torch.ones(5), atol=1e-5)


def test_one_step_is_the_papers_update_written_out():
    """C[i, v] = loss with particle i alone at z_i + probe_r R_i(±e_j); W = softmax(-C/eps) per row;
    move_i = step_r sum_v W_iv R_i(±e_j); direction = -P move."""
    problem, batch = _problem()
    est = PolyStep(epsilon=0.3, step_radius=0.7, probe_radius=0.2, rank=2, particle_dim=4)
    est.setup(problem, _State(problem.params.values()))
    n, d = est.particles, est.pdim
    assert est.cost()["forward_passes"] == n * 2 * d + 1
    got = est.estimate(problem, batch, None, torch.Generator().manual_seed(5))
    rot = random_rotations(n, d, torch.Generator().manual_seed(5))
    base = {k: p.detach() for k, p in problem.params.items()}
    moves = torch.zeros(n, d)
    for i in range(n):
        dirs = [s * rot[i][:, j] for s in (1.0, -1.0) for j in range(d)]
        costs = []
        for v in dirs:
            z = torch.zeros(1, n * d)
            z[0, i * d:(i + 1) * d] = 0.2 * v
            delta = est.lift(z)
            costs.append(problem.loss({k: base[k] + delta[k][0] for k in base}, batch)[0])
        w = torch.softmax(-torch.stack(costs) / 0.3, 0)
        moves[i] = 0.7 * sum(wv * v for wv, v in zip(w, dirs))
    want = est.lift(moves.reshape(1, -1))
    for k in base:
        assert torch.allclose(got.grads[k], -want[k][0], atol=1e-5)
    assert got.counts["forward_passes"] == n * 2 * d + 1
    assert set(got.metrics) == set(est.columns())
    assert 0 <= got.metrics["w_entropy"] <= torch.log(torch.tensor(2.0 * d)) + 1e-6


def test_the_move_matches_the_official_package():
    """Cross-check of steps 3-4 against the authors' `polystep` package (PyPI, Python >= 3.11; not a
    dependency of optrun): same costs, rotations and orthoplex, same barycentric move."""
    compiled = pytest.importorskip("polystep._compiled", reason="the authors' polystep package is not installed")
    geometry = pytest.importorskip("polystep.geometry")
    g = torch.Generator().manual_seed(0)
    n, d, eps, step = 7, 8, 0.5, 1.0
    rot = random_rotations(n, d, g)
    template = geometry.get_orthoplex_vertices(d, dtype=torch.float32)
    costs = 2.3 + 0.1 * torch.randn(n, 2 * d, generator=g)
    x = torch.randn(n, d, generator=g)
    theirs, w_theirs = compiled._fused_softmax_project(costs, eps, template, rot, step, x)
    mine, w = barycentric_move(costs, torch.einsum("pij,vj->pvi", rot, template), eps, step)
    assert torch.allclose(theirs - x, mine, atol=1e-6) and torch.allclose(w_theirs, w, atol=1e-6)


def test_estimate_is_pure_and_seeded():
    problem, batch = _problem()
    est = PolyStep(rank=2, particle_dim=4)
    est.setup(problem, _State(problem.params.values()))
    before = {k: p.detach().clone() for k, p in problem.params.items()}
    a = est.estimate(problem, batch, None, torch.Generator().manual_seed(1))
    b = est.estimate(problem, batch, None, torch.Generator().manual_seed(1))
    assert all(torch.equal(a.grads[k], b.grads[k]) for k in a.grads)
    assert all(torch.equal(before[k], p) for k, p in problem.params.items())


def test_subspace_sizes_follow_the_official_coordinate_count():
    problem, _ = _problem()
    est = PolyStep(rank=4, particle_dim=8)
    est.setup(problem, _State(problem.params.values()))
    # 6 -> 5: (5 + 6) * 4; bias 5; 5 -> 3: (3 + 5) * min(4, 3); bias 3
    assert est.dim == 44 + 5 + 24 + 3
    assert est.particles == -(-est.dim // 8)


def test_absorption_draws_a_new_subspace_and_resume_restores_it():
    problem, batch = _problem()
    est = PolyStep(rank=2, particle_dim=4, absorb_every=2)
    state = _State(problem.params.values())
    est.setup(problem, state)
    u0 = est.layers["layers.0.weight"].u.clone()
    est.after_step(state)
    assert torch.equal(est.layers["layers.0.weight"].u, u0)
    est.after_step(state)
    assert est.absorbed == 1 and not torch.equal(est.layers["layers.0.weight"].u, u0)
    sd = est.state_dict()
    other = PolyStep(rank=2, particle_dim=4, absorb_every=2)
    other.setup(problem, _State(problem.params.values()))
    other.load_state_dict(sd)
    g = lambda: torch.Generator().manual_seed(3)  # noqa: E731
    a, b = est.estimate(problem, batch, None, g()), other.estimate(problem, batch, None, g())
    assert other.absorbed == 1 and all(torch.equal(a.grads[k], b.grads[k]) for k in a.grads)


def test_the_move_needs_plain_sgd_at_lr_one():
    problem, _ = _problem()
    for state in (_State(problem.params.values(), lr=0.1), _State(problem.params.values(), momentum=0.9),
                  _State(problem.params.values(), opt=torch.optim.Adam)):
        with pytest.raises(OptrunError, match="optimizer.lr=1"):
            PolyStep().setup(problem, state)
    with pytest.raises(OptrunError, match="epsilon"):
        PolyStep(epsilon=0)
    with pytest.raises(OptrunError, match="cost_scale"):
        PolyStep(cost_scale="max")


def test_polystep_descends_a_smooth_toy():
    """Least squares with a linear model: PolyStep's moves (SGD at lr 1) lower the loss."""
    torch.manual_seed(0)
    model = torch.nn.Linear(10, 3)
    x = torch.randn(64, 10)
    y = x @ torch.randn(10, 3)
    problem = Problem(model, lambda out, t: (out - t).pow(2).mean())
    est = PolyStep(epsilon=0.5, step_radius=0.5, probe_radius=0.1, rank=2, particle_dim=4, absorb_every=5)
    state = _State(model.parameters())
    est.setup(problem, state)
    g = torch.Generator().manual_seed(0)
    first = problem.loss(problem.params, (x, y))[0].item()
    for _ in range(40):
        e = est.estimate(problem, (x, y), state, g)
        for k, p in problem.params.items():
            p.grad = e.grads[k]
        state.optimizer.step()
        est.after_step(state)
    assert problem.loss(problem.params, (x, y))[0].item() < 0.5 * first


def test_runs_through_the_engine_with_forward_pass_budget(make_cfg, tmp_path):
    from runner.dispatch import execute

    cfg = make_cfg("experiment=polystep", "dataset=snn_templates", "model.hidden=[8]", "model.timesteps=3",
                   "trainer.batch_size=16", "trainer.budget_forward_passes=300", "trainer.estimator.rank=2",
                   f"results_dir={tmp_path}", "device=cpu")
    out = execute(cfg, tmp_path / "run")
    assert out["status"] == "completed"
    import pandas as pd

    df = pd.read_csv(tmp_path / "run" / "metrics.csv")
    per_step = df.forward_passes.diff().dropna().unique()
    assert len(per_step) == 1 and df.forward_passes.max() >= 300
    assert {"estimator/w_entropy", "estimator/cost_min", "test_eval/test_acc"} <= set(df.columns)
