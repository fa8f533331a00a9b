"""The engine's protocols, checked for every hook in conf/hooks/: read-only hooks change nothing,
each hook's numbers do not depend on which other hooks run (a stream per hook), controllers act
before read-only hooks measure, metric names are namespaced, arrays go beside metrics.csv, and a
trainer without an objective refuses probes that need one."""
from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import torch

from runner.arrays import read_array
from runner.dispatch import build
from runner.engine import Engine
from runner.errors import OptrunError
from runner.hooks.base import Hook
from runner.results import MetricsWriter

ROOT = Path(__file__).resolve().parent.parent
HOOKS = sorted(p.stem for p in (ROOT / "conf" / "hooks").glob("*.yaml"))

# small, fast settings that every hook of a setup accepts
SUPERVISED = ["trainer.steps=12", "trainer.batch_size=32", "model.hidden=[16]", "device=cpu", "flush_every=5",
              "optimizer=mfac", "optimizer.m=8", "optimizer.lr=0.01"]  # an optimizer with stats
SETTINGS = {  # per hook, applied when it is selected
    "sharpness": ["every=4", "probe_samples=64", "probes=4", "deflate=4"], "evaluate": ["every=4"],
    "test_eval": ["max_samples=100"], "radius": ["max_samples=50"],
    "step_sweep": ["n_r=4", "n_random=2", "max_samples=50"],
    "prune": ["m=4", "rounds=1", "sparsities=[0.5]", "loss_samples=50"],
    "iterate_average": ["second_order=false", "report_every=4"], "complexity": ["every=4"],
    "update_norms": ["every=3"], "optimizer_stats": ["every=3"], "continual_eval": ["max_samples=40"],
    "population": ["every=4"], "rollout_eval": ["every=3", "horizons=[1,5,12]", "spectrum_at=5"],
    "grad_alignment": ["every=4", "trials=2", "estimator={_target_:runner.estimators.zeroth_order.SPSA}"],
}
CONTINUAL = ["trainer=continual", "dataset=split_digits", "trainer.iters_per_task=4", "model.hidden=[16]",
             "device=cpu", "flush_every=5"]
POPULATION = ["dataset=zipf_bigram", "model=softmax_lm", "dataset.n_train=2000", "dataset.n_test=200",
              "dataset.vocab=16", "trainer.steps=8", "device=cpu"]
ROLLOUT = ["experiment=jaws", "dataset.n=32", "dataset.fine=64", "dataset.train=[12,6]", "dataset.test=[3,12]",
           "dataset.ood=[3,12]", "model.width=4", "model.modes=4", "model.layers=1", "model.projection=8",
           "trainer.steps=6", "trainer.batch_size=8", "log_every=1", "device=cpu", "flush_every=5"]
SETUPS = {"continual_eval": CONTINUAL, "population": POPULATION, "rollout_eval": ROLLOUT}
SUPERVISED_HOOKS = [h for h in HOOKS if h not in SETUPS]


def _run(make_cfg, tmp_path: Path, base: list[str], hooks: list[str], *extra: str):
    name = "+".join(hooks) or "none"
    settings = [f"hooks.{h}.{kv}" for h in hooks for kv in SETTINGS.get(h, [])]
    cfg = make_cfg(*base, f"hooks=[{','.join(hooks)}]", *settings, *extra)
    state, trainer, hook_objs = build(cfg)
    out = tmp_path / name
    out.mkdir(parents=True, exist_ok=True)
    Engine(trainer, hook_objs, MetricsWriter(out / "metrics.csv"), progress=False,
           flush_every=int(cfg.flush_every)).run(state)
    params = {k: v.detach().clone() for k, v in state.model.state_dict().items()}
    return pd.read_csv(out / "metrics.csv"), params, out


def _timing(col: str) -> bool:
    return col == "time_s" or col.endswith(("_ms", "_seconds")) or "_ms_" in col  # wall clock, data generation


def _assert_same_trajectory(a: pd.DataFrame, b: pd.DataFrame, params_a: dict, params_b: dict, what: str):
    trainer_cols = [c for c in a.columns if "/" not in c and not _timing(c)]
    rows_a = a.dropna(subset=["loss"])[trainer_cols].reset_index(drop=True)
    rows_b = b.dropna(subset=["loss"])[trainer_cols].reset_index(drop=True)
    pd.testing.assert_frame_equal(rows_a, rows_b, check_exact=True, obj=f"training metrics with {what}")
    for k in params_a:
        assert torch.equal(params_a[k], params_b[k]), f"{what} changed parameter {k}"


def _setup_of(hook: str) -> list[str]:
    return SETUPS.get(hook, SUPERVISED)


@pytest.mark.parametrize("hook", HOOKS)
def test_every_read_only_hook_leaves_training_bit_identical(make_cfg, tmp_path, hook):
    base = _setup_of(hook)
    ref, p_ref, _ = _run(make_cfg, tmp_path, base, [])
    got, p_got, _ = _run(make_cfg, tmp_path, base, [hook])
    assert any(c.startswith(f"{hook}/") for c in got.columns), f"hooks={hook} logged nothing"
    _assert_same_trajectory(ref, got, p_ref, p_got, f"hooks=[{hook}]")


