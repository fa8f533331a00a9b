"""Claims of NPSolver (Zeng et al., arXiv 2605.25786), from the logs of `trainer.py`.

Study `losses`, arms `supervised` (direct-solve labels), `residual` (physics-informed RMS(b - A u_hat)),
`npsolver_k5` / `npsolver_k1` (K PCG steps from the prediction, stop-gradient), `no_stopgrad_k5` (the
same target, differentiated through); study `k20` (K = 20, supporting). The measure is the held-out
relative L2 error after the last step (`test_rel_l2`, mean over the 64 test instances), compared at equal
steps; cross-run criteria compare means over seeds. The thresholds are the issue's (0.2x, 2x), set before
any run; they were checked on seeds 100-102 (README) and the claims use seeds 0-2.

- H1 (headline): relL2(K=5) <= 0.2 x relL2(residual loss).
- H2 (headline): relL2(K=5) <= 2 x relL2(supervised) (the paper reports NPSolver *below* supervised; ours is
  the looser bound of the issue).
- H3 (headline): relL2(K=1) > relL2(K=5): a few PCG steps give a better target than one.
- H4 (headline): without the stop-gradient training is unstable (a diverged seed) or worse than with it.
- S1 (supporting): Jacobi-PCG from the K=5 prediction needs fewer iterations to 1e-6 than from zero.
- S2 (supporting): K=20 is at least as accurate as K=5 (one seed at smoke scale).
- C1 (check, per run): PCG started from the prediction reaches 1e-6 on every held-out instance.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from runner.claims import Claim, cross_run_row

STUDY = "losses"
RES_RATIO, SUP_RATIO = 0.2, 2.0

PAPER_H1 = ("NPSolver outperforms physics-informed baselines, whose raw residual loss trains unstably on "
            "ill-conditioned systems (abstract, Sec. 4: the PCG target is a well-conditioned error proxy); the "
            "paper's tables were not retrieved")
PAPER_H2 = ("label-free NPSolver 8.17 % relL2 vs 10.17 % for a supervised model on 7k labels, random-BC 2-D "
            "case (third-party summary of the paper, unverified)")
PAPER_H3 = "a small number of PCG steps gives a 'more stable and well-scaled training signal' (abstract); K = 40 in the official configs"
PAPER_H4 = "'a stop-gradient design is essential for optimization stability' (abstract, Sec. 4)"
PAPER_S1 = ("implied by the method (the prediction is PCG's starting point); the paper's own efficiency number is a "
            "different measure: 15x speed-up at matched accuracy over classical solvers (third-party summary, unverified)")


def final_rel_l2(df: pd.DataFrame, cfg=None) -> float:
    return float(df.dropna(subset=["test_rel_l2"]).test_rel_l2.iloc[-1])


def cg_ratio(df: pd.DataFrame, cfg=None) -> float:
    """CG iterations to 1e-6 from the prediction / from zero (mean over test instances of each)."""
    d = df.dropna(subset=["cg_iters_pred"])
    return float(d.cg_iters_pred.iloc[-1] / d.cg_iters_zero.iloc[-1])


def cg_converged(df: pd.DataFrame, cfg=None) -> float:
    return float(df.dropna(subset=["cg_converged_pred"]).cg_converged_pred.iloc[-1])


CLAIMS = [
    Claim("S1 PCG warm-started from the prediction", PAPER_S1,
          "mean Jacobi-PCG iterations to ||r|| <= 1e-6 ||b|| from u_hat / from 0 < 1", cg_ratio, lambda v: v < 1.0,
          kind="supporting", study=STUDY, arms="npsolver_k5"),
    Claim("C1 PCG from the prediction converges", "(a property of PCG on an SPD system)",
          "share of held-out instances where PCG from u_hat reached 1e-6 == 1", cg_converged, lambda v: v >= 1.0,
          kind="check", study=STUDY),
]


def _values(runs: list, study: str = STUDY) -> dict[str, dict]:
    """{arm: {seed: final relL2}} of completed runs; diverged runs as +inf (H4 counts them as unstable)."""
    out: dict[str, dict] = {}
    for r in runs:
        if not r.is_in(study):
            continue
        if r.diverged:
            out.setdefault(r.arm, {})[r.seed] = float("inf")
        elif r.completed and len(r.metrics) and "test_rel_l2" in r.metrics:
            try:
                out.setdefault(r.arm, {})[r.seed] = final_rel_l2(r.metrics)
            except (IndexError, KeyError):
                continue
    return out


def _mean(vals: dict) -> float:
    return float(np.mean(list(vals.values())))


def _note(vals: dict, arms: tuple) -> str:
    return "; ".join(f"{a}: " + ", ".join(f"seed {s} {v:.4g}" for s, v in sorted(vals[a].items(), key=lambda t: str(t[0])))
                     + f" (mean {_mean(vals[a]):.4g})" for a in arms if a in vals)


def _ratio(vals, num, den, name, paper, criterion, check, kind="headline") -> list[dict]:
    if num not in vals or den not in vals:
        return []
    ratio = _mean(vals[num]) / _mean(vals[den])
    return [{**cross_run_row(name, paper, criterion, [ratio], check, kind=kind), "note": _note(vals, (num, den))}]


def _stop_gradient(v: dict) -> list[dict]:
    """H4: unstable (a seed diverged) or worse (ratio of means over the completed seeds > 1)."""
    arm, ref = "no_stopgrad_k5", "npsolver_k5"
    if arm not in v or ref not in v:
        return []
    done = {s: x for s, x in v[arm].items() if np.isfinite(x)}
    diverged = len(v[arm]) - len(done)
    ratio = _mean(done) / _mean(v[ref]) if done else float("nan")
    row = cross_run_row("H4 the stop-gradient is needed", PAPER_H4,
                        "a seed diverges without stop-gradient, or mean relL2(no stop-grad) / mean relL2(K=5) > 1 "
                        "(means over completed seeds)", [ratio], lambda r: r > 1.0, kind="headline")
    if diverged:
        row |= {"passed": True, "n_passed": row["n"]}
    return [{**row, "note": f"{diverged} of {len(v[arm])} seeds diverged without stop-gradient; " + _note(v, (arm, ref))}]


def cross_run_claims(runs: list) -> list[dict]:
    v = _values(runs)
    rows = _ratio(v, "npsolver_k5", "residual", "H1 NPSolver beats the residual loss", PAPER_H1,
                  f"mean relL2(NPSolver K=5) / mean relL2(residual loss) <= {RES_RATIO:g}, at equal steps",
                  lambda r: r <= RES_RATIO)
    rows += _ratio(v, "npsolver_k5", "supervised", "H2 NPSolver close to supervised", PAPER_H2,
                   f"mean relL2(NPSolver K=5) / mean relL2(supervised) <= {SUP_RATIO:g} (the paper: < 1)",
                   lambda r: r <= SUP_RATIO)
    rows += _ratio(v, "npsolver_k1", "npsolver_k5", "H3 K=5 beats K=1", PAPER_H3,
                   "mean relL2(K=1) / mean relL2(K=5) > 1", lambda r: r > 1.0)
    rows += _stop_gradient(v)
    v20 = _values(runs, "k20")
    if "npsolver_k20" in v20 and "npsolver_k5" in v:
        seeds = [s for s in v20["npsolver_k20"] if s in v["npsolver_k5"]]
        ratios = [v20["npsolver_k20"][s] / v["npsolver_k5"][s] for s in seeds]
        if ratios:
            rows.append({**cross_run_row("S2 K=20 at least as good as K=5", PAPER_H3,
                                         "relL2(K=20) / relL2(K=5) <= 1 on each seed run with K=20", ratios,
                                         lambda r: r <= 1.0, kind="supporting"),
                         "note": _note({"npsolver_k20": v20["npsolver_k20"], "npsolver_k5": v["npsolver_k5"]},
                                       ("npsolver_k20", "npsolver_k5"))})
    return rows
