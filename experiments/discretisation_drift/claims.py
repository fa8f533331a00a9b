"""Claims of the discretisation-drift work (Rosca et al., TMLR 2023; Rosca's thesis), from the logs.

Three kinds of runs share this folder (the studies of `studies.yaml`):
- `flows`, with `trainer=flow_check`: GD on a quadratic or a toy, with the flows integrated alongside
  (`err_pf`, `err_ngf`, `err_mf`, `h_lambda_max`);
- `eos` (smoke only): full-batch GD on an MLP at fixed learning rates, MSE on one-hot targets, with
  the sharpness hook's `sharpness/lambda_max` and `sharpness/gd_ratio` = lr * lambda_max / 2;
- `dal_p`: full-batch DAL (arm `dal`, optimizer.p = 0.25, 0.5, 1) with cross-entropy, logging every
  step the trainer's `loss`, DAL's step `optimizer_stats/eff_lr` (eta) and
  `optimizer_stats/hg_ratio` (q = |Hg| / |g|, so eta = min(2 q^-p, 5)), and `test_eval/test_acc`.
D1a/D1b are checks (exact by construction on a quadratic: GD is the time-h map of the PF). D2a/D2b
are the paper's DAL trade-off as strict orderings over p, per seed; the paper's DAL figure could not
be read here, so there is no margin (this folder's README.md). D2c checks the regime the orderings
rely on (q > 1, where a larger p means a smaller step). D3 is a smoke-scale edge-of-stability check.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from runner.claims import Claim

PF_TOL, NGF_MIN = 1e-8, 0.10
EOS_RANGE, EOS_MIN_LR, LATE = (1.8, 2.4), 1.0, 0.3
Q_SHARE = 0.5  # D2c: q > 1 on more than half of a DAL run's steps


FLOWS, EOS, DAL_P = "flows", "eos", "dal_p"  # the studies
DAL = "dal"                                   # the arm of DAL_P (optimizer.p = 0.25, 0.5, 1)


def _flows(cfg: dict) -> bool:
    """A flow-check run (its trainer has a landscape); for the figures, which also read ad hoc runs."""
    return "landscape" in (cfg.get("trainer") or {})


def _dal(cfg: dict) -> bool:
    """A DAL run (its optimizer has DAL's cap `max_lr`); for the figures."""
    return not _flows(cfg) and "max_lr" in (cfg.get("optimizer") or {})


def _quadratic(cfg: dict) -> bool:
    return cfg["trainer"].get("landscape") == "quadratic"


def _p(cfg: dict) -> float:
    return float(cfg["optimizer"]["p"])


def max_pf_error(df: pd.DataFrame, cfg=None) -> float:
    return float(df.err_pf.max())


def max_ngf_error(df: pd.DataFrame, cfg=None) -> float:
    """max_t |theta_NGF - theta_GD| / |theta_GD|: on a long run the unstable direction dies out and
    both end along the flattest direction, so the final error alone can be small."""
    return float(df.err_ngf.dropna().max())


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
    """Share of steps after which the full-batch training loss went up: the trainer logs at step t
    the loss before update t, so update t raised the loss when loss[t+1] > loss[t]."""
    loss = df.loss.dropna().to_numpy()
    return float(np.mean(np.diff(loss) > 0))


def q_above_one(df: pd.DataFrame, cfg=None) -> float:
    """Share of DAL steps with q = |Hg| / |g| > 1 (there eta = 2 q^-p falls as p grows)."""
    q = df["optimizer_stats/hg_ratio"].dropna()
    return float((q > 1).mean())


def at_cap(df: pd.DataFrame, cap: float = 5.0) -> float:
    """Share of DAL steps whose step size is the cap `max_lr`."""
    eta = df["optimizer_stats/eff_lr"].dropna()
    return float((eta >= cap * (1 - 1e-6)).mean())


def final_test_acc(df: pd.DataFrame) -> float:
    return float(df["test_eval/test_acc"].dropna().iloc[-1])


big_h = lambda cfg: _quadratic(cfg) and float(cfg["trainer"]["h"]) * max(cfg["trainer"]["eigenvalues"]) >= 1  # noqa: E731
eos_lr = lambda cfg: float(cfg["optimizer"]["lr"]) >= EOS_MIN_LR  # noqa: E731

CLAIMS = [
    Claim("D1a PF = GD on a quadratic", "the principal flow follows the GD iterates exactly on quadratics, also "
          "for h lambda > 1 (oscillation) and > 2 (divergence) (TMLR 2023; the official PF notebooks)",
          f"max_t |theta_PF - theta_GD| / |theta_GD| < {PF_TOL:g}", max_pf_error, lambda v: v < PF_TOL, _quadratic,
          kind="check", study=FLOWS),
    Claim("D1b NGF misses GD", "the negative gradient flow does not capture GD at large h lambda",
          f"h lambda_max >= 1: max_t |theta_NGF - theta_GD| / |theta_GD| > {NGF_MIN:g}", max_ngf_error,
          lambda v: v > NGF_MIN, big_h, kind="check", study=FLOWS),
    Claim("D2c DAL regime q > 1", "DAL-p takes smaller steps for larger p where q = |Hg|/|g| > 1 (eta = 2 q^-p)",
          f"share of DAL steps with q > 1 > {Q_SHARE:g}", q_above_one, lambda v: v > Q_SHARE,
          kind="supporting", study=DAL_P, arms=DAL),
    Claim("D3 edge of stability", "with a fixed learning rate GD trains at the edge of stability, h lambda_max ~ 2",
          f"fixed lr >= {EOS_MIN_LR:g}: mean h lambda_max over the last {LATE:.0%} of steps in {list(EOS_RANGE)}",
          late_h_lambda, lambda v: EOS_RANGE[0] <= v <= EOS_RANGE[1], eos_lr, scales=("smoke",), kind="supporting",
          study=EOS, arms="fixed_lr"),
]

PAPER_TRADEOFF = ("DAL-p trades training stability against test performance: a larger p trains more stably, a "
                  "smaller p reaches a better test accuracy (TMLR 2023 abstract; its DAL figure could not be read here)")


def _dal_by_seed(runs: list) -> dict:
    """{seed: [(p, run), ...] sorted by p} of the completed DAL-p runs."""
    ok = [r for r in runs if r.status.get("status") == "completed" and r.is_in(DAL_P, DAL) and "loss" in r.metrics]
    out: dict = {}
    for r in ok:
        out.setdefault(r.cfg.get("seed"), []).append((_p(r.cfg), r))
    return {s: sorted(v, key=lambda t: t[0]) for s, v in sorted(out.items(), key=lambda t: str(t[0]))}


def _ordering(by_seed: dict, stat) -> tuple[list, list]:
    """Per seed with two or more p: min over consecutive p of stat(smaller p) - stat(larger p); > 0
    means that `stat` strictly falls as p grows."""
    values, notes = [], []
    for seed, runs in by_seed.items():
        if len(runs) < 2:
            continue
        stats = [stat(r.metrics) for _, r in runs]
        values.append(min(a - b for a, b in zip(stats, stats[1:])))
        notes.append(f"seed {seed}: " + ", ".join(f"p={p:g} {v:.3g}" for (p, _), v in zip(runs, stats)))
    return values, notes


def cross_run_claims(runs: list) -> list[dict]:
    """DAL-p's trade-off across p = 0.25, 0.5, 1 (same seed, data and model)."""
    by_seed = _dal_by_seed(runs)
    need = "needs DAL-p runs with two or more p per seed"
    inc, inc_notes = _ordering(by_seed, increase_fraction)
    acc, acc_notes = _ordering(by_seed, final_test_acc)
    return [
        _row("D2a loss increases fall as p grows", PAPER_TRADEOFF,
             "per seed, share of loss-increasing steps strictly falls as p grows: min over consecutive p of "
             "share(smaller p) - share(larger p) > 0", inc, lambda v: v > 0, "; ".join(inc_notes) or need),
        _row("D2b test accuracy rises as p falls", PAPER_TRADEOFF,
             "per seed, final test accuracy strictly rises as p falls: min over consecutive p of "
             "acc(smaller p) - acc(larger p) > 0 pp", acc, lambda v: v > 0, "; ".join(acc_notes) or need),
    ]


def _row(name, paper, criterion, values, ok, note="", kind="headline") -> dict:
    vals = [v for v in values if v is not None and math.isfinite(v)]
    n_ok = sum(bool(ok(v)) for v in values)
    return {"name": name, "kind": kind, "paper": paper, "criterion": criterion, "n": len(values),
            "n_passed": n_ok, "passed": bool(values) and n_ok == len(values),
            "measured": float(np.mean(vals)) if vals else None, "min": min(vals) if vals else None,
            "max": max(vals) if vals else None, "note": note}
