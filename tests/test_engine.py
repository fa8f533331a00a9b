"""The engine and the run directory: determinism, read-only hooks, divergence, skip/force."""
import json

import pandas as pd
import torch

from runner.dispatch import build, execute
from runner.engine import Engine
from runner.results import MetricsWriter

SHORT = ["experiment=stability_gap", "trainer.iters_per_task=15", "device=cpu"]


def _final_params(cfg, tmp_path, name):
    state, trainer, hooks = build(cfg)
    Engine(trainer, hooks, MetricsWriter(tmp_path / f"{name}.csv"), progress=False).run(state)
    return [p.detach().clone() for p in state.model.parameters()]


def test_read_only_hook_does_not_change_training(make_cfg, tmp_path):
    with_hook = _final_params(make_cfg(*SHORT), tmp_path, "a")
    without = _final_params(make_cfg(*SHORT, "hooks=[]"), tmp_path, "b")
    assert all(torch.equal(a, b) for a, b in zip(with_hook, without))


def test_same_command_twice_gives_identical_metrics(make_cfg, tmp_path):
    cfg = make_cfg(*SHORT, "seed=3")
    execute(cfg, tmp_path / "r1")
    execute(cfg, tmp_path / "r2")
    a, b = (pd.read_csv(tmp_path / r / "metrics.csv") for r in ("r1", "r2"))
    assert "time_s" in a.columns
    # every column but the wall clock is identical, byte for byte once written
    assert a.drop(columns="time_s").to_csv() == b.drop(columns="time_s").to_csv()
    raw = [(tmp_path / r / "metrics.csv").read_text().splitlines() for r in ("r1", "r2")]
    strip = lambda lines: [",".join(c for i, c in enumerate(l.split(",")) if i != 2) for l in lines]  # noqa: E731,E741
    assert strip(raw[0]) == strip(raw[1])


def test_run_directory_files_and_continual_columns(make_cfg, tmp_path):
    summary = execute(make_cfg(*SHORT, "study=split_digits", "arm=er"), tmp_path / "run")
    run = tmp_path / "run"
    for f in ("config.yaml", "metrics.csv", "status.json", "summary.json", "accuracy.png"):
        assert (run / f).exists(), f
    df = pd.read_csv(run / "metrics.csv")
    assert list(df.columns[:3]) == ["step", "task", "time_s"]
    assert df.step.tolist() == list(range(0, 5 * 15 + 1))  # before the first update, then every iteration
    for k in range(1, 6):
        col = df[f"continual_eval/acc_task{k}"]
        first_seen = (k - 1) * 15 + 1 if k > 1 else 0
        assert col[df.step >= first_seen].notna().all() and col[df.step < first_seen].isna().all()
    s = json.loads((run / "summary.json").read_text())
    assert s["status"] == "completed" and {f"continual_eval/{k}" for k in ("acc", "min_acc", "wc_acc", "wf10", "wp10")} \
        <= set(s["metrics"])
    assert s["claims"] and {"name", "kind", "paper", "measured", "criterion", "passed"} <= set(s["claims"][0])
    assert (s["study"], s["arm"]) == ("split_digits", "er")
    assert json.loads((run / "status.json").read_text())["status"] == "completed"
    assert summary["status"] == "completed"


def test_completed_run_is_skipped_unless_forced(make_cfg, tmp_path, capsys):
    cfg = make_cfg(*SHORT)
    execute(cfg, tmp_path / "run")
    before = (tmp_path / "run" / "metrics.csv").read_text()
    out = execute(cfg, tmp_path / "run")
    assert out["skipped"] and "already completed" in capsys.readouterr().out
    assert (tmp_path / "run" / "metrics.csv").read_text() == before
    out = execute(make_cfg(*SHORT, "force=true"), tmp_path / "run")
    assert out["status"] == "completed" and not out.get("skipped")


def test_divergence_is_recorded_and_stops_cleanly(make_cfg, tmp_path):
    cfg = make_cfg("trainer.steps=200", "optimizer.lr=1e6", "optimizer.momentum=0.9", "device=cpu")
    summary = execute(cfg, tmp_path / "run")
    status = json.loads((tmp_path / "run" / "status.json").read_text())
    assert summary["status"] == status["status"] == "diverged"
    df = pd.read_csv(tmp_path / "run" / "metrics.csv")
    assert df.step.iloc[-1] == status["diverged_at"] < 200
    assert not torch.isfinite(torch.tensor(df.loss.iloc[-1])) and df.loss.iloc[:-1].map(lambda v: v == v).all()


def test_eval_mode_restores_every_flag_and_respects_train_overrides():
    from runner.hooks.base import eval_mode

    class Frozen(torch.nn.Module):  # overrides train(): eval_mode must go through it
        def __init__(self):
            super().__init__()
            self.bn, self.calls = torch.nn.BatchNorm1d(3), []

        def train(self, mode=True):
            self.calls.append(mode)
            return super().train(mode)

    plain = torch.nn.Sequential(torch.nn.Linear(3, 3), torch.nn.Dropout(0.5), torch.nn.BatchNorm1d(3))
    plain[1].eval()  # a mixed state must come back exactly
    frozen = Frozen()
    for model in (plain, frozen):
        before = [m.training for m in model.modules()]
        with eval_mode(model):
            assert not any(m.training for m in model.modules()) and torch.is_inference_mode_enabled()
        assert [m.training for m in model.modules()] == before
    assert frozen.calls == [False]


def test_end_hooks_run_after_an_early_stop(make_cfg, tmp_path, one_thread):
    """A solver that converges before its budget still gets its end-of-run probes, after the last step."""
    from runner.hooks.base import Hook

    class EndProbe(Hook):
        name = "end_probe"

        def __init__(self):
            super().__init__(every=0, at_phase_end=False, at_end=True)
            self.calls = []

        def columns(self, state):
            return ["at"]

        def __call__(self, state):
            self.calls.append(state.step)
            return {"at": float(state.step)}

    cfg = make_cfg("experiment=sinkhorn_newton", "algorithm=sns", "device=cpu", "trainer.max_iters=5000")
    state, trainer, hooks = build(cfg)
    probe = EndProbe()
    out = Engine(trainer, [*hooks, probe], MetricsWriter(tmp_path / "m.csv"), progress=False).run(state)
    assert out.status == "completed" and out.step < 5000  # converged early
    assert probe.calls == [out.step]
    df = pd.read_csv(tmp_path / "m.csv")
    assert df["end_probe/at"].dropna().tolist() == [float(out.step)] and df.step.iloc[-1] == out.step


def test_a_figure_that_cannot_be_drawn_loses_no_run(make_cfg, tmp_path, capsys):
    """stability_gap's per-run figure needs the continual probe; without it the run still completes."""
    out = execute(make_cfg(*SHORT, "hooks=[]"), tmp_path / "run")
    assert out["status"] == "completed" and "no per-run figure" in capsys.readouterr().err
    assert json.loads((tmp_path / "run" / "status.json").read_text())["status"] == "completed"


def test_numpy_scalars_are_written_as_numbers(tmp_path):
    """A solver's reference() may return numpy scalars: metrics.csv holds their numbers, not np.float64(...)."""
    import numpy as np

    w = MetricsWriter(tmp_path / "metrics.csv")
    w.add({"step": 1, "task": None, "time_s": 0.0, "loss": np.float64(19.0), "n": np.int64(3), "ok": np.bool_(True)})
    w.flush()
    row = pd.read_csv(tmp_path / "metrics.csv").iloc[0]
    assert (row["loss"], row["n"], row["ok"]) == (19.0, 3, 1)
