"""Claims of the Langevin + iterate-averaging paper (Wei, Damian & Lee, arXiv 2603.06028), measured on the
overlaps with theta* that the iterate_average hook logs.

The paper's headline (abstract): Langevin dynamics recovers theta* with n >~ d^(k*/2) samples when the
*averaged* iterate is used, where the last iterate (like online SGD, n >~ d^(k*-1)) needs more; its
experiments (third-party summary, README.md) run n = 10 d^ceil(k*/2) and show the average converging to
theta* while theta_t stays near the equator (Fig. 1, odd k*), and, for even k*, the first-order average
failing where the top eigenvector of the averaged theta theta^T succeeds (Fig. 2).

Here (cross-run, studies k3_*): at each of two dimensions d, n sweeps c d^ceil(k*/2) for
c = 0.625 ... 10. A run "recovers" theta* when its overlap is >= RECOVERY (0.75; kept from the earlier
card, not a number from the paper, which reports none we could read). The sample threshold of an
estimator at d is the smallest n of the grid at which its seed-mean overlap reaches RECOVERY; the last
iterate's overlap is its mean |theta_t . theta*| over the second half of the run (the time-typical
value; a single final sample fluctuates). Per run (studies k3_* at the paper's n, and k4): Figs. 1-2.
"""
from __future__ import annotations

import math
from collections import defaultdict

import numpy as np
import pandas as pd

from runner.claims import Claim, cross_run_row

RECOVERY = 0.75  # overlap that counts as "recovered" (the card's bar since before this rebuild; see README.md)
PAPER_C = 10  # the paper's experiments: n = 10 d^ceil(k*/2)
# the iterate_average hook's overlaps with theta*, as logged (`iterate_average/<name>`)
LAST, AVG, SECOND = "iterate_average/overlap_last", "iterate_average/overlap_avg", "iterate_average/overlap_second"


def final(df: pd.DataFrame, column: str) -> float:
    return float(df[column].dropna().iloc[-1])


def rate(k: int) -> int:
    """The exponent of the averaged estimator's sample complexity: n ~ d^ceil(k*/2) (Algorithm 1)."""
    return math.ceil(k / 2)


def sample_ratio(cfg: dict) -> float:
    """c = n / d^ceil(k*/2)."""
    d = cfg["dataset"]
    return d["n_train"] / d["dim"] ** rate(d["k"])


def at_paper_n(cfg: dict) -> bool:
    """The run uses the paper's n = 10 d^ceil(k*/2) (to within the rounding of the grid)."""
    return abs(sample_ratio(cfg) - PAPER_C) < 0.05 * PAPER_C


def averaged_overlap(df: pd.DataFrame, cfg: dict) -> float:
    """The paper's estimator: first-order average for odd k*, second-order (top eigenvector) for even."""
    return final(df, AVG if cfg["dataset"]["k"] % 2 else SECOND)


def last_iterate_mean(df: pd.DataFrame, cfg=None) -> float:
    """Mean of |theta_t . theta*| over the second half of the run."""
    d = df[["step", LAST]].dropna()
    return float(d[LAST][d.step >= d.step.max() / 2].mean())


def first_order_overlap(df: pd.DataFrame, cfg=None) -> float:
    return final(df, AVG)


def last_in_equator_units(df: pd.DataFrame, cfg: dict) -> float:
    """The last iterate's 2nd-half mean overlap times sqrt(d): a uniformly random direction has
    |theta . theta*| ~ 1/sqrt(d) (mean sqrt(2/(pi d))), so "near the equator" is O(1) in these units."""
    return last_iterate_mean(df) * math.sqrt(cfg["dataset"]["dim"])


# ---- the sample-size sweep (cross-run) ----------------------------------------------------------

def sweep_table(runs: list) -> dict[int, pd.DataFrame]:
    """{d: DataFrame indexed by n with c, the seed-mean averaged and last-iterate overlaps, seed count}
    from the completed k* = 3 sweep runs (studies k3_*)."""
    cells = defaultdict(list)
    for r in runs:
        if not (r.completed and str(r.study or "").startswith("k3") and LAST in r.metrics):
            continue
        d = r.cfg["dataset"]
        cells[(d["dim"], d["n_train"])].append((averaged_overlap(r.metrics, r.cfg), last_iterate_mean(r.metrics),
                                                sample_ratio(r.cfg)))
    out = defaultdict(list)
    for (dim, n), vals in cells.items():
        a, last, c = np.array(vals).T
        out[dim].append({"n": n, "c": float(c[0]), "avg": a.mean(), "last": last.mean(), "seeds": len(a)})
    return {dim: pd.DataFrame(rows).set_index("n").sort_index() for dim, rows in sorted(out.items())}


def threshold(t: pd.DataFrame, column: str) -> float:
    """Smallest c on the grid whose seed-mean overlap reaches RECOVERY (inf: none does)."""
    hit = t[t[column] >= RECOVERY]
    return float(hit.c.iloc[0]) if len(hit) else math.inf


