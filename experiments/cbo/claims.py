"""Claims of "Gradient is All You Need?" on the 2-D canyon (the authors' Fig. 1-2 scripts).

The paper states its point qualitatively, with scatter plots of 50 runs per method and no number
(CBO's consensus point finds the global minimizer where gradient descent stops in a local one;
annealed Langevin is in between). C1 and C2 use margins of ours, set on a numpy prototype (a separate
implementation, see this folder's README.md), never on the runs the claims read; X1 and X2 are strict
orderings of the methods (no margin). A run of optrun holds 50 independent runs of
one method; `success_rate` is the percentage of them whose final point lies within 0.5 of x* = 0.
Claims speak about the `canyon` study of `studies.yaml` (the 10-d Rastrigin extra has none); its
arms are the methods.
"""
from __future__ import annotations

from runner.claims import Claim, cross_run_row

CANYON = "canyon"  # the paper's 2-D GrandCanyon3noisy study (smoke and paper scale)


def method(cfg: dict) -> str:
    return cfg["algorithm"]["name"]


def success(df) -> float:
    return float(df.success_rate.dropna().iloc[-1])


CLAIMS = [
    Claim("C1 CBO finds the global minimum", "CBO's consensus point reaches the global minimizer x* (Fig. 1b, "
          "scatter of 50 runs; no percentage printed); the 90 is our margin (numpy prototype: 100%)",
          "% of runs with |v_alpha - x*| < 0.5 at the end >= 90 (our margin)", lambda df, c: success(df), lambda v: v >= 90,
          kind="headline", study=CANYON, arms="cbo"),
    Claim("C2 GD gets stuck", "gradient descent stops in a local minimum of the ripples (Fig. 2b, scatter of "
          "50 runs; no percentage printed); the 10 is our margin (numpy prototype: 0%)",
          "% of runs with |x_K - x*| < 0.5 <= 10 (our margin)", lambda df, c: success(df), lambda v: v <= 10,
          kind="headline", study=CANYON, arms="gd"),
]


def _pairs(runs: list, a: str, b: str) -> list[tuple]:
    done = [r for r in runs if r.status.get("status") == "completed" and r.is_in(CANYON)]
    by_seed = {r.cfg.get("seed"): r for r in done if r.arm == b}
    return [(r, by_seed[r.cfg.get("seed")]) for r in done if r.arm == a and r.cfg.get("seed") in by_seed]


def cross_run_claims(runs: list) -> list[dict]:
    """Method against method on the same seed (each side: 50 runs)."""
    cbo, gd, langevin = (_by_seed(runs, arm) for arm in ("cbo", "gd", "langevin"))
    between = [_between(success(gd[s].metrics), success(langevin[s].metrics), success(cbo[s].metrics))
               for s in sorted(set(cbo) & set(gd) & set(langevin))]
    hopping = [success(ch.metrics) - success(g.metrics) for ch, g in _pairs(runs, "consensus_hopping", "gd")]
    return [
        cross_run_row("X1 Langevin between GD and CBO",
                      "annealed Langevin escapes some of the barriers that stop GD but is less reliable than "
                      "CBO (Fig. 2c between Figs. 2b and 1b; scatter plots, no number printed)",
                      "same seed: min(Langevin - GD, CBO - Langevin) success > 0 points", between,
                      lambda v: v > 0, kind="supporting"),
        cross_run_row("X2 CH escapes, GD stuck",
                      "consensus hopping, a stochastic relaxation of the proximal point method, overcomes barriers "
                      "that stop GD (Fig. 2a vs 2b; scatter plots, no number printed)",
                      "CH success - GD success > 0 points (strict ordering, no margin)", hopping,
                      lambda v: v > 0, kind="headline"),
    ]


def _by_seed(runs: list, arm: str) -> dict:
    return {r.cfg.get("seed"): r for r in runs
            if r.status.get("status") == "completed" and r.is_in(CANYON) and r.arm == arm}


def _between(low: float, mid: float, high: float) -> float:
    """How far `mid` lies strictly inside (low, high), in points: > 0 only when low < mid < high."""
    return min(mid - low, high - mid)
