"""Claims of the saddle-to-saddle paper, measured on the logged loss and complexity counters.

The paper states theory, not numbers (this folder's README.md); the criteria follow the
linear-network theory: from a small initialisation epsilon, gradient descent learns one more unit of
complexity (rank for linear and conv nets, kinks for ReLU nets) at each loss drop, in the order of
the teacher's singular values, and the time to learn mode i is ~ ln(1/epsilon)/s_i (so moving epsilon
from 1e-3 to 1e-6 doubles it).

Plateau detector (fixed here, used by every claim): on the logged loss, an interval between two
logged steps is flat when its |d log L / d step| is below `FLAT` times the run's largest rate and the
loss is above `FLOOR` times the first logged loss (the converged tail is not a plateau); a plateau
is a run of at least `MIN_INTERVALS` flat intervals.

Claims select runs by the studies and arms of `studies.yaml` (linear, conv, relu; small_init,
large_init) and, for the staircase claims, by the initialisation scale epsilon (a config value).
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from runner.claims import Claim

FLAT, FLOOR, MIN_INTERVALS = 0.1, 1e-3, 3
SMALL_INIT, LARGE_INIT = 1e-4, 1.0


def complexity(name: str) -> str:
    """The logged column of the `complexity` hook's metric `name` (rank, kinks, mode1, sv1, ...)."""
    return f"complexity/{name}"


def complexity_column(df: pd.DataFrame) -> str:
    """The counter: `complexity/kinks` for ReLU nets, `complexity/rank` for linear (fully connected or conv) nets."""
    return complexity("kinks") if complexity("kinks") in df else complexity("rank")


def _logged(df: pd.DataFrame) -> pd.DataFrame:
    """Rows that carry both a finite loss and the complexity counter."""
    col = complexity_column(df)
    return df[np.isfinite(df["loss"]) & df[col].notna()].reset_index(drop=True)


def plateaus(df: pd.DataFrame) -> list[dict]:
    """[{start, end, loss, complexity}] for each plateau of the logged loss, in time order."""
    d = _logged(df)
    steps, loss = d.step.to_numpy(float), d.loss.to_numpy(float)
    if len(d) < 2:
        return []
    rate = np.abs(np.diff(np.log(loss))) / np.diff(steps)
    above = (loss[:-1] > FLOOR * loss[0]) & (loss[1:] > FLOOR * loss[0])
    flat = above & (rate < FLAT * rate[above].max()) if above.any() else above
    out, i, col = [], 0, complexity_column(df)
    while i < len(flat):
        j = i
        while j < len(flat) and flat[j]:
            j += 1
        if j - i >= MIN_INTERVALS:
            seg = d.iloc[i:j + 1]
            out.append({"start": int(seg.step.iloc[0]), "end": int(seg.step.iloc[-1]),
                        "loss": float(seg.loss.median()), "complexity": float(seg[col].median())})
        i = j + 1
    return out


def n_plateaus(df, cfg=None) -> float:
    return float(len(plateaus(df)))


def converged(df: pd.DataFrame) -> bool:
    d = _logged(df)
    return bool(d.loss.iloc[-1] < FLOOR * d.loss.iloc[0])


def drop_increments(df, cfg=None) -> float:
    """Number of loss drops (plateau to next plateau, and the last plateau to convergence) across
    which the complexity did not rise by exactly one."""
    levels = [p["complexity"] for p in plateaus(df)]
    if converged(df):
        levels.append(float(_logged(df)[complexity_column(df)].iloc[-1]))
    if len(levels) < 2:
        raise ValueError("fewer than two plateaus: no loss drop to examine")
    return float(sum(b - a != 1 for a, b in zip(levels[:-1], levels[1:])))


def bad_steps(df, cfg=None) -> float:
    """Logged intervals in which the complexity fell or rose by more than one."""
    c = _logged(df)[complexity_column(df)].to_numpy(float)
    delta = np.diff(c)
    return float(((delta < 0) | (delta > 1)).sum())


def mode_times(df: pd.DataFrame, threshold: float = 0.5) -> list[float]:
    """First logged step at which teacher mode i is learned to `threshold` (NaN if never)."""
    prefix = complexity("mode")
    cols = sorted((c for c in df.columns if c.startswith(prefix)), key=lambda c: int(c[len(prefix):]))
    return [float(df.step[df[c] >= threshold].iloc[0]) if (df[c] >= threshold).any() else np.nan for c in cols]


def order_inversions(df, cfg=None) -> float:
    """Pairs of teacher modes learned out of singular-value order (a never-learned mode counts)."""
    t = mode_times(df)
    if not t:
        raise ValueError("no mode columns logged (needs a teacher with singular values)")
    t = [np.inf if np.isnan(v) else v for v in t]
    return float(sum(t[i] >= t[j] for i in range(len(t)) for j in range(i + 1, len(t))))


