"""Claims of Drop-Muon, compared run against run (Drop-Muon vs full-network Muon, same seed).

The target is 95 % of Muon's final test accuracy (per seed); "to target" reads the first evaluation
at or above it. Cost is counted twice: cumulative layer backward passes (a machine-independent
proxy) and wall-clock time inside training steps (`train_time_s`, excluding evaluation). The paper
reports up to 1.4x faster wall-clock on MNIST / Fashion-MNIST / CIFAR-10 CNNs at batch 8192; on a
shared CPU at smoke scale timing is noisy, so both numbers are reported (this folder's README.md).
Claims select runs by the study arms of `studies.yaml`: `muon` (every layer, trainer.sampling=full)
and `drop_muon` (uniform start layer); cross-run claims pair the two arms by seed.
"""
from __future__ import annotations

from collections import defaultdict

import numpy as np
import pandas as pd

from runner.claims import Claim, cross_run_row

TARGET = 0.95  # fraction of Muon's final test accuracy
# logged columns of the hooks (`<hook>/<name>`); the trainer's start_layer, layers_updated,
# layer_backward and train_time_s keep their names
TEST_ACC = "test_eval/test_acc"
UPDATE_NORM = "update_norms/update_norm_"  # + 1-based layer index


def norm_cols(df: pd.DataFrame) -> list[str]:
    """The per-layer update-norm columns, input side first."""
    return sorted((c for c in df.columns if c.startswith(UPDATE_NORM)), key=lambda c: int(c[len(UPDATE_NORM):]))


ARMS = ("muon", "drop_muon")


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


def to_target(df: pd.DataFrame, target: float) -> pd.Series | None:
    """The first evaluated row with test accuracy >= target (None if never reached)."""
    ev = df[df[TEST_ACC].notna()]
    hit = ev[ev[TEST_ACC] >= target]
    return hit.iloc[0] if len(hit) else None


def final_acc(df: pd.DataFrame) -> float:
    return float(df[TEST_ACC].dropna().iloc[-1])


def pairs(runs: list) -> dict[int, dict[str, object]]:
    out: dict[int, dict[str, object]] = defaultdict(dict)
    for r in runs:
        if r.status.get("status") == "completed" and r.is_in(arms=ARMS) and TEST_ACC in r.metrics:
            out[int(r.cfg.get("seed", 0))][r.arm] = r
    return {s: d for s, d in out.items() if len(d) == 2}


def cross_run_claims(runs: list) -> list[dict]:
    backward, wall, acc_gap, per_step = [], [], [], []
    for _seed, d in sorted(pairs(runs).items()):
        muon, drop = d["muon"].metrics, d["drop_muon"].metrics
        target = TARGET * final_acc(muon)
        a, b = to_target(muon, target), to_target(drop, target)
        if a is None or b is None:
            backward.append(np.nan), wall.append(np.nan)
        else:
            backward.append(b.layer_backward / a.layer_backward)
            wall.append(b.train_time_s / a.train_time_s)
        acc_gap.append(final_acc(drop) - final_acc(muon))
        per_step.append((drop.train_time_s.max() / drop.step.max()) / (muon.train_time_s.max() / muon.step.max()))
    gap = [float(np.mean(acc_gap))] if acc_gap else []
    row = cross_run_row
    return [
        row("cheaper steps", "backpropagation stops at layer s, so an iteration costs less than a full one",
            "wall-clock per training step, Drop-Muon / Muon <= 0.8 (backward work ratio (b+1)/2b)", per_step,
            lambda v: v <= 0.8, kind="supporting"),
        row("layer backward to target", "Drop-Muon reaches the same accuracy with less computation",
            "layer backward passes to 95 % of Muon's final acc, Drop-Muon / Muon <= 0.75", backward,
            lambda v: v <= 0.75, kind="supporting"),
        row("wall-clock to target", "same accuracy up to 1.4x faster in wall-clock (MNIST, batch 8192)",
            "train time to 95 % of Muon's final acc, Drop-Muon / Muon <= 0.9", wall, lambda v: v <= 0.9,
            kind="headline"),
        row("final accuracy", "Drop-Muon matches or beats Muon's accuracy",
            f"mean over {len(acc_gap)} seeds of final test acc, Drop-Muon - Muon >= -0.5 pp (same steps)", gap,
            lambda v: v >= -0.5, kind="headline"),
    ]
