"""results/REPORT.md: all 30 papers with honest states; `make reproduce-smoke` discovery."""
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT
from report_trees import TOY_CLAIMS, install_experiment, toy_metrics, toy_sweep, write_run

from runner.report.cli import main
from runner.report.overview import implemented
from runner.report.papers import papers, short_name


def test_the_thirty_papers_ship_with_the_package():
    ps = papers()
    assert len(ps) == 30 and len({p["id"] for p in ps}) == 30
    assert all(re.fullmatch(r"\d{4}\.\d{5}", p["arxiv"]) and p["title"] and p["short"] for p in ps)
    assert [p["n"] for p in ps] == [str(i) for i in range(1, 31)]
    assert short_name("stability_gap") == "Stability gap"


def _rows(report: str) -> dict[str, str]:
    return {m[1]: m[0] for m in re.findall(r"^(\| \d+ \| `(\w+)` \|.*)$", report, flags=re.M)}


def test_report_md_lists_every_paper_with_an_honest_state(tmp_path, monkeypatch):
    res = tmp_path / "results"
    # the flagship: two runs read, one failed run left out
    cfg = {"study": "split_digits", "arm": "er", "trainer": {"method": "er"},
           "dataset": {"_target_": "runner.data.continual.split"}}
    write_run(res, "stability_gap", "seed=0", cfg, toy_metrics(0.1, 0))
    write_run(res, "stability_gap", "seed=1", cfg, toy_metrics(0.1, 1), status="failed", error="boom")
    # a results folder of something that is not one of the 30 (a toy experiment with claims)
    exp = install_experiment(tmp_path, monkeypatch, "toy_overview_exp", TOY_CLAIMS)
    toy_sweep(res, exp, lrs=(0.2,), methods=("a",), seeds=(0,))
    assert main([str(res), "--failed-targets", "stability_gap"]) == 0
    report = (res / "REPORT.md").read_text()
    rows = _rows(report)
    assert len(rows) == 30 and set(rows) == {p["id"] for p in papers()}
    for pid, row in rows.items():
        if not implemented(pid):
            assert "**not yet implemented**" in row, row
        elif pid != "stability_gap":
            assert "**implemented, not run**" in row, row
    gap = rows["stability_gap"]
    # toy metrics have no acc_task columns: every stability-gap claim fails to measure -> not reproduced
    assert "**not reproduced**" in gap and "1 read, 1 left out" in gap and "[report](stability_gap/report.md)" in gap
    assert "`make stability_gap` exited non-zero" in gap
    assert f"`{exp}`" in report.split("## Other results")[1]
    assert "failed at step" in (res / "stability_gap" / "report.md").read_text()


def test_states_runs_fail_and_runs_without_claims(tmp_path):
    res = tmp_path / "results"
    write_run(res, "stability_gap", "seed=0", {}, toy_metrics(0.1, 0), status="failed", error="OptrunError: x")
    main([str(res)])
    assert "**runs fail**: 1 run(s) left out (failed at step 40)" in _rows((res / "REPORT.md").read_text())[
        "stability_gap"]


def test_report_of_one_experiment_folder_writes_no_overview(tmp_path):
    toy_sweep(tmp_path / "results", "toy", lrs=(0.1,), methods=("a",), seeds=(0,))
    main([str(tmp_path / "results" / "toy")])
    assert not (tmp_path / "results" / "toy" / "REPORT.md").exists()
    assert not (tmp_path / "results" / "REPORT.md").exists()
    main([str(tmp_path / "results")])
    assert (tmp_path / "results" / "REPORT.md").exists()


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_make_reproduce_smoke_discovers_experiment_targets(tmp_path):
    """Dry run: the smoke targets are listed (not run), then the overview is written for an empty tree."""
    venv = Path(sys.executable).parent.parent
    env = {**os.environ, "PYTHONPATH": str(ROOT), "MPLBACKEND": "Agg"}
    p = subprocess.run(["make", "-n", "reproduce-smoke", f"RESULTS={tmp_path}", f"VENV={venv}", "NO_INSTALL=1"],
                       cwd=ROOT, capture_output=True, text=True, env=env, timeout=300)
    assert p.returncode == 0, p.stdout + p.stderr
    from runner import experiments

    for exp in experiments.ids():  # every folder is a target; the Makefile names none of them
        assert f"== make {exp}" in p.stdout and f"reproduce {exp} results_dir={tmp_path}" in p.stdout, exp
        assert not re.search(rf"^{exp}(-paper)?:", (ROOT / "Makefile").read_text(), flags=re.M), exp
    rows = _rows((tmp_path / "REPORT.md").read_text())
    assert len(rows) == 30 and "**implemented, not run**" in rows["stability_gap"]

