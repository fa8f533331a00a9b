"""Checkpoint, resume, signals, locks: a killed run continues and ends as if never interrupted."""
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from runner.dispatch import execute
from runner.errors import OptrunError, RunLocked

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
LONG = ["experiment=stability_gap", "trainer.iters_per_task=150", "checkpoint.every_steps=25", "progress=false",
        "device=cpu", "threads=1"]
RUN = "device=cpu,trainer.iters_per_task=150"


def optrun(*args, **kw):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([str(BIN / "optrun"), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env, **kw)


def without_time(run_dir: Path) -> tuple[str, dict]:
    """metrics.csv without the wall-clock column, summary.json without wall time."""
    lines = (run_dir / "metrics.csv").read_text().splitlines()
    csv = "\n".join(",".join(c for i, c in enumerate(line.split(",")) if i != 2) for line in lines)
    summary = json.loads((run_dir / "summary.json").read_text())
    summary.pop("wall_s")
    return csv, summary


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    res = tmp_path_factory.mktemp("ref")
    p = optrun(*LONG, f"results_dir={res}")
    out, err = p.communicate(timeout=300)
    assert p.returncode == 0, err
    return without_time(res / "stability_gap" / RUN)


def _wait_for_checkpoint(run_dir: Path, proc, timeout=120):
    t = time.time()
    while not (run_dir / "checkpoint.pt").exists():
        assert proc.poll() is None, "the run finished before it could be interrupted"
        assert time.time() - t < timeout
        time.sleep(0.05)


def test_kill_9_then_rerun_resumes_to_identical_results(tmp_path, reference):
    run_dir = tmp_path / "stability_gap" / RUN
    p = optrun(*LONG, f"results_dir={tmp_path}")
    _wait_for_checkpoint(run_dir, p)
    time.sleep(random.uniform(0.0, 0.6))
    p.send_signal(signal.SIGKILL)
    p.wait(timeout=30)
    status = json.loads((run_dir / "status.json").read_text())
    assert status["status"] == "running" and status["step"] < 750  # interrupted, not marked complete
    p = optrun(*LONG, f"results_dir={tmp_path}")
    out, err = p.communicate(timeout=300)
    assert p.returncode == 0, err
    assert "resuming" in out
    assert json.loads((run_dir / "status.json").read_text())["resumed_from"] > 0
    assert without_time(run_dir) == reference
    assert not (run_dir / "checkpoint.pt").exists() and not (run_dir / "run.lock").exists()


def test_sigterm_checkpoints_and_exits_then_resumes(tmp_path, reference):
    run_dir = tmp_path / "stability_gap" / RUN
    p = optrun(*LONG, f"results_dir={tmp_path}")
    _wait_for_checkpoint(run_dir, p)
    p.send_signal(signal.SIGTERM)
    p.wait(timeout=60)
    assert p.returncode == 128 + signal.SIGTERM
    status = json.loads((run_dir / "status.json").read_text())
    assert status["status"] == "running" and "signal" in status["interrupted"]
    p = optrun(*LONG, f"results_dir={tmp_path}")
    out, err = p.communicate(timeout=300)
    assert p.returncode == 0, err
    assert without_time(run_dir) == reference


SHORT = ["experiment=stability_gap", "trainer.iters_per_task=10", "checkpoint.every_steps=5", "device=cpu"]


def _interrupted_run(make_cfg, run_dir):
    """A finished short run turned back into an interrupted one that kept its checkpoint."""
    execute(make_cfg(*SHORT, "checkpoint.keep_final=true"), run_dir)
    status = json.loads((run_dir / "status.json").read_text())
    status["status"] = "running"
    (run_dir / "status.json").write_text(json.dumps(status))


def test_corrupt_checkpoint_is_reported_by_path_and_nothing_is_lost(make_cfg, tmp_path):
    run_dir = tmp_path / "run"
    _interrupted_run(make_cfg, run_dir)
    (run_dir / "checkpoint.pt").write_bytes(b"not a checkpoint")
    before = (run_dir / "metrics.csv").read_text()
    with pytest.raises(OptrunError, match=r"corrupt checkpoint .*checkpoint.pt.*restart=true"):
        execute(make_cfg(*SHORT), run_dir)
    assert (run_dir / "metrics.csv").read_text() == before
    assert json.loads((run_dir / "status.json").read_text())["status"] != "completed"
    assert execute(make_cfg(*SHORT, "restart=true"), run_dir)["status"] == "completed"


class _RunsCode:
    """Unpickling this calls a function: what a crafted checkpoint would do."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_crafted_checkpoint_is_refused_and_runs_nothing(make_cfg, tmp_path):
    import torch

    run_dir = tmp_path / "run"
    _interrupted_run(make_cfg, run_dir)
    payload = torch.load(run_dir / "checkpoint.pt", weights_only=False)  # ours: trusted here
    marker = tmp_path / "code-ran"
    payload["engine"]["extra"] = _RunsCode(marker)
    torch.save(payload, run_dir / "checkpoint.pt")
    before = (run_dir / "metrics.csv").read_text()
    with pytest.raises(OptrunError, match=r"refusing to load checkpoint .*checkpoint.pt: it holds an object") as e:
        execute(make_cfg(*SHORT), run_dir)
    assert "\n" not in str(e.value) and not marker.exists()
    assert (run_dir / "metrics.csv").read_text() == before


def _first_arm(exp: str) -> list[str]:
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from runner import experiments
    from runner.config_check import _first_form

    _study, _arm, overrides = experiments.arm_runs(exp, "smoke")[0]
    return [_first_form(o) for o in OverridesParser.create().parse_overrides(overrides)]


@pytest.mark.parametrize("exp", __import__("runner.experiments", fromlist=["ids"]).ids())
def test_every_experiments_checkpoint_loads_without_pickle(make_cfg, tmp_path, exp):
    """Model, optimizer, schedule, trainer and hook states of every paper load with weights_only=True."""
    from dataclasses import replace

    from runner.checkpoint import Checkpointer
    from runner.dispatch import build
    from runner.engine import Engine
    from runner.results import MetricsWriter

    state, trainer, hooks = build(make_cfg(*_first_arm(exp), "device=cpu"))
    phases = trainer.phases
    trainer.phases = lambda s: [replace(p, steps=min(p.steps, 3)) for p in phases(s)][:1]
    ck = Checkpointer(tmp_path / "checkpoint.pt", "cfg", every_steps=1, on_signal=False)
    Engine(trainer, hooks, MetricsWriter(tmp_path / "metrics.csv"), progress=False, checkpointer=ck).run(state)
    assert (tmp_path / "checkpoint.pt").exists()
    payload = ck.load()
    assert payload["engine"]["step"] >= 1


def test_checkpoint_of_another_config_is_refused(make_cfg, tmp_path):
    run_dir = tmp_path / "run"
    _interrupted_run(make_cfg, run_dir)
    with pytest.raises(OptrunError, match="different config"):
        execute(make_cfg(*SHORT, "optimizer.lr=0.01"), run_dir)


def test_a_run_held_by_a_live_process_is_not_started_twice(make_cfg, tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    sleeper = subprocess.Popen(["sleep", "30"])
    try:
        (run_dir / "run.lock").write_text(json.dumps({"host": os.uname().nodename, "pid": sleeper.pid}))
        with pytest.raises(RunLocked, match="already being run by pid"):
            execute(make_cfg(*SHORT), run_dir)
        assert not (run_dir / "metrics.csv").exists()
    finally:
        sleeper.kill()
        sleeper.wait()
    # the owner is gone: its stale lock is taken over
    assert execute(make_cfg(*SHORT), run_dir)["status"] == "completed"


def test_two_overlapping_sweeps_into_one_results_root(tmp_path):
    common = ["-m", "experiment=stability_gap", "trainer.iters_per_task=40", "progress=false", "threads=1",
              f"results_dir={tmp_path}"]
    a, b = optrun(*common, "seed=0,1"), optrun(*common, "seed=1,2")
    for p in (a, b):
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
    runs = sorted(p.name for p in (tmp_path / "stability_gap").iterdir() if p.is_dir())
    assert runs == [f"seed={s},trainer.iters_per_task=40" for s in (0, 1, 2)]
    for r in runs:
        d = tmp_path / "stability_gap" / r
        assert json.loads((d / "status.json").read_text())["status"] == "completed"
        lines = (d / "metrics.csv").read_text().splitlines()
        assert len(lines) == 1 + 201 and len({len(line.split(",")) for line in lines[1:]}) == 1
        assert not (d / "run.lock").exists()


def test_local_parallel_sweep_goes_on_after_a_diverged_run(tmp_path):
    """hydra-joblib-launcher preset; one run diverges (status diverged, exit 0), the other completes."""
    p = optrun("-m", "hydra/launcher=local_parallel", "trainer.steps=60", "optimizer.lr=1e6,0.05", "device=cpu",
               "progress=false", f"results_dir={tmp_path}")
    out, err = p.communicate(timeout=300)
    assert p.returncode == 0, err[-2000:]
    status = {d.name: json.loads((d / "status.json").read_text())["status"]
              for d in (tmp_path / "adhoc").iterdir() if d.is_dir() and (d / "status.json").exists()}
    assert status == {"device=cpu,optimizer.lr=1000000.0,trainer.steps=60": "diverged",
                      "device=cpu,optimizer.lr=0.05,trainer.steps=60": "completed"}
