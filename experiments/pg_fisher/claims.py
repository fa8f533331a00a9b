"""Claims of N-PG-IGT and (N)-HARPG (Fatkhullin, Barakat, Kireeva, He, ICML 2023), from the logs.

The paper's claims are sample complexities (N-PG-IGT: Õ(eps^-2.5) trajectories to a global eps-optimum
for Fisher-non-degenerate policies, improving on vanilla PG's Õ(eps^-3); (N)-HARPG: Õ(eps^-2) with one
Hessian-vector product per iteration) and curves of return against trajectories where the new methods
do at least as well as vanilla PG. At smoke scale they read as the issue fixes them (CartPole,
criteria calibrated with the note's prototype before any claim seed ran), all "at equal trajectories":
every arm consumes 750 trajectories and a run's number is its mean return over the iterations whose
cumulative trajectories lie in (600, 750] (the last 30 iterations of 5-trajectory arms, the last 25
of (N)-HARPG's 6-trajectory iterations):

- H1 (headline): N-PG-IGT's 4-seed mean >= 160;
- H2 (headline): N-PG-IGT's 4-seed mean >= 1.1 x the best vanilla-PG grid point's (lr in {1e-3, 3e-3, 1e-2});
- S1 (supporting): N-HARPG's 4-seed mean >= the best vanilla-PG grid point's;
- S2, S3 (supporting): the same comparisons (H2, S1) with the paper's decaying step sizes;
- C1 (check, per run): the costs are the algorithm's: 5 trajectories per gradient estimate, plus one
  trajectory and one HVP per iteration after the first for (N)-HARPG, none for the others.

At paper scale (the official code's setup, the decaying schedules), per environment:
- P1 (headline): N-PG-IGT's and N-HARPG's mean return over the last 10 iterations (seeds pooled) are
  >= vanilla PG's.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from runner.claims import Claim, cross_run_row

STUDY = "cartpole"
WINDOW = (600, 750)                 # trajectories: the comparison window, equal for every arm
MIN_RETURN, MIN_RATIO = 160.0, 1.1
HARPG = ("harpg", "n_harpg")

PAPER_IGT = ("N-PG-IGT finds a global eps-optimal policy with Õ(eps^-2.5) trajectories, one per iteration, "
             "no importance sampling, no second-order information (vanilla PG: Õ(eps^-3); the abstract); "
             "the issue's calibrated prototype: 181 / 170 / 162 / 174 vs best vanilla PG 146 / 147 / 148 / 127")
PAPER_HARPG = ("(N)-HARPG: Õ(eps^-2) with one Hessian-vector product and at most 2 trajectories per iteration "
               "(abstract); its curves lie at or above vanilla PG's (the paper's experiments)")
PAPER_SCALE = ("the paper's return-vs-trajectories curves (garage, batch 5000 steps): N-PG-IGT and (N)-HARPG match "
               "or beat vanilla PG (numbers not transcribed here)")


def window_return(df: pd.DataFrame, cfg=None, window: tuple[int, int] = WINDOW) -> float:
    """Mean return over the iterations whose cumulative trajectories lie in (lo, hi]."""
    lo, hi = window
    d = df.dropna(subset=["trajectories"])
    return float(d["return"][(d.trajectories > lo) & (d.trajectories <= hi)].mean())


def cost_error(df: pd.DataFrame, cfg: dict) -> float:
    """|logged - expected| trajectories and HVPs at the last step (smoke: fixed episodes per estimate)."""
    tr, last = cfg["trainer"], df.dropna(subset=["trajectories"]).iloc[-1]
    t, second = int(last.step), tr["method"] in HARPG
    want_traj = tr["episodes"] * t + (tr["hessian_episodes"] * (t - 1) if second else 0)
    return float(abs(last.trajectories - want_traj) + abs(last.hvp_calls - (t - 1 if second else 0)))


CLAIMS = [
    Claim("C1 trajectories and HVPs per iteration", "N-PG-IGT: one batch per iteration, no HVP; (N)-HARPG: one "
          "more trajectory and one Hessian-vector product per iteration (Alg. 1, 2)",
          "|logged - expected| cumulative trajectories + HVP calls == 0", cost_error, lambda v: v == 0,
          scales=("smoke",), kind="check", study=STUDY),
]


def _method_means(runs: list, arm: str) -> dict:
    """{gamma0: [window return per seed]} of one arm's completed (or diverged: counted as they stood) runs."""
    out: dict = {}
    for r in runs:
        if r.is_in(STUDY, arm) and (r.completed or r.diverged) and "return" in r.metrics:
            out.setdefault(float(r.cfg["trainer"]["gamma0"]), []).append(window_return(r.metrics))
    return out


