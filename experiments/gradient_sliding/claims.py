"""Claims of the restart-free gradient-sliding paper (Wu, Xu, Zhang, arXiv 2602.04161).

The paper's headline (abstract): RF-SGS reaches an eps-solution with O(log 1/eps) evaluations of grad f
and O(1/eps) stochastic subgradients of h, without restarts, matching the restart-based multi-phase
methods; RF-ASGS does the same for grad f in the bilinear saddle-point case. The issue turns this into
three smoke criteria for RF-SGS (uncalibrated): to a relative gap of 1e-3 it uses <= 1/10 of the
proximal subgradient method's grad f calls; its count is within 2x of restart-based GS; from 1e-2 to
1e-4 the count grows like log(1/eps). RF-SGS could not be built (its schedules (beta_k, gamma_k, T_k)
were not readable, README.md), so those three headline rows are listed with no runs: not reproduced.

What runs instead is the published method the paper says it matches, restart-based gradient sliding
(M-GS, Lan 2016), against the subgradient method, with the same criteria (supporting): R1 the 1/10
ratio at 1e-3, R2 logarithmic growth read as constant increments per decade, (N(1e-4) - N(1e-3)) /
(N(1e-3) - N(1e-2)) <= 2 (a log count gives 1, 1/sqrt(eps) gives 3.2, 1/eps gives 10; the 2 is ours,
fixed before any run), R3 the subgradient method's growth is not logarithmic (ratio >= sqrt(10)), R4 the
fitted slope of N against log10(1/eps) is at most M-GS's own bound, log2(10) N0 per decade (N0 grad f
per phase, one halving of the gap per phase). Relative gap = (Psi(x) - Psi*) / (Psi(x0) - Psi*) of each
method's output point; N(eps) = grad f calls at the first iteration whose gap is <= eps.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from runner.claims import Claim, cross_run_row

STUDY = "tv_regression"
EPSILONS = (1e-2, 1e-3, 1e-4)


def method(cfg: dict) -> str:
    return cfg["algorithm"]["name"]


def calls_to(df: pd.DataFrame, eps: float, column: str = "grad_f_calls") -> float:
    """Cumulative oracle calls at the first iteration with rel_gap <= eps; inf if never reached."""
    hit = df[df.rel_gap <= eps]
    return float(hit[column].iloc[0]) if len(hit) else math.inf


def increment_ratio(df: pd.DataFrame) -> float:
    """(N(1e-4) - N(1e-3)) / (N(1e-3) - N(1e-2)): 1 for a log(1/eps) count, sqrt(10) for 1/sqrt(eps), 10 for 1/eps."""
    n2, n3, n4 = (calls_to(df, e) for e in EPSILONS)
    return (n4 - n3) / max(n3 - n2, 1.0)


def slope_per_decade(df: pd.DataFrame) -> float:
    """Least-squares slope of N(eps) against log10(1/eps) over eps = 1e-2, 1e-3, 1e-4."""
    counts = [calls_to(df, e) for e in EPSILONS]
    if not all(map(math.isfinite, counts)):
        return math.inf
    return float(np.polyfit([2.0, 3.0, 4.0], counts, 1)[0])


def dual_gap(df: pd.DataFrame) -> float:
    last = df.dropna(subset=["ref_dual_gap"]).iloc[-1]
    return float(last.ref_dual_gap / max(1.0, abs(last.ref_psi_star)))


CLAIMS = [
    Claim("C1 reference certified", "the reference optimum Psi* is exact up to the duality gap of our dual solve",
          "duality gap / max(1, |Psi*|) <= 1e-9", lambda df, c: dual_gap(df), lambda v: v <= 1e-9, kind="check"),
    Claim("R2 M-GS grad f ~ log(1/eps)",
          "restart-based sliding needs O(log 1/eps) grad f evaluations (Lan 2016; the paper matches it)",
          "(N(1e-4) - N(1e-3)) / (N(1e-3) - N(1e-2)) <= 2 (ours; log: 1, 1/sqrt(eps): 3.2)",
          lambda df, c: increment_ratio(df), lambda v: v <= 2.0, study=STUDY, arms="restart_gs"),
    Claim("R3 subgradient grad f not log", "the subgradient method needs O(1/eps) evaluations of grad f",
          "(N(1e-4) - N(1e-3)) / (N(1e-3) - N(1e-2)) >= sqrt(10)", lambda df, c: increment_ratio(df),
          lambda v: v >= math.sqrt(10), study=STUDY, arms="subgradient"),
    Claim("R4 M-GS slope <= its bound", "M-GS: N0 grad f per phase, each phase halves the gap: log2(10) N0 per decade",
          "slope of N(eps) vs log10(1/eps) / (log2(10) N0) <= 1",
          lambda df, c: slope_per_decade(df) / (math.log2(10) * float(df.N0.iloc[-1])), lambda v: v <= 1.0,
          study=STUDY, arms="restart_gs"),
]

NOT_RUN = "RF-SGS not run: its schedules (beta_k, gamma_k, T_k) could not be read from the paper"


def _pairs(runs: list) -> list[tuple]:
    """(subgradient run, restart_gs run) on the same instance (seed and problem)."""
    done = [r for r in runs if r.status.get("status") == "completed" and r.is_in(STUDY)]
    key = lambda r: (r.cfg.get("seed"), r.cfg.get("scale"), tuple(sorted(map(str, r.cfg["problem"].items()))))  # noqa: E731
    sub = {key(r): r for r in done if r.arm == "subgradient"}
    return [(sub[key(r)], r) for r in done if r.arm == "restart_gs" and key(r) in sub]


def cross_run_claims(runs: list) -> list[dict]:
    pairs = _pairs(runs)
    ratios = [calls_to(gs.metrics, 1e-3) / calls_to(sub.metrics, 1e-3) for sub, gs in pairs]
    return [
        cross_run_row("H1 RF-SGS grad f <= subgradient/10",
                      "O(log 1/eps) grad f evaluations vs the subgradient method's O(1/eps) (abstract; issue: <= 1/10 "
                      "at a relative gap of 1e-3)", f"{NOT_RUN}; RF-SGS / subgradient grad f calls to 1e-3 <= 0.1",
                      [], lambda v: v <= 0.1, kind="headline"),
        cross_run_row("H2 RF-SGS within 2x restart GS",
                      "matches the restart-based multi-phase methods' complexity (abstract; issue: within 2x)",
                      f"{NOT_RUN}; RF-SGS / M-GS grad f calls to 1e-3 <= 2", [], lambda v: v <= 2, kind="headline"),
        cross_run_row("H3 RF-SGS grad f ~ log(1/eps)", "O(log 1/eps) grad f evaluations without restarts (abstract)",
                      f"{NOT_RUN}; increments per decade 1e-2..1e-4 ratio <= 2", [], lambda v: v <= 2,
                      kind="headline"),
        cross_run_row("R1 M-GS grad f <= subgradient/10",
                      "the issue's 1/10 at a relative gap of 1e-3, applied to the restart-based method RF-SGS matches",
                      "M-GS / subgradient grad f calls to a relative gap of 1e-3 <= 0.1, same instance", ratios,
                      lambda v: v <= 0.1),
    ]
