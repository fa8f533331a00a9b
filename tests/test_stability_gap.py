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


# ---- issue 16, for six papers at once: the paper-scale studies make the runs the claims select ------------
# (cbo, gn_smoothness, saddle_to_saddle, sinkhorn_newton, stability_gap, wsd). Every paper-scale (study, arm)
# is composed, its sweep expanded (seed 0 only); each per-run claim declared for the paper scale must apply to
# at least one of those configs, and each cross-run claim row at paper scale, fed runs with those configs and
# stand-in metrics, must find at least one comparison (n >= 1).

import itertools  # noqa: E402
import math  # noqa: E402
import re  # noqa: E402
from types import SimpleNamespace  # noqa: E402

import numpy as np  # noqa: E402
from omegaconf import OmegaConf  # noqa: E402

from runner import experiments  # noqa: E402
from runner.claims import in_study  # noqa: E402

AUDITED = ("cbo", "gn_smoothness", "saddle_to_saddle", "sinkhorn_newton", "stability_gap", "wsd")
SMOKE_STAND_INS = {"stability_gap": {"split_digits"}}  # the smoke stand-in of a paper-scale study (split_mnist)


def _split_sweep(override: str) -> list[str]:
    """'k=a,b,[c,d]' -> ['k=a', 'k=b', 'k=[c,d]'] (commas inside brackets stay)."""
    key, _, value = override.partition("=")
    parts = re.split(r",(?![^\[]*\])", value)
    return [f"{key}={v}" for v in parts]


def paper_configs(exp: str) -> list[dict]:
    out = []
    for _study, _arm, overrides in experiments.arm_runs(exp, "paper", ["seed=0"]):
        for combo in itertools.product(*(_split_sweep(o) for o in overrides)):
            cfg = experiments.compose(["progress=false", *combo])
            out.append(OmegaConf.to_container(cfg, resolve=True))
    return out


def _stand_in_metrics(exp: str, cfg: dict) -> pd.DataFrame:
    """Just the columns each paper's cross-run claims read, with plausible values."""
    steps = np.arange(0, 101)
    if exp == "cbo":
        return pd.DataFrame({"step": steps, "success_rate": 50.0})
    if exp in ("gn_smoothness", "sinkhorn_newton"):
        return pd.DataFrame({"step": steps, "converged": (steps == 100).astype(float), "loss": 10.0 ** -(steps / 10),
                             "marginal_err": 10.0 ** -(steps / 8)})
    if exp == "saddle_to_saddle":
        return pd.DataFrame({"step": steps, "loss": np.exp(-steps / 10.0), "complexity/rank": steps // 25})
    if exp == "wsd":
        bs = [int(b) for b in cfg["schedule"]["budgets"]]
        return pd.DataFrame({"step": bs, "budget": bs, "fork": np.nan, "phase": "decay", "path_step": bs,
                             "population/excess_loss": 0.1})
    return pd.DataFrame({"step": steps})


@pytest.mark.parametrize("exp", AUDITED)
def test_paper_scale_studies_make_the_runs_the_claims_select(exp):
    mod = experiments.module(exp, "claims")
    cfgs = paper_configs(exp)
    assert cfgs and all(c["scale"] == "paper" for c in cfgs)
    for claim in mod.CLAIMS:
        if "paper" in claim.scales:
            assert any(claim.relevant(c) for c in cfgs), f"{exp}: claim {claim.name!r} selects no paper-scale run"
            named = (claim.study,) if isinstance(claim.study, str) else (claim.study or ())
            for study in set(named) - SMOKE_STAND_INS.get(exp, set()):
                assert any(claim.relevant(c) for c in cfgs if c.get("study") == study), \
                    f"{exp}: claim {claim.name!r} names study {study!r}, which makes no such run at paper scale"
    if not hasattr(mod, "cross_run_claims"):
        return
    runs = [SimpleNamespace(cfg=c, status={"status": "completed"}, study=c.get("study"), arm=c.get("arm"),
                            scale="paper", seed=c.get("seed"), metrics=_stand_in_metrics(exp, c), path=None,
                            is_in=lambda study=None, arms=None, c=c: in_study(c, study, arms)) for c in cfgs]
    for row in mod.cross_run_claims(runs):
        assert row.get("n", 0) >= 1, f"{exp}: cross-run claim {row['name']!r} finds no paper-scale comparison"
        assert row["kind"] in ("headline", "supporting", "check") and not math.isnan(row["n"])


def test_every_audited_paper_has_a_paper_scale_headline():
    """The paper scale can be 'reproduced' only through a headline claim that applies there."""
    for exp in AUDITED:
        mod = experiments.module(exp, "claims")
        per_run = [c for c in mod.CLAIMS if c.kind == "headline" and "paper" in c.scales]
        cfgs = paper_configs(exp) if not per_run else []
        cross = []
        if cfgs and hasattr(mod, "cross_run_claims"):
            runs = [SimpleNamespace(cfg=c, status={"status": "completed"}, study=c.get("study"), arm=c.get("arm"),
                                    metrics=_stand_in_metrics(exp, c),
                                    is_in=lambda study=None, arms=None, c=c: in_study(c, study, arms)) for c in cfgs]
            cross = [r for r in mod.cross_run_claims(runs) if r["kind"] == "headline"]
        assert per_run or cross, f"{exp}: no headline claim at paper scale"
