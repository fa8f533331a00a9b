"""`optrun status`: runs by state (completed, diverged, failed, running with a live lock, stale), the
failing runs' one-line errors and the claims' pass counts, as a table and as JSON."""
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

from runner.status import collect, table

ROOT = Path(__file__).resolve().parent.parent


def _run_dir(root: Path, exp: str, name: str, status: dict, claims=None, lock_pid=None) -> Path:
    d = root / exp / name
    d.mkdir(parents=True)
    (d / "config.yaml").write_text(f"experiment_id: {exp}\nseed: 0\n")
    (d / "status.json").write_text(json.dumps(status))
    (d / "metrics.csv").write_text("step,task,time_s,loss\n0,0,0.1,1.0\n7,0,0.2,0.5\n")
    if claims is not None:
        (d / "summary.json").write_text(json.dumps({"status": status["status"], "claims": claims}))
    if lock_pid is not None:
        (d / "run.lock").write_text(json.dumps({"host": socket.gethostname(), "pid": lock_pid, "slurm_job": None}))
    return d


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def _tree(tmp_path: Path) -> Path:
    ok = [{"name": "a", "kind": "headline", "passed": True}, {"name": "b", "kind": "check", "passed": True}]
    _run_dir(tmp_path, "paper_a", "seed=0", {"status": "completed", "step": 10}, ok)
    _run_dir(tmp_path, "paper_a", "seed=1", {"status": "completed", "step": 10},
             [{"name": "a", "kind": "headline", "passed": False}, {"name": "b", "kind": "check", "passed": True}])
    _run_dir(tmp_path, "paper_a", "lr=9", {"status": "diverged", "step": 3}, [])
    _run_dir(tmp_path, "paper_b", "bad", {"status": "failed", "step": 0, "error": "OptrunError: trainer.steps: expected a positive integer\nmore"})
    _run_dir(tmp_path, "paper_b", "live", {"status": "running", "step": 2}, lock_pid=os.getpid())
    _run_dir(tmp_path, "paper_b", "killed", {"status": "running", "step": 2}, lock_pid=_dead_pid())
    return tmp_path


def test_states_errors_and_claim_counts(tmp_path):
    report = collect(_tree(tmp_path))
    a, b = report["paper_a"], report["paper_b"]
    assert (a["counts"]["completed"], a["counts"]["diverged"]) == (2, 1)
    assert a["claims"] == [3, 4] and a["headline"] == [1, 2]
    assert (b["counts"]["failed"], b["counts"]["running"], b["counts"]["stale"]) == (1, 1, 1)
    rows = {r["run"]: r for r in b["runs"]}
    assert rows["bad"]["error"] == "OptrunError: trainer.steps: expected a positive integer"
    assert rows["live"]["step"] == 7  # the last logged step, not status.json's
    text = table(report)
    assert "3/4 (headline 1/2)" in text and "failed: bad: OptrunError" in text and "stale: killed at step 7" in text


def test_cli_table_json_and_bad_folder(tmp_path):
    _tree(tmp_path)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    optrun = str(Path(sys.executable).parent / "optrun")
    out = subprocess.run([optrun, "status", str(tmp_path), "--json"], capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["paper_b"]["counts"]["failed"] == 1
    out = subprocess.run([optrun, "status", str(tmp_path), "--experiment", "paper_a"], capture_output=True, text=True, env=env)
    assert "paper_a" in out.stdout and "paper_b" not in out.stdout
    out = subprocess.run([optrun, "status", str(tmp_path / "nope")], capture_output=True, text=True, env=env)
    assert out.returncode == 2 and "is not a folder" in out.stderr
