"""Gradient estimators against the exact gradient; the estimated update in the supervised trainer; the
grad_alignment probe is read-only; configs compose."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from runner.errors import OptrunError
from runner.estimators import Backprop, Problem, cosine, flat
from runner.estimators.zeroth_order import SPSA, AntitheticES, ForwardGradient, NodePerturbation, centered_ranks
from runner.hooks.grad_alignment import GradAlignment
from runner.trainers.base import TrainState
from runner.trainers.supervised import SupervisedTrainer, per_example_loss


def tiny_problem(seed=0, n=32, d=5, h=4, k=3):
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(d, h), torch.nn.Tanh(), torch.nn.Linear(h, k))
    x, y = torch.randn(n, d), torch.randint(0, k, (n,))
    problem = Problem(model, F.cross_entropy, lambda o, t: F.cross_entropy(o, t, reduction="none"))
    return problem, (x, y)


def true_grad(problem, batch):
    return flat(Backprop().estimate(problem, batch, None, None).grads, list(problem.params))


def mean_direction(est, problem, batch, trials=3000, seed=1):
    g = torch.Generator().manual_seed(seed)
    names = list(problem.params)
    return sum(flat(est.estimate(problem, batch, None, g).grads, names) for _ in range(trials)) / trials


def test_backprop_is_autograd():
    problem, (x, y) = tiny_problem()
    loss = F.cross_entropy(problem.module(x), y)
    ref = torch.cat([g.reshape(-1) for g in torch.autograd.grad(loss, list(problem.module.parameters()))])
    est = Backprop().estimate(problem, (x, y), None, None)
    assert torch.allclose(flat(est.grads), ref) and torch.allclose(est.loss, loss.detach())
    assert est.counts == {"forward_passes": 1, "backward_passes": 1, "function_evals": 1}


@pytest.mark.parametrize("est", [SPSA(c=1e-3), SPSA(c=1e-3, distribution="gaussian"), ForwardGradient(),
                                 AntitheticES(sigma=1e-3, population=2, rank_shaping=False),
                                 NodePerturbation(sigma=1e-3), NodePerturbation(sigma=1e-3, per_example=False)])
def test_zeroth_order_estimators_are_unbiased(est):
    """The mean over many draws approaches the true gradient (each is unbiased up to O(c^2))."""
    problem, batch = tiny_problem()
    g = true_grad(problem, batch)
    mean = mean_direction(est, problem, batch)
    assert cosine(mean, g) > 0.97, (est.name, float(cosine(mean, g)))
    assert 0.8 < mean.norm() / g.norm() < 1.2


def test_one_gaussian_direction_has_the_theoretical_cosine():
    """E|cos((∇f·v)v, ∇f)| = E|v_1|/‖v‖ ≈ √(2/(π D)) for v ~ N(0, I_D)."""
    torch.manual_seed(0)
    problem = Problem(torch.nn.Linear(400, 1), lambda o, t: (o.squeeze(-1) - t).pow(2).mean())
    batch = (torch.randn(64, 400), torch.randn(64))
    g, gen = true_grad(problem, batch), torch.Generator().manual_seed(0)
    cos = [abs(float(cosine(flat(ForwardGradient().estimate(problem, batch, None, gen).grads), g))) for _ in range(400)]
    assert sum(cos) / len(cos) == pytest.approx(math.sqrt(2 / (math.pi * problem.dim)), rel=0.1)


def test_estimate_leaves_the_model_alone_and_follows_its_generator():
    problem, batch = tiny_problem()
    before = {n: p.detach().clone() for n, p in problem.params.items()}
    for est in (SPSA(), ForwardGradient(), AntitheticES(population=4), NodePerturbation()):
        a = est.estimate(problem, batch, None, torch.Generator().manual_seed(3))
        b = est.estimate(problem, batch, None, torch.Generator().manual_seed(3))
        assert torch.equal(flat(a.grads), flat(b.grads))
        assert a.counts == est.cost()
    assert all(torch.equal(p, before[n]) for n, p in problem.params.items())


def test_centered_ranks_and_bad_settings():
    assert centered_ranks(torch.tensor([3.0, 1.0, 2.0])).tolist() == [0.5, -0.5, 0.0]
    with pytest.raises(OptrunError, match="population"):
        AntitheticES(population=3)
    with pytest.raises(OptrunError, match="trainer.estimator.c"):
        SPSA(c=0)
    conv = Problem(torch.nn.Sequential(torch.nn.Conv1d(1, 2, 3), torch.nn.Flatten(), torch.nn.Linear(4, 2)), F.cross_entropy)
    with pytest.raises(OptrunError, match="outside linear layers: 0.bias, 0.weight"):
        NodePerturbation().setup(conv, None)


def test_per_example_loss_averages_to_the_loss():
    out, y = torch.randn(6, 4), torch.randint(0, 4, (6,))
    for kind in ("ce", "mse"):
        from runner.trainers.supervised import loss_fn

        assert per_example_loss(kind, out, y).mean() == pytest.approx(float(loss_fn(kind, out, y)), rel=1e-6)
    seq_out, seq_y = torch.randn(3, 5, 7), torch.randint(0, 7, (3, 5))
    assert per_example_loss("ce", seq_out, seq_y).shape == (3,)


def state_for(trainer, seed=0):
    from types import SimpleNamespace

    torch.manual_seed(seed)
    x, y = torch.randn(64, 5), torch.randint(0, 3, (64,))
    data = SimpleNamespace(x_train=x, y_train=y, x_test=x, y_test=y)
    model = torch.nn.Sequential(torch.nn.Linear(5, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3))
    state = TrainState(data, model=model, optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
                       generators={"batch": torch.Generator().manual_seed(0)}, trainer=trainer)
    trainer.bind(state)
    return state


def test_estimated_training_counts_passes_and_spends_the_budget():
    trainer = SupervisedTrainer(batch_size=16, estimator=SPSA(c=1e-3, directions=2), budget_forward_passes=50)
    state = state_for(trainer)
    (phase,) = trainer.phases(state)
    assert phase.steps == 10  # 5 forward passes a step (2 directions x 2 + the clean loss)
    assert trainer.columns(state) == ["loss", "train_acc", "forward_passes", "backward_passes", "function_evals"]
    m = trainer.step(state)
    m = trainer.step(state)
    assert (m["forward_passes"], m["backward_passes"], m["function_evals"]) == (10, 0, 10)
    sd = trainer.state_dict()
    assert sd["estimated"]["counts"]["forward_passes"] == 10


def test_estimator_backprop_matches_the_plain_step():
    plain, via = SupervisedTrainer(steps=3, batch_size=16), SupervisedTrainer(steps=3, batch_size=16, estimator=Backprop())
    s1, s2 = state_for(plain), state_for(via)
    plain.phases(s1), via.phases(s2)
    for _ in range(3):
        a, b = plain.step(s1), via.step(s2)
    assert torch.allclose(a["loss"], b["loss"])
    assert all(torch.allclose(p, q) for p, q in zip(s1.model.parameters(), s2.model.parameters()))


def test_budget_needs_an_estimator_and_one_length():
    with pytest.raises(OptrunError, match="needs a gradient estimator"):
        SupervisedTrainer(budget_forward_passes=10)
    with pytest.raises(OptrunError, match="exactly one"):
        SupervisedTrainer(steps=5, estimator=SPSA(), budget_forward_passes=10)
    with pytest.raises(OptrunError, match="trainer.estimator"):
        SupervisedTrainer(steps=5, estimator={"c": 1})


def test_grad_alignment_is_read_only_and_measures():
    trainer = SupervisedTrainer(steps=5, batch_size=16, estimator=SPSA())
    state = state_for(trainer)
    trainer.phases(state)
    trainer.step(state)
    hook = GradAlignment(every=1, trials=20, estimator={"_target_": "runner.estimators.zeroth_order.ForwardGradient"})
    hook.setup(state)
    params = [p.detach().clone() for p in state.model.parameters()]
    trainer_stream = state.stream("trainer.estimator").get_state()
    out = hook(state)
    assert all(torch.equal(p, q) for p, q in zip(params, state.model.parameters()))
    assert torch.equal(trainer_stream, state.stream("trainer.estimator").get_state())
    assert 0 < out["cos"] < 1 and out["cos_sd"] > 0
    assert out["cos_theory"] == pytest.approx(math.sqrt(2 / (math.pi * 75)))
    exact = GradAlignment(every=1, estimator={"_target_": "runner.estimators.base.Backprop"})
    exact.setup(state)
    r = exact(state)
    assert r["cos"] == pytest.approx(1.0) and r["rel_norm"] == pytest.approx(1.0)


def test_grad_alignment_needs_an_estimator():
    trainer = SupervisedTrainer(steps=5)
    state = state_for(trainer)
    with pytest.raises(OptrunError, match="plain backprop"):
        GradAlignment().setup(state)


def test_a_run_at_equal_forward_passes_with_the_probe(make_cfg, tmp_path):
    import pandas as pd

    from runner.dispatch import execute

    cfg = make_cfg("estimator=spsa", "trainer.steps=null", "trainer.budget_forward_passes=30", "hooks=[grad_alignment]",
                   "hooks.grad_alignment.every=5", "hooks.grad_alignment.trials=4", "optimizer.lr=0.001", "device=cpu")
    assert execute(cfg, tmp_path / "run")["status"] == "completed"
    m = pd.read_csv(tmp_path / "run" / "metrics.csv")
    assert m["step"].iloc[-1] == 10 and m["forward_passes"].iloc[-1] == 30 and (m["backward_passes"] == 0).all()
    cos = m["grad_alignment/cos"].dropna()
    assert len(cos) == 2 and cos.abs().max() < 0.5


def test_the_readme_example_estimator_points_along_the_gradient():
    """The README's "bring your own estimator" snippet runs and estimates the gradient."""
    import re
    from pathlib import Path

    text = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    code = re.search(r"```python\n(import torch\nfrom runner.estimators import Estimate.*?)```", text, re.S).group(1)
    ns: dict = {}
    exec(code, ns)
    problem, batch = tiny_problem()
    assert cosine(mean_direction(ns["TwoPoint"](), problem, batch, trials=2000), true_grad(problem, batch)) > 0.97


def test_an_estimator_on_a_trainer_without_one_is_a_clear_error(make_cfg, tmp_path):
    from runner.dispatch import execute

    with pytest.raises(OptrunError, match="SolverTrainer' takes no gradient estimator"):
        execute(make_cfg("experiment=cbo", "estimator=spsa"), tmp_path / "run")
