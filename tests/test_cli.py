"""End to end through the real console scripts, as a user types them."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

BIN = Path(sys.executable).parent


def run(*args, cwd=None):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.run([str(BIN / args[0]), *args[1:]], capture_output=True, text=True, cwd=cwd, env=env,
                          timeout=300)


@pytest.fixture(scope="module")
def smoke_results(tmp_path_factory):
    """A shortened smoke run of the flagship plus a control whose recovery claim must fail."""
    res = tmp_path_factory.mktemp("results")
    p = run("optrun", "experiment=stability_gap", "study=split_digits", "arm=er", "trainer.iters_per_task=20",
            "progress=false", f"results_dir={res}")
    assert p.returncode == 0, p.stderr
    p = run("optrun", "experiment=stability_gap", "study=split_digits", "arm=er", "trainer.iters_per_task=20",
            "trainer.lw_new=1.0", "progress=false", f"results_dir={res}")
    assert p.returncode == 0, p.stderr
    return res


def test_cli_run_writes_the_documented_files(smoke_results):
    run_dir = smoke_results / "stability_gap" / "split_digits.er.trainer.iters_per_task=20"
    assert {"config.yaml", "metrics.csv", "status.json", "summary.json", "accuracy.png"} <= \
        {p.name for p in run_dir.iterdir()}
    df = pd.read_csv(run_dir / "metrics.csv")
    ce = "continual_eval/"
    assert [f"{ce}acc_task{k}" for k in range(1, 6)] == [c for c in df.columns if c.startswith(f"{ce}acc_task")]
    assert len(df) == 101
    summary = json.loads((run_dir / "summary.json").read_text())
    assert {ce + k for k in ("acc", "min_acc", "wc_acc", "wf10", "wp10")} <= set(summary["metrics"])


def test_rerun_of_completed_run_does_nothing(smoke_results):
    p = run("optrun", "experiment=stability_gap", "study=split_digits", "arm=er", "trainer.iters_per_task=20",
            "progress=false", f"results_dir={smoke_results}")
    assert p.returncode == 0 and "already completed" in p.stdout


def test_report_check_fails_on_a_failing_claim(smoke_results):
    # lw_new=1.0 turns replay off in the loss: task 1 never recovers, so 'P3a recovers level' fails
    p = run("optrun-report", str(smoke_results / "stability_gap"), "--check")
    assert p.returncode == 1, p.stdout + p.stderr
    claims = json.loads((smoke_results / "stability_gap" / "claims.json").read_text())
    p3a = next(c for c in claims if c["name"].startswith("P3a"))
    failing = [r for r in p3a["runs"] if not r["passed"]]
    assert [r["run"] for r in failing] == ["split_digits.er.trainer.iters_per_task=20,trainer.lw_new=1.0"]
    assert (smoke_results / "stability_gap" / "report.md").read_text().count("| P") >= 6
    assert (smoke_results / "stability_gap" / "stability_gap.png").stat().st_size > 10_000


def test_unknown_optimizer_fails_with_one_line(tmp_path):
    p = run("optrun", "optimizer=nonexistent", f"results_dir={tmp_path}")
    assert p.returncode == 2
    assert p.stderr.strip().count("\n") == 0 and "optimizer=nonexistent" in p.stderr
    assert "Traceback" not in p.stderr and not any(tmp_path.iterdir())


def test_bad_value_inside_a_constructor_is_one_line_and_marks_failed(tmp_path):
    p = run("optrun", "experiment=stability_gap", "trainer.method=magic", "progress=false", f"results_dir={tmp_path}")
    assert p.returncode == 2 and "trainer.method: unknown 'magic'" in p.stderr and "Traceback" not in p.stderr
    status = json.loads(next(tmp_path.rglob("status.json")).read_text())
    assert status["status"] == "failed" and "magic" in status["error"]


def test_help_lists_experiments():
    p = run("optrun", "--help")
    assert p.returncode == 0 and "stability_gap" in p.stdout and "Experiments" in p.stdout
