"""Claims of the curl-descent paper, measured on the logged test MSE (mean squared error; the
official code's error is half of it).

The paper reports phase diagrams, not numbers; thresholds come from the smoke-scale calibration in
this folder's README.md (a numpy prototype of the official update rule): a contracting
100 -> 10 linear network converges to machine precision with at most one rule-flipped input neuron
and stalls at 2e-2 .. 9e-2 with two or more; an expanding 20 -> 199 network converges with half its
inputs flipped; with one flipped hidden neuron a tanh 100 -> 10 network learns faster than GD.
Claims select runs by the studies and arms of `studies.yaml`, narrowed by config values (the
architecture and the number of flipped neurons). Both scales declare the studies and arms every
claim selects; at paper scale the flip grids are the official argument files' (0 to 100 % of the
input neurons in 5 % steps, every count for 20 inputs) and 10 seeds.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from runner.claims import Claim

CONVERGED, STALLED, TAIL = 1e-10, 1e-3, 0.2
SPEEDUP_STEP, SPEEDUP_RATIO, SPEEDUP_SEEDS = 1000, 0.5, 2
SPEEDUP_STUDY = "tanh_speedup"  # arms gd (flipped [0, 0]) and curl (flipped [0, 1]), at both scales
TEST = "test_eval/test_loss"    # the test MSE, as the test_eval hook logs it


def flipped_counts(cfg: dict) -> tuple[int, int]:
    """(flipped input neurons, flipped hidden neurons), from counts or fractions in the config."""
    o, d_in, hidden = cfg["optimizer"], cfg["dataset"]["d_in"], cfg["model"]["hidden"]
    counts = list(o.get("flipped") or [])
    if not counts and o.get("flipped_fraction"):
        counts = [round(f * n) for f, n in zip(o["flipped_fraction"], (d_in, hidden))]
    counts += [0] * (2 - len(counts))
    return int(counts[0]), int(counts[1])


def final_test(df: pd.DataFrame, cfg=None) -> float:
    return float(df[TEST].dropna().iloc[-1])


def tail_min_test(df: pd.DataFrame, cfg=None) -> float:
    """Smallest test MSE over the last `TAIL` of the run: a stalled run never gets below it."""
    t = df[["step", TEST]].dropna()
    return float(t[TEST][t.step >= (1 - TAIL) * t.step.max()].min())


def test_at(df: pd.DataFrame, step: int) -> float:
    t = df.set_index("step")[TEST].dropna()
    return float(t.loc[:step].iloc[-1])


def _net(cfg, d_in, hidden, activation="linear") -> bool:
    m = cfg["model"]
    return cfg["dataset"]["d_in"] == d_in and m["hidden"] == hidden and m["activation"] == activation


contracting = lambda cfg: _net(cfg, 100, 10) and flipped_counts(cfg)[1] == 0  # noqa: E731
few = lambda cfg: contracting(cfg) and flipped_counts(cfg)[0] <= 1  # noqa: E731
many = lambda cfg: contracting(cfg) and flipped_counts(cfg)[0] >= 5  # noqa: E731
expanding_half = lambda cfg: _net(cfg, 20, 199) and flipped_counts(cfg) == (10, 0)  # noqa: E731

CLAIMS = [
    Claim("C1 contracting, <= 1 flip", "small curl: the solution manifold stays stable, learning converges like GD",
          f"100->10 linear, <= 1 flipped input: final test MSE < {CONVERGED:g}", final_test,
          lambda v: v < CONVERGED, few, kind="headline", study="contracting", arms="few_flips"),
    Claim("C2 contracting, >= 5 flips", "above a critical curl strength (low for contracting nets) learning fails",
          f"100->10 linear, >= 5 flipped inputs: min test MSE over last {TAIL:.0%} > {STALLED:g}", tail_min_test,
          lambda v: v > STALLED, many, kind="headline", study="contracting", arms="many_flips"),
    Claim("C3 expanding, 50% flipped", "expansion raises the critical curl strength: expanding nets still converge",
          f"20->199 linear, 10/20 flipped inputs: final test MSE < {CONVERGED:g}", final_test,
          lambda v: v < CONVERGED, expanding_half, kind="headline", study="expansion",
          arms="in20_hid199"),
]


def speedup_pairs(runs: list) -> list[tuple[int, float, float]]:
    """(seed, curl test MSE, GD test MSE) at SPEEDUP_STEP for tanh 100->10 runs with one flipped
    hidden neuron and their GD twins (same seed and data)."""
    by_seed: dict = {}
    for r in runs:
        c = r.cfg
        if not (r.is_in(SPEEDUP_STUDY, ("gd", "curl")) and _net(c, 100, 10, "tanh")):
            continue
        kind = {(0, 0): "gd", (0, 1): "curl"}.get(flipped_counts(c))
        if kind == r.arm and r.metrics.step.max() >= SPEEDUP_STEP:
            by_seed.setdefault(c.get("seed"), {})[kind] = test_at(r.metrics, SPEEDUP_STEP)
    return [(s, v["curl"], v["gd"]) for s, v in sorted(by_seed.items()) if {"curl", "gd"} <= set(v)]


def cross_run_claims(runs: list) -> list[dict]:
    pairs = speedup_pairs(runs)
    ratios = [c / g for _, c, g in pairs]
    n_ok = sum(r <= SPEEDUP_RATIO for r in ratios)
    row = {"name": "C4 tanh speed-up", "kind": "headline", "paper": "curl terms can speed learning vs GD, escaping saddles "
           "(Fig. 5: contracting 100->10 tanh, one flipped hidden neuron)",
           "criterion": f"curl/GD test MSE at step {SPEEDUP_STEP} <= {SPEEDUP_RATIO} in >= {SPEEDUP_SEEDS} of "
                        f"{max(len(ratios), 3)} seeds",
           "n": len(ratios), "n_passed": n_ok, "passed": n_ok >= SPEEDUP_SEEDS,
           "measured": float(np.median(ratios)) if ratios else None,
           "min": float(min(ratios)) if ratios else None, "max": float(max(ratios)) if ratios else None}
    if not ratios:
        row["note"] = f"needs study {SPEEDUP_STUDY}'s arms gd and curl (tanh 100->10) for the same seeds"
    return [row]
