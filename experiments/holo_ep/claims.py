"""Claims of holomorphic EP with Jacobian homeostasis (Laborieux & Zenke, ICLR 2024), from the logs of
the supervised trainer with `estimator=holo_ep` (metrics `estimator/<name>`, `evaluate/test_acc`).

Study `homeostasis`, arms `hep` (angle 90, no homeostasis), `hep_homeo` (angle 90, λ_h = 1),
`hep_sym` (angle 0), `bp` (backprop through the free phase, a reference). The thresholds are the
issue's (uncalibrated, fixed before any run); the claims use seeds 0-2.

- H1 (headline, cross-run, per seed): final test accuracy of hep_homeo >= hep + 5 pp.
- H2 (headline, cross-run, per seed): final test accuracy of hep_homeo >= hep_sym - 5 pp.
- H3 (headline, per run): cos(EP, BP) of the neuron errors at the end of training >= 0.8 with homeostasis.
- H4 (headline, per run): ... <= 0.6 without.
- S1 (supporting, per run): the Jacobian symmetry ratio rises during training with homeostasis.
- C1 (check, per run): the free phase reached its fixed point (log10 ‖F(u*)‖ <= -3), so δ and the
  dense-Jacobian metrics are those of a fixed point.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from runner.claims import Claim, cross_run_row

STUDY = "homeostasis"
GAIN, GAP, COS_HI, COS_LO = 5.0, 5.0, 0.8, 0.6
LAST = 0.1  # "at the end of training": the mean over the last 10 % of the logged probe values

PAPER_ACC = ("Fig. 4a-d (Fashion-MNIST, 784-256-256-10, angle 90, 50 epochs): with the homeostatic loss "
             "(coefficient 1) hEP trains the untied network to near the symmetric / BP accuracy, without it "
             "accuracy drops; numbers read from the figure only (unverified)")
PAPER_COS = ("Fig. 4: the homeostatic loss aligns EP's neuron error vectors with BP's (cosine close to 1); "
             "without it the misalignment caused by the non-normal Jacobian persists")
PAPER_SYM = "Fig. 4: the Jacobian's symmetry (and the feedback alignment) rises during training with homeostasis"


def final_test_acc(df: pd.DataFrame, cfg=None) -> float:
    return float(df["evaluate/test_acc"].dropna().iloc[-1])


def _probe(df: pd.DataFrame, col: str) -> np.ndarray:
    return df[f"estimator/{col}"].dropna().to_numpy()


def cos_end(df: pd.DataFrame, cfg=None) -> float:
    v = _probe(df, "cos_delta")
    return float(v[-max(1, int(LAST * len(v))):].mean())


def sym_rise(df: pd.DataFrame, cfg=None) -> float:
    """The symmetry ratio at the end minus at the start (means over the first and last 10 % of probes)."""
    v = _probe(df, "sym_ratio")
    k = max(1, int(LAST * len(v)))
    return float(v[-k:].mean() - v[:k].mean())


def residual_end(df: pd.DataFrame, cfg=None) -> float:
    return float(_probe(df, "residual")[-1])


CLAIMS = [
    Claim("H3 EP errors align with BP under homeostasis", PAPER_COS,
          f"cos(EP, BP) of the neuron errors, mean over the last 10 % of probes, >= {COS_HI:g}",
          cos_end, lambda v: v >= COS_HI, kind="headline", study=STUDY, arms="hep_homeo"),
    Claim("H4 EP errors misaligned without homeostasis", PAPER_COS,
          f"cos(EP, BP) of the neuron errors, mean over the last 10 % of probes, <= {COS_LO:g}",
          cos_end, lambda v: v <= COS_LO, kind="headline", study=STUDY, arms="hep"),
    Claim("S1 Jacobian symmetry rises", PAPER_SYM,
          "symmetry ratio |J_s| / (|J_s| + |J_a|): last 10 % of probes - first 10 % > 0",
          sym_rise, lambda v: v > 0, kind="supporting", study=STUDY, arms="hep_homeo"),
    Claim("C1 free phase at a fixed point", "the free phase relaxes to a fixed point (the method's premise)",
          "log10 |F(u*)| at the last probe <= -3", residual_end, lambda v: v <= -3, kind="check", study=STUDY,
          arms=("hep", "hep_homeo", "hep_sym"), scales=("smoke",)),
]


def _acc_by_arm(runs: list) -> dict[str, dict]:
    out: dict[str, dict] = {}
    for r in runs:
        if r.is_in(STUDY) and r.completed and len(r.metrics) and "evaluate/test_acc" in r.metrics:
            out.setdefault(r.arm, {})[r.seed] = final_test_acc(r.metrics)
    return out


def _paired(acc: dict, a: str, b: str, name: str, criterion: str, check) -> list[dict]:
    if a not in acc or b not in acc:
        return []
    seeds = sorted(set(acc[a]) & set(acc[b]), key=str)
    row = cross_run_row(name, PAPER_ACC, criterion, [acc[a][s] - acc[b][s] for s in seeds], check, kind="headline")
    note = "; ".join(f"{arm}: " + ", ".join(f"seed {s} {acc[arm][s]:.1f}" for s in seeds)
                     + f" (mean {np.mean([acc[arm][s] for s in seeds]):.1f})" for arm in (a, b))
    return [{**row, "note": note}]


def cross_run_claims(runs: list) -> list[dict]:
    acc = _acc_by_arm(runs)
    return (_paired(acc, "hep_homeo", "hep", "H1 homeostasis restores training",
                    f"per seed: test accuracy (%) of hep_homeo - hep >= {GAIN:g} pp", lambda v: v >= GAIN)
            + _paired(acc, "hep_homeo", "hep_sym", "H2 near the symmetric network",
                      f"per seed: test accuracy (%) of hep_homeo - hep_sym >= -{GAP:g} pp", lambda v: v >= -GAP))
