"""Claims of the discretisation-drift work (Rosca et al., TMLR 2023; Rosca's thesis), from the logs.

Two kinds of runs share this folder (the studies of `studies.yaml`): `flows`, with
`trainer=flow_check` (GD on a quadratic or a toy, with the flows integrated alongside: `err_pf`,
`err_ngf`, `err_mf`, `h_lambda_max`), and `fixed_vs_dal`, with the default trainer (full-batch GD on
an MLP at fixed learning rates, arm `fixed_lr`, or with the drift-adjusted learning rate DAL, arms
`dal_p1` and `dal_p05`: the trainer's `loss` every step, the hooks' `test_eval/test_acc`, DAL's
`optimizer_stats/eff_lr`, and the sharpness hook's `sharpness/lambda_max` and `sharpness/gd_ratio`
= lr * lambda_max / 2, where DAL writes the step it took into its lr).
The thesis gives no numbers we could verify; the criteria are candidate criteria written before any
prototype had calibrated them (this folder's README.md). D1a, D1b and D3 are smoke-scale claims: the
paper scale runs no flows, and its (uncalibrated) fixed learning rates are all below D3's lr >= 1.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from runner.claims import Claim

PF_TOL, NGF_MIN = 1e-8, 0.10
EOS_RANGE, EOS_MIN_LR, LATE = (1.8, 2.4), 1.0, 0.3
INCREASE_RATIO, ACC_GAP, SIMILAR_LR = 1 / 3, 1.0, 1.5


FLOWS, LR = "flows", "fixed_vs_dal"  # the studies
DAL_P1 = "dal_p1"                     # DAL with p = 1 (arm of LR)


def _flows(cfg: dict) -> bool:
    """A flow-check run (its trainer has a landscape); for the figures, which also read ad hoc runs."""
    return "landscape" in (cfg.get("trainer") or {})


def _dal(cfg: dict) -> bool:
    """A DAL run (its optimizer has DAL's cap `max_lr`); for the figures."""
    return not _flows(cfg) and "max_lr" in (cfg.get("optimizer") or {})


def _quadratic(cfg: dict) -> bool:
    return cfg["trainer"].get("landscape") == "quadratic"


def max_pf_error(df: pd.DataFrame, cfg=None) -> float:
    return float(df.err_pf.max())


def final_ngf_error(df: pd.DataFrame, cfg=None) -> float:
    return float(df.err_ngf.dropna().iloc[-1])


def h_lambda(df: pd.DataFrame) -> pd.DataFrame:
    """(step, h): h * lambda_max with h the step taken. The flow trainer logs it as `h_lambda_max`;
    for networks it is 2 * the sharpness hook's `sharpness/gd_ratio`."""
    h = df.h_lambda_max if "h_lambda_max" in df else 2 * df["sharpness/gd_ratio"]
    return pd.DataFrame({"step": df.step, "h": h}).dropna()


def late_h_lambda(df: pd.DataFrame, cfg=None) -> float:
    """Mean h * lambda_max over the last `LATE` of the run."""
    d = h_lambda(df)
    return float(d.h[d.step >= (1 - LATE) * d.step.max()].mean())


def increase_fraction(df: pd.DataFrame) -> float:
    """Fraction of GD steps after which the (full-batch) training loss went up."""
    loss = df.loss.dropna().to_numpy()
    return float(np.mean(np.diff(loss) > 0))


def final_test_acc(df: pd.DataFrame) -> float:
    return float(df["test_eval/test_acc"].dropna().iloc[-1])


big_h = lambda cfg: _quadratic(cfg) and float(cfg["trainer"]["h"]) * max(cfg["trainer"]["eigenvalues"]) >= 1  # noqa: E731
eos_lr = lambda cfg: float(cfg["optimizer"]["lr"]) >= EOS_MIN_LR  # noqa: E731

CLAIMS = [
    Claim("D1a PF = GD on a quadratic", "the principal flow follows the GD iterates exactly on quadratics, also "
          "for h lambda > 1 (oscillation) and > 2 (divergence)", f"max_t |theta_PF - theta_GD| / |theta_GD| < {PF_TOL:g}",
          max_pf_error, lambda v: v < PF_TOL, _quadratic, scales=("smoke",), kind="headline", study=FLOWS,
          arms="quadratic"),
    Claim("D1b NGF misses GD", "the negative gradient flow does not capture GD at large h lambda",
          f"h lambda_max >= 1: final |theta_NGF - theta_GD| / |theta_GD| > {NGF_MIN:g}", final_ngf_error,
          lambda v: v > NGF_MIN, big_h, scales=("smoke",), kind="supporting", study=FLOWS, arms="quadratic"),
    Claim("D3 edge of stability", "with a fixed learning rate GD trains at the edge of stability, h lambda_max ~ 2",
          f"fixed lr >= {EOS_MIN_LR:g}: mean h lambda_max over the last {LATE:.0%} of steps in {list(EOS_RANGE)}",
          late_h_lambda, lambda v: EOS_RANGE[0] <= v <= EOS_RANGE[1], eos_lr, scales=("smoke",), kind="supporting",
          study=LR, arms="fixed_lr"),
]


def _lr_runs(runs: list) -> tuple[list, list]:
    ok = [r for r in runs if r.status.get("status") == "completed" and "loss" in r.metrics]
    fixed = [r for r in ok if r.is_in(LR, "fixed_lr") and "test_eval/test_acc" in r.metrics]
    dal1 = [r for r in ok if r.is_in(LR, DAL_P1)]
    return fixed, dal1


def _row(name, paper, criterion, values, ok, note="", kind="headline") -> dict:
    vals = [v for v in values if v is not None and math.isfinite(v)]
    n_ok = sum(bool(ok(v)) for v in values)
    return {"name": name, "kind": kind, "paper": paper, "criterion": criterion, "n": len(values),
            "n_passed": n_ok, "passed": bool(values) and n_ok == len(values),
            "measured": float(np.mean(vals)) if vals else None, "min": min(vals) if vals else None,
            "max": max(vals) if vals else None, "note": note}


def cross_run_claims(runs: list) -> list[dict]:
    """DAL with p = 1 against the fixed learning rates (same seed, data and model)."""
    fixed, dal1 = _lr_runs(runs)
    rows = []
    ratios, notes, gaps = [], [], []
    for d in dal1:
        same = [f for f in fixed if f.cfg.get("seed") == d.cfg.get("seed")]
        if not same:
            continue
        mean_lr = float(d.metrics["optimizer_stats/eff_lr"].dropna().mean())
        twin = min(same, key=lambda f: abs(math.log(float(f.cfg["optimizer"]["lr"]) / mean_lr)))
        lr = float(twin.cfg["optimizer"]["lr"])
        if max(lr / mean_lr, mean_lr / lr) <= SIMILAR_LR:
            base = increase_fraction(twin.metrics)
            ratios.append(increase_fraction(d.metrics) / base if base > 0 else math.inf)
            notes.append(f"seed {d.cfg.get('seed')}: DAL-1 mean lr {mean_lr:.3g}, {increase_fraction(d.metrics):.3f} "
                         f"of steps raise the loss vs {base:.3f} at fixed lr {lr:g}")
        best = max(same, key=lambda f: final_test_acc(f.metrics))
        gaps.append(final_test_acc(best.metrics) - final_test_acc(d.metrics))
    rows.append(_row("D2a DAL-1 fewer loss increases",
                     "DAL removes the drift-induced instabilities of a fixed learning rate",
                     f"DAL-1 loss-increasing steps / those of the fixed lr nearest its mean lr (within "
                     f"{SIMILAR_LR}x) <= {INCREASE_RATIO:.2f}", ratios, lambda v: v <= INCREASE_RATIO,
                     "; ".join(notes) or "needs DAL p=1 runs and fixed-lr runs of the same seed"))
    rows.append(_row("D2b DAL-1 accuracy", "DAL needs no learning-rate tuning: it matches the best fixed lr",
                     f"best fixed-lr final test acc - DAL-1's <= {ACC_GAP} pp", gaps, lambda v: v <= ACC_GAP,
                     "" if gaps else "needs DAL p=1 runs and fixed-lr runs of the same seed"))
    return rows
