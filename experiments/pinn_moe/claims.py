"""Claims of PI-HC-MoE (Chalapathi, Du, Krishnapriyan, ICLR 2024, arXiv 2402.13412), from `trainer.py`'s logs.

The paper's diffusion-sorption result (its Table 1): test relL2 3.60 ± 2.93 % (PI-HC-MoE) vs 7.55 ± 8.10 %
(PI-HC) vs 85.93 ± 5.07 % (PI-SC). Here the statistic per run is the final held-out `test_rel_l2`, and the
comparison is between the medians over seeds of each variant (arm `sc`, `hc`, `moe` of study `ds`). The
0.8 margin is the issue's. The step-time split is reported (figures, card), never claimed: the paper's
speed-ups come from running experts in parallel on GPUs, which two CPU cores cannot show.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from runner.claims import Claim, cross_run_row

STUDY = "ds"
MOE_VS_HC = 0.8   # headline margin (issue 20): median relL2(MoE) <= 0.8 x median relL2(HC)
PAPER = {"moe": 3.60, "hc": 7.55, "sc": 85.93}  # test relL2 in %, Table 1 (diffusion-sorption)


def final(df: pd.DataFrame, column: str) -> float:
    return float(df[column].dropna().iloc[-1])


def lm_iters_max(df: pd.DataFrame, cfg: dict) -> float:
    return float(df.lm_iters.max())


def points_error(df: pd.DataFrame, cfg: dict) -> float:
    """|logged residual points - K x points| (K = 1 for HC)."""
    t = cfg["trainer"]
    k = 1 if t["variant"] == "hc" else int(t["experts"])
    per = min(int(t["points"]), (int(t["nt"]) - 1) * int(t["nx"]) // k)
    return float(abs(df.points.dropna() - k * per).max())


def _hard(cfg: dict) -> bool:
    return cfg["trainer"]["variant"] in ("hc", "moe")


CLAIMS = [
    Claim("C1 LM within its budget", "each expert runs <= 10 LM iterations (the brief's cap)",
          "max over steps of the mean LM iterations <= trainer.lm_iters", lm_iters_max, lambda v: v <= 10,
          _hard, kind="check", study=STUDY),
    Claim("C2 points sampled", "each expert samples `points` residual points of its slab per step",
          "|points - K x points| == 0", points_error, lambda v: v == 0, _hard, kind="check", study=STUDY),
]


def medians(runs: list, column: str) -> dict:
    """{variant: (median over seeds of the final value, [per-seed values])} over the study's completed runs."""
    vals: dict = {}
    for r in runs:
        if r.is_in(STUDY) and column in r.metrics and r.metrics[column].notna().any():
            vals.setdefault(r.cfg["trainer"]["variant"], []).append(final(r.metrics, column))
    return {v: (float(np.median(x)), x) for v, x in vals.items()}


def _note(med: dict, scale: float = 1.0) -> str:
    return "; ".join(f"{v}: median {m * scale:.4g} of {', '.join(f'{x * scale:.4g}' for x in xs)}"
                     for v, (m, xs) in sorted(med.items()))


def cross_run_claims(runs: list) -> list[dict]:
    err = medians(runs, "test_rel_l2")
    res = medians(runs, "test_residual")
    rows = []
    ratio = [err["moe"][0] / err["hc"][0]] if {"moe", "hc"} <= err.keys() else []
    rows.append(_row("H1 MoE <= 0.8 x HC (relL2)",
                     f"test relL2 {PAPER['moe']} % (MoE) vs {PAPER['hc']} % (HC): ratio "
                     f"{PAPER['moe'] / PAPER['hc']:.2f} (Table 1)",
                     f"median relL2(MoE) / median relL2(HC) <= {MOE_VS_HC:g}", ratio,
                     lambda v: v <= MOE_VS_HC, "relL2 (%) " + _note(err, 100)))
    ratio = [err["hc"][0] / err["sc"][0]] if {"hc", "sc"} <= err.keys() else []
    rows.append(_row("H2 HC < SC (relL2)",
                     f"test relL2 {PAPER['hc']} % (HC) vs {PAPER['sc']} % (SC): ratio "
                     f"{PAPER['hc'] / PAPER['sc']:.3f} (Table 1)",
                     "median relL2(HC) / median relL2(SC) < 1", ratio, lambda v: v < 1, "relL2 (%) " + _note(err, 100)))
    ratio = [res["moe"][0] / res["hc"][0]] if {"moe", "hc"} <= res.keys() else []
    rows.append(_row("S1 MoE <= HC (held-out residual)",
                     "no number in the paper; MoE enforces the PDE on more points (issue 20's criterion)",
                     "median residual(MoE) / median residual(HC) at unsampled grid points <= 1", ratio,
                     lambda v: v <= 1, "mean (T F(u))^2 " + _note(res), kind="supporting"))
    return rows


def _row(name, paper, criterion, values, ok, note, kind="headline") -> dict:
    row = cross_run_row(name, paper, criterion, values, ok, kind=kind)
    row["note"] = note or "needs completed runs of both variants"
    return row
