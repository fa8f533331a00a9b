"""pg_fisher: the policy-Hessian-vector estimate against dense derivatives (torch.func.hessian / jacrev),
one iteration of each method against the paper's update written out by hand on a tiny fixed batch,
the schedules, the costs and resume through the engine on CartPole, the paper-scale policy and the
MuJoCo stand-in, and the claims on made-up runs."""
from __future__ import annotations

import io
import math

import pandas as pd
import pytest
import torch

from experiments.pg_fisher import claims as C
from experiments.pg_fisher.trainer import PGFisher, hessian_vector_estimate, lookahead, schedule
from runner.dispatch import build, execute
from runner.models.policy import LinearSoftmaxPolicy
from runner.trainers.base import TrainState

pytestmark = pytest.mark.usefixtures("one_thread")
EXP = ["experiment=pg_fisher", "device=cpu"]
GAMMA = 0.9


def _batch(seed: int = 0, e: int = 3, t: int = 4, obs_dim: int = 3) -> dict:
    g = torch.Generator().manual_seed(seed)
    lengths = torch.tensor([t, t - 1, 2][:e])
    mask = torch.arange(t)[None, :] < lengths[:, None]
    rewards = torch.rand(e, t, generator=g) * mask
    return {"observations": torch.randn(e, t, obs_dim, generator=g), "actions": torch.randint(2, (e, t), generator=g),
            "rewards": rewards, "mask": mask, "lengths": lengths, "returns": rewards.sum(1)}


