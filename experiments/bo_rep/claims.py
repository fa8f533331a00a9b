"""Claims of BO-REP (Hao, Gong, Liu, ICLR 2024), from the logs.

The paper's claim is that under unbounded smoothness of the upper level (the (L0, L1) condition:
the Hessian grows with the gradient) BO-REP's normalized momentum with initialization refinement and
periodic lower-level updates converges (Õ(eps^-4) oracle calls, its Theorem 1) where methods that
assume a Lipschitz hypergradient need a step size matched to a smoothness constant that does not
exist. On the quartic toy that reads, per the issue (criteria fixed before any claim seed ran):

- H1 (headline, cross-run): BO-REP diverges in 0 of the 12 runs (eta in {0.03, 0.1, 0.3, 1} x 3 seeds);
- H2 (headline, per run): every BO-REP run ends with ||grad Phi(x_T)|| <= 0.2;
- H3 (headline, cross-run): SOBA (plain hypergradient step) diverges in every run with eta >= 0.1;
- S1 (supporting, cross-run): MA-SOBA (momentum, no normalization) diverges at eta = 1;
- C1 (check, per run): the oracle counts are the algorithm's: one grad_f, HVP and cross product per
  iteration; BO-REP's lower-level calls are Epoch-SGD's plus N per period, SOBA's one per iteration.

At paper scale (hyper-cleaning, the MNIST stand-in) the paper's statement is that BO-REP does better
than the baselines (its hyper-cleaning experiment; numbers not transcribed, see the card):
- P1 (headline, cross-run): per seed, BO-REP's final test accuracy >= SOBA's and MA-SOBA's;
- P2 (supporting, per run): the learned weights sigma(lambda) separate clean from flipped samples,
  AUC >= 0.8 (the issue's criterion).
"""
from __future__ import annotations

import pandas as pd

from runner.claims import Claim, cross_run_row

TOY, CLEANING = "toy", "cleaning"      # the studies
GRAD_TOL, AUC_MIN = 0.2, 0.8
SOBA_ETA_MIN, MA_SOBA_ETA = 0.1, 1.0

PAPER_THEOREM = ("BO-REP finds an eps-stationary point with Õ(eps^-4) stochastic gradient / HVP oracle calls "
                 "when the UL is (L0, L1)-smooth (unbounded smoothness) and the LL strongly convex (Thm. 1, abstract); "
                 "the toy's numbers are the issue's (a calibrated prototype: 0 of 12 diverged, ||grad Phi|| <= 0.18)")
PAPER_BASELINES = ("methods analysed under a Lipschitz hypergradient (SOBA, MA-SOBA) need a step matched to a "
                   "smoothness constant that unbounded smoothness does not have (the paper's introduction); the issue's prototype: "
                   "SOBA diverged in every run with eta >= 0.1, MA-SOBA at eta = 1")


def method(cfg: dict) -> str:
    return cfg["trainer"]["method"]


def eta(cfg: dict) -> float:
    return float(cfg["trainer"]["lr"])


def final_grad_phi(df: pd.DataFrame, cfg=None) -> float:
    return float(df.grad_phi_norm.dropna().iloc[-1])


def oracle_count_error(df: pd.DataFrame, cfg: dict) -> float:
    """Largest |logged - expected| over the cumulative counts at the last step."""
    tr, last = cfg["trainer"], df.iloc[-1]
    t = int(last.step)
    if method(cfg) == "bo_rep":
        refine = sum(tr["refine_steps"] * 2 ** k for k in range(tr["refine_epochs"]))
        lower = refine + tr["lower_steps"] * len([s for s in range(1, t) if s % tr["period"] == 0])
    else:
        lower = t
    want = {"grad_f_calls": t, "hvp_calls": t, "jvp_calls": t, "grad_g_calls": lower, "hessian_calls": 0}
    return float(max(abs(float(last[k]) - v) for k, v in want.items()))


def final_test_acc(df: pd.DataFrame, cfg=None) -> float:
    return float(df.test_acc.dropna().iloc[-1])


def final_auc(df: pd.DataFrame, cfg=None) -> float:
    return float(df.weight_auc.dropna().iloc[-1])


