"""JAWS pieces against dense references (the JVP penalty, the sigma weights, the NLL optimum), and whole runs
through the engine: every arm completes, the rollout probe leaves training bit-identical, unrolling costs
activation memory in proportion to the horizon."""
from __future__ import annotations

import pandas as pd
import pytest
import torch
from torch.func import jvp

from experiments.jaws.trainer import JawsTrainer, jacobian_penalty
from runner.dispatch import execute
from runner.errors import OptrunError
from runner.models.fno import FNO1d

EXP = ["experiment=jaws", "dataset.n=32", "dataset.fine=64", "dataset.train=[12,6]", "dataset.test=[3,12]",
       "dataset.ood=[3,12]", "model.width=4", "model.modes=4", "model.layers=1", "model.projection=8",
       "trainer.steps=6", "trainer.batch_size=8", "trainer.measure_every=1", "trainer.sigma_at=3", "log_every=1",
       "hooks.rollout_eval.horizons=[1,5,12]", "hooks.rollout_eval.spectrum_at=5"]
ARMS = {"mse": [], "uniform": ["trainer.jacobian=uniform"], "jaws": ["trainer.loss=nll", "trainer.jacobian=adaptive"],
        "unroll_h8": ["trainer.horizon=4"], "jaws_h2": ["trainer.loss=nll", "trainer.jacobian=adaptive", "trainer.horizon=2"]}


def _tiny(seed=0):
    torch.manual_seed(seed)
    return FNO1d((1, 16), 2, width=4, modes=3, layers=1, projection=8)


def test_jvp_penalty_is_the_dense_jacobian_times_v():
    model, trainer = _tiny(), JawsTrainer()
    trainer._module = model
    x, v = torch.randn(2, 1, 16), torch.randn(2, 1, 16)
    _, jv, _ = jvp(trainer.predict, (x,), (v,), has_aux=True)
    for b in range(2):
        J = torch.autograd.functional.jacobian(lambda u: trainer.predict(u[None, None])[0][0, 0], x[b, 0])
        assert torch.allclose(jv[b, 0], J @ v[b, 0], atol=1e-5)


def test_jaws_weights_reduce_to_uniform_for_constant_sigma_and_follow_sigma():
    jv = torch.randn(3, 1, 16, dtype=torch.float64)
    flat = torch.full_like(jv, -3.0)
    assert torch.allclose(jacobian_penalty(jv, flat, "normalized"), jacobian_penalty(jv))
    assert torch.allclose(jacobian_penalty(jv, flat, "precision"), 0.5 * torch.e ** 3 * jacobian_penalty(jv))
    logvar = torch.zeros_like(jv)
    logvar[..., :8] = 2.0  # sigma^2 = e^2 on the left half (a "front"), 1 on the right
    left, right = jv[..., :8].pow(2).sum(), jv[..., 8:].pow(2).sum()
    w_left, w_right = (1 + torch.e ** 2) / 2 / torch.e ** 2, (1 + torch.e ** 2) / 2
    assert torch.allclose(jacobian_penalty(jv, logvar, "normalized"), (w_left * left + w_right * right) / jv.numel())
    want = (0.5 * torch.e ** -2 * left + 0.5 * right) / jv.numel()
    assert torch.allclose(jacobian_penalty(jv, logvar, "precision"), want)
    assert not jacobian_penalty(jv, logvar.requires_grad_(True)).requires_grad  # stop-gradient on the weights


def test_nll_is_minimised_at_the_squared_error():
    trainer = JawsTrainer(loss="nll")
    err = torch.tensor([0.1, 0.3], dtype=torch.float64)
    grid = torch.linspace(-8, 0, 4001, dtype=torch.float64)
    losses = torch.stack([trainer._data_term(err, s.expand(2), torch.zeros(2, dtype=torch.float64)) for s in grid])
    # separable: each point's best log sigma^2 is log err^2; check the sum's argmin along a shared logvar
    best = grid[losses.argmin()]
    assert abs(float(best) - float(torch.log(err.pow(2).mean()))) < 1e-2


def test_bad_settings_fail_early():
    with pytest.raises(OptrunError):
        JawsTrainer(loss="mse", jacobian="adaptive")
    with pytest.raises(OptrunError):
        JawsTrainer(horizon=0)


def _run(make_cfg, tmp_path, name, *extra):
    base = [o for o in EXP if not o.startswith("hooks.")] if "hooks=[]" in extra else EXP
    execute(make_cfg(*base, *extra), tmp_path / name)
    return pd.read_csv(tmp_path / name / "metrics.csv")


def test_every_arm_runs_and_logs_rollouts(make_cfg, tmp_path):
    runs = {arm: _run(make_cfg, tmp_path, arm, *over) for arm, over in ARMS.items()}
    for arm, df in runs.items():
        assert len(df) == 6 and df.loss.notna().all(), arm
        assert df["rollout_eval/test_rel_l2@12"].notna().iloc[-1] and "rollout_eval/ood_blowup_step" in df
        assert (tmp_path / arm / "arrays" / "rollout_eval" / "test_pred").exists()
    assert "sigma_grad_corr" in runs["jaws"] and (tmp_path / "jaws" / "arrays" / "sigma_map").exists()
    assert "jac_gain" in runs["uniform"] and "jac_gain" not in runs["mse"]
    act = {arm: df.activation_mb.iloc[0] for arm, df in runs.items()}
    assert 3.0 < act["unroll_h8"] / act["mse"] < 5.0   # horizon 4: about 4x the saved activations
    assert act["uniform"] > act["mse"]                  # the JVP keeps tangents too


def test_rollout_probe_leaves_training_bit_identical(make_cfg, tmp_path):
    arm = ARMS["jaws_h2"]
    with_hook = _run(make_cfg, tmp_path, "with", *arm)
    without = _run(make_cfg, tmp_path, "without", *arm, "hooks=[]")
    for col in ("loss", "data_loss", "mse", "jac_penalty", "sigma_mean"):
        assert with_hook[col].tolist() == without[col].tolist(), col
