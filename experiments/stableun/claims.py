"""Claims of StableUN (Wu et al., arXiv 2509.20230), from the logs of `trainer.py`.

Study `relearn`, arms `ga`, `npo` (baselines, each with the retain loss), `stableun` (SAP perturbation,
on NPO) and `stableun_gpn` (Gaussian perturbation). The margin of H1 (10 percentage points) was fixed
before any run; the toy's settings were calibrated on seeds 100-102 (README), the claims use seeds 0-2.

- H1 (headline, cross-run): after the relearning attack (20 steps on 10 forget facts), the exact-match
  accuracy on the other 30 forget facts, mean over seeds, is lower for StableUN than for GA and for NPO
  by >= 10 pp.
- H2 (headline, per run): retain accuracy >= 90 % at the unlearned solution (GA, NPO, StableUN).
- U1 (supporting, per run): unlearning reached forget accuracy <= 5 % within its step budget.
- L1 (check, per run): the learned model knew every fact (100 %) before unlearning.
- S1 (supporting, cross-run): the sharpness of the forget cross-entropy (its largest drop within the
  rho-ball, by projected descent), mean over seeds, is lower for StableUN than for GA and NPO.
- S2 (supporting, cross-run): H1's criterion for the Gaussian (GPN) variant.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from runner.claims import Claim, cross_run_row

STUDY = "relearn"
MARGIN, RETAIN_MIN, FORGET_MAX = 10.0, 90.0, 5.0
BASELINES = ("ga", "npo")

PAPER_H1 = ("StableUN is 'significantly more robust against relearning' than GA/NPO-based unlearning on WMDP and "
            "MUSE (abstract). Numbers from a secondary summary only (unverified): WMDP-bio forget accuracy 24.36 % "
            "for StableUN, relearning robustness '0.12 %' under Relearn-40")
PAPER_H2 = "'maintaining competitive utility performance' (abstract); MMLU 51.03 % -> 55.58 % with gradient harmonization (secondary summary, unverified)"
PAPER_S1 = "optimizing the forget loss at single points drives parameters into sharp minima; StableUN seeks flatter regions (abstract)"


def _attack(df: pd.DataFrame) -> pd.DataFrame:
    return df[df.task == 3].dropna(subset=["relearn_acc"])


def relearn_acc(df: pd.DataFrame, cfg=None) -> float:
    """Exact match (%) on the held-out forget facts after the last attack step."""
    return float(_attack(df).relearn_acc.iloc[-1])


def retain_at_unlearned(df: pd.DataFrame, cfg=None) -> float:
    return float(_attack(df).retain_acc_unlearned.iloc[-1])


def forget_at_unlearned(df: pd.DataFrame, cfg=None) -> float:
    return float(_attack(df).forget_acc_unlearned.iloc[-1])


def learned_acc(df: pd.DataFrame, cfg=None) -> float:
    return float(df.dropna(subset=["learned_acc"]).learned_acc.iloc[-1])


def sharpness(df: pd.DataFrame, cfg=None) -> float:
    return float(_attack(df).sharpness.iloc[-1])


CLAIMS = [
    Claim("H2 retain accuracy kept", PAPER_H2, f"retain exact match at the unlearned solution >= {RETAIN_MIN:g} %",
          retain_at_unlearned, lambda v: v >= RETAIN_MIN, kind="headline", study=STUDY,
          arms=("ga", "npo", "stableun")),
    Claim("U1 unlearned", "unlearning removes the forget set (every method is run to the same forget accuracy)",
          f"forget exact match at the end of unlearning <= {FORGET_MAX:g} %", forget_at_unlearned,
          lambda v: v <= FORGET_MAX, kind="supporting", study=STUDY),
    Claim("L1 facts learned", "the model to unlearn knows every fact (the issue's toy: trained to 100 %)",
          "exact match on all facts before unlearning == 100 %", learned_acc, lambda v: v >= 100.0,
          kind="check", study=STUDY, scales=("smoke",)),
]


def _by_arm(runs: list, measure) -> dict[str, dict]:
    out: dict[str, dict] = {}
    for r in runs:
        if r.is_in(STUDY) and r.completed and len(r.metrics) and "relearn_acc" in r.metrics:
            try:
                out.setdefault(r.arm, {})[r.seed] = measure(r.metrics)
            except (IndexError, KeyError, ValueError):
                continue
    return out


def _lower_by(vals: dict, arm: str, margin: float, name: str, paper: str, what: str, kind: str) -> list[dict]:
    if arm not in vals or not any(b in vals for b in BASELINES):
        return []
    ours = np.mean(list(vals[arm].values()))
    diffs = [float(np.mean(list(vals[b].values())) - ours) for b in BASELINES if b in vals]
    rel = ">=" if margin > 0 else ">"  # "lower" without a margin: strictly lower
    row = cross_run_row(name, paper, f"mean over seeds: {what} of GA and of NPO - {arm}'s {rel} {margin:g}", diffs,
                        (lambda v: v >= margin) if margin > 0 else (lambda v: v > 0), kind=kind)
    note = "; ".join(f"{a}: " + ", ".join(f"seed {s} {v:.3g}" for s, v in sorted(vals[a].items(), key=lambda t: str(t[0])))
                     + f" (mean {np.mean(list(vals[a].values())):.3g})" for a in (*BASELINES, arm) if a in vals)
    return [{**row, "note": note}]


def cross_run_claims(runs: list) -> list[dict]:
    rel, sharp = _by_arm(runs, relearn_acc), _by_arm(runs, sharpness)
    return (_lower_by(rel, "stableun", MARGIN, "H1 StableUN resists relearning", PAPER_H1,
                      "relearned accuracy (pp) on the 30 unseen forget facts", "headline")
            + _lower_by(sharp, "stableun", 0.0, "S1 StableUN's forget loss is flatter", PAPER_S1,
                        "sharpness (max drop of forget CE in the rho-ball)", "supporting")
            + _lower_by(rel, "stableun_gpn", MARGIN, "S2 StableUN-GPN resists relearning", PAPER_H1,
                        "relearned accuracy (pp) on the 30 unseen forget facts", "supporting"))
