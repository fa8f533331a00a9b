"""stability_gap: the claims' kinds and texts follow issue 16 (a by-construction bound is a check; every
headline names the paper's figure and says its margin is ours), and the claims measure what they say on a
hand-made two-task curve."""
import pandas as pd
import pytest

from experiments.stability_gap import claims
from runner.claims import evaluate_claims


def by_name(prefix):
    (c,) = [c for c in claims.CLAIMS if c.name.startswith(prefix)]
    return c


def test_kinds():
    assert by_name("P6a").kind == "check"  # WC-ACC <= ACC holds by the definition of WC-ACC
    headlines = [c for c in claims.CLAIMS if c.kind == "headline"]
    assert {c.name.split()[0] for c in headlines} == {"P2", "P3a", "P3b", "P4", "R2", "R3"}
    for c in headlines:  # the paper's statement beside ours: its figure, and that no number of it is used
        assert "Fig. 2" in c.paper and claims.NO_NUMBER in c.paper, c.name
        assert "our margin" in c.criterion, c.name


def _two_tasks():
    """Task 1 learned to 100, dips to 30 three iterations into task 2, back to 98 at the end of task 2."""
    a1 = [10.0] + [100.0] * 5 + [60.0, 40.0, 30.0, 70.0, 98.0]
    a2 = [float("nan")] * 6 + [20.0, 50.0, 80.0, 90.0, 95.0]
    steps = list(range(len(a1)))
    task = [1] * 6 + [2] * 5
    min_acc = [float("nan")] * 6 + [60.0, 40.0, 30.0, 30.0, 30.0]
    col = claims.col
    return pd.DataFrame({"step": steps, "task": task, col("acc_task1"): a1, col("acc_task2"): a2,
                         col("min_acc"): min_acc, col("wc_acc"): [float("nan")] * 10 + [62.5],
                         col("acc"): [float("nan")] * 10 + [96.5], col("wf10"): [float("nan")] * 10 + [70.0]})


def test_claims_measure_the_curve():
    df = _two_tasks()
    cfg = {"study": "split_digits", "arm": "er", "scale": "smoke"}
    got = {r["name"].split()[0]: r for r in evaluate_claims(claims.CLAIMS, df, cfg)}
    assert got["P1"]["measured"] == pytest.approx(100.0)
    assert got["P2"]["measured"] == pytest.approx(70.0) and got["P2"]["passed"]
    assert got["P3a"]["measured"] == pytest.approx(-2.0) and got["P3a"]["passed"]
    assert got["P3b"]["measured"] == pytest.approx(68.0) and got["P3b"]["passed"]
    assert got["P4"]["measured"] == pytest.approx(98.0 - 30.0) and got["P4"]["passed"]
    assert got["P6a"]["measured"] == pytest.approx(34.0) and got["P6a"]["passed"]
    assert not any(n.startswith("R") for n in got)  # rotated-digits claims read only their own study
