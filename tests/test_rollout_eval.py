"""The rollout probe with known steppers: an exact spectral heat step (zero error, zero drift), an amplifying
stepper (blow-up at a known step), the metric helpers, and read-only-ness inside a real training run."""
from __future__ import annotations

import math

import pytest
import torch

from runner.errors import OptrunError
from runner.hooks.rollout_eval import RolloutEval, blowup_step, gradient_ratio, high_k_ratio, relative_l2


def heat_step(u: torch.Tensor, nu: float = 1e-3, dt: float = 0.1) -> torch.Tensor:
    k = 2 * math.pi * torch.arange(u.shape[-1] // 2 + 1, dtype=u.dtype)
    return torch.fft.irfft(torch.fft.rfft(u) * torch.exp(-nu * k ** 2 * dt), n=u.shape[-1])


class Stepper:
    """A stand-in trainer offering the rollout protocol with a fixed stepper."""

    def __init__(self, sets: dict, fn):
        self.sets, self.fn = sets, fn

    def rollout_data(self, state):
        return self.sets

    def advance(self, state, u):
        return self.fn(u)


class State:
    def __init__(self, trainer, total=10):
        self.trainer, self.model, self.step, self.total_steps = trainer, torch.nn.Linear(1, 1), total, total


def heat_trajectories(b=4, t=30, n=64) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    u = [torch.randn(b, 1, n, generator=g, dtype=torch.float64)]
    for _ in range(t):
        u.append(heat_step(u[-1]))
    return torch.stack(u, dim=1)


def test_exact_stepper_has_zero_error_and_drift():
    traj = heat_trajectories()
    traj = traj + 0.7  # a nonzero mass
    hook = RolloutEval(horizons=[1, 10, 30, 99], spectrum_at=20)
    state = State(Stepper({"test": traj}, heat_step))
    hook.setup(state)
    assert hook.columns(state) == ["test_rel_l2@1", "test_rel_l2@10", "test_rel_l2@30", "test_blowup_step",
                                   "test_mass_drift", "test_spectrum_ratio@20", "test_grad_ratio@20"]
    out = hook(state)
    assert float(out["test_rel_l2@30"]) < 1e-12 and float(out["test_mass_drift"]) < 1e-14
    assert float(out["test_blowup_step"]) == 31  # never: T + 1
    assert abs(float(out["test_spectrum_ratio@20"]) - 1) < 1e-9 and abs(float(out["test_grad_ratio@20"]) - 1) < 1e-9
    assert out["test_rel_l2"].shape == (31,) and out["test_pred"].shape == traj.shape
    assert out["test_spectrum_pred"].shape == (33,)


def test_amplifying_stepper_blows_up_at_the_predicted_step():
    """u -> 1.5 u on a heat-decaying truth: relL2 = 1.5^t e^{...} - 1 > 1 first where 1.5^t ~ 2 (t = 2)."""
    traj = torch.ones(2, 11, 1, 8, dtype=torch.float64)  # a constant truth (heat keeps it)
    hook = RolloutEval(horizons=[5], threshold=1.0, spectrum_at=50)
    state = State(Stepper({"a": traj}, lambda u: 1.5 * u))
    hook.setup(state)
    out = hook(state)
    assert float(out["a_blowup_step"]) == 2     # 1.5^1 - 1 = 0.5, 1.5^2 - 1 = 1.25 > 1
    assert abs(float(out["a_rel_l2@5"]) - (1.5 ** 5 - 1)) < 1e-12
    assert abs(float(out["a_mass_drift"]) - (1.5 ** 10 - 1)) < 1e-9
    nan = lambda u: u * float("nan")  # noqa: E731
    hook.setup(State(Stepper({"a": traj}, nan)))
    assert float(hook(State(Stepper({"a": traj}, nan)))["a_blowup_step"]) == 1


def test_metric_helpers():
    rel = torch.tensor([[0.0, 0.5, 2.0, 0.1], [0.0, 0.1, 0.2, 0.3], [0.0, float("inf"), 0.0, 0.0]])
    assert blowup_step(rel, 1.0).tolist() == [2, 4, 1]
    x = torch.arange(64, dtype=torch.float64) / 64
    smooth, rough = torch.sin(2 * math.pi * x)[None, None], (torch.sin(2 * math.pi * x) + 0.1 * torch.sin(60 * math.pi * x))[None, None]
    assert high_k_ratio(smooth, rough, 0.5) < 1e-20 and high_k_ratio(rough, rough, 0.5) == 1
    assert abs(float(gradient_ratio(0.5 * smooth, smooth)) - 0.5) < 1e-12
    assert float(relative_l2(2 * smooth[:, None], smooth[:, None])[0, 0]) == pytest.approx(1.0)


def test_protocol_errors():
    with pytest.raises(OptrunError):
        RolloutEval().setup(State(object()))
    with pytest.raises(OptrunError):
        RolloutEval(sets=["nope"]).setup(State(Stepper({"test": heat_trajectories()}, heat_step)))
