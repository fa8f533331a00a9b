"""The two-component toy: a bilevel quadratic with an upper and a lower module, each with its own
optimizer, through the one engine; it converges to the known minimiser, and a run killed with
SIGKILL resumes from its checkpoint to bit-identical results."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import torch

from runner.curvature.implicit import hypergradient
from runner.dispatch import build, execute

ROOT = Path(__file__).resolve().parent.parent
TOY = ["trainer=bilevel_quadratic", "components=bilevel_quadratic", "model=none", "dataset=none", "optimizer=none",
       "device=cpu", "threads=1"]


def test_components_are_named_and_the_hypergradient_is_exact(make_cfg):
    state, trainer, _ = build(make_cfg(*TOY))
    assert set(state.modules) == set(state.optimizers) == {"upper", "lower"} and state.model is None
    trainer.phases(state)
    x = torch.randn(5, dtype=torch.float32)
    hg, _ = hypergradient(trainer.f, trainer.g, x, trainer.y_star(x), "exact")  # at y*: the gradient of Phi
    exact = torch.func.grad(trainer.phi)(x)
    assert torch.allclose(hg, exact, rtol=1e-4, atol=1e-5)
    assert torch.allclose(trainer.exact_hypergradient(x), exact, rtol=1e-4, atol=1e-5)


def test_oracle_counts_are_logged_per_step(make_cfg, tmp_path):
    summary = execute(make_cfg(*TOY, "trainer.steps=4", "trainer.solver=cg", "trainer.solver_iters=3",
                               "trainer.inner_steps=2", "trainer.noise=0.1"), tmp_path / "run")
    m = summary["metrics"]
    assert (m["grad_g_calls"], m["samples_calls"], m["grad_f_calls"], m["jvp_calls"], m["hessian_calls"]) == (8, 8, 4, 4, 0)
    assert 4 <= m["hvp_calls"] <= 4 * 4  # at most 3 CG iterations + 1 residual of the warm start per step


def test_the_toy_converges_to_the_known_minimiser(make_cfg, tmp_path):
    summary = execute(make_cfg(*TOY, "trainer.steps=300"), tmp_path / "run")
    assert summary["status"] == "completed"
    assert summary["metrics"]["phi_gap"] < 1e-4 and summary["metrics"]["y_gap"] < 1e-2


def _optrun(results: Path) -> subprocess.Popen:
    args = [*TOY, "trainer.steps=600", "trainer.noise=0.1", "trainer.solver=cg", "trainer.solver_iters=3", "checkpoint.every_steps=50", f"results_dir={results}",
            "progress=false"]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "runner.cli", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env, cwd=ROOT)


def _metrics(run_dir: Path) -> pd.DataFrame:
    return pd.read_csv(run_dir / "metrics.csv").drop(columns="time_s")


def test_killed_two_component_run_resumes_identically(tmp_path):
    ref = _optrun(tmp_path / "ref")
    out, err = ref.communicate(timeout=300)
    assert ref.returncode == 0, err
    (ref_dir,) = (tmp_path / "ref" / "adhoc").iterdir()

    p = _optrun(tmp_path / "killed")
    t0 = time.time()
    run_dir = None
    while run_dir is None or not (run_dir / "checkpoint.pt").exists():
        assert p.poll() is None, "the run finished before it could be killed"
        assert time.time() - t0 < 120
        time.sleep(0.05)
        dirs = list((tmp_path / "killed" / "adhoc").glob("*")) if (tmp_path / "killed" / "adhoc").exists() else []
        run_dir = dirs[0] if dirs else None
    p.send_signal(signal.SIGKILL)
    p.wait(timeout=30)
    status = json.loads((run_dir / "status.json").read_text())
    assert status["status"] == "running" and status["step"] < 600
    again = _optrun(tmp_path / "killed")
    out, err = again.communicate(timeout=300)
    assert again.returncode == 0, err
    assert "resuming" in out
    pd.testing.assert_frame_equal(_metrics(run_dir), _metrics(ref_dir), check_exact=True)


def test_a_step_size_that_blows_up_ends_diverged_with_its_step(make_cfg, tmp_path):
    summary = execute(make_cfg(*TOY, "trainer.steps=200", "components.upper.optimizer.lr=100"), tmp_path / "run")
    assert summary["status"] == "diverged" and 1 <= summary["diverged_at"] < 200
