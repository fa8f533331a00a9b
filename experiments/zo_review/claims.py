"""Claims for the zeroth-order review (García Fernández, Ahmad, van Gerven 2025). The review reports
no numbers of its own: the headline tests estimator theory that the review states qualitatively
(zeroth-order estimates align with the gradient less as the perturbed dimension grows), with the
expected cosine √(2/(π·dim)) and each estimator's dimension derived in `theory.py` and the card.

- `cosine` (64-32-10 tanh MLP, digits, batch 32, at initialisation, 300 draws): Z1a-d (headline)
  mean cos / √(2/(π·dim)) within ±30 % for SPSA, forward gradient, OpenAI-ES (25 antithetic pairs,
  centred ranks) and node perturbation (per-sample loss changes, the core's default).
- `cosine_small` (64-16-10, batch 8): Z2, the same ratio at a second size (the derivation tested
  where it was not calibrated).
- `cosine` arm `node_perturbation_batch` (one batch-loss change): Z3, |cos − theory| <= 3 standard
  errors of the 300-draw mean (its per-draw spread is too large for a ±30 % test at 300 draws; card).
- `training`: Z4 backprop >= 95 % test accuracy after 20 epochs; Z5 (check) every estimator arm
  stops within one step of the forward-pass budget.
"""
from __future__ import annotations

import math

import pandas as pd

from runner.claims import Claim

BAND, BP_ACC, TRIALS = 0.30, 95.0, 300
COS, TRAIN, SMALL = "cosine", "training", "cosine_small"
TEST_ACC = "test_eval/test_acc"


def at_start(df: pd.DataFrame, column: str) -> float:
    d = df.dropna(subset=[column])
    return float(d[column].iloc[0])


def cos_ratio(df: pd.DataFrame, cfg=None) -> float:
    """Mean cos over the draws divided by √(2/(π·dim)), at step 0."""
    return at_start(df, "zo_alignment/ratio")


def z_score(df: pd.DataFrame, cfg=None) -> float:
    """(mean cos − theory) / (sd / √trials): the deviation in standard errors of the mean."""
    cos, sd, th = (at_start(df, f"zo_alignment/{k}") for k in ("cos", "cos_sd", "cos_theory"))
    trials = (cfg or {}).get("hooks", {}).get("zo_alignment", {}).get("trials", TRIALS)
    return (cos - th) / (sd / math.sqrt(trials))


def final_test_acc(df: pd.DataFrame, cfg=None) -> float:
    return float(df.dropna(subset=[TEST_ACC])[TEST_ACC].iloc[-1])


def budget_overshoot(df: pd.DataFrame, cfg=None) -> float:
    """Forward passes spent beyond the budget, in steps of the estimator (0 <= value < 1 expected)."""
    last = df.dropna(subset=["forward_passes"]).iloc[-1]
    budget = cfg["trainer"]["budget_forward_passes"]
    per_step = last.forward_passes / last.step
    return float((last.forward_passes - budget) / per_step)


PAPER_COS = ("the review: ZO estimators approximate the gradient from function values, less well as the "
             "perturbed dimension grows (no number); estimator theory: E cos = √(2/(π·dim)) for one "
             "random direction, dim derived per estimator (card, 'Theory')")
CRIT = f"(mean cos over {TRIALS} draws at init) / √(2/(π·dim)) within 1 ± {BAND:g}"


def _in_band(v: float) -> bool:
    return abs(v - 1) <= BAND


def _ratio_claim(name: str, arm: str | None, study: str = COS, **kw) -> Claim:
    return Claim(name, PAPER_COS, CRIT, cos_ratio, _in_band, study=study, arms=arm, **kw)


CLAIMS = [
    _ratio_claim("Z1a cosine of SPSA (dim = P)", "spsa", kind="headline"),
    _ratio_claim("Z1b cosine of forward gradient (dim = P)", "forward_gradient", kind="headline"),
    _ratio_claim("Z1c cosine of OpenAI-ES, 25 antithetic pairs, centred ranks", "antithetic_es", kind="headline"),
    _ratio_claim("Z1d cosine of node perturbation, per-sample ΔL (equivalent dim)", "node_perturbation", kind="headline"),
    _ratio_claim("Z2 the derived dims at a second size (64-16-10, batch 8)", None, study=SMALL, kind="supporting",
                 scales=("smoke",)),
    Claim("Z3 node perturbation with one batch-loss change (dim = tr(JᵀJ)|δ|²/|Jδ|²)", PAPER_COS,
          "|mean cos − theory| <= 3 standard errors of the 300-draw mean", z_score, lambda v: abs(v) <= 3,
          kind="supporting", study=COS, arms="node_perturbation_batch"),
    Claim("Z4 backprop reaches 95 % in 20 epochs", "the review: BP is the efficient reference ZO methods approach "
          "(no number; issue 19's criterion)", f"final test accuracy >= {BP_ACC:g} % after 20 epochs",
          final_test_acc, lambda v: v >= BP_ACC, scales=("smoke",), kind="supporting", study=TRAIN, arms="backprop"),
    Claim("Z5 equal forward passes", "methods compared at equal forward passes (issue 19)",
          "forward passes beyond trainer.budget_forward_passes, in steps: 0 <= value < 1", budget_overshoot,
          lambda v: 0 <= v < 1, kind="check", study=TRAIN, arms=("spsa", "antithetic_es", "node_perturbation")),
]
