"""`optrun reproduce --jobs`: when runs go two at a time, how arms split into runs, and that doing so
changes no number."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from runner import experiments
from runner.errors import OptrunError
from runner.reproduce import OWN_LAUNCHER, auto_jobs, jobs_flag, main, split_runs

OPTRUN = Path(sys.executable).parent / "optrun"


@pytest.fixture
def two_cores(monkeypatch):
    monkeypatch.setattr(os, "cpu_count", lambda: 2)


def test_auto_jobs_runs_two_at_a_time_only_where_runs_pin_their_threads(two_cores, monkeypatch):
    dadao = experiments.arm_runs("dadao", "smoke")  # threads: 1, no launcher in its arms
    assert auto_jobs("smoke", dadao, []) == 2
    assert auto_jobs("paper", experiments.arm_runs("dadao", "paper"), []) == 1  # GPUs and clusters: one at a time
    assert auto_jobs("smoke", dadao, ["hydra/launcher=slurm"]) == 1  # the user's launcher decides
    assert auto_jobs("smoke", experiments.arm_runs("stability_gap", "smoke"), []) == 2  # threads: 1 at smoke scale
    assert auto_jobs("smoke", experiments.arm_runs("stability_gap", "smoke", ["threads=null"]), []) == 1  # torch's default
    assert auto_jobs("smoke", experiments.arm_runs("capo", "smoke"), []) == 2  # its arms' own launcher is replaced
    assert auto_jobs("smoke", experiments.arm_runs("dadao", "smoke", ["seed=0"])[:1], []) == 1  # one run
    monkeypatch.setattr(os, "cpu_count", lambda: 1)
    assert auto_jobs("smoke", dadao, []) == 1


def test_an_arm_splits_into_its_sweeps_runs_without_its_own_launcher():
    (study, arm, overrides), *_ = experiments.arm_runs("capo", "smoke")  # 3 seeds, hydra/launcher=local_parallel
    assert OWN_LAUNCHER in overrides
    runs = split_runs(overrides)
    assert [r[-1] for r in runs] == ["seed=0", "seed=1", "seed=2"]
    assert all(f"arm={arm}" in r and not any(o.startswith("hydra/launcher=") for o in r) for r in runs)
    two_d = split_runs(["experiment=dadao", "seed=0,1", "problem.graph=cycle,grid"])
    assert len(two_d) == 4 and len({tuple(r) for r in two_d}) == 4
    slurm = [*overrides, "hydra/launcher=slurm"]
    assert split_runs(slurm) == [slurm]  # another launcher runs the whole sweep: one job


def test_jobs_flag_takes_auto_or_a_positive_integer(capsys):
    assert jobs_flag(set()) == "auto" and jobs_flag({"--jobs=3"}) == "3"
    for bad in ("0", "two", "-1"):
        with pytest.raises(OptrunError, match=f"--jobs={bad}: expected auto or an integer >= 1"):
            jobs_flag({f"--jobs={bad}"})
    assert main(["dadao", "--jobs=0"]) == 2
    assert "--jobs=0" in capsys.readouterr().err


def test_a_bad_override_is_one_clear_error_before_any_run(tmp_path, capsys):
    for bad, says in (("trainer.nonexistent=1", "trainer.nonexistent"), ("model=nonexist", "model=nonexist"),
                      ("seed=[0", "cannot parse overrides")):
        assert main(["dadao", bad, f"results_dir={tmp_path}"]) == 2
        err = capsys.readouterr().err
        assert says in err and "Traceback" not in err
    assert not list(tmp_path.glob("dadao/*/status.json"))


def _metrics(root: Path) -> dict[str, pd.DataFrame]:
    out = {}
    for f in sorted(root.glob("dadao/*/metrics.csv")):
        df = pd.read_csv(f)
        out[f.parent.name] = df[[c for c in df.columns if c != "time_s"]]  # the wall clock is the only difference
    return out


def test_two_arms_at_a_time_give_the_same_runs_as_one_at_a_time(tmp_path):
    """dadao, one seed (10 arms of one run): every metrics.csv equal, each arm's output printed whole."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    outs = {}
    for jobs in (1, 2):
        p = subprocess.run([str(OPTRUN), "reproduce", "dadao", "seed=0", f"--jobs={jobs}", "--no-card",
                            f"results_dir={tmp_path / str(jobs)}"], capture_output=True, text=True, env=env, timeout=600)
        assert p.returncode in (0, 1), p.stderr[-3000:]  # 1: a headline claim of the paper fails at one seed
        outs[jobs] = p.stdout
    assert "10 arms, 10 runs, 2 at a time" in outs[2] and "at a time" not in outs[1]
    blocks = outs[2].split("== optrun reproduce dadao [smoke] ")[1:]
    assert len(blocks) == 10 and all(b.count("completed after") == 1 and "took" in b for b in blocks)
    one, two = _metrics(tmp_path / "1"), _metrics(tmp_path / "2")
    assert len(one) == 10 and one.keys() == two.keys()
    for name in one:
        pd.testing.assert_frame_equal(one[name], two[name], check_exact=True, obj=name)
