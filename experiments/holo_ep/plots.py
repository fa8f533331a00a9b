"""Figures in the style of the paper's Fig. 4: test accuracy per arm over training, and over training the
cosine between EP's and BP's neuron errors and the Jacobian symmetry ratio (mean +- SD over seeds)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from runner.report.style import figure, save

ARMS = ("hep", "hep_homeo", "hep_sym", "bp")
LABELS = {"hep": "hEP, angle 90", "hep_homeo": "hEP + homeostasis, angle 90", "hep_sym": "hEP, angle 0",
          "bp": "BP, angle 90"}
PANELS = (("evaluate/test_acc", "test accuracy (%)"), ("estimator/cos_delta", "cos(EP, BP) neuron errors"),
          ("estimator/sym_ratio", "Jacobian symmetry ratio"))


def _panel(ax, groups: dict, col: str, label: str) -> None:
    for i, (arm, dfs) in enumerate(groups.items()):
        curves = [df[["step", col]].dropna() for df in dfs if col in df]
        curves = [c for c in curves if len(c)]
        if not curves:
            continue
        n = min(map(len, curves))
        arr = np.stack([c[col].to_numpy()[:n] for c in curves])
        x = curves[0].step.to_numpy()[:n]
        m, s = arr.mean(0), arr.std(0)
        ax.plot(x, m, color=f"C{i}", lw=1.3, label=f"{LABELS.get(arm, arm)} (n={len(curves)})")
        ax.fill_between(x, m - s, m + s, color=f"C{i}", alpha=0.15)
    ax.set(xlabel="step", ylabel=label)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=6)


def _plot(groups: dict, path: Path) -> Path:
    fig, axes = figure(ncols=3, width=4.2, height=3.4)
    for ax, (col, label) in zip(axes[0], PANELS):
        _panel(ax, groups, col, label)
    return save(fig, path)


def plot_run(df: pd.DataFrame, cfg: dict, out_dir: Path) -> Path:
    return _plot({cfg.get("arm") or "run": [df]}, Path(out_dir) / "holo_ep.png")


def plot_report(runs: list, out_dir: Path) -> list[Path]:
    done = [r for r in runs if r.completed and len(r.metrics) and "evaluate/test_acc" in r.metrics]
    if not done:
        return []
    groups = {a: [r.metrics for r in sorted(done, key=lambda r: str(r.seed)) if r.arm == a] for a in ARMS}
    return [_plot({a: v for a, v in groups.items() if v}, Path(out_dir) / "holo_ep.png")]
