"""Reporter claims: per-run (pass, fail, missing data, other scale), cross-run, and --check."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import ROOT
from report_trees import TOY_CLAIMS, install_experiment, toy_cfg, toy_metrics, toy_sweep, write_run

from runner.report.claims_table import cross_run_rows
from runner.report.cli import main
from runner.report.runs import load_runs


@pytest.fixture
def toy(tmp_path, monkeypatch):
    return install_experiment(tmp_path, monkeypatch, "toy_claims_exp", TOY_CLAIMS)


def _claims(root, exp):
    return {c["name"]: c for c in json.loads((root / exp / "claims.json").read_text())}


def test_claims_pass_fail_missing_data_and_other_scale(tmp_path, toy):
    res = tmp_path / "results"
    toy_sweep(res, toy)
    assert main([str(res / toy)]) == 0  # without --check failures only get reported
    c = _claims(res, toy)
    assert c["loss falls"]["passed"] is True and (c["loss falls"]["n"], c["loss falls"]["n_passed"]) == (6, 6)
    assert c["loss falls"]["scale"] == "smoke" and c["loss falls"]["form"] == "per-run"
    assert c["loss falls"]["kind"] == "supporting" and c["small lr converges"]["kind"] == "headline"
    finals = [toy_metrics(0.2, s).loss.iloc[-1] for s in (0, 1, 2)]
    assert c["loss falls"]["measured"] == pytest.approx(np.mean(finals))
    assert c["loss falls"]["min"] == pytest.approx(min(finals)) and c["loss falls"]["max"] == pytest.approx(max(finals))
    assert c["small lr converges"]["passed"] is False and c["small lr converges"]["n_passed"] == 0
    missing = c["needs a column"]
    assert missing["passed"] is False and missing["measured"] is None and "KeyError" in missing["note"]
    assert c["paper only"]["passed"] is None and "paper" in c["paper only"]["scale"]
    report = (res / toy / "report.md").read_text()
    assert "| small lr converges | smoke |" in report and "**NO** (0/6)" in report
    assert "**smoke: not reproduced** (1 of 1 headline claims fail: small lr converges)" in report
    assert report.index("### Headline claims") < report.index("### Supporting claims")
    assert main([str(res / toy), "--check"]) == 1  # a headline claim fails


def test_only_headline_claims_decide_check(tmp_path, monkeypatch):
    claims = """
    from runner.claims import Claim
    CLAIMS = [Claim("paper's claim", "toy", "loss < 1", lambda df, c: df.loss.iloc[-1], lambda v: v < 1, kind="headline"),
              Claim("side remark", "toy", "loss < 0", lambda df, c: df.loss.iloc[-1], lambda v: v < 0),
              Claim("bound", "by construction", "loss >= 0", lambda df, c: df.loss.iloc[-1], lambda v: v < 0, kind="check")]
    """
    exp = install_experiment(tmp_path, monkeypatch, "toy_kinds_exp", claims)
    toy_sweep(tmp_path / "res", exp, lrs=(0.1,), methods=("a",))
    assert main([str(tmp_path / "res" / exp), "--check"]) == 0
    report = (tmp_path / "res" / exp / "report.md").read_text()
    assert "**smoke: reproduced** (1/1 headline claims pass)" in report and "### Checks" in report


def test_claims_select_runs_by_study_and_arm():
    from runner.claims import Claim

    c = Claim("x", "p", "c", lambda df, cfg: 0.0, lambda v: True, study=("a", "b"), arms="er")
    assert c.relevant({"study": "a", "arm": "er"}) and c.relevant({"study": "b", "arm": "er", "scale": "paper"})
    assert not c.relevant({"study": "a", "arm": "finetune"}) and not c.relevant({"study": None, "arm": "er"})
    with pytest.raises(ValueError, match="kind='main'"):
        Claim("y", "p", "c", lambda df, cfg: 0.0, lambda v: True, kind="main")


def test_claim_rows_are_per_scale_and_diverged_runs_are_left_out(tmp_path, toy):
    res = tmp_path / "results"
    toy_sweep(res, toy, lrs=(0.2,), methods=("a",), seeds=(0, 1))
    for s in (0, 1):
        write_run(res, toy, f"paper,seed={s}", toy_cfg(0.2, "a", s, scale="paper"), toy_metrics(0.2, s, steps=60))
    bad = toy_metrics(0.2, 5).iloc[:6].copy()
    bad.loc[5, "loss"] = np.nan
    write_run(res, toy, "seed=5", toy_cfg(0.2, "a", 5), bad, status="diverged", diverged_at=5)
    main([str(res / toy)])
    rows = [c for c in json.loads((res / toy / "claims.json").read_text()) if c["name"] == "loss falls"]
    assert sorted(r["scale"] for r in rows) == ["paper", "smoke"]
    smoke = next(r for r in rows if r["scale"] == "smoke")
    assert smoke["n"] == 2 and smoke["passed"] and "1 diverged run(s) left out: seed=5" in smoke["note"]
    paper = next(r for r in rows if r["scale"] == "paper")
    assert paper["n"] == 2 and paper["passed"] and not paper["note"]
    only = [c for c in json.loads((res / toy / "claims.json").read_text()) if c["name"] == "paper only"]
    assert [(r["scale"], r["passed"], r["n"]) for r in only] == [("paper", True, 2)]


def test_cross_run_claims_are_reported_and_checked(tmp_path, toy):
    res = tmp_path / "results"
    toy_sweep(res, toy)
    main([str(res / toy)])
    c = _claims(res, toy)
    beats = c["large lr beats small lr"]
    assert beats["form"] == "cross-run" and beats["passed"] is True and beats["scale"] == "smoke"
    assert beats["measured"] > 10 and beats["n"] == 12
    assert c["impossible"]["passed"] is False and c["impossible"]["note"] == "deliberately failing"
    report = (res / toy / "report.md").read_text()
    assert "large lr beats small lr (cross-run)" in report and "impossible (cross-run)" in report


def test_cross_run_errors_and_malformed_rows_fail_without_crashing(tmp_path):
    toy_sweep(tmp_path, "x", lrs=(0.1,), methods=("a",), seeds=(0,))
    runs, _ = load_runs(tmp_path)

    def boom(rs):
        raise ZeroDivisionError("no runs of type B")

    rows = cross_run_rows(boom, runs)
    assert len(rows) == 1 and rows[0]["passed"] is False and "ZeroDivisionError" in rows[0]["note"]
    rows = cross_run_rows(lambda rs: [{"measured": 1}, {"name": "ok", "passed": True, "measured": "nan"}], runs)
    assert [r["passed"] for r in rows] == [False, True] and "malformed" in rows[0]["note"]
    assert rows[1]["measured"] is None


def test_check_is_clean_when_all_claims_pass(tmp_path, monkeypatch):
    claims = """
    from runner.claims import Claim
    CLAIMS = [Claim("loss falls", "toy", "loss < 1", lambda df, c: df.loss.iloc[-1], lambda v: v < 1)]
    def cross_run_claims(runs):
        return [{"name": "n runs", "paper": "toy", "criterion": ">= 2", "measured": len(runs), "passed": len(runs) >= 2}]
    """
    exp = install_experiment(tmp_path, monkeypatch, "toy_pass_exp", claims)
    toy_sweep(tmp_path / "res", exp, lrs=(0.1,), methods=("a",))
    assert main([str(tmp_path / "res" / exp), "--check"]) == 0


def _continual_metrics(n_tasks=5, iters=20, gap=0.0) -> pd.DataFrame:
    """A continual run where task-k accuracy is 100 once learned; `gap` drops task 1 after each switch."""
    rows = []
    for step in range(n_tasks * iters + 1):
        task = max(1, (step - 1) // iters + 1)
        row = {"step": step, "task": task, "time_s": step / 100, "loss": 0.1}
        for k in range(1, task + 1):
            acc = 100.0
            if k == 1 and task > 1 and (step - 1) % iters < 5:
                acc -= gap
            row[f"continual_eval/acc_task{k}"] = acc
        row.update({f"continual_eval/{k}": v for k, v in
                    dict(min_acc=100 - gap, wc_acc=100 - gap / 2, acc=100.0, wf10=gap).items()})
        rows.append(row)
    return pd.DataFrame(rows)


def test_console_check_exits_nonzero_on_a_failing_claim(tmp_path):
    """The flagship's claims on synthetic logs without a stability gap: P2 must fail, --check must say so."""
    res = tmp_path / "results"
    cfg = {"experiment_id": "stability_gap", "study": "split_digits", "arm": "er", "trainer": {"method": "er"},
           "dataset": {"_target_": "runner.data.continual.split"}}
    for s in (0, 1):
        write_run(res, "stability_gap", f"seed={s}", {**cfg, "seed": s}, _continual_metrics(gap=0.0))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "MPLBACKEND": "Agg"}
    p = subprocess.run([str(Path(sys.executable).parent / "optrun-report"), str(res / "stability_gap"), "--check"],
                       capture_output=True, text=True, env=env, timeout=300)
    assert p.returncode == 1, p.stdout + p.stderr
    assert "FAILED" in p.stderr and "stability_gap" in p.stderr
    claims = {c["name"]: c for c in json.loads((res / "stability_gap" / "claims.json").read_text())}
    assert claims["P2 gap depth"]["passed"] is False and claims["P2 gap depth"]["measured"] == 0
    assert claims["P1 task-1 learned"]["passed"] is True
    assert claims["P5 fine-tune forgets"]["passed"] is False  # no fine-tune run: untested is not a pass
    assert "no run this claim applies to" in claims["P5 fine-tune forgets"]["note"]
    assert (res / "stability_gap" / "stability_gap.png").stat().st_size > 10_000
