"""Claims of the Sinkhorn-Newton-Sparse paper.

The paper's claim (abstract): in total iteration count SNS converges "orders of magnitude" faster than
Sinkhorn; its Table 1 (n = 500, eta = 1200, both run to machine accuracy) gives SNS / Sinkhorn
iterations 29 / 56,199 (random assignment), 53 / 2,041 (MNIST W2) and 777 / 5,748 (MNIST W1, lambda =
15/n, N1 = 700). Those three pairs were read from a secondary summary; the paper's own table could not
be opened here (only its abstract and the table's caption were read), see this folder's README.md.
"Orders of magnitude" is read as at least one: SNS / Sinkhorn iterations <= 0.1, on the same instance.
Smoke scale (n = 100 random costs) adds absolute thresholds that are ours, from a numpy prototype
(README.md), never from the runs the claims read. Iterations count every step, the N1 Sinkhorn
warm-start steps of SNS included, until ||P1 - r||_1 + ||P^T 1 - c||_1 <= trainer.tol (1e-8 smoke,
1e-11 paper); a Sinkhorn run that stops at its cap counts with the iterations it ran (a lower bound,
so the ratio can only be overstated). Claims select runs by the studies and arms of `studies.yaml`
(arms sinkhorn, and sns / sns_keep5 / sns_keep15 for SNS), narrowed by eta.
"""
from __future__ import annotations

import math

import pandas as pd

from runner.claims import Claim, cross_run_row

SMOKE_STUDY = "random_costs"              # n = 100 random costs, eta = 200 and 600 (smoke scale)
SNS_ARMS = ("sns", "sns_keep5", "sns_keep15")  # every SNS arm, whatever its lambda and N1
# Paper scale: Table 1's three cases, each with the paper's own SNS settings (arm) and its row of Table 1
# (SNS iterations, Sinkhorn iterations; from a secondary summary, see the module docstring).
TABLE1 = {"random_assignment": ("sns", 29, 56199), "mnist_w2": ("sns", 53, 2041), "mnist_w1": ("sns_keep15", 777, 5748)}


def method(cfg: dict) -> str:
    return cfg["algorithm"]["name"]


def eta(cfg: dict) -> float:
    return float(cfg["problem"]["eta"])


def final(df: pd.DataFrame, column: str) -> float:
    return float(df[column].dropna().iloc[-1])


def iters_to_tol(df: pd.DataFrame) -> float:
    """Iterations until the tolerance was reached; inf if the run ended without reaching it."""
    return float(df.step.iloc[-1]) if final(df, "converged") == 1 else math.inf


def iters_run(df: pd.DataFrame) -> float:
    """Iterations to the tolerance, or the iterations run if it was never reached (a lower bound)."""
    return float(df.step.iloc[-1])


def error_at(df: pd.DataFrame, step: int) -> float:
    """Marginal error after `step` iterations (NaN if the run did not get there)."""
    row = df[df.step == step]
    return float(row.marginal_err.iloc[0]) if len(row) else math.nan


def cost_rel_diff(df: pd.DataFrame) -> float:
    """|<C,P> - POT's cost| / POT's cost at the final iterate."""
    ref = final(df, "ref_pot_cost")
    return abs(final(df, "transport_cost") - ref) / ref


def entropic_gap(df: pd.DataFrame) -> float:
    """<C,P_eta> - exact OT cost (ot.emd)."""
    return (final(df, "transport_cost") - final(df, "ref_emd_cost"))


def _at_eta(value: float):
    return lambda cfg: eta(cfg) == value


def _with_reference(cfg: dict) -> bool:
    return bool(cfg["problem"].get("reference", True))


CAP = 20000