def rank_times(df: pd.DataFrame) -> list[float]:
    """First logged step at which the complexity reaches k, for k = 1 .. its final value."""
    d, col = _logged(df), complexity_column(df)
    return [float(d.step[d[col] >= k].iloc[0]) for k in range(1, int(d[col].max()) + 1)]


def _eps(cfg) -> float:
    return float(cfg["model"]["init_scale"])


small = lambda cfg: _eps(cfg) <= SMALL_INIT  # noqa: E731
large = lambda cfg: _eps(cfg) >= LARGE_INIT  # noqa: E731

NO_NUMBER = "the paper gives no number (theory with illustrative figures); the threshold is ours"
PAPER = ("abstract: GD from small init learns solutions of increasing complexity, rank (linear nets), kinks "
         "(ReLU nets), kernels (conv nets)")
STAIRCASE = ("linear", "conv", "relu")  # the studies (all arms small_init at epsilon <= 1e-4 here)
LINEAR_MAPS = ("linear", "conv")        # the studies whose teacher has singular values (modes)

CLAIMS = [
    Claim("S1 plateaus (small init)", PAPER + "; the loss is a staircase of plateaus, one per unit learned (our "
          "teachers: 4 modes, 4 kernels, 3 kinks); " + NO_NUMBER,
          f">= 3 plateaus (flat: |dlogL/dt| < {FLAT} x max, >= {MIN_INTERVALS} log intervals, loss > {FLOOR} L0)",
          n_plateaus, lambda v: v >= 3, small, kind="headline", study=STAIRCASE, arms="small_init"),
    Claim("S2 one unit per drop", "abstract and Theorem 1: each saddle adds one hidden unit, so at each loss drop "
          "the rank (or kink or kernel count) rises by exactly one; " + NO_NUMBER,
          "drops whose complexity increment != 1: == 0", drop_increments, lambda v: v == 0, small,
          kind="headline", study=STAIRCASE, arms="small_init"),
    Claim("S3 never falls, unit steps", "complexity grows monotonically, one unit at a time",
          "logged intervals where rank/kinks fall or jump by > 1: == 0", bad_steps, lambda v: v == 0, small,
          kind="supporting", study=STAIRCASE, arms="small_init"),
    Claim("S4 singular-value order", "linear nets: the data's singular values separate the timescales, so modes "
          "are learned in decreasing order of singular value (time ~ ln(1/eps)/s_i); " + NO_NUMBER,
          "pairs of modes learned (u_i^T W v_i >= s_i/2) out of order: == 0", order_inversions, lambda v: v == 0,
          small, kind="headline", study=LINEAR_MAPS, arms="small_init"),
    Claim("S5 large init: no staircase", "at epsilon = 1 the saddle-to-saddle plateaus disappear",
          "<= 1 plateau at init_scale >= 1", n_plateaus, lambda v: v <= 1, large,
          kind="supporting", study="linear", arms="large_init"),
]

EPS_PAIR, RATIO_RANGE = (1e-3, 1e-6), (1.6, 2.4)


def epsilon_ratios(runs: list) -> list[float]:
    """t_k(eps=1e-6) / t_k(eps=1e-3) for every rank k and every (study, seed) with both runs: the
    small_init arms of the linear-map studies (same model and data within a study)."""
    by_key: dict = {}
    for r in runs:
        if r.status.get("status") == "completed" and r.is_in(LINEAR_MAPS, "small_init"):
            by_key.setdefault((r.study, r.cfg.get("seed")), {})[_eps(r.cfg)] = r.metrics
    ratios = []
    for pair in by_key.values():
        if all(e in pair for e in EPS_PAIR):
            t_hi, t_lo = rank_times(pair[EPS_PAIR[0]]), rank_times(pair[EPS_PAIR[1]])
            ratios += [b / a for a, b in zip(t_hi, t_lo) if a > 0]
    return ratios


def cross_run_claims(runs: list) -> list[dict]:
    ratios = epsilon_ratios(runs)
    lo, hi = RATIO_RANGE
    row = {"name": "S6 ln(1/eps) timescale", "criterion": f"t_k(eps=1e-6)/t_k(eps=1e-3) in [{lo}, {hi}] for every k",
           "paper": "time to learn mode i ~ ln(1/eps)/s_i: eps 1e-3 -> 1e-6 doubles it (theory 2x)",
           "n": len(ratios), "n_passed": sum(lo <= v <= hi for v in ratios), "kind": "supporting"}
    row.update({"measured": float(np.mean(ratios)) if ratios else None,
                "min": float(min(ratios)) if ratios else None, "max": float(max(ratios)) if ratios else None,
                "passed": bool(ratios) and row["n_passed"] == len(ratios)})
    if not ratios:
        row["note"] = "needs small_init runs at init_scale 1e-3 and 1e-6 of the same study and seed"
    return [row]
