"""The solver trainer on the shared engine: tolerance stop, references in the last row, divergence,
errors, state round trip."""
import math

import pandas as pd
import pytest
import torch

from runner.engine import Engine
from runner.errors import OptrunError
from runner.results import MetricsWriter
from runner.trainers.solver import Algorithm, Problem, SolverTrainer


class Quadratic(Problem):
    """f(x) = 0.5 a |x|^2 with a random start drawn from the data stream."""

    def __init__(self, a: float = 1.0, dim: int = 3):
        self.a, self.dim = a, dim

    def setup(self, state):
        self.x0 = torch.randn(self.dim, generator=state.generators["data"], dtype=torch.float64)

    def reference(self):
        return {"ref_min": 0.0}


class GradientDescent(Algorithm):
    iters = 7

    def __init__(self, lr: float = 0.5):
        self.lr = lr

    def setup(self, problem, state):
        self.x = problem.x0.clone()

    def step(self, problem, state):
        self.x = self.x - self.lr * problem.a * self.x
        return {"loss": 0.5 * problem.a * self.x @ self.x, "grad_norm": problem.a * self.x.norm()}

    def state_dict(self):
        return {"x": self.x.clone()}

    def load_state_dict(self, sd):
        self.x = sd["x"].clone()




def _run(trainer, tmp_path, state):
    out = Engine(trainer, [], MetricsWriter(tmp_path / "m.csv"), progress=False).run(state)
    return out, pd.read_csv(tmp_path / "m.csv"), state


def test_stops_at_tolerance_and_logs_references_once(tmp_path, solver_state):
    trainer = SolverTrainer(Quadratic(), GradientDescent(lr=0.5), max_iters=100, tol=1e-6, monitor="grad_norm")
    out, df, state = _run(trainer, tmp_path, solver_state())
    assert out.status == "completed" and state.stop and trainer.converged
    assert df.grad_norm.iloc[-1] <= 1e-6 < df.grad_norm.iloc[-2]  # stopped at the first step below tol
    assert df.step.tolist() == list(range(1, len(df) + 1)) and len(df) < 100
    assert df.ref_min.notna().tolist() == [False] * (len(df) - 1) + [True]
    assert df.converged.iloc[-1] == 1


def test_budget_from_the_algorithm_and_not_converged_flag(tmp_path, solver_state):
    out, df, _ = _run(SolverTrainer(Quadratic(), GradientDescent(lr=0.1), tol=1e-30), tmp_path, solver_state())
    assert out.step == GradientDescent.iters and df.converged.iloc[-1] == 0


def test_non_finite_loss_is_divergence(tmp_path, solver_state):
    trainer = SolverTrainer(Quadratic(a=1.0), GradientDescent(lr=1e200), max_iters=50)
    out, df, _ = _run(trainer, tmp_path, solver_state())
    assert out.status == "diverged" and out.step < 50 and not math.isfinite(df.loss.iloc[-1])


def test_same_seed_same_iterates_and_state_round_trip(tmp_path, solver_state):
    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()
    t1 = SolverTrainer(Quadratic(), GradientDescent(), max_iters=5)
    t2 = SolverTrainer(Quadratic(), GradientDescent(), max_iters=5)
    _, d1, _ = _run(t1, tmp_path / "a", solver_state())
    _, d2, _ = _run(t2, tmp_path / "b", solver_state())
    assert d1.drop(columns="time_s").equals(d2.drop(columns="time_s"))
    t2.algorithm.x = None
    t2.load_state_dict(t1.state_dict())
    assert torch.equal(t2.algorithm.x, t1.algorithm.x) and t2.converged == t1.converged


@pytest.mark.parametrize("kwargs, pattern", [
    (dict(problem=None, algorithm=GradientDescent()), "problem: trainer=solver needs a problem"),
    (dict(problem=Quadratic(), algorithm=None), "algorithm: trainer=solver needs an algorithm"),
    (dict(problem=Quadratic(), algorithm=GradientDescent(), max_iters=0), "trainer.max_iters"),
    (dict(problem=Quadratic(), algorithm=GradientDescent(), tol=-1.0), "trainer.tol"),
])
def test_bad_settings_name_the_key(kwargs, pattern):
    with pytest.raises(OptrunError, match=pattern):
        SolverTrainer(**kwargs)


def test_a_step_without_loss_is_reported(tmp_path, solver_state):
    class NoLoss(GradientDescent):
        def step(self, problem, state):
            return {"objective": 1.0}

    with pytest.raises(OptrunError, match="returned no 'loss'"):
        _run(SolverTrainer(Quadratic(), NoLoss(), max_iters=3), tmp_path, solver_state())


def test_solver_config_without_problem_is_one_line(make_cfg, tmp_path):
    from runner.dispatch import execute

    cfg = make_cfg("trainer=solver", "model=none", "optimizer=none", "dataset=none")
    with pytest.raises(OptrunError, match="problem=<name>"):
        execute(cfg, tmp_path / "run")