def _phi_logp(theta: torch.Tensor, b: dict, e: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Phi_e and log p_e of episode e written out as sums over its steps (theta = W (2x3) then b (2))."""
    w, bias = theta[:6].view(2, 3), theta[6:]
    phi, logp = theta.new_zeros(()), theta.new_zeros(())
    n = int(b["lengths"][e])
    for t in range(n):
        lp = torch.log_softmax(w @ b["observations"][e, t] + bias, -1)[b["actions"][e, t]]
        later = sum(GAMMA ** s * b["rewards"][e, s] for s in range(t, n))
        phi, logp = phi + lp * later, logp + lp
    return phi, logp


def _policy(theta: torch.Tensor) -> LinearSoftmaxPolicy:
    pi = LinearSoftmaxPolicy(3, 2)
    torch.nn.utils.vector_to_parameters(theta.clone(), list(pi.parameters()))
    return pi


def _dense_grad(theta: torch.Tensor, b: dict) -> torch.Tensor:
    e = len(b["lengths"])
    return sum(torch.func.jacrev(lambda th, i=i: _phi_logp(th, b, i)[0])(theta) for i in range(e)) / e


def test_hessian_vector_estimate_matches_the_dense_policy_hessian():
    """mean_e (grad Phi_e grad log p_e^T + hess Phi_e) v, each term from torch.func on the sums."""
    g = torch.Generator().manual_seed(1)
    theta, v = torch.randn(8, generator=g) * 0.5, torch.randn(8, generator=g)
    b = _batch()
    want = torch.zeros(8)
    for e in range(3):
        hess = torch.func.hessian(lambda th: _phi_logp(th, b, e)[0])(theta)
        gphi = torch.func.jacrev(lambda th: _phi_logp(th, b, e)[0])(theta)
        glogp = torch.func.jacrev(lambda th: _phi_logp(th, b, e)[1])(theta)
        want += (torch.outer(gphi, glogp) + hess) @ v / 3
    pi = _policy(theta)
    got = hessian_vector_estimate(pi, list(pi.parameters()), b, GAMMA, v)
    assert torch.allclose(got, want, atol=1e-5), (got, want)


class FixedSource:
    """A source that returns the same tiny batch whatever the policy (the update is then a hand computation)."""

    def __init__(self, batch: dict):
        self.batch, self.calls = batch, []

    def setup(self, generator, device):
        pass

    def batch_rollouts(self, sample, n, horizon=None):
        self.calls.append(n)
        return {k: v[:n] for k, v in self.batch.items()}

    def state_dict(self):
        return {}

    def load_state_dict(self, sd):
        pass


def _run(method: str, theta0: torch.Tensor, steps: int = 3, **kw):
    """Thetas theta_0..theta_steps of `method` on the fixed batch, and the trainer."""
    pi = LinearSoftmaxPolicy(3, 2)
    torch.nn.utils.vector_to_parameters(theta0.clone(), list(pi.parameters()))
    state = TrainState(modules={"policy": pi}, optimizers={"policy": torch.optim.SGD(pi.parameters(), lr=1.0)},
                       generators={"trainer.hessian": torch.Generator().manual_seed(7)})
    tr = PGFisher(steps=steps, source=FixedSource(_batch()), method=method, episodes=3, hessian_episodes=2,
                  gamma=GAMMA, **kw)
    tr.phases(state)
    thetas = [theta0.clone()]
    for _ in range(steps):
        out = tr.step(state)
        thetas.append(torch.nn.utils.parameters_to_vector(pi.parameters()).detach().clone())
    return thetas, tr, out


@pytest.mark.parametrize("sched", ["constant", "decay"])
def test_each_method_is_the_papers_update_by_hand(sched):
    g = torch.Generator().manual_seed(2)
    theta0 = torch.randn(8, generator=g) * 0.3
    b, g0, e0 = _batch(), 0.05, 0.5
    gam = lambda t, p: g0 if sched == "constant" else g0 * (2 / (t + 2)) ** p  # noqa: E731
    eta = lambda t, p: e0 if sched == "constant" else min(1.0, e0 * (2 / (t + 2)) ** p)  # noqa: E731
    kw = dict(schedule=sched, gamma0=g0, eta0=e0)

    # vanilla PG: theta + gamma_t g(theta)
    th, _, _ = _run("pg", theta0, **kw)
    want = theta0.clone()
    for t in range(3):
        want = want + gam(t, 2 / 3) * _dense_grad(want, b)
        assert torch.allclose(th[t + 1], want, atol=1e-6)

    # N-PG-IGT: look-ahead point, momentum, normalized step (d_0 = g_0)
    th, _, _ = _run("n_pg_igt", theta0, **kw)
    want, prev, d = theta0.clone(), theta0.clone(), None
    for t in range(3):
        e = eta(t, 0.8)
        at = want + (1 - e) / e * (want - prev)
        gt = _dense_grad(at, b)
        d = gt if d is None else (1 - e) * d + e * gt
        prev, want = want, want + gam(t, 1.0) * d / d.norm()
        assert torch.allclose(th[t + 1], want, atol=1e-6)

    # (N)-HARPG: q ~ U[0, 1] from the trainer's stream, Hessian term at q theta_t + (1 - q) theta_{t-1}
    for method, power, normalized in (("n_harpg", 1.0, True), ("harpg", 0.5, False)):
        th, tr, out = _run(method, theta0, **kw)
        qs = torch.Generator().manual_seed(7)
        want, prev, d = theta0.clone(), None, None
        for t in range(3):
            e, gt = eta(t, 1.0), _dense_grad(want, b)
            if d is None:
                d = gt
            else:
                q = float(torch.rand((), generator=qs))
                mid, v = q * want + (1 - q) * prev, want - prev
                hv = torch.zeros(8)
                for i in range(2):  # the Hessian batch: 2 episodes
                    hess = torch.func.hessian(lambda x: _phi_logp(x, b, i)[0])(mid)
                    gphi = torch.func.jacrev(lambda x: _phi_logp(x, b, i)[0])(mid)
                    glogp = torch.func.jacrev(lambda x: _phi_logp(x, b, i)[1])(mid)
                    hv += (torch.outer(gphi, glogp) + hess) @ v / 2
                d = (1 - e) * (d + hv) + e * gt
            step = gam(t, power) * (d / d.norm() if normalized else d)
            prev, want = want, want + step
            assert torch.allclose(th[t + 1], want, atol=1e-5), (method, t)
        assert out["hvp_calls"] == 2 and out["trajectories"] == 3 * 3 + 2 * 2 and tr.source.calls == [3, 3, 2, 3, 2]


def test_schedules_and_lookahead():
    assert schedule(0.1, 0, 1.0, "decay") == pytest.approx(0.1) and schedule(0.1, 2, 1.0, "decay") == pytest.approx(0.05)
    assert schedule(1.0, 6, 0.8, "decay") == pytest.approx(0.25 ** 0.8) and schedule(0.3, 50, 1.0, "constant") == 0.3
    assert torch.equal(lookahead(torch.tensor([1.0, 2.0]), torch.tensor([0.0, 1.0]), 0.25), torch.tensor([4.0, 5.0]))
    assert torch.equal(lookahead(torch.tensor([1.0]), torch.tensor([0.0]), 1.0), torch.tensor([1.0]))  # eta = 1: no look-ahead


def test_runs_count_costs_and_resume_through_the_engine(make_cfg, tmp_path):
    pytest.importorskip("gymnasium")
    over = [*EXP, "trainer.method=n_harpg", "trainer.steps=8", "log_every=1"]
    s = execute(make_cfg(*over), tmp_path / "a")
    m = pd.read_csv(tmp_path / "a" / "metrics.csv")
    assert s["status"] == "completed"
    assert m.trajectories.iloc[-1] == 5 * 8 + 7 and m.hvp_calls.iloc[-1] == 7 and (m.d_norm > 0).all()
    row = {"trainer": {"method": "n_harpg", "episodes": 5, "hessian_episodes": 1}}
    assert C.cost_error(m, row) == 0
    # checkpoint after 4 steps, resume in a fresh trainer: the same theta, d and episodes as straight through
    state, tr, _ = build(make_cfg(*over))
    tr.phases(state)
    for _ in range(4):
        tr.step(state)
    buf = io.BytesIO()
    torch.save({"tr": tr.state_dict(), "pi": state.modules["policy"].state_dict(),
                "gen": {k: g.get_state() for k, g in state.generators.items()}}, buf)
    buf.seek(0)
    sd = torch.load(buf, weights_only=False)
    state2, tr2, _ = build(make_cfg(*over, "seed=9"))
    tr2.phases(state2)
    tr2.load_state_dict(sd["tr"])
    state2.modules["policy"].load_state_dict(sd["pi"])
    for k, st in sd["gen"].items():
        state2.stream(k).set_state(st)
    a, b = tr.step(state), tr2.step(state2)
    assert a["return"] == b["return"] and torch.equal(tr.d, tr2.d)


def test_bad_settings_name_their_key(make_cfg, tmp_path):
    from runner.errors import OptrunError

    with pytest.raises(OptrunError, match="trainer.method"):
        execute(make_cfg(*EXP, "trainer.method=adam"), tmp_path / "a")
    with pytest.raises(OptrunError, match="trainer.eta0"):
        execute(make_cfg(*EXP, "trainer.eta0=1.5"), tmp_path / "b")


def test_paper_scale_batches_are_environment_steps_and_the_mujoco_stand_in_has_its_shapes(make_cfg):
    pytest.importorskip("gymnasium")
    from experiments.pg_fisher.envs import make_source
    from runner.models.policy import GaussianMLPPolicy

    state, tr, _ = build(make_cfg(*EXP, "scale=paper", "study=classic", "components=pg_fisher_softmax_mlp",
                                  "trainer.batch_steps=300", "trainer.method=n_pg_igt"))
    tr.phases(state)
    out = tr.step(state)
    assert out["env_steps"] >= 300 and out["trajectories"] % 5 == 0
    src = make_source("Hopper-v5", 1000, stand_in=True, obs_dim=11, act_dim=3)
    src.setup(torch.Generator().manual_seed(0), "cpu")
    batch = src.batch_rollouts(GaussianMLPPolicy(11, 3).sample, 2, 20)
    assert batch["observations"].shape == (2, 20, 11) and batch["actions"].shape == (2, 20, 3)


class _R:
    def __init__(self, arm, seed, gamma0, ret, method="n_pg_igt", status="completed"):
        self.cfg = {"study": "cartpole", "arm": arm, "seed": seed, "trainer": {"gamma0": gamma0, "method": method}}
        self.status = {"status": status}
        traj = [5 * (i + 1) for i in range(150)]
        self.metrics = pd.DataFrame({"step": range(1, 151), "trajectories": traj, "return": [ret] * 150})
        self.arm, self.seed = arm, seed

    completed = property(lambda self: self.status["status"] == "completed")
    diverged = property(lambda self: self.status["status"] == "diverged")

    def is_in(self, study=None, arms=None):
        from runner.claims import in_study
        return in_study(self.cfg, study, arms)


def test_claims_pick_the_best_grid_point_and_compare_at_equal_trajectories():
    runs = [_R("pg", s, lr, r, "pg") for s in range(4) for lr, r in ((1e-3, 100), (3e-3, 140), (1e-2, 90))]
    runs += [_R("n_pg_igt", s, 0.05, 165 + s) for s in range(4)] + [_R("n_harpg", s, 0.05, 130) for s in range(4)]
    rows = {r["name"][:2]: r for r in C.cross_run_claims(runs)}
    assert rows["H1"]["passed"] and rows["H1"]["measured"] == pytest.approx(166.5)
    assert rows["H2"]["passed"] and rows["H2"]["measured"] == pytest.approx(166.5 / 140)
    assert not rows["S1"]["passed"] and "S2" not in rows
    df = pd.DataFrame({"trajectories": [6 * i for i in range(1, 126)], "return": [1.0] * 100 + [2.0] * 25})
    assert C.window_return(df) == 2.0 and not math.isnan(C.window_return(runs[0].metrics))
