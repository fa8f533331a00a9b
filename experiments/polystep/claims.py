"""Claims of PolyStep (Le 2026, arXiv 2605.01928), from the logs.

The paper's headline is that PolyStep trains hard-LIF spiking networks, whose spikes give backprop
a zero gradient, to 93.4 % MNIST test accuracy, more than 60 pp above every gradient-free baseline
(OpenAI-ES 33.1 %, SPSA 29.4 %, CMA-ES 16.2 %; abstract and the repository's table, 5 seeds). At
smoke scale the issue fixes the criteria (before any claim seed ran):

- H1 (headline, per run): PolyStep's final test accuracy >= 70 % on the digits SNN (chance 10 %);
- H2 (headline, per run): ... and on the repository's 4-class SNN starter (chance 25 %);
- H3 (headline, cross-run): per seed, PolyStep >= OpenAI-ES + 15 pp at equal forward passes (digits);
- S1 (supporting, cross-run): PolyStep >= SPSA + 15 pp at equal forward passes (digits, seed 0);
- C1, C2 (check): backprop through the hard LIF gets an exactly zero gradient, so its test accuracy
  never moves from the initial one, and it stays at chance (<= chance + 10 pp);
- C3 (check): PolyStep's logged cost is particles x 2 particle_dim + 1 forward passes per step.

At paper scale (MNIST, 784-128-10, 30 epochs): P1 PolyStep >= 90 % (paper 93.4 %), P2 PolyStep >=
OpenAI-ES + 15 pp at its forward-pass budget (paper: 60.3 pp).
"""
from __future__ import annotations

import pandas as pd

from runner.claims import Claim, cross_run_row

DIGITS, SPSA_STUDY, STARTER, MNIST = "digits", "digits_spsa", "starter", "mnist"
ACC_MIN, MARGIN_PP, CHANCE_SLACK_PP = 70.0, 15.0, 10.0

PAPER_ACC = ("hard-LIF SNN on MNIST: 93.4 % test accuracy (abstract; repository table, 5 seeds); the issue's "
             "smoke criterion: >= 70 % where chance is 10-25 %")
PAPER_GAP = ("PolyStep 93.4 % vs OpenAI-ES 33.1 %, SPSA 29.4 %, CMA-ES 16.2 %: > 60 pp above every gradient-free "
             "baseline (abstract; repository table)")
PAPER_ZERO = ("hard LIF spikes have d(spike)/d(membrane) = 0 almost everywhere, so backpropagation gives zero "
              "gradients (the paper's motivation; the repository's SNN starter)")


def final_test_acc(df: pd.DataFrame, cfg=None) -> float:
    return float(df["test_eval/test_acc"].dropna().iloc[-1])


def test_acc_movement(df: pd.DataFrame, cfg=None) -> float:
    acc = df["test_eval/test_acc"].dropna()
    return float((acc - acc.iloc[0]).abs().max())


def chance_excess(df: pd.DataFrame, cfg: dict) -> float:
    """Final test accuracy minus chance (100 / classes), in pp."""
    classes = cfg["dataset"].get("n_classes", 10)
    return final_test_acc(df) - 100.0 / classes


def cost_error(df: pd.DataFrame, cfg: dict) -> float:
    """Largest |logged forward passes per step - (particles x 2 particle_dim + 1)|."""
    per_step = df.forward_passes.dropna().diff().dropna()
    want = df["estimator/particles"].dropna().iloc[-1] * 2 * cfg["trainer"]["estimator"]["particle_dim"] + 1
    return float((per_step - want).abs().max())


CLAIMS = [
    Claim("H1 PolyStep trains the digits SNN", PAPER_ACC, f"final test accuracy >= {ACC_MIN:g} % (chance 10 %)",
          final_test_acc, lambda v: v >= ACC_MIN, scales=("smoke",), kind="headline", study=DIGITS, arms="polystep"),
    Claim("H2 PolyStep trains the SNN starter", PAPER_ACC + "; the starter's own target: > 70 % (its docstring)",
          f"final test accuracy >= {ACC_MIN:g} % (chance 25 %)", final_test_acc, lambda v: v >= ACC_MIN,
          scales=("smoke",), kind="headline", study=STARTER, arms="polystep"),
    Claim("P1 PolyStep on the MNIST SNN", PAPER_ACC, "final test accuracy >= 90 % (paper 93.4 %)", final_test_acc,
          lambda v: v >= 90.0, scales=("paper",), kind="headline", study=MNIST, arms="polystep"),
    Claim("C1 backprop: zero gradient", PAPER_ZERO, "max |test accuracy - initial| == 0 (parameters never move)",
          test_acc_movement, lambda v: v == 0, kind="check", study=(DIGITS, MNIST), arms="backprop"),
    Claim("C2 backprop stays at chance", PAPER_ZERO, f"final test accuracy - chance <= {CHANCE_SLACK_PP:g} pp",
          chance_excess, lambda v: v <= CHANCE_SLACK_PP, kind="check", study=(DIGITS, MNIST), arms="backprop"),
    Claim("C3 PolyStep's forward passes", "a step evaluates every particle at every orthoplex vertex (particles x "
          "2 d forward passes; the paper's cost accounting, about 30M for the MNIST SNN) + 1 clean loss here",
          "|logged - (particles x 2 particle_dim + 1)| per step == 0", cost_error, lambda v: v == 0,
          kind="check", study=(DIGITS, STARTER, MNIST), arms="polystep"),
]


def _finals(runs: list, study: str, arm: str) -> dict:
    return {r.seed: final_test_acc(r.metrics) for r in runs
            if r.is_in(study, arm) and r.completed and "test_eval/test_acc" in r.metrics}


def _gap(name: str, criterion: str, ours: dict, theirs: dict, kind: str) -> list[dict]:
    seeds = sorted(set(ours) & set(theirs), key=str)
    if not seeds:
        return []
    row = cross_run_row(name, PAPER_GAP, criterion, [ours[s] - theirs[s] for s in seeds],
                        lambda v: v >= MARGIN_PP, kind=kind)
    note = "; ".join(f"seed {s}: PolyStep {ours[s]:.1f} %, baseline {theirs[s]:.1f} %" for s in seeds)
    return [{**row, "note": note}]


def cross_run_claims(runs: list) -> list[dict]:
    rows = []
    for study, label in ((DIGITS, "H3"), (MNIST, "P2")):
        rows += _gap(f"{label} PolyStep beats OpenAI-ES", f"per seed, equal forward passes: PolyStep - OpenAI-ES "
                     f">= {MARGIN_PP:g} pp", _finals(runs, study, "polystep"), _finals(runs, study, "openai_es"),
                     "headline")
    rows += _gap("S1 PolyStep beats SPSA", f"seed 0, equal forward passes: PolyStep - SPSA >= {MARGIN_PP:g} pp",
                 _finals(runs, DIGITS, "polystep"), _finals(runs, SPSA_STUDY, "spsa"), "supporting")
    rows += _gap("S1 PolyStep beats SPSA", f"per seed, equal forward passes: PolyStep - SPSA >= {MARGIN_PP:g} pp",
                 _finals(runs, MNIST, "polystep"), _finals(runs, MNIST, "spsa"), "supporting")
    return rows