def _describe(tables: dict[int, pd.DataFrame]) -> str:
    parts = []
    for dim, t in tables.items():
        avg = ", ".join(f"{c:.3g}: {a:.2f}" for c, a in zip(t.c, t.avg))
        last = ", ".join(f"{x:.2f}" for x in t.last)
        parts.append(f"d={dim}, seed-mean overlap by c = n/d^2: averaged [{avg}], last iterate [{last}]")
    return "; ".join(parts)


def cross_run_claims(runs: list) -> list[dict]:
    tables = sweep_table(runs)
    if not tables:
        return []
    dims = sorted(tables)
    c_avg = [threshold(tables[d], "avg") for d in dims]
    c_last = [threshold(tables[d], "last") for d in dims]
    c_max = [float(tables[d].c.max()) for d in dims]
    rows = [
        cross_run_row("S1 k*=3 averaged: n* <= 10 d^2",
                      "Langevin with the averaged iterate succeeds with n >~ d^ceil(k*/2) (d^2 at k* = 3; abstract: "
                      "d^(k*/2)); the paper's Fig. 1 shows it at n = 10 d^ceil(k*/2), d = 100",
                      f"at each d: smallest n on the grid with seed-mean overlap_avg >= {RECOVERY}, in units of "
                      f"d^2, <= {PAPER_C} (one value per d = {', '.join(map(str, dims))})",
                      [c if math.isfinite(c) else math.nan for c in c_avg], lambda v: v <= PAPER_C, kind="headline"),
        cross_run_row("S2 k*=3 last iterate: n* beyond the grid",
                      "the last iterate needs more samples (Langevin lower bound n >~ d^(k*-1), Ben Arous et al. "
                      "2020); in Fig. 1 theta_t stays near the equator while the average converges",
                      f"at each d: the last iterate's seed-mean overlap stays < {RECOVERY} at every n of the grid "
                      f"(up to 10 d^2), so n*_last > 10 d^2 >= n*_avg (value: the highest such overlap, one per d = "
                      f"{', '.join(map(str, dims))})",
                      [float(tables[d]["last"].max()) for d in dims], lambda v: v < RECOVERY, kind="headline"),
    ]
    if len(dims) >= 2:
        lo, hi = c_avg[0], c_avg[-1]
        ratio = hi / lo if math.isfinite(lo) and math.isfinite(hi) else math.nan
        rows.append(cross_run_row(
            f"S3 k*=3 averaged n* grows like d^2 (d={dims[0]}->{dims[-1]})",
            "the averaged iterate's sample complexity scales as d^ceil(k*/2) = d^2 (a d^(k*-1) rate is also "
            "d^2 at k* = 3; the grid step is 2x, the d ratio here below 2, so this resolves little)",
            f"n*/d^2 at d={dims[-1]} / n*/d^2 at d={dims[0]} <= 1 (no growth faster than d^2 on the grid)",
            [ratio], lambda v: v <= 1, kind="supporting"))
    found = (f"n*/d^2 averaged [{', '.join(f'{c:.3g}' for c in c_avg)}], last iterate "
             f"[{', '.join(f'{c:.3g}' for c in c_last)}] (inf: not reached by c = {max(c_max):g})")
    rows[0]["note"] = _describe(tables) + "; " + found
    for r in rows[1:]:
        r["note"] = found
    return rows


PAPER1 = ("Fig. 1 (odd k*, n = 10 d^ceil(k*/2)): the time average of the Langevin iterates converges to theta* "
          "while theta_t stays near the equator")
PAPER2 = ("Fig. 2 (k* = 4, n = 10 d^2): the first-order average fails (+-theta* are symmetric); the top "
          "eigenvector of the averaged theta theta^T succeeds")
K3 = ("k3_d12", "k3_d18", "k3_d50", "k3_d100")

CLAIMS = [
    Claim("L1 k*=3 averaged at the paper's n", PAPER1,
          f"|theta_bar . theta*| / |theta_bar| >= {RECOVERY} at n = 10 d^2 (every seed)", averaged_overlap,
          lambda v: v >= RECOVERY, applies=at_paper_n, kind="headline", study=K3, arms="langevin"),
    Claim("L2 k*=3 last iterate near the equator", PAPER1,
          "sqrt(d) x mean |theta_t . theta*| over the 2nd half <= 2 at n = 10 d^2 (within twice the equator "
          "scale 1/sqrt(d))", last_in_equator_units, lambda v: v <= 2, applies=at_paper_n,
          kind="supporting", study=K3, arms="langevin"),
    Claim("L3 k*=4 second order recovers", PAPER2, f"|v1(M_bar) . theta*| >= {RECOVERY}", averaged_overlap,
          lambda v: v >= RECOVERY, kind="headline", study="k4", arms="langevin"),
    Claim("L4 k*=4 last iterate near the equator", PAPER2,
          "sqrt(d) x mean |theta_t . theta*| over the 2nd half <= 2 (within twice the equator scale 1/sqrt(d))",
          last_in_equator_units, lambda v: v <= 2, kind="supporting",
          study="k4", arms="langevin"),
    Claim("L5 k*=4 first-order average fails", PAPER2,
          f"|theta_bar . theta*| / |theta_bar| < {RECOVERY} (does not recover)", first_order_overlap,
          lambda v: v < RECOVERY, kind="headline", study="k4", arms="langevin"),
]
