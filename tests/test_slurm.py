"""Integration test on a REAL one-node SLURM cluster started on localhost (tests/slurm/cluster.sh).

Skips with the reason when SLURM cannot run here (not root, or slurm-wlm/munge not installed:
`.ci/run` installs them with apt-get when it can). With accounting off, submitit warns about sacct:
that is expected.
"""
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
CLUSTER = ROOT / "tests" / "slurm" / "cluster.sh"
LAUNCHER = ["hydra/launcher=slurm", "hydra.launcher.gpus_per_node=null", "hydra.launcher.mem_gb=1",
            "hydra.launcher.cpus_per_task=1", "hydra.launcher.timeout_min=20", "progress=false"]


def _why_not() -> str | None:
    if os.geteuid() != 0:
        return "the SLURM daemons need root"
    missing = [b for b in ("slurmctld", "slurmd", "munged", "sbatch", "scontrol") if not shutil.which(b)]
    if missing:
        return f"SLURM is not installed ({', '.join(missing)} missing): apt-get install slurm-wlm munge"
    try:
        import hydra_plugins.hydra_submitit_launcher  # noqa: F401
    except ImportError:
        return "hydra-submitit-launcher is not installed (pip install -e .[dev])"
    return None


pytestmark = pytest.mark.skipif(_why_not() is not None, reason=str(_why_not()))


@pytest.fixture(scope="module")
def slurm(tmp_path_factory):
    state = tmp_path_factory.mktemp("slurm")
    p = subprocess.run(["bash", str(CLUSTER), "start", str(state)], capture_output=True, text=True, timeout=120)
    if p.returncode != 0:
        pytest.fail(f"could not start the SLURM test cluster: {p.stderr.strip()}")
    env = {**os.environ, "SLURM_CONF": str(state / "slurm.conf"), "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}
    yield env
    subprocess.run(["scancel", "--user", "root"], env=env, capture_output=True)
    subprocess.run(["bash", str(CLUSTER), "stop", str(state)], capture_output=True, timeout=60)


def _status(run_dir: Path) -> dict:
    try:
        return json.loads((run_dir / "status.json").read_text())
    except (OSError, ValueError):
        return {}


def _metrics_without_time(run_dir: Path) -> list[str]:
    lines = (run_dir / "metrics.csv").read_text().splitlines()
    return [",".join(c for i, c in enumerate(line.split(",")) if i != 2) for line in lines]


def test_sweep_of_two_jobs_through_submitit(slurm, tmp_path):
    args = ["-m", *LAUNCHER, "experiment=stability_gap", "trainer.iters_per_task=20", "seed=0,1",
            f"results_dir={tmp_path / 'slurm'}"]
    p = subprocess.run([str(BIN / "optrun"), *args], env=slurm, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    local = subprocess.run([str(BIN / "optrun"), "-m", "experiment=stability_gap", "trainer.iters_per_task=20",
                            "seed=0,1", "progress=false", f"results_dir={tmp_path / 'local'}"],
                           env=slurm, capture_output=True, text=True, timeout=600)
    assert local.returncode == 0, local.stderr[-3000:]
    for seed in (0, 1):
        name = f"seed={seed},trainer.iters_per_task=20"
        run, ref = tmp_path / "slurm" / "stability_gap" / name, tmp_path / "local" / "stability_gap" / name
        assert _status(run).get("status") == "completed"
        assert _metrics_without_time(run) == _metrics_without_time(ref)  # same results as a local run


def test_requeued_job_resumes_from_its_checkpoint(slurm, tmp_path):
    results = tmp_path / "res"
    run_dir = results / "stability_gap" / "seed=0,trainer.iters_per_task=600"
    args = ["-m", *LAUNCHER, "experiment=stability_gap", "trainer.iters_per_task=600", "seed=0",
            "checkpoint.every_steps=50", "threads=1", f"results_dir={results}"]
    launcher = subprocess.Popen([str(BIN / "optrun"), *args], env=slurm, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)
    try:
        t = time.time()
        while not (run_dir / "checkpoint.pt").exists():
            assert launcher.poll() is None and time.time() - t < 300, "the job never wrote a checkpoint"
            time.sleep(0.5)
        job = subprocess.run(["squeue", "-h", "-o", "%i"], env=slurm, capture_output=True, text=True).stdout.split()
        assert job, "no job in the queue"
        subprocess.run(["scontrol", "requeue", job[0]], env=slurm, check=True)
        # a requeued job is held for a while (BeginTime); release it now
        for _ in range(20):
            time.sleep(1)
            subprocess.run(["scontrol", "update", f"JobId={job[0]}", "StartTime=now"], env=slurm,
                           capture_output=True)
            if _status(run_dir).get("resumed_from"):
                break
        out, _ = launcher.communicate(timeout=600)
        assert launcher.returncode == 0, out[-3000:]
    finally:
        if launcher.poll() is None:
            launcher.kill()
    status = _status(run_dir)
    assert status["status"] == "completed" and status["resumed_from"] > 0
    local = subprocess.run([str(BIN / "optrun"), "experiment=stability_gap", "trainer.iters_per_task=600", "seed=0",
                            "progress=false", "threads=1", f"results_dir={tmp_path / 'local'}"],
                           env=slurm, capture_output=True, text=True, timeout=600)
    assert local.returncode == 0, local.stderr[-2000:]
    ref = tmp_path / "local" / "stability_gap" / "seed=0,trainer.iters_per_task=600"
    assert _metrics_without_time(run_dir) == _metrics_without_time(ref)  # no step lost or repeated
