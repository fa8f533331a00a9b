"""Claims of JAWS (Nie & Suzuki, arXiv 2603.05538), from the final rollout probe and the trainer's cost columns.

Study `rollout`, arms `mse`, `uniform` (MSE + uniform Jacobian penalty), `jaws` (heteroscedastic NLL + sigma-
weighted penalty), `unroll_h8` (MSE through 8 unrolled steps), `jaws_h2` (JAWS through 2). Every criterion is
per seed (a claim passes when it holds on every seed); the thresholds are the issue's, fixed before any run.
The paper's abstracts give statements, not numbers, for each (its tables could not be read; the blog's
figures are not used).

- H1 (headline): test relative L2 at rollout step 200, jaws <= 0.5 x mse.
- H2 (headline): shock fidelity at step 100, max|D u_hat| / max|D u| of jaws >= 0.8 and closer to 1 than
  the uniform penalty's.
- H3 (headline): jaws_h2's relative L2 at step 200 within 10 % of unroll_h8's (ratio <= 1.1).
- C1, C2 (supporting, reported comparisons): jaws_h2's step time and activation memory <= 0.5 x unroll_h8's.
- S1 (supporting): ood relative L2 at step 200, jaws < mse (out-of-distribution generalisation).
- S2 (supporting): high-k energy ratio at step 100 of jaws closer to 1 than uniform's (|log ratio| smaller).
- S3 (supporting, per run): corr(sigma, |D u|) > 0 for the JAWS arms (uncertainty sits on the fronts).
"""
from __future__ import annotations

import math

import numpy as np

from runner.claims import Claim, cross_run_row

STUDY = "rollout"
H = 200          # the rollout step of the accuracy claims
S = 100          # the rollout step of the fidelity claims
RATIO_H1, FIDELITY_MIN, MATCH_H3, COST_MAX = 0.5, 0.8, 1.1, 0.5
P = "rollout_eval/"

PAPER_H1 = "JAWS 'improves long-term stability' over the MSE-trained operator on 1-D viscous Burgers (abstract; no number retrieved)"
PAPER_H2 = ("uniform Jacobian regularization 'uniformly damps high-frequency features' (over-smoothing); JAWS relaxes it "
            "near shocks 'to preserve gradients', improving 'shock fidelity' (abstract; no number retrieved)")
PAPER_H3 = "short-horizon JAWS training 'matches or exceeds the long-term accuracy of long-horizon baselines' (abstract)"
PAPER_C = "'memory-efficient' short-horizon training, 'reducing training computational costs' (abstract; no number retrieved)"
PAPER_S1 = "improved 'out-of-distribution generalization' (abstract)"
PAPER_S3 = "the heteroscedastic uncertainty follows local physical complexity: large near singular features (abstract)"


def last(df, col: str) -> float:
    """The last logged value of `col` (NaN when absent)."""
    if col not in df:
        return math.nan
    s = df[col].dropna()
    return float(s.iloc[-1]) if len(s) else math.nan


def median(df, col: str) -> float:
    return float(df[col].dropna().median()) if col in df else math.nan


def sigma_corr(df, cfg=None) -> float:
    return float(df["sigma_grad_corr"].dropna().tail(5).mean())


CLAIMS = [
    Claim("S3 sigma on the fronts", PAPER_S3, "mean corr(sigma, |D u_next|) over the last 5 logged steps > 0",
          sigma_corr, lambda v: v > 0, kind="supporting", study=STUDY, arms=("jaws", "jaws_h2")),
]


def _by_arm(runs: list) -> dict[str, dict]:
    """arm -> seed -> metrics table of the completed runs of the study."""
    out: dict[str, dict] = {}
    for r in runs:
        if r.is_in(STUDY) and r.completed and len(r.metrics):
            out.setdefault(r.arm, {})[r.seed] = r.metrics
    return out


def _paired(by: dict, a: str, b: str, fa, fb=None) -> tuple[list, list, list]:
    """(seeds, fa(a's run), fb(b's run)) over the seeds both arms ran."""
    fb = fb or fa
    seeds = sorted(set(by.get(a, {})) & set(by.get(b, {})), key=str)
    return seeds, [fa(by[a][s]) for s in seeds], [fb(by[b][s]) for s in seeds]