def test_adding_or_removing_a_hook_changes_no_other_hooks_numbers(make_cfg, tmp_path):
    """Every supervised hook alone vs all of them together: each hook's metrics and the training
    trajectory are bit-identical (timings aside)."""
    together, p_all, _ = _run(make_cfg, tmp_path, SUPERVISED, SUPERVISED_HOOKS)
    for hook in SUPERVISED_HOOKS:
        alone, p_alone, _ = _run(make_cfg, tmp_path, SUPERVISED, [hook])
        _assert_same_trajectory(alone, together, p_alone, p_all, f"all hooks vs hooks=[{hook}]")
        cols = [c for c in alone.columns if c.startswith(f"{hook}/") and not _timing(c)]
        assert cols, hook
        a = alone.set_index("step")[cols].dropna(how="all")
        b = together.set_index("step")[cols].dropna(how="all")
        pd.testing.assert_frame_equal(a, b, check_exact=True, obj=f"{hook}'s metrics alone vs with every hook")


def test_read_only_hooks_measure_after_the_controller(make_cfg, tmp_path):
    """With the rho-controller on, each read-only hook still changes nothing, and it sees the
    parameters the controller left (update_norms measures the update actually applied)."""
    ctl = ["hooks.radius.controller=true", "hooks.radius.target_r=0.5", "optimizer=adam", "optimizer.lr=0.05"]
    base = [o for o in SUPERVISED if not o.startswith("optimizer")]
    ref, p_ref, _ = _run(make_cfg, tmp_path / "ctl", base, ["radius"], *ctl)
    assert (ref["radius/scale"].dropna() < 1).any(), "the controller never acted; the test shows nothing"
    for hook in [h for h in SUPERVISED_HOOKS if h not in ("radius", "optimizer_stats")]:  # adam has no stats
        got, p_got, _ = _run(make_cfg, tmp_path / hook, base, ["radius", hook], *ctl)
        _assert_same_trajectory(ref, got, p_ref, p_got, f"hooks=[radius(controller), {hook}]")
    got, _, _ = _run(make_cfg, tmp_path / "norms", base, ["radius", "update_norms"], *ctl,
                     "hooks.update_norms.every=1")
    both = got.dropna(subset=["update_norms/update_norm", "radius/tau"])
    assert len(both) and torch.allclose(torch.tensor(both["update_norms/update_norm"].values),
                                        torch.tensor(both["radius/tau"].values), rtol=1e-4)


def test_arrays_go_beside_metrics_csv(make_cfg, tmp_path):
    df, _, out = _run(make_cfg, tmp_path, SUPERVISED, ["step_sweep"])
    assert not any("_r0." in c or "_r1" in c for c in df.columns)  # no vectors in column names
    steps, r = read_array(out, "step_sweep/r")
    _, ratio = read_array(out, "step_sweep/ratio_descent")
    assert list(steps) == [12] and r.shape == ratio.shape == (1, 4)
    assert df["step_sweep/rho_descent"].notna().sum() == 1


class _GlobalLoss(Hook):
    """A hook that claims the trainer's `loss` as a global name."""

    name, global_metrics = "bad", ("loss",)

    def columns(self, state):
        return ["loss"]

    def __call__(self, state):
        return {"loss": 0.0}


def test_two_writers_of_one_name_fail_at_setup(make_cfg, tmp_path):
    state, trainer, hooks = build(make_cfg(*SUPERVISED, "hooks=[]"))
    with pytest.raises(OptrunError, match="hooks.bad: metric 'loss' is also written by the trainer"):
        Engine(trainer, [_GlobalLoss()], MetricsWriter(tmp_path / "m.csv"), progress=False).run(state)
    assert not (tmp_path / "m.csv").exists()  # nothing ran


def test_a_metric_first_seen_after_the_header_is_an_error_not_a_rewrite(tmp_path):
    w = MetricsWriter(tmp_path / "metrics.csv")
    w.declare(["loss"])
    w.add({"step": 1, "task": None, "time_s": 0.1, "loss": 1.0})
    w.flush()
    head = (tmp_path / "metrics.csv").read_text()
    w.add({"step": 2, "task": None, "time_s": 0.2, "loss": 0.5})
    w.flush()
    assert (tmp_path / "metrics.csv").read_text().startswith(head)  # appended, never rewritten
    w.add({"step": 3, "task": None, "time_s": 0.3, "late": 2.0})
    with pytest.raises(OptrunError, match="'late' first appeared at step 3"):
        w.flush()
    assert not hasattr(w, "written") and w.rows_written == 2 and w.last_values() == {"loss": 0.5}


def test_a_probe_that_needs_an_objective_is_a_config_error_for_a_solver(make_cfg, tmp_path):
    cfg = make_cfg("experiment=gn_smoothness", "hooks=[sharpness]")
    state, trainer, hooks = build(cfg)
    with pytest.raises(OptrunError, match="hooks=sharpness needs a differentiable objective"):
        Engine(trainer, hooks, MetricsWriter(tmp_path / "m.csv"), progress=False).run(state)


def test_the_objective_is_the_training_loss_for_torch_func(make_cfg):
    cfg = make_cfg(*SUPERVISED, "hooks=[]", "trainer.temperature=2.0")
    state, trainer, _ = build(cfg)
    trainer.bind(state)
    x, y = trainer.probe_data(state, "train")
    params = dict(state.model.named_parameters())
    direct = torch.nn.functional.cross_entropy(state.model(x[:50]) / 2.0, y[:50])
    assert torch.allclose(trainer.objective(params, (x[:50], y[:50])), direct)
    grads = torch.func.grad(trainer.objective)({k: v.detach() for k, v in params.items()}, (x[:50], y[:50]))
    assert set(grads) == set(params)


def test_missing_component_is_named(make_cfg):
    cfg = make_cfg("trainer=bilevel_quadratic", "model=none", "dataset=none", "optimizer=none")
    with pytest.raises(OptrunError, match="trainer.components: the trainer needs component 'upper'"):
        build(cfg)