CLAIMS = [
    Claim("H2 BO-REP ends near stationarity", PAPER_THEOREM,
          f"BO-REP, every eta: final ||grad Phi(x_T)|| <= {GRAD_TOL:g}", final_grad_phi, lambda v: v <= GRAD_TOL,
          scales=("smoke",), kind="headline", study=TOY, arms="bo_rep"),
    Claim("C1 oracle counts", "per iteration one grad_f, one HVP (z) and one cross product; LL gradients: BO-REP "
          "Epoch-SGD + N every I iterations, SOBA / MA-SOBA one (paper Alg. 1; SOBA)",
          "|logged - expected| cumulative counts at the last step == 0", oracle_count_error, lambda v: v == 0,
          kind="check", study=(TOY, CLEANING)),
    Claim("P2 weights flag noisy samples", "hyper-cleaning learns small weights for corrupted samples (the task's premise; the issue's AUC criterion)",
          f"AUC of sigmoid(lambda), clean vs flipped, >= {AUC_MIN:g}", final_auc, lambda v: v >= AUC_MIN,
          scales=("paper",), study=CLEANING),
]


def _toy_runs(runs: list, name: str) -> list:
    return [r for r in runs if r.is_in(TOY, name) and (r.completed or r.diverged)]


def _diverged(runs: list) -> list[float]:
    return [1.0 if r.diverged else 0.0 for r in runs]


def _where(runs: list) -> str:
    return ", ".join(f"eta={eta(r.cfg):g} seed {r.seed}: " + (f"diverged at step {r.diverged_at}" if r.diverged
                     else "completed") for r in sorted(runs, key=lambda r: (eta(r.cfg), str(r.seed))))


def _toy_claims(runs: list) -> list[dict]:
    bo = _toy_runs(runs, "bo_rep")
    soba = [r for r in _toy_runs(runs, "soba") if eta(r.cfg) >= SOBA_ETA_MIN]
    ma = [r for r in _toy_runs(runs, "ma_soba") if eta(r.cfg) == MA_SOBA_ETA]
    rows = []
    if bo:
        n = sum(r.diverged for r in bo)
        row = cross_run_row("H1 BO-REP never diverges", PAPER_THEOREM,
                            "BO-REP, eta in {0.03, 0.1, 0.3, 1} x 3 seeds: diverged runs == 0", [float(n)],
                            lambda v: v == 0, kind="headline")
        rows.append({**row, "note": f"{n} of {len(bo)} BO-REP runs diverged"
                     + (f": {_where([r for r in bo if r.diverged])}" if n else "")})
    if soba:
        row = cross_run_row("H3 SOBA diverges for eta >= 0.1", PAPER_BASELINES,
                            f"SOBA, every run with eta >= {SOBA_ETA_MIN:g}: diverged (1) ", _diverged(soba),
                            lambda v: v == 1, kind="headline")
        rows.append({**row, "note": _where(soba)})
    if ma:
        row = cross_run_row("S1 MA-SOBA diverges at eta = 1", PAPER_BASELINES,
                            "MA-SOBA, every run with eta = 1: diverged (1)", _diverged(ma), lambda v: v == 1)
        rows.append({**row, "note": _where(ma)})
    return rows


def _cleaning_claims(runs: list) -> list[dict]:
    done = [r for r in runs if r.is_in(CLEANING) and r.completed and "test_acc" in r.metrics]
    by_seed: dict = {}
    for r in done:
        by_seed.setdefault(r.seed, {})[method(r.cfg)] = final_test_acc(r.metrics)
    values, notes = [], []
    for seed, acc in sorted(by_seed.items(), key=lambda t: str(t[0])):
        if "bo_rep" in acc and len(acc) > 1:
            values.append(acc["bo_rep"] - max(v for k, v in acc.items() if k != "bo_rep"))
            notes.append(f"seed {seed}: " + ", ".join(f"{k} {v:.2f}" for k, v in sorted(acc.items())))
    if not values:
        return []
    row = cross_run_row("P1 BO-REP beats the baselines", "BO-REP reaches a higher test accuracy than "
                        "SOBA and MA-SOBA in data hyper-cleaning (the paper's hyper-cleaning experiment, Sentiment140 with an RNN; its numbers were not readable here)",
                        "per seed: BO-REP's final test accuracy - the best baseline's >= 0 pp", values,
                        lambda v: v >= 0, kind="headline")
    return [{**row, "note": "; ".join(notes)}]


def cross_run_claims(runs: list) -> list[dict]:
    return _toy_claims(runs) + _cleaning_claims(runs)