CLAIMS = [
    Claim("S1 SNS converges fast (eta=600)",
          "SNS converges in orders of magnitude fewer iterations than Sinkhorn (abstract; Table 1, n=500, eta=1200: "
          "29 vs 56,199); the 200 is our margin (numpy prototype at n=100: 20 + 14 iterations), not the paper's",
          "SNS iterations to 1e-8 <= 200 (our margin)", lambda df, c: iters_to_tol(df), lambda v: v <= 200, _at_eta(600.0),
          ("smoke",), kind="headline", study=SMOKE_STUDY, arms=("sns", "sns_keep5")),
    Claim("S2 Sinkhorn at 200 its (eta=600)", "Sinkhorn converges slowly at large eta (numpy prototype: 1.4e-3; threshold ours)",
          "Sinkhorn error after 200 iterations >= 1e-4", lambda df, c: error_at(df, 200), lambda v: v >= 1e-4,
          _at_eta(600.0), ("smoke",), kind="supporting", study=SMOKE_STUDY, arms="sinkhorn"),
    Claim("S3 Sinkhorn stalls (eta=600)", "Sinkhorn is far from converged after 20,000 iterations (numpy prototype: 1.0e-6; threshold ours)",
          f"Sinkhorn error after {CAP} iterations >= 1e-7", lambda df, c: error_at(df, CAP), lambda v: v >= 1e-7,
          _at_eta(600.0), ("smoke",), kind="supporting", study=SMOKE_STUDY, arms="sinkhorn"),
    Claim("S4 Sinkhorn converges (eta=200)", "at moderate eta Sinkhorn converges (numpy prototype: 1,044 iterations)",
          f"Sinkhorn iterations to 1e-8 <= {CAP}", lambda df, c: iters_to_tol(df), lambda v: v <= CAP,
          _at_eta(200.0), ("smoke",), kind="supporting", study=SMOKE_STUDY, arms="sinkhorn"),
    Claim("S5 SNS cost = POT's", "SNS solves the same entropic problem (transport cost as POT's)",
          "|<C,P> - POT cost| / POT cost <= 1e-6", lambda df, c: cost_rel_diff(df), lambda v: v <= 1e-6,
          _with_reference, kind="check", arms=SNS_ARMS),
    Claim("S6 entropic cost near exact OT", "entropic OT approximates OT: 0 <= <C,P_eta> - W <= 2 log(n)/eta",
          "(<C,P> - ot.emd cost) / (2 log n / eta) in [0, 1]",
          lambda df, c: entropic_gap(df) / (2 * math.log(c["problem"]["n"]) / eta(c)),
          lambda v: 0 <= v <= 1, lambda c: _with_reference(c) and bool(c["problem"].get("n")), kind="check",
          arms=SNS_ARMS),
]


def _key(cfg: dict) -> tuple:
    """Runs on the same problem instance: same seed and problem settings."""
    return (cfg.get("seed"), tuple(sorted((k, str(v)) for k, v in cfg["problem"].items())))


def _ratios(runs: list, study, sns_arms, sinkhorn_arm: str = "sinkhorn", applies=lambda cfg: True) -> list[float]:
    """SNS iterations to the tolerance / Sinkhorn iterations (to the tolerance or the cap), same instance."""
    done = [r for r in runs if r.status.get("status") == "completed" and r.is_in(study) and applies(r.cfg)]
    sinkhorn = {_key(r.cfg): r for r in done if r.arm == sinkhorn_arm}
    return [iters_to_tol(r.metrics) / iters_run(sinkhorn[_key(r.cfg)].metrics)
            for r in done if r.arm in sns_arms and _key(r.cfg) in sinkhorn]


def cross_run_claims(runs: list) -> list[dict]:
    """SNS against Sinkhorn on the same instance: at smoke scale eta = 200 (every SNS arm); at paper scale
    each case of Table 1 with the paper's SNS settings."""
    scales = {r.cfg.get("scale", "smoke") for r in runs}
    rows = []
    if "smoke" in scales:
        ratios = _ratios([r for r in runs if r.cfg.get("scale", "smoke") == "smoke"], SMOKE_STUDY, SNS_ARMS,
                         applies=_at_eta(200.0))
        rows.append(cross_run_row(
            "X1 SNS iters <= Sinkhorn's / 10",
            "orders of magnitude fewer iterations (abstract); Table 1 SNS/Sinkhorn: 29/56,199 = 5e-4 (random), "
            "53/2,041 = 0.026 (MNIST W2), 777/5,748 = 0.14 (MNIST W1); read as >= one order: <= 0.1",
            "eta=200: SNS iterations / Sinkhorn iterations to 1e-8 <= 0.1, same instance", ratios,
            lambda v: v <= 0.1, kind="headline"))
    if "paper" in scales:
        paper_runs = [r for r in runs if r.cfg.get("scale") == "paper"]
        for study, (arm, sns_its, sinkhorn_its) in TABLE1.items():
            ratio = sns_its / sinkhorn_its
            table = f"Table 1: SNS {sns_its:,} vs Sinkhorn {sinkhorn_its:,} iterations, ratio {ratio:.2g}"
            values = _ratios(paper_runs, study, (arm,))
            if study == "mnist_w1":  # the paper's own ratio is above 0.1: it claims fewer iterations only
                rows.append(cross_run_row(f"P-{study} SNS fewer iterations", table + " (less than one order)",
                                          "SNS iterations / Sinkhorn iterations to 1e-11 < 1, same instance",
                                          values, lambda v: v < 1, kind="supporting"))
            else:
                rows.append(cross_run_row(f"P-{study} SNS iters <= Sinkhorn's / 10",
                                          table + "; abstract: orders of magnitude fewer",
                                          "SNS iterations / Sinkhorn iterations to 1e-11 <= 0.1, same instance",
                                          values, lambda v: v <= 0.1, kind="headline"))
    return rows
