"""Figures in the style of the paper's relearning analysis: recovered accuracy on the unseen forget facts
against relearning-attack step per method (mean +- SD over seeds), and forget / retain accuracy during
unlearning (each run until it reached the 5 % forget target)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from runner.report.style import figure, save

ARMS = ("ga", "npo", "stableun", "stableun_gpn")
LABELS = {"ga": "GA + retain", "npo": "NPO + retain", "stableun": "StableUN (SAP)", "stableun_gpn": "StableUN (GPN)"}


def _curve(df: pd.DataFrame, task: int, col: str) -> pd.Series:
    d = df[df.task == task].dropna(subset=[col])
    return pd.Series(d[col].to_numpy(), index=d.step.to_numpy() - d.step.min() + 1)


def _unlearning(df: pd.DataFrame) -> pd.DataFrame:
    d = df[df.task == 2].dropna(subset=["forget_acc"])
    used = d.unlearn_steps_used.iloc[-1] if len(d) else 0
    d = d.assign(k=d.step - d.step.min() + 1)
    return d[d.k <= used]


def _attack_panel(ax, groups: dict) -> None:
    for i, (arm, dfs) in enumerate(groups.items()):
        curves = [_curve(df, 3, "relearn_acc") for df in dfs]
        curves = [c for c in curves if len(c)]
        if not curves:
            continue
        n = min(map(len, curves))
        arr = np.stack([c.to_numpy()[:n] for c in curves])
        x = np.arange(1, n + 1)
        m, s = arr.mean(0), arr.std(0)
        ax.plot(x, m, color=f"C{i}", lw=1.5, label=f"{LABELS.get(arm, arm)} (n={len(curves)})")
        ax.fill_between(x, m - s, m + s, color=f"C{i}", alpha=0.15)
    ax.set(xlabel="relearning-attack step (fine-tuning on 10 forget facts)",
           ylabel="exact match on the 30 unseen forget facts (%)", title="recovered forget accuracy")
    ax.legend(fontsize=7)


def _unlearn_panel(ax, groups: dict) -> None:
    for i, (arm, dfs) in enumerate(groups.items()):
        for j, df in enumerate(dfs):
            d = _unlearning(df)
            lab = LABELS.get(arm, arm) if j == 0 else None
            ax.plot(d.k, d.forget_acc, color=f"C{i}", lw=1.0, label=lab)
            ax.plot(d.k, d.retain_acc, color=f"C{i}", lw=1.0, ls="--")
    ax.axhline(5, color="k", lw=0.6, ls=":")
    ax.axhline(90, color="k", lw=0.6, ls=":")
    ax.set(xlabel="unlearning step", ylabel="exact match (%)",
           title="during unlearning: forget (solid), retain (dashed)")
    ax.legend(fontsize=7)


def plot_run(df: pd.DataFrame, cfg: dict, out_dir: Path) -> Path:
    fig, axes = figure(ncols=2, width=5.0, height=3.6)
    arm = cfg.get("arm") or "run"
    _attack_panel(axes[0][0], {arm: [df]})
    _unlearn_panel(axes[0][1], {arm: [df]})
    return save(fig, Path(out_dir) / "stableun.png")


def plot_report(runs: list, out_dir: Path) -> list[Path]:
    done = [r for r in runs if r.completed and len(r.metrics) and "relearn_acc" in r.metrics]
    if not done:
        return []
    groups = {a: [r.metrics for r in sorted(done, key=lambda r: str(r.seed)) if r.arm == a] for a in ARMS}
    groups = {a: v for a, v in groups.items() if v}
    fig, axes = figure(ncols=2, width=5.0, height=3.8)
    _attack_panel(axes[0][0], groups)
    _unlearn_panel(axes[0][1], groups)
    return [save(fig, Path(out_dir) / "stableun.png")]
