"""Claims of Drop-Muon, compared run against run (Drop-Muon vs full-network Muon, same seed).

The paper's measure is training accuracy against wall-clock time. Here it is the accuracy on a fixed
subset of the training split (hook `train_eval`, logged after every step early on). Both arms get
the same compute budget, the FLOPs of `trainer.steps` full-network steps (`trainer.budget=flops`),
with the lr schedule defined over that budget. The target of a seed is Muon's final training
accuracy; "to target" reads the first evaluation at or above it. The paper's claim is the speedup
to the same accuracy, Muon's cost / Drop-Muon's cost, in wall-clock time (`train_time_s`, time inside
training steps, evaluation excluded); the machine-independent FLOPs to target (`train_flops`) stand
beside it. Claims select runs by the study arms of `studies.yaml`: `muon` (every layer,
trainer.sampling=full) and `drop_muon` (uniform start layer); cross-run claims pair the arms by seed.
"""
from __future__ import annotations

from collections import defaultdict

import numpy as np
import pandas as pd

from runner.claims import Claim, cross_run_row

# logged columns of the hooks (`<hook>/<name>`); the trainer's start_layer, layers_updated,
# layer_backward, backward_flops, train_flops and train_time_s keep their names
TRAIN_ACC = "train_eval/train_acc"
TEST_ACC = "test_eval/test_acc"
UPDATE_NORM = "update_norms/update_norm_"  # + 1-based layer index
ARMS = ("muon", "drop_muon")
TOL = 1e-9  # accuracies are fractions of one subset: equal values compare equal


def norm_cols(df: pd.DataFrame) -> list[str]:
    """The per-layer update-norm columns, input side first."""
    return sorted((c for c in df.columns if c.startswith(UPDATE_NORM)), key=lambda c: int(c[len(UPDATE_NORM):]))


def frozen_update_max(df: pd.DataFrame, cfg: dict) -> float:
    """Largest update norm of a layer below the sampled start layer (must be exactly 0)."""
    cols = norm_cols(df)
    rows = df[df[cols[0]].notna()]
    frozen = [rows.loc[rows.start_layer > i, c].abs().max() for i, c in enumerate(cols, start=1)]
    return float(np.nanmax([v for v in frozen if v == v] or [0.0]))


def layers_updated_ratio(df: pd.DataFrame, cfg: dict) -> float:
    """Mean layers updated per step over (b+1)/2, the uniform sampler's expectation (b = most seen)."""
    n = df.layers_updated.dropna()
    return float(n.mean() / ((n.max() + 1) / 2))


CLAIMS = [
    Claim("frozen layers untouched", "layers outside S^k keep weights (and momentum) unchanged",
          "max update norm of layers below the start layer == 0", frozen_update_max, lambda v: v == 0.0,
          kind="check", arms="drop_muon"),
    Claim("layers updated per step", "uniform start index: (b+1)/2 of the b layers are updated per step",
          "mean layers updated / ((b+1)/2) within [0.9, 1.1]", layers_updated_ratio,
          lambda v: 0.9 <= v <= 1.1, kind="check", arms="drop_muon"),
]


def final(df: pd.DataFrame, col: str) -> float:
    return float(df[col].dropna().iloc[-1])


def to_target(df: pd.DataFrame, target: float) -> pd.Series | None:
    """The first row after training began with training accuracy >= target (None if never reached)."""
    ev = df[df[TRAIN_ACC].notna() & df.train_time_s.notna()]
    hit = ev[ev[TRAIN_ACC] >= target - TOL]
    return hit.iloc[0] if len(hit) else None


def pairs(runs: list) -> dict[int, dict[str, object]]:
    out: dict[int, dict[str, object]] = defaultdict(dict)
    for r in runs:
        if r.status.get("status") == "completed" and r.is_in(arms=ARMS) and TRAIN_ACC in r.metrics:
            out[int(r.cfg.get("seed", 0))][r.arm] = r
    return {s: d for s, d in out.items() if len(d) == 2}


def per_step(df: pd.DataFrame, col: str) -> float:
    """Mean cost of one training step: the final cumulative `col` over the steps taken."""
    return final(df, col) / float(df.step.max())


def cross_run_claims(runs: list) -> list[dict]:
    wall, flops, step_wall, budget = [], [], [], []
    for _seed, d in sorted(pairs(runs).items()):
        muon, drop = d["muon"].metrics, d["drop_muon"].metrics
        a, b = to_target(muon, final(muon, TRAIN_ACC)), to_target(drop, final(muon, TRAIN_ACC))
        if b is None:  # Muon reaches its own final value by definition
            wall.append(np.nan), flops.append(np.nan)
        else:
            wall.append(a.train_time_s / b.train_time_s)
            flops.append(a.train_flops / b.train_flops)
        step_wall.append(per_step(drop, "train_time_s") / per_step(muon, "train_time_s"))
        budget.append((final(drop, "train_flops") / final(muon, "train_flops"), 1 / float(muon.step.max())))
    row = cross_run_row
    return [
        row("wall-clock speedup to Muon's final training accuracy",
            "Drop-Muon consistently outperforms Muon, reaching the same accuracy up to 1.4x faster in "
            "wall-clock (abstract; training accuracy vs wall-clock, 3-layer CNNs, MNIST batch 8192)",
            "Muon's training time to its own final training accuracy / Drop-Muon's time to it > 1, every seed "
            "(same FLOP budget)", wall, lambda v: v > 1.0, kind="headline"),
        row("FLOP speedup to Muon's final training accuracy",
            "the same accuracy with less computation (backpropagation stops at the start layer)",
            "Muon's training FLOPs (forward + backward + Newton-Schulz) to its final training accuracy / "
            "Drop-Muon's > 1, every seed", flops, lambda v: v > 1.0, kind="supporting"),
        row("cheaper steps in wall-clock", "backpropagation stops at layer s, so an iteration costs less than a full one",
            "training time per step, Drop-Muon / Muon < 1", step_wall, lambda v: v < 1.0, kind="supporting"),
        row("same compute budget", "(ours) both arms get the FLOPs of trainer.steps full-network steps",
            "Drop-Muon's total training FLOPs / Muon's within [1, 1 + 1/steps] (it stops on the step that "
            "exhausts the budget)", [r for r, _ in budget], lambda v: 1.0 <= v <= 1.0 + max((t for _, t in budget),
                                                                                          default=0.0) + 1e-12,
            kind="check"),
    ]