def _best_pg(runs: list) -> tuple[float, float, str] | None:
    grid = _method_means(runs, "pg")
    if not grid:
        return None
    means = {lr: float(np.mean(v)) for lr, v in grid.items()}
    lr = max(means, key=means.get)
    note = "vanilla PG 4-seed means: " + ", ".join(f"lr {k:g}: {m:.1f}" for k, m in sorted(means.items()))
    return lr, means[lr], note


def _one(runs: list, arm: str) -> list[float]:
    vals = _method_means(runs, arm)
    return next(iter(vals.values()), [])


def _smoke_claims(runs: list) -> list[dict]:
    best, rows = _best_pg(runs), []
    igt = _one(runs, "n_pg_igt")
    if igt:
        m = float(np.mean(igt))
        row = cross_run_row("H1 N-PG-IGT reaches 160", PAPER_IGT, f"N-PG-IGT (gamma = 0.05, eta = 0.2): mean return over "
                            f"trajectories {WINDOW[0]}-{WINDOW[1]}, 4-seed mean >= {MIN_RETURN:g}", [m],
                            lambda v: v >= MIN_RETURN, kind="headline")
        rows.append({**row, "note": "per seed: " + ", ".join(f"{v:.1f}" for v in igt)})
    for name, arm, ratio, kind, paper, label in (
            ("H2 N-PG-IGT beats vanilla PG by 10%", "n_pg_igt", MIN_RATIO, "headline", PAPER_IGT, "N-PG-IGT (constants)"),
            ("S1 N-HARPG >= vanilla PG", "n_harpg", 1.0, "supporting", PAPER_HARPG, "N-HARPG (constants)"),
            ("S2 N-PG-IGT, paper schedule, beats PG by 10%", "n_pg_igt_decay", MIN_RATIO, "supporting", PAPER_IGT,
             "N-PG-IGT (decaying"),
            ("S3 N-HARPG, paper schedule, >= vanilla PG", "n_harpg_decay", 1.0, "supporting", PAPER_HARPG,
             "N-HARPG (decaying")):
        grid = _method_means(runs, arm)
        if not grid or best is None:
            continue
        g0, vals = next(iter(grid.items()))
        label = label if label.endswith(")") else f"{label}, gamma_0 = {g0:g}, eta_0 = 1)"
        m = float(np.mean(vals))
        row = cross_run_row(name, paper, f"{label} 4-seed mean / best vanilla-PG grid point's >= {ratio:g} (trajectories "
                            f"{WINDOW[0]}-{WINDOW[1]})", [m / best[1]], lambda v, r=ratio: v >= r, kind=kind)
        rows.append({**row, "note": f"{label}: {m:.1f} (per seed " + ", ".join(f"{v:.1f}" for v in vals)
                     + f"); best vanilla PG lr {best[0]:g}: {best[1]:.1f}; {best[2]}"})
    return rows


def _paper_claims(runs: list) -> list[dict]:
    by_env: dict = {}
    for r in runs:
        if r.is_in(("classic", "mujoco")) and (r.completed or r.diverged) and "return" in r.metrics:
            d = r.metrics.dropna(subset=["return"])
            by_env.setdefault(r.arm, {}).setdefault(r.cfg["trainer"]["method"], []).append(float(d["return"].tail(10).mean()))
    rows = []
    for env, m in sorted(by_env.items()):
        if "pg" not in m:
            continue
        pg = float(np.mean(m["pg"]))
        vals = [float(np.mean(m[k])) - pg for k in ("n_pg_igt", "n_harpg") if k in m]
        if vals:
            row = cross_run_row(f"P1 {env}: N-PG-IGT, N-HARPG >= vanilla PG", PAPER_SCALE,
                                "mean return over the last 10 iterations (seeds pooled) - vanilla PG's >= 0", vals,
                                lambda v: v >= 0, kind="headline")
            rows.append({**row, "note": ", ".join(f"{k}: {np.mean(v):.1f}" for k, v in sorted(m.items()))})
    return rows


def cross_run_claims(runs: list) -> list[dict]:
    return _smoke_claims(runs) + _paper_claims(runs)