def _note(seeds, **cols) -> str:
    return "; ".join(f"{k}: " + ", ".join(f"{v:.3g}" for v in vals) for k, vals in cols.items()) + \
        f" (seeds {', '.join(map(str, seeds))})"


def cross_run_claims(runs: list) -> list[dict]:
    by, rows = _by_arm(runs), []
    rel = lambda s: lambda df: last(df, f"{P}{s}_rel_l2@{H}")  # noqa: E731
    grad = lambda df: last(df, f"{P}test_grad_ratio@{S}")  # noqa: E731
    spec = lambda df: last(df, f"{P}test_spectrum_ratio@{S}")  # noqa: E731

    seeds, j, m = _paired(by, "jaws", "mse", rel("test"))
    if seeds:
        ratio = [a / b for a, b in zip(j, m, strict=True)]
        rows.append({**cross_run_row("H1 JAWS halves long-rollout error", PAPER_H1,
                                     f"test relL2@{H}: jaws / mse <= {RATIO_H1:g} on every seed", ratio,
                                     lambda v: v <= RATIO_H1, kind="headline"),
                     "note": _note(seeds, jaws=j, mse=m, ratio=ratio)})
    seeds, j, u = _paired(by, "jaws", "uniform", grad)
    if seeds:
        closer = [int(a >= FIDELITY_MIN and abs(a - 1) < abs(b - 1)) for a, b in zip(j, u, strict=True)]
        rows.append({**cross_run_row("H2 JAWS keeps shocks sharp", PAPER_H2,
                                     f"max|D u_hat|/max|D u| at step {S}: jaws >= {FIDELITY_MIN:g} and closer to 1 "
                                     "than uniform's (1 = holds) on every seed", closer, lambda v: v == 1,
                                     kind="headline"), "note": _note(seeds, jaws=j, uniform=u)})
    seeds, j2, h8 = _paired(by, "jaws_h2", "unroll_h8", rel("test"))
    if seeds:
        ratio = [a / b for a, b in zip(j2, h8, strict=True)]
        rows.append({**cross_run_row("H3 JAWS+H2 matches H8", PAPER_H3,
                                     f"test relL2@{H}: jaws_h2 / unroll_h8 <= {MATCH_H3:g} on every seed", ratio,
                                     lambda v: v <= MATCH_H3, kind="headline"),
                     "note": _note(seeds, jaws_h2=j2, unroll_h8=h8, ratio=ratio)})
    for name, col, what in (("C1 JAWS+H2 step time", "step_ms", "median step time"),
                            ("C2 JAWS+H2 activation memory", "activation_mb", "activation memory per step")):
        seeds, a, b = _paired(by, "jaws_h2", "unroll_h8", lambda df, c=col: median(df, c))
        if seeds:
            ratio = [x / y for x, y in zip(a, b, strict=True)]
            rows.append({**cross_run_row(name, PAPER_C, f"{what}: jaws_h2 / unroll_h8 <= {COST_MAX:g} on every seed",
                                         ratio, lambda v: v <= COST_MAX, kind="supporting"),
                         "note": _note(seeds, jaws_h2=a, unroll_h8=b, ratio=ratio)})
    seeds, j, m = _paired(by, "jaws", "mse", rel("ood"))
    if seeds:
        ratio = [a / b for a, b in zip(j, m, strict=True)]
        rows.append({**cross_run_row("S1 JAWS generalises out of distribution", PAPER_S1,
                                     f"ood relL2@{H}: jaws / mse < 1 on every seed", ratio, lambda v: v < 1,
                                     kind="supporting"), "note": _note(seeds, jaws=j, mse=m, ratio=ratio)})
    seeds, j, u = _paired(by, "jaws", "uniform", spec)
    if seeds:
        closer = [int(abs(np.log(a)) < abs(np.log(b))) for a, b in zip(j, u, strict=True)]
        rows.append({**cross_run_row("S2 JAWS spectrum closer to truth", PAPER_H2,
                                     f"high-k energy ratio at step {S}: |log| of jaws < uniform's (1 = holds) on every seed",
                                     closer, lambda v: v == 1, kind="supporting"), "note": _note(seeds, jaws=j, uniform=u)})
    return rows
